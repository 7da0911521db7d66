"""The daemon's EventBridge webhook, as its senders see it (DESIGN section 4).

event_pipe (platform) posts to it with the token, the daemon (orchestrator) checks it,
and the EventBridge connection made by `up --enable-events` sends it as an API key.
"""

TOKEN_HEADER = "x-hippodrome-webhook-token"
WEBHOOK_PATH = "/webhook/eventbridge"
