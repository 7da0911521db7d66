"""The fork worker's loop: take a task from the fork queue, copy through the cell, answer.

Restart safety: a message is deleted only after its answer reached Step Functions.
A worker that dies between receiving and answering leaves the message to come back
after the visibility timeout; the cell's fork is one journal op keyed by the fork id,
so the retry either finds the copy made (and answers success with it) or makes it.
A fork is therefore whole or absent, never half-copied, and the execution ends
SUCCEEDED, FAILED (with the cell's reason as its cause) or TIMED_OUT, never silently.
A cell that cannot be reached is not the fork's fault: the message is left to retry.
"""

from __future__ import annotations

import json
import os
import threading
import traceback
from typing import Any

from hippo_platform.services.common.aws_lite import AwsClient, AwsError
from hippo_platform.services.common.client import JsonClient, segment
from hippo_platform.services.common.errors import BadGateway, HttpError
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.messages import strict_json
from hippo_platform.services.fork_action_worker.workflow import call

CRASH_AFTER_COPY = "HIPPODROME_FORK_WORKER_CRASH_AFTER_COPY"  # tests: die before answering


class ForkWorker:
    def __init__(self, aws: AwsClient, cell: JsonClient, queue_url: str, *,
                 visibility_s: int = 30, wait_s: int = 1) -> None:
        self.aws, self.cell, self.queue_url = aws, cell, queue_url
        self.visibility_s, self.wait_s = visibility_s, wait_s
        self.stopping = threading.Event()
        self.done = 0
        self.failed = 0
        self.last_error = ""
        self._thread = threading.Thread(target=self._loop, name="fork-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the task in hand (one cell call and one answer), then return."""
        self.stopping.set()
        if self._thread.ident is not None:  # never started when the port could not be bound
            self._thread.join(timeout=self.wait_s + 15)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                answer = call(self.aws, "sqs", "ReceiveMessage", {
                    "QueueUrl": self.queue_url, "MaxNumberOfMessages": 1,
                    "WaitTimeSeconds": self.wait_s, "VisibilityTimeout": self.visibility_s})
            except AwsError as exc:
                self.last_error = exc.sentence
                log_error(f"fork_action_worker: {exc.sentence}")
                self.stopping.wait(1.0)
                continue
            for message in answer.get("Messages", []):
                try:
                    self.handle(message)
                except Exception:  # noqa: BLE001 - a bug must not end the worker: it had,
                    # silently, with /healthz still ok and every later fork RUNNING for
                    # ever (adv29 o/5); the message comes back after its visibility
                    self.last_error = traceback.format_exc().rstrip().splitlines()[-1]
                    log_error(f"fork_action_worker: internal error on a message (it comes "
                              f"back for a retry):\n{traceback.format_exc().rstrip()}")

    def handle(self, message: dict[str, Any]) -> None:
        try:
            body = strict_json(message["Body"])  # RecursionError ended the thread (o/5)
            token, task = str(body["token"]), body["input"]
            if not isinstance(task, dict):
                raise TypeError("input is not an object")
        except (KeyError, TypeError, ValueError):
            log_error(f"fork_action_worker: dropping a message that is not a fork task: "
                      f"{str(message.get('Body'))[:200]}")
            self._delete(message)
            return
        try:
            result = self.copy(task)
        except BadGateway as exc:  # the cell is down: leave the message for a retry
            self.last_error = exc.message
            log_error(f"fork_action_worker: {exc.message}; the task will be retried")
            return
        except HttpError as exc:
            self.failed += 1
            # moto keeps a task failure's `error` but drops its `cause`, so the reason
            # travels in both (error is capped at 256 characters by AWS).
            error = f"ForkFailed: {exc.message}"[:256]
            self._answer("SendTaskFailure", {"taskToken": token, "error": error,
                                             "cause": exc.message}, message)
            log_line(f"fork_action_worker: fork {task.get('forkId')} failed: {exc.message}")
            return
        if os.environ.get(CRASH_AFTER_COPY) == "1":
            os._exit(9)
        self.done += 1
        self._answer("SendTaskSuccess", {"taskToken": token, "output": json.dumps(result)},
                     message)
        log_line(f"fork_action_worker: fork {result['forkId']} {result['source']} -> "
                 f"{result['target']}: {result['numberOfDocuments']} documents")

    def copy(self, task: Any) -> dict[str, Any]:
        if not isinstance(task, dict) or not all(
            isinstance(task.get(k), str) and task.get(k)
            for k in ("accountId", "source", "target", "forkId")
        ):
            raise HttpError("the task needs accountId, source, target and forkId strings",
                            status=400)
        path = (f"/accounts/{segment(task['accountId'])}/indexes/"
                f"{segment(task['source'])}/fork")
        answer: dict[str, Any] = self.cell.call(
            "POST", path, body={"target": task["target"], "forkId": task["forkId"]})
        return answer

    def _answer(self, operation: str, body: dict[str, Any], message: dict[str, Any]) -> None:
        try:
            call(self.aws, "states", operation, body)
        except AwsError as exc:
            if exc.code not in ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken"):
                log_error(f"fork_action_worker: {exc.sentence}; the task will be retried")
                return  # keep the message: the answer did not land
            log_line(f"fork_action_worker: the execution no longer waits ({exc.code})")
        self._delete(message)

    def _delete(self, message: dict[str, Any]) -> None:
        try:
            call(self.aws, "sqs", "DeleteMessage", {"QueueUrl": self.queue_url,
                                                   "ReceiptHandle": message["ReceiptHandle"]})
        except AwsError as exc:
            log_error(f"fork_action_worker: {exc.sentence}")
