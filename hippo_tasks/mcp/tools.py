"""Every MCP tool, one row of `TOOLS` each: name, description, schemas, hints, function.

A tool is a plain function of a `Stack` and its checked arguments, returning a JSON
object (the structured result) or raising a `HippoError` whose message says what to do
(the server turns it into an error result). Adding a tool is adding a function and a
row here, and its schemas in `schemas.py`.

Outcomes are data an agent can act on without reading prose: an action answers `ok`,
each service's row, and for each one that is not ready, why (`not_ready`: reason, last
lines, log path, from the daemon's `why`). Long answers are bounded and carry the
arguments that fetch the rest (`next`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hippo_tasks.action_outcome import problems
from hippo_tasks.errors import UnknownServiceError, UsageError
from hippo_tasks.errors.daemon import DaemonEndedError, DaemonNotRunningError
from hippo_tasks.mcp import events, schemas
from hippo_tasks.mcp.backend import LogArgs, Stack, run_hd

MAX_LINE_CHARS = 2000
"""A log line longer than this is cut (its file has it whole)."""
MAX_LOG_CHARS = 64_000
"""The `logs` answer's lines together; past this, fewer lines and a `next` to page."""
TASK_LINES = 200
WAIT_POLL_S = 0.1
CALL = threading.local()
"""The tool call this thread runs: `abandoned`, an Event set once its client has gone
(server.py), so a long wait ends instead of holding its thread for up to 600 s."""


def _pause(seconds: float) -> bool:
    """Sleep `seconds`; True (at once) when the call was abandoned meanwhile."""
    abandoned = getattr(CALL, "abandoned", None)
    if abandoned is None:
        time.sleep(seconds)
        return False
    return bool(abandoned.wait(seconds))
UP_TIMEOUT_S = 600.0
HINT_NEXT = ("more lines match: call logs again with the same filter and {args} to get "
             "them")

