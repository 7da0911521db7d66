"""fork_action_worker: runs the index fork workflow (a Step Functions state machine on
moto whose one task hands a token to this worker through SQS; see workflow.py)."""
