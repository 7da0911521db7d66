"""`invoke probes`: is every service healthy, and does the basic data path work?

Two parts, one report. First each service's state and health as the daemon sees them
(a job counts when it exited 0; an external service that does not answer is a warning,
since the stack cannot start it). Then one deterministic end-to-end pass through the
control and data planes: create an index through the controller, add a document to
the cell, find it by a search, remove it and see it gone, delete the index. Every step
is timed; a failed step names its URL and answer, and the steps after it that needed
it are shown as skipped rather than failing for the same reason again.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hippo_platform.seed.endpoints import StackView, daemon_status, view_from_env
from hippo_platform.seed.files import read_seed_file
from hippo_platform.services.common import HttpError
from hippo_platform.services.common.client import JsonClient, segment
from hippo_platform.services.common.state import atomic_write_json, read_json

PROBE_INDEX = "hippodrome-probe"
PROBE_DOC = {"_id": "probe-1", "title": "hippodrome probe quokka", "kind": "probe"}
PROBE_WORD = "quokka"
PROBE_ACCOUNT_FILE = Path(".hippodrome") / "probes.json"


class StepFailed(Exception):
    pass


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"OK": 0, "WARN": 0, "FAIL": 0,
                                                            "SKIP": 0})

    def add(self, status: str, name: str, text: str, ms: float | None = None) -> None:
        self.counts[status] += 1
        timing = f"  {ms:6.1f} ms" if ms is not None else ""
        tag = f"[{status}]"
        self.lines.append(f"  {tag:<7}{name:<23}{text:<52}{timing}".rstrip())

    @property
    def ok(self) -> bool:
        return self.counts["FAIL"] == 0

    def summary(self) -> str:
        c = self.counts
        return (f"probes: {c['OK']} passed, {c['WARN']} warning(s), {c['FAIL']} failed"
                + (f", {c['SKIP']} skipped" if c["SKIP"] else ""))


def service_health(status: Mapping[str, Any], report: Report) -> None:
    for row in status.get("services") or []:
        name, state = str(row["name"]), str(row["state"])
        url = f"  {row['url']}" if row.get("url") else ""
        if row.get("kind") == "job":
            code = row.get("exit_code")
            if state == "stopped" and code == 0:
                report.add("OK", name, "job, exited 0")
            elif state in ("pending", "starting"):
                report.add("WARN", name, f"job still {state}")
            else:
                why = row.get("reason") or ""
                report.add("FAIL", name, f"job {state}, exit code {code}: {why}")
        elif state == "external":
            if row.get("healthy"):
                report.add("OK", name, f"external, answering{url}")
            else:
                report.add("WARN", name, f"external (not started by the stack), not answering{url}")
        elif state == "running" and row.get("healthy"):
            report.add("OK", name, f"running, healthy{url}")
        else:
            why = f": {row['reason']}" if row.get("reason") else ""
            health = "" if state != "running" else ", unhealthy"
            report.add("FAIL", name, f"{state}{health}{why}{url}")


def data_path(root: Path, view: StackView, report: Report) -> None:
    controller = JsonClient(view.controller_url, peer="controller", timeout=10)
    cell = JsonClient(view.cell_url, peer="cell", timeout=10)
    state: dict[str, Any] = {}
    index = "/indexes/" + segment(PROBE_INDEX)

    def api_key() -> str:
        key, where = _probe_key(root, controller)
        state["headers"] = {"x-api-key": key}
        return where

    def create_index() -> str:
        leftover = _ask(controller, "GET", "/api/v2/indexes/" + segment(PROBE_INDEX),
                        state["headers"])
        if leftover.ok:  # from an interrupted run
            _need(controller, "DELETE", "/api/v2/indexes/" + segment(PROBE_INDEX),
                  state["headers"])
        _need(controller, "POST", "/api/v2/indexes", state["headers"],
              {"indexName": PROBE_INDEX, "settings": {"type": "probe"}})
        state["index"] = True
        return f"{PROBE_INDEX} through the controller"

    def add_document() -> str:
        _need(cell, "POST", index + "/documents", state["headers"], {"documents": [PROBE_DOC]})
        return f"{PROBE_DOC['_id']} into the cell"

    def search(expect: bool) -> Callable[[], str]:
        def step() -> str:
            hits = _need(cell, "POST", index + "/search", state["headers"],
                         {"q": PROBE_WORD, "limit": 5})["hits"]
            found = any(h.get("_id") == PROBE_DOC["_id"] for h in hits)
            if found != expect:
                raise StepFailed(f"searching '{PROBE_WORD}' {'missed' if expect else 'still found'}"
                                 f" {PROBE_DOC['_id']} ({len(hits)} hit(s))")
            return f"'{PROBE_WORD}' {'finds' if expect else 'no longer finds'} {PROBE_DOC['_id']}"
        return step

    def search_via_proxy() -> str:
        proxy = JsonClient(str(view.url_of("search_proxy")), peer="search_proxy", timeout=10)
        hits = _need(proxy, "POST", index + "/search", state["headers"],
                     {"q": PROBE_WORD, "limit": 5})["hits"]
        if not any(h.get("_id") == PROBE_DOC["_id"] for h in hits):
            raise StepFailed(f"search_proxy -> global_worker missed {PROBE_DOC['_id']}")
        return f"'{PROBE_WORD}' finds {PROBE_DOC['_id']} via global_worker"

    def remove_document() -> str:
        _need(cell, "DELETE", f"{index}/documents/{PROBE_DOC['_id']}", state["headers"])
        return f"{PROBE_DOC['_id']} deleted"

    def delete_index() -> str:
        _need(controller, "DELETE", "/api/v2/indexes/" + segment(PROBE_INDEX), state["headers"])
        state["index"] = False
        return f"{PROBE_INDEX} deleted"

    steps: list[tuple[str, Callable[[], str]]] = [
        ("api key", api_key), ("create index", create_index), ("add document", add_document),
        ("search", search(True)),
        *([("search via proxy", search_via_proxy)] if _serving(view, "search_proxy")
          and _serving(view, "global_worker") else []),
        ("remove document", remove_document),
        ("search after remove", search(False)), ("delete index", delete_index),
    ]
    failed = False
    for name, step in steps:
        if failed and not (name == "delete index" and state.get("index")):
            report.add("SKIP", name, "needs an earlier step")
            continue
        started = time.perf_counter()
        try:
            text = step()
        except (StepFailed, HttpError) as exc:
            failed = True
            report.add("FAIL", name, str(exc), (time.perf_counter() - started) * 1000)
            continue
        report.add("OK", name, text, (time.perf_counter() - started) * 1000)


def _serving(view: StackView, service: str) -> bool:
    """Running (or external) and healthy, by the daemon's account."""
    row = view.rows.get(service) or {}
    return bool(row.get("state") in ("running", "external") and row.get("healthy"))


