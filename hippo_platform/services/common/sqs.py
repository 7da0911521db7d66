"""SQS on the local moto through aws_lite: the four calls a queue hop needs.

Why a module: admin_server (producer), ecom_indexer_trigger (producer) and ecom_indexer
(consumer) all speak to the same `{table prefix}ecom-indexer` queue that the
provisioning job creates, and a missing queue must read the same everywhere: which
queue, and that `aws_provision` makes it.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from hippo_platform.services.common.aws_lite import AwsClient, AwsError
from hippo_platform.services.common.messages import NotJson, strict_json

UPLOAD_QUEUE_SUFFIX = "ecom-indexer"
"""The queue document uploads travel through (provision.QUEUE_SUFFIXES makes it)."""

MISSING_QUEUE_CODES = frozenset({
    "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", "NonExistentQueue",
})


class Message(NamedTuple):
    receipt: str
    body: Any  # the decoded JSON body; None when it is not JSON
    raw: str
    id: str = ""  # SQS's MessageId: the same across deliveries, as the receipt is not


class QueueMissing(Exception):
    """The queue is not there (yet): aws_provision has not run for this table prefix."""


class Queue:
    def __init__(self, aws: AwsClient, name: str) -> None:
        self.aws = aws
        self.name = name
        self._url = ""

    def url(self) -> str:
        if not self._url:
            try:
                self._url = str(self.aws.call("sqs", "GetQueueUrl", {"QueueName": self.name})
                                ["QueueUrl"])
            except AwsError as exc:
                if exc.code in MISSING_QUEUE_CODES:
                    raise QueueMissing(
                        f"SQS queue {self.name} does not exist on {self.aws.endpoint}: "
                        "it is made by the aws_provision job (same table prefix); "
                        "wait for it or run `invoke up --profile ecom`") from None
                raise
        return self._url

    def send(self, body: Any) -> str:
        """The message id."""
        answer = self.aws.call("sqs", "SendMessage", {
            "QueueUrl": self.url(), "MessageBody": json.dumps(body, separators=(",", ":"))})
        return str(answer.get("MessageId", ""))

    def receive(self, *, wait_s: int = 1, limit: int = 10) -> list[Message]:
        answer = self.aws.call("sqs", "ReceiveMessage", {
            "QueueUrl": self.url(), "MaxNumberOfMessages": limit, "WaitTimeSeconds": wait_s})
        found = []
        for item in answer.get("Messages") or []:
            raw = str(item.get("Body", ""))
            try:  # strictly, as every reader here: a body 50,000 levels deep or with a
                body = strict_json(raw)  # 5,000-digit number raised out of the whole
            except NotJson:  # receive, holding the good batches with it (adv29 o/4)
                body = None
            found.append(Message(str(item.get("ReceiptHandle", "")), body, raw,
                                 str(item.get("MessageId", ""))))
        return found

    def release(self, receipt: str, after_s: int = 1) -> None:
        """Make a received message visible again after `after_s` rather than after the
        queue's visibility timeout (30 s): a batch that failed on a peer's hiccup comes
        back as soon as the peer may be back."""
        self.aws.call("sqs", "ChangeMessageVisibility", {
            "QueueUrl": self.url(), "ReceiptHandle": receipt, "VisibilityTimeout": after_s})

    def delete(self, receipt: str) -> None:
        self.aws.call("sqs", "DeleteMessage", {"QueueUrl": self.url(), "ReceiptHandle": receipt})


def queue_name(env: dict[str, str] | Any, variable: str = "ECOM_INDEXER_QUEUE") -> str:
    """The queue from its variable, else `{HIPPODROME_TABLE_PREFIX}ecom-indexer`; "" when
    neither is set."""
    name = str(env.get(variable) or "")
    prefix = env.get("HIPPODROME_TABLE_PREFIX")
    if not name and prefix is not None:
        name = str(prefix) + UPLOAD_QUEUE_SUFFIX
    return name
