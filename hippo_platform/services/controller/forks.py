"""Index forks as the controller reports them: started here, run by the workflow.

Two ways to run one. `stepfunctions` (ecom and full, where moto runs): the fork is an
execution of the fork state machine, named by the fork id, and its status, result and
failure are read back from moto, so nothing is lost when the controller restarts.
`direct` (core, no moto): the controller asks the cell to copy at once, and remembers
the outcome in memory. Either way the copy itself is one atomic cell operation.
FORK_WORKFLOW=stepfunctions|direct chooses; unset, the profile does.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
from collections.abc import Mapping
from typing import Any

from hippo_platform.services.common import shapes
from hippo_platform.services.common.aws_lite import AwsClient, AwsError
from hippo_platform.services.common.client import JsonClient, segment
from hippo_platform.services.common.errors import HttpError, NotFound, ServiceUnavailable
from hippo_platform.services.fork_action_worker import workflow

FORK_ID = re.compile(r"^fork-[0-9a-f]{16}$")
STATUSES = {"RUNNING": "RUNNING", "SUCCEEDED": "SUCCEEDED", "FAILED": "FAILED",
            "TIMED_OUT": "FAILED", "ABORTED": "FAILED"}


def choose_mode(env: Mapping[str, str]) -> str:
    mode = env.get("FORK_WORKFLOW", "")
    if mode in ("stepfunctions", "direct"):
        return mode
    if mode:
        raise ValueError(f"FORK_WORKFLOW={mode!r}: use 'stepfunctions' or 'direct'")
    sfn = env.get("HIPPODROME_PROFILE") in ("ecom", "full") and env.get("AWS_ENDPOINT_URL")
    return "stepfunctions" if sfn else "direct"


class Forks:
    def __init__(self, cell: JsonClient, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.cell = cell
        self.mode = choose_mode(env)
        self.aws = AwsClient.from_env(env) if self.mode == "stepfunctions" else None
        self.env = dict(env)
        self.machine = workflow.names(env)[0]
        self._direct: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._made = False
        """The state machine exists on moto's executing backend (workflow.ensure), made
        on the first fork: switching that backend on costs moto ~140 MB."""

    def start(self, headers: dict[str, str], source: str, target: str) -> dict[str, Any]:
        account = self.cell.call("GET", "/account", headers=headers)["accountId"]
        self.cell.call("GET", "/indexes/" + segment(source), headers=headers)  # 404 if absent
        # Here, not only in the cell's copy: in stepfunctions mode that runs in the
        # worker, after a 202 RUNNING, so a typo was learnt only by polling the fork.
        shapes.index_name(target, "target index name")
        if self.cell.request("GET", "/indexes/" + segment(target), headers=headers).ok:
            raise HttpError(f"index '{target}' already exists; pick another fork target",
                            status=409)
        fork_id = "fork-" + secrets.token_hex(8)
        task = {"accountId": account, "source": source, "target": target, "forkId": fork_id}
        if self.aws is None:
            path = f"/accounts/{segment(account)}/indexes/{segment(source)}/fork"
            done = self.cell.call("POST", path, body={"target": target, "forkId": fork_id})
            view = {**task, "status": "SUCCEEDED", "workflow": "direct",
                    "numberOfDocuments": done["numberOfDocuments"]}
            with self._lock:
                self._direct[fork_id] = view
            return _public(view)
        arn = workflow.state_machine_arn(self.aws, self.machine)
        start = {"stateMachineArn": arn, "name": fork_id, "input": _json(task)}
        for attempt in (1, 2):
            self._make_machine(again=attempt == 2)
            try:
                workflow.call(self.aws, "states", "StartExecution", start)
                break
            except AwsError as exc:
                if exc.code == "StateMachineDoesNotExist" and attempt == 1:
                    continue  # moto restarted since the machine was made: make it again
                raise ServiceUnavailable(
                    f"cannot start the fork workflow: {exc.sentence}") from None
        return _public({**task, "status": "RUNNING", "workflow": "stepfunctions"})

    def _make_machine(self, again: bool) -> None:
        """workflow.ensure once (again after moto lost it), one thread at a time."""
        assert self.aws is not None
        with self._lock:
            if self._made and not again:
                return
            try:
                workflow.ensure(self.aws, self.env)
            except (AwsError, OSError, ValueError) as exc:
                why = exc.sentence if isinstance(exc, AwsError) else str(exc)
                raise ServiceUnavailable(
                    f"cannot set up the fork workflow on moto ({why}); is moto running? "
                    "(`hd status`)") from None
            self._made = True

    def get(self, headers: dict[str, str], fork_id: str) -> dict[str, Any]:
        account = self.cell.call("GET", "/account", headers=headers)["accountId"]
        missing = NotFound(f"fork '{fork_id}' not found")
        if not FORK_ID.match(fork_id):
            raise missing
        if self.aws is None:
            with self._lock:
                view = self._direct.get(fork_id)
            if view is None or view["accountId"] != account:
                return self._from_cell(headers, fork_id, missing)
            return _public(view)
        arn = workflow.execution_arn(self.aws, self.machine, fork_id)
        try:
            found = workflow.call(self.aws, "states", "DescribeExecution", {"executionArn": arn})
        except AwsError as exc:
            if exc.code == "ExecutionDoesNotExist":
                return self._from_cell(headers, fork_id, missing)
            raise ServiceUnavailable(f"cannot read the fork workflow: {exc.sentence}") from None
        task = _loads(found.get("input"))
        if task.get("accountId") != account:
            raise missing
        status = str(found.get("status", "RUNNING"))
        view = {**task, "status": STATUSES.get(status, status), "workflow": "stepfunctions",
                "executionStatus": status}
        result = _loads(found.get("output")).get("result")
        if isinstance(result, dict) and "numberOfDocuments" in result:
            view["numberOfDocuments"] = result["numberOfDocuments"]
        if status != "RUNNING" and status != "SUCCEEDED":
            error, cause = str(found.get("error") or status), str(found.get("cause") or "")
            if not cause and ": " in error:  # moto drops the cause; the worker repeats it
                error, cause = error.split(": ", 1)
            view["error"] = error
            view["cause"] = cause or f"the fork workflow ended {status}"
        return _public(view)


    def _from_cell(self, headers: dict[str, str], fork_id: str,
                   missing: NotFound) -> dict[str, Any]:
        """A fork whose record is gone (moto restarted and took its executions; in core,
        the controller restarted) but whose index is there: the cell keeps each forked
        index's origin, so the fork is known to have succeeded. A finished fork had
        become `404 not found`, which says the id is wrong."""
        listing = self.cell.call("GET", "/indexes", headers=headers).get("results")
        for index in listing if isinstance(listing, list) else []:
            origin = index.get("forkedFrom") if isinstance(index, dict) else None
            if isinstance(origin, dict) and origin.get("forkId") == fork_id:
                return {"source": origin.get("source"), "target": index.get("indexName"),
                        "forkId": fork_id, "status": "SUCCEEDED", "workflow": self.mode,
                        "numberOfDocuments": origin.get("numberOfDocuments",
                                                        index.get("numberOfDocuments")),
                        "note": "the fork's own record is gone (moto or the controller "
                                "restarted since); the index it made says it succeeded"}
        raise missing


def _public(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k != "accountId"}


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _loads(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