def _ask(client: JsonClient, method: str, path: str, headers: dict[str, str],
         body: Any = None) -> Any:
    try:
        return client.request(method, path, body=body, headers=headers)
    except HttpError as exc:
        raise StepFailed(exc.message) from None


def _need(client: JsonClient, method: str, path: str, headers: dict[str, str],
          body: Any = None) -> Any:
    answer = _ask(client, method, path, headers, body)
    if not answer.ok:
        raise StepFailed(f"{method} {client.base_url}{path} answered {answer.status}: "
                         f"{answer.error_text()}")
    return answer.body


def _probe_key(root: Path, controller: JsonClient) -> tuple[str, str]:
    """The seeded account's key, else the probes' own account (made once, then reused)."""
    seeded = read_seed_file(root).get("account") or {}
    probes_file = root / PROBE_ACCOUNT_FILE
    try:
        saved = read_json(probes_file, {}) or {}
    except (OSError, ValueError):
        saved = {}
    for account, where in ((seeded, "the seeded account"), (saved, "the probes' account")):
        key = account.get("apiKey")
        if key and _ask(controller, "GET", "/api/v2/indexes", {"x-api-key": str(key)}).ok:
            return str(key), f"{where} {account.get('accountId')}"
    made = _need(controller, "POST", "/api/v2/accounts", {}, {"name": "hippodrome-probes"})
    atomic_write_json(probes_file, {"accountId": made["accountId"], "apiKey": made["apiKey"]})
    probes_file.chmod(0o600)
    return str(made["apiKey"]), f"new probes' account {made['accountId']}"


def run_probes(root: Path, status: Mapping[str, Any], view: StackView) -> Report:
    report = Report()
    report.lines.append(f"services (profile {status.get('profile')}, cell {status.get('cell')})")
    service_health(status, report)
    report.lines.append(f"data path (controller {view.controller_url}, cell {view.cell_url})")
    if view.cell == "local":
        data_path(root, view, report)
    else:  # it makes an account and an index: never in a shared cell
        report.add("WARN", "data path", f"not run against the '{view.cell}' cell (local only)")
    report.lines.append(report.summary())
    return report


_COLOURS = {"[OK]": "\x1b[32m", "[WARN]": "\x1b[33m", "[SKIP]": "\x1b[33m", "[FAIL]": "\x1b[31m"}


def _paint(line: str) -> str:
    """The tag's colour on a terminal, unless NO_COLOR is set (as the CLI does)."""
    colour = _COLOURS.get(line.strip().split(" ", 1)[0])
    if colour is None or "NO_COLOR" in os.environ or not sys.stdout.isatty():
        return line
    return f"{colour}{line}\x1b[0m"


def main(argv: list[str] | None = None) -> int:
    """`python -m hippo_platform.seed.probes --project-root DIR`: the stack's `probes`
    command (`invoke probes` runs it with the stack's env contract). Exit 1 on a failure."""
    parser = argparse.ArgumentParser(prog="python -m hippo_platform.seed.probes")
    parser.add_argument("--project-root", default=".", help="where .hippodrome/ is")
    args = parser.parse_args(argv)
    root = Path(args.project_root).resolve()
    env = dict(os.environ)
    status = daemon_status(env)
    if status is None:
        where = env.get("HIPPODROME_DASHBOARD_URL") or "(HIPPODROME_DASHBOARD_URL is not set)"
        print(f"probes: the daemon at {where} does not answer: is the stack up "
              "(`invoke status`)?", file=sys.stderr)
        return 1
    report = run_probes(root, status, view_from_env(env, status))
    for line in report.lines:
        print(_paint(line), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