ToolFn = Callable[[Stack, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: schemas.Schema
    output_schema: schemas.Schema
    run: ToolFn
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False


# ---- the stack: status and actions ----------------------------------------------------

def status(stack: Stack, args: dict[str, Any]) -> dict[str, Any]:
    return stack.status()


def _not_ready(stack: Stack, name: str) -> dict[str, Any]:
    """Why a service is not ready, from the daemon's `why` (its chain and last lines)."""
    why = stack.why(name)
    entry = {"service": name, "state": why["state"], "reason": why.get("reason") or "",
             "summary": why["summary"], "last_lines": list(why.get("last_lines") or []),
             "log_path": why.get("log_path")}
    blockers = why.get("blockers") or []
    if blockers:
        entry["blockers"] = [{k: b.get(k) for k in ("service", "state", "reason", "summary",
                                                     "last_lines", "log_path")}
                             for b in blockers]
    return entry


def joined(summaries: list[str]) -> str:
    """Services' summaries as one, each clause once: during a `hd down`, `wait_ready`
    said "the stack is shutting down ...: nothing starts again until `hd up` once it
    has stopped" once per service, 8 times for 8 (adv46 H/12)."""
    seen: dict[str, None] = {}
    for summary in summaries:
        for clause in summary.split("; "):
            seen.setdefault(clause, None)
    return "; ".join(seen)


def _settled_ok(row: dict[str, Any], named: bool) -> bool:
    """For wait_ready: ready; or, when the whole stack was asked for, a non-blocking
    service that failed (as `up --detach` judges it)."""
    if row.get("ready"):
        return True
    return not named and row["state"] == "failed" and not row.get("blocking", True)


def _outcome(stack: Stack, verb: str, service: str | None, rows: list[dict[str, Any]],
             launched: bool = False, cascade: bool = False) -> dict[str, Any]:
    """ok as the command line and the API judge it (action_outcome), with each service
    that is not ready explained."""
    target = service or "the stack"
    found = problems(verb, service, cascade, rows)
    ok = not found
    if verb == "stop":
        summary = f"{target}: stopped" if ok else \
            f"{target}: " + "; ".join(p.text for p in found)
        return {"ok": ok, "summary": summary, "services": rows, "not_ready": []}
    skipped = [f"{r['name']} {r['not_restarted']}" for r in rows if r.get("not_restarted")]
    not_ready = [_not_ready(stack, r["name"]) for r in rows if not r.get("ready")]
    # What no row says (an external restarted by name): "restart ext: not ready", with
    # nothing naming why, read as something to wait for (adv25 e/6).
    said = [p.text for p in found if not p.in_row and " is external" in p.text]
    summary = f"{verb} {target}: " + ("ready" if ok else "not ready")
    if not_ready or skipped or said:
        summary += ": " + joined([n["summary"] for n in not_ready] + skipped + said)
    elif ok:
        summary += f" ({len(rows)} service{'s' * (len(rows) != 1)})"
    answer = {"ok": ok, "summary": summary, "services": rows, "not_ready": not_ready}
    if launched:
        answer["launched"] = True
    return answer


REFUSED_BEFORE_LAUNCH = frozenset({3, 4, 9, 10})
"""`hd up`'s exit codes for a refusal before any daemon started: the stack file, a busy
port, another command holding the stack, its state folder (tasks/output.py)."""


def start(stack: Stack, args: dict[str, Any]) -> dict[str, Any]:
    service = args.get("service")
    profile = str(args.get("profile") or "")
    # No daemon: `hd up --detach`, and with a service, `--only` it and what it depends
    # on (it refused, saying to "call the start tool", the tool just called).
    ran = stack.up(profile, UP_TIMEOUT_S, only=service or "")
    if ran is not None:
        said = [line for line in ran.lines if line.startswith("hippodrome: ")]
        if ran.code == 2:  # a service or profile `up` refuses: as with a stack running, an
            # error result, not `launched: true` with nothing launched (adv49 B/5)
            raise UsageError(f"hd up --detach refused it, so nothing was started: "
                             f"{(said or ran.lines or ['(no output)'])[-1]}")
        if ran.code != 0:
            tail = ran.lines[-40:]
            return {"ok": False, "launched": ran.code not in REFUSED_BEFORE_LAUNCH,
                    "services": [], "not_ready": [],
                    "summary": "hd up --detach failed: " + " / ".join(tail[-3:]),
                    "output": tail}
        status = stack.status()
        return _with_left_out(_outcome(stack, "start", service, status["services"],
                                       launched=True), status)
    status = stack.status()
    if profile:
        running = status.get("profile")
        if running != profile:
            raise UsageError(f"the stack is already running with profile {running}; "
                             "'profile' only chooses what `start` brings up when no stack "
                             "runs (to switch, run `hd down` first)")
    return _with_left_out(_outcome(stack, "start", service,
                                   stack.act("start", service, False)["services"]), status)


def _with_left_out(answer: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """The services an `--only` run leaves out, named in the answer: after `start
    {"service": "b"}` brought up b alone, `start {}` said "start the stack: ready" with
    the others absent and nothing saying so (adv24 b/10)."""
    left = status.get("left_out") or {}
    only = sorted(name for name, why in left.items() if why == "left out by --only")
    if only:
        answer["left_out"] = only
        answer["summary"] += (f"; this run was started for some services only and leaves "
                              f"out {', '.join(only)}: `hd down`, then `start` without "
                              "'service', brings up the whole stack")
    return answer


def stop(stack: Stack, args: dict[str, Any]) -> dict[str, Any]:
    service = args.get("service")
    return _outcome(stack, "stop", service, stack.act("stop", service, False)["services"])


def restart(stack: Stack, args: dict[str, Any]) -> dict[str, Any]:
    service = args.get("service")
    cascade = bool(args.get("cascade", False))
    if cascade and service is None:
        raise UsageError("'cascade' needs 'service': the stack as a whole has no order to "
                         "cascade in")
    rows = stack.act("restart", service, cascade)["services"]
    return _outcome(stack, "restart", service, rows, cascade=cascade)


def wait_ready(stack: Stack, args: dict[str, Any]) -> dict[str, Any]:
    wanted: list[str] | None = args.get("services")
    timeout = float(args.get("timeout_s", 60))
    began = time.monotonic()
    while True:
        status = stack.status()
        rows = {r["name"]: r for r in status["services"]}
        for name in wanted or ():
            if name not in rows:  # left out of this run: said so, with why
                left_out = status.get("left_out") or {}
                raise UnknownServiceError(name, tuple(rows), str(left_out.get(name) or ""))
        names = wanted or list(rows)
        # A save seen and its reload still to come: "ready" would be the old process
        # (adv57 F1).
        waiting = [rows[n] for n in names if not _settled_ok(rows[n], wanted is not None)
                   or rows[n].get("change_pending")]
        hopeless = [r for r in waiting if r["state"] in ("failed", "stopped")
                    and not r.get("busy") and not _restart_under_way(r)]
        waited = round(time.monotonic() - began, 2)
        timed_out = waited >= timeout
        if not waiting or hopeless or timed_out or _pause(WAIT_POLL_S):
            break
    not_ready = [_not_ready(stack, n) for n in names if not rows[n].get("ready")]
    if not waiting:
        summary = f"ready: {', '.join(names)}" if wanted else f"all {len(names)} settled"
        if not_ready:
            summary += " (not blocking: " + joined([n["summary"] for n in not_ready]) + ")"
    else:
        how = "timed out" if timed_out and not hopeless else "will not become ready by itself"
        summary = f"{how}: " + joined([n["summary"] for n in not_ready
                                       if n["service"] in {r["name"] for r in waiting}])
    return {"ready": not waiting, "timed_out": bool(waiting) and timed_out and not hopeless,
            "waited_s": waited, "summary": summary, "services": [rows[n] for n in names],
            "not_ready": not_ready}


def _restart_under_way(row: dict[str, Any]) -> bool:
    """Stopped by a restart whose start is still to come: a whole-stack restart stops
    every service first and marks no row busy, and `wait_ready` called alongside it
    answered at once that the stack "will not become ready by itself", advising `hd
    start` for each service (adv56 3)."""
    return row["state"] == "stopped" and str(row.get("reason") or "").startswith(
        "restart requested")


def why(stack: Stack, args: dict[str, Any]) -> dict[str, Any]:
    """The daemon's `why` (daemon/why.py): the service's state, and its blockers down
    the chain, including the not-ready dependencies of a service that gave up waiting."""
    return stack.why(args["service"])


# ---- logs -------------------------------------------------------------------------------

TOOL_ARG = {"after": "since_seq"}
"""The API's paging words the tool names otherwise: `after_seq` was handed back as
`next`, and the tool refused it as an unknown argument."""


def logs(stack: Stack, args: dict[str, Any]) -> dict[str, Any]:
    service = args["service"]
    forward = "since_seq" in args
    try:
        return _logs(stack, service, forward, args)
    except DaemonNotRunningError as exc:
        # "Call the start tool": starting moves `latest` to a new run, away from the
        # lines that said why the stack went down (adv24 b/6). The file is named.
        root = getattr(stack, "root", None)
        log = None if root is None else Path(root) / ".logs" / "latest" / f"{service}.log"
        if log is None or not log.is_file():
            raise
        raise UsageError(f"{not_running_hint(exc)} The last run's log of {service} is "
                         f"{log} (read that file; a start leaves that run in "
                         f"{log.resolve().parent} and begins a new one)") from None


def _logs(stack: Stack, service: str, forward: bool, args: dict[str, Any]) -> dict[str, Any]:
    from hippo_tasks.daemon.logquery import parse_since

    since = args.get("since_time")
    if since is not None:  # here, so the error names the tool's argument: the daemon's
        since = parse_since(since, name="since_time")  # said 'since' (adv53 F6)
    answer = stack.logs(service, LogArgs(
        lines=int(args.get("limit", 100)), after=args.get("since_seq"),
        before=args.get("before_seq"), since=since,
        grep=args.get("text", ""), regex=args.get("regex", ""),
        errors=bool(args.get("errors_only", False))))
    _bound(answer, forward)
    nxt = answer.get("next")
    if nxt:  # the API's names, as the tool's arguments: `after` is its since_seq
        answer["next"] = {TOOL_ARG.get(k, f"{k}_seq"): v for k, v in nxt.items()}
        shown = ", ".join(f"{k}={v}" for k, v in answer["next"].items())
        answer["hint"] = HINT_NEXT.format(args=shown)
        if answer.get("incomplete"):
            answer["hint"] = (f"the scan stopped early to keep the daemon responsive; call "
                              f"logs again with the same filter and {shown} to go on")
    elif not forward:
        answer["hint"] = (f"newest line is seq {answer['last_seq']}: pass since_seq="
                          f"{answer['last_seq']} to read only what comes after")
    answer["log_path"] = f"{stack.status()['logs_dir']}/{service}.log"
    return answer


def _bound(answer: dict[str, Any], forward: bool) -> None:
    """Cut long lines, then keep lines (nearest the start of reading first) while they fit
    in `MAX_LOG_CHARS`; what is left out is what `next` fetches."""
    lines: list[dict[str, Any]] = answer["lines"]
    for line in lines:
        text = line["line"]
        if len(text) > MAX_LINE_CHARS:
            line["line"] = text[:MAX_LINE_CHARS] + f" ... [{len(text) - MAX_LINE_CHARS} " \
                                                   "more characters in the log file]"
    order = lines if forward else list(reversed(lines))
    kept: list[dict[str, Any]] = []
    size = 0
    for line in order:
        size += len(line["line"]) + 40
        if kept and size > MAX_LOG_CHARS:
            break
        kept.append(line)
    if len(kept) == len(lines):
        return
    edge = order[len(kept)]["seq"]
    answer["lines"] = kept if forward else list(reversed(kept))
    answer["more"] = True
    answer["next"] = {"after": edge - 1} if forward else {"before": edge + 1}


# ---- data and checks: the same commands a user runs ------------------------------------

def _task(stack: Stack, args: list[str], timeout: float, what: str) -> dict[str, Any]:
    stack.client()  # no daemon: the usual error, before a subprocess says it less well
    ran = run_hd(stack.root, [*args, "--project-root", str(stack.root)], timeout)
    lines = ran.lines[-TASK_LINES:]
    checks = [{"status": tag, "text": text.strip()} for tag, text in
              (line.strip()[1:].split("]", 1) for line in ran.lines
               if line.strip()[:1] == "[" and "]" in line.strip()[:8])]
    failed = [c["text"] for c in checks if c["status"] == "FAIL"]
    if ran.code == 0:
        summary = f"{what}: ok" + (f" ({len(checks)} checks)" if checks else "")
    else:
        summary = f"{what}: failed (exit {ran.code})" + \
            (": " + "; ".join(failed[:5]) if failed else ": " + " / ".join(lines[-3:]))
    answer: dict[str, Any] = {"ok": ran.code == 0, "exit_code": ran.code, "summary": summary,
                              "lines": lines, "checks": checks}
    if len(ran.lines) > TASK_LINES:
        answer["omitted_lines"] = len(ran.lines) - TASK_LINES
    return answer


def probes(stack: Stack, args: dict[str, Any]) -> dict[str, Any]:
    mode = args.get("mode", "health")
    extra = [] if mode == "health" else [f"--{mode}"]
    if "examples" in args:
        extra += ["--examples", str(args["examples"])]
    return _task(stack, ["probes", *extra], float(args.get("timeout_s", 300)),
                 "probes" if mode == "health" else f"probes --{mode}")


def seed(stack: Stack, args: dict[str, Any]) -> dict[str, Any]:
    # (3.0 is an integer to JSON Schema: the CLI refused "3.0", adv59 F6)
    extra = ["--seed", str(int(args["seed"]))] if "seed" in args else []
    return _task(stack, ["seed", *extra], float(args.get("timeout_s", 300)), "seed")


def not_running_hint(exc: DaemonNotRunningError) -> str:
    """The error's facts, and what an agent does about it (not what a user types). A
    daemon that ended mid-call has no project in its error: it read "No Hippodrome
    daemon is running for . Call ..."."""
    if isinstance(exc, DaemonEndedError):
        return (f"{exc.message()} Call the start tool (optionally with a profile) to "
                "bring the stack up again.")
    detail = f" ({exc.detail})" if exc.detail else ""
    return (f"No Hippodrome daemon is running for {exc.project_root}{detail}. Call the start "
            "tool (optionally with a profile) to bring the stack up.")


TOOLS: tuple[Tool, ...] = (
    Tool("status", "The stack's typed snapshot: profile, URLs, log folder, and per service "
         "its state (pending, starting, running, stopping, stopped, backoff, failed, "
         "external), ready, health, pid, port, restarts and reason.",
         schemas.closed({}), schemas.STATUS_OUT, status, read_only=True, idempotent=True),
    Tool("start", "Start a service (and what it depends on) or the whole stack, and wait "
         "until it is ready or has failed. Answers ok, each service's row, and for each "
         "one not ready: reason, last log lines and log path. With no stack running "
         "(hd mcp), brings it up with `hd up --detach` (with a service: that service and "
         "what it depends on, `--only`).",
         schemas.START_IN, schemas.OUTCOME_OUT, start, idempotent=True),
    Tool("stop", "Stop a service, or every service (the daemon keeps running, so start "
         "brings them back). Waits until they have stopped.",
         schemas.STOP_IN, schemas.OUTCOME_OUT, stop, destructive=True, idempotent=True),
    Tool("restart", "Restart a service while the rest keep running (cascade: then its "
         "dependants, in order), or the whole stack; waits for the outcome: ok, or for "
         "each service not ready its reason, last log lines and log path.",
         schemas.RESTART_IN, schemas.OUTCOME_OUT, restart, destructive=True),
    Tool("logs", "A service's recent output from the daemon's buffer, filtered by text, "
         "regex, errors only, sequence number or time; newest lines unless since_seq is "
         "given. Bounded: when more match, `next` holds the arguments for the next page.",
         schemas.LOGS_IN, schemas.LOGS_OUT, logs, read_only=True, idempotent=True),
    Tool("wait_ready", "Wait until services (default: the whole stack) are ready. Returns "
         "early when one failed or is stopped (it would never be ready by itself), with "
         "its reason, last log lines and log path.",
         schemas.WAIT_IN, schemas.WAIT_OUT, wait_ready, read_only=True, idempotent=True),
    Tool("why", "Why a service is not ready: its state, what it waits on down the "
         "dependency chain, and each blocker's state, reason and last log lines.",
         schemas.WHY_IN, schemas.WHY_OUT, why, read_only=True, idempotent=True),
    Tool("events_send", "Post one EventBridge-style event to the stack's webhook, routed "
         "as a real delivery (by detail-type prefix); answers the routing result and the "
         "target service's answer.",
         schemas.EVENTS_SEND_IN, schemas.EVENTS_SEND_OUT, events.send),
    Tool("events_recordings", "The webhook's recordings (.hippodrome/events/*.jsonl), "
         "newest first: name (what events_replay takes), bytes, modified, and current "
         "(the one being written now).",
         schemas.RECORDINGS_IN, schemas.RECORDINGS_OUT, events.recordings, read_only=True,
         idempotent=True),
    Tool("events_replay", "Send a recording's deliveries again through the webhook and "
         "compare each answer with the recorded one; ok when all match, else the "
         "differences.",
         schemas.REPLAY_IN, schemas.REPLAY_OUT, events.replay),
    Tool("probes", "Run the stack's health probes (`hd probes`): ok, and each check with "
         "its status (OK, WARN, SKIP, FAIL). Not read-only: the data path check creates "
         "an index, adds and removes a document, and deletes the index; fuzz writes "
         "through every API.",
         schemas.PROBES_IN, schemas.TASK_OUT, probes),
    Tool("seed", "Seed deterministic data into the running stack (`hd seed`); writes "
         ".hippodrome/seed.json and .env.e2e.",
         schemas.SEED_IN, schemas.TASK_OUT, seed, idempotent=True),
)
BY_NAME = {t.name: t for t in TOOLS}
