"""The index fork workflow on moto: its state machine, its queue, and the calls to them.

Why a state machine with a callback task and not a worker alone: the reference runs
forks as a Step Functions workflow, and moto (5.x, with its `execute_state_machine`
switch, set through `POST /moto-api/config`) really executes a definition, including
`sqs:sendMessage.waitForTaskToken`. It cannot call an HTTP endpoint such as the cell,
so the one task that copies is done by fork_action_worker: the execution puts
{input, token} on the fork queue, the worker copies through the cell and answers with
SendTaskSuccess or SendTaskFailure. The execution (its status, output, error and
cause) lives on moto, so the controller reports a fork from there, and a controller
or worker restart loses nothing. `TimeoutSeconds` ends an execution no worker ever
answers as TIMED_OUT instead of RUNNING forever.

Calls go through the stdlib AWS client (aws_lite) in the JSON 1.0 protocol that both
Step Functions and SQS speak, so neither service loads boto3.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from hippo_platform.services.common.aws_lite import AwsClient, AwsError

MOTO_ACCOUNT = "123456789012"  # moto's default account
TASK_TIMEOUT_S = 300
DEFAULT_NAME = "IndexFork"


def names(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(state machine name, queue name) for this stack's table prefix."""
    env = os.environ if env is None else env
    prefix = env.get("HIPPODROME_TABLE_PREFIX", "")
    return prefix + DEFAULT_NAME + "StateMachine", prefix + DEFAULT_NAME + "Queue"


def state_machine_arn(client: AwsClient, name: str) -> str:
    return f"arn:aws:states:{client.config.region}:{MOTO_ACCOUNT}:stateMachine:{name}"


def execution_arn(client: AwsClient, machine: str, fork_id: str) -> str:
    return f"arn:aws:states:{client.config.region}:{MOTO_ACCOUNT}:execution:{machine}:{fork_id}"


def definition(queue_url: str) -> dict[str, Any]:
    return {
        "Comment": "Copy an index's settings and documents to a new index",
        "StartAt": "CopyIndex",
        "States": {
            "CopyIndex": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {
                    "QueueUrl": queue_url,
                    "MessageBody": {"input.$": "$", "token.$": "$$.Task.Token"},
                },
                "TimeoutSeconds": TASK_TIMEOUT_S,
                "ResultPath": "$.result",
                "End": True,
            }
        },
    }


def call(client: AwsClient, service: str, operation: str, body: Mapping[str, Any]) -> Any:
    """One JSON 1.0 call to Step Functions ("states") or SQS ("sqs")."""
    prefix = {"states": "AWSStepFunctions", "sqs": "AmazonSQS"}[service]
    headers = {"content-type": "application/x-amz-json-1.0",
               "x-amz-target": f"{prefix}.{operation}"}
    payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
    reply = client.send(operation, service, "POST", "/", headers=headers, payload=payload)
    return json.loads(reply.body) if reply.body.strip() else {}


def enable_execution(endpoint: str) -> None:
    """Switch moto from canned execution results to really running definitions."""
    import urllib.request  # only before a first fork: it brings tempfile and shutil

    body = json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode()
    request = urllib.request.Request(endpoint.rstrip("/") + "/moto-api/config", data=body,
                                     method="POST", headers={"content-type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as answer:
            answer.read()
    except OSError as exc:  # URLError, HTTPError, timeouts: one sentence naming the call
        reason = getattr(exc, "reason", None) or exc
        why = getattr(reason, "strerror", None) or str(reason)
        raise OSError(f"POST {request.full_url}: {why}") from None


def ensure_queue(client: AwsClient, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Create (or find) the fork queue; returns (machine ARN, queue URL). All the worker
    needs at its start: the machine is made on the first fork (`ensure`)."""
    machine, queue = names(env)
    queue_url = str(call(client, "sqs", "CreateQueue", {"QueueName": queue})["QueueUrl"])
    return state_machine_arn(client, machine), queue_url


def ensure(client: AwsClient, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Switch moto's execution on, and create (or find) the queue and the state machine;
    returns (machine ARN, queue URL). Idempotent.

    The controller runs it before its first fork, not the worker at its start: moto's
    executing Step Functions backend (its ASL parser) costs ~140 MB of moto's memory
    from the moment it is switched on, and most stack runs never fork. The executing
    backend keeps its own state machines, so the machine is made after the switch."""
    machine = names(env)[0]
    enable_execution(client.endpoint)
    arn, queue_url = ensure_queue(client, env)
    wanted = json.dumps(definition(queue_url))
    try:
        current = call(client, "states", "DescribeStateMachine", {"stateMachineArn": arn})
    except AwsError as exc:
        if exc.code != "StateMachineDoesNotExist":
            raise
        current = None
    if current is None:
        call(client, "states", "CreateStateMachine", {
            "name": machine, "definition": wanted,
            "roleArn": f"arn:aws:iam::{MOTO_ACCOUNT}:role/{machine}"})
    elif current.get("definition") != wanted:
        call(client, "states", "UpdateStateMachine", {"stateMachineArn": arn,
                                                      "definition": wanted})
    return arn, queue_url
