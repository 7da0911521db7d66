"""`hd probes`: is every service healthy, and does the basic data path work?

Two parts, one report. First each service's state and health as the daemon sees them
(a job counts when it exited 0; an external service that does not answer is a warning,
since the stack cannot start it). Then one deterministic end-to-end pass through the
control and data planes: create an index through the controller, add a document to
the cell, find it by a search, remove it and see it gone, delete the index. Every step
is timed; a failed step names its URL and answer, and the steps after it that needed
it are shown as skipped rather than failing for the same reason again.

`--full` adds the properties of search (probe_props) and `--fuzz` a state machine over
the APIs (probe_fuzz), both with hypothesis, bounded by `--examples` and `--deadline-s`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import stat
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hippo_platform.seed import probe_modes
from hippo_platform.seed.endpoints import StackView, daemon_status, view_from_env
from hippo_platform.seed.files import UnusableSeedFile, read_seed_file
from hippo_platform.seed.probe_health import Report, service_health
from hippo_platform.services.common import HttpError
from hippo_platform.services.common.client import JsonClient, segment
from hippo_platform.services.common.state import atomic_write_json, read_json

PROBE_INDEX = "hippodrome-probe"
PROBE_DOC = {"_id": "probe-1", "title": "hippodrome probe quokka", "kind": "probe"}
PROBE_WORD = "quokka"
PROBE_ACCOUNT_FILE = Path(".hippodrome") / "probes.json"
DEFAULT_EXAMPLES = 25
DEFAULT_STEPS = 20
DEFAULT_DEADLINE_S = 120.0
DEFAULT_BREAKER = 3


class StepFailed(Exception):
    pass


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


def probe_key(root: Path, view: StackView) -> tuple[str, str]:
    """The key `--full` and `--fuzz` use: the same one as the data path."""
    return _probe_key(root, JsonClient(view.controller_url, peer="controller", timeout=10))


def _probe_key(root: Path, controller: JsonClient) -> tuple[str, str]:
    """The seeded account's key, else the probes' own account (made once, then reused)."""
    try:
        seeded = read_seed_file(root).get("account") or {}
    except UnusableSeedFile:  # said by `hd seed`; the probes run without its account
        seeded = {}
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m hippo_platform.seed.probes",
        description="Health of every service and a deterministic data path; --full adds "
                    "property-based search tests, --fuzz a state machine over the APIs.")
    parser.add_argument("--project-root", default=".", help="where .hippodrome/ is")
    parser.add_argument("--full", action="store_true",
                        help="also the properties of search (hypothesis)")
    parser.add_argument("--fuzz", action="store_true",
                        help="also drive the APIs in random order (hypothesis state machine)")
    parser.add_argument("--examples", type=_positive(int), default=DEFAULT_EXAMPLES,
                        help=f"examples per property / fuzz runs (default {DEFAULT_EXAMPLES})")
    parser.add_argument("--steps", type=_positive(int), default=DEFAULT_STEPS,
                        help=f"steps per fuzz run (default {DEFAULT_STEPS})")
    parser.add_argument("--deadline-s", type=_positive(float), default=DEFAULT_DEADLINE_S,
                        help=f"time budget of each mode in seconds (default "
                             f"{DEFAULT_DEADLINE_S:g})")
    parser.add_argument("--seed", type=int, default=None,
                        help="hypothesis seed, to replay a run (default: a random one)")
    parser.add_argument("--breaker", type=_positive(int), default=DEFAULT_BREAKER,
                        help="infrastructure errors in a row that open a service's breaker "
                             f"(default {DEFAULT_BREAKER})")
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="also write the results as JSON to FILE")
    return parser.parse_args(argv)


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):  # float() takes 'nan' and 'inf'
            raise argparse.ArgumentTypeError(f"not a number: {text!r}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def main(argv: list[str] | None = None) -> int:
    """`python -m hippo_platform.seed.probes --project-root DIR [--full] [--fuzz]`: the
    stack's `probes` command (`hd probes` runs it with the stack's env contract and
    passes its flags on). Exit 1 on a failure, 2 on bad flags."""
    args = parse_args(argv)
    root = Path(args.project_root).resolve()
    refused = json_refusal(args.json) if args.json else None
    if refused:
        print(f"probes: {refused}", file=sys.stderr)
        return 2
    if (args.full or args.fuzz) and not probe_modes.have_hypothesis():
        print(f"probes: {probe_modes.NO_HYPOTHESIS}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    status = daemon_status(env)
    if status is None:
        where = env.get("HIPPODROME_DASHBOARD_URL") or "(HIPPODROME_DASHBOARD_URL is not set)"
        print(f"probes: the daemon at {where} does not answer: is the stack up "
              "(`hd status`)?", file=sys.stderr)
        return 1
    view = view_from_env(env, status)
    report = run_probes(root, status, view)
    for line in report.lines:
        print(_paint(line), flush=True)
    ok = report.ok
    results: dict[str, Any] = {"ok": ok, "services": report.services}
    seed = args.seed if args.seed is not None else random.randrange(2**31)

    def say(line: str) -> None:
        print(_paint(line), flush=True)

    if args.full:
        passed, results["full"] = probe_modes.full(
            root, view, examples=args.examples, deadline_s=args.deadline_s, seed=seed, say=say)
        ok = ok and passed
    if args.fuzz:
        passed, results["fuzz"] = probe_modes.fuzz(
            root, view, examples=args.examples, steps=args.steps, deadline_s=args.deadline_s,
            seed=seed, breaker=args.breaker, say=say)
        ok = ok and passed
    if args.json:
        results["ok"] = ok
        try:
            write_json_report(Path(args.json), results)
        except OSError as exc:  # the disk's or the file's doing, not a bad flag: it was
            # exit 2 after every probe had run (adv29 n/8); 10, as seed's files
            print(f"probes: cannot write --json {args.json}: {exc.strerror or exc} (the "
                  "probes ran; their results are above)", file=sys.stderr)
            return 10
    return 0 if ok else 1


def json_refusal(text: str) -> str | None:
    """Why `--json FILE` cannot be written, said before the probes run."""
    path = Path(text)
    if path.is_dir():
        return (f"--json {text} is a folder: give a file name (e.g. "
                f"{str(path / 'probes.json')})")
    if not path.parent.is_dir():
        return f"--json {text}: the folder {path.parent} does not exist (make it first)"
    return None


def write_json_report(path: Path, results: dict[str, Any]) -> None:
    """A regular file (or none yet) is replaced whole, never half written. Anything else
    is written into, as a shell's `>` does: `--json /dev/stdout` replaced the machine's
    /dev/stdout (and /dev/full, a FIFO) with a regular file, and printed nothing."""
    try:
        kind = os.lstat(path).st_mode
    except FileNotFoundError:
        kind = None
    if kind is None or stat.S_ISREG(kind):
        atomic_write_json(path, results)
        return
    data = json.dumps(results, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NONBLOCK)  # a FIFO with no reader:
    try:                                                           # ENXIO, not a hang
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
