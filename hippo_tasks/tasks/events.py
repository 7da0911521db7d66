"""`hd events.*`: EventBridge tasks, thin over `hippo_tasks.events` and the daemon.

`events.send` posts to the running daemon's webhook, the path EventBridge deliveries
take, so routing can be tried without an AWS account; `events.replay` sends a recording
of the webhook's deliveries again the same way and compares the answers.

The AWS layer is imported inside each task body, so listing tasks (or running any
other command) never loads boto3.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from hippo_tasks.daemon.client import DaemonClient
from hippo_tasks.errors import StackShutDownError, UsageError, check_utf8
from hippo_tasks.errors.daemon import DaemonEndedError, DaemonUnreachableError
from hippo_tasks.events.hooks import stack_webhook_token, webhook_token
from hippo_tasks.model.project import find_project_root
from hippo_tasks.registry.store import Registry
from hippo_tasks.tasks.context import resolve_root, table_prefix_for
from hippo_tasks.tasks.flags import no_empty
from hippo_tasks.tasks.output import RED, TaskExit, handles_errors, paint


@task(
    help={
        "table-prefix": "DynamoDB table prefix (default: dev-{git branch}-)",
        "verbose": "also print ARNs, pipe states and stream view types",
        "endpoint-url": "AWS endpoint, e.g. the local moto http://127.0.0.1:9003 "
        "(default: AWS_ENDPOINT_URL, else real AWS)",
    }
)
@handles_errors
def validate(
    c: Context,
    table_prefix: str | None = None,
    verbose: bool = False,
    endpoint_url: str | None = None,
) -> None:
    """Check the EventBridge buses, pipes and table streams for a table prefix."""
    from hippo_tasks.events import aws
    from hippo_tasks.events.validate import validate as run_validation

    # `up` refuses these prefixes (exit 2); queried, they were six `[MISSING]` lines
    # whose fix was an `hd up --table-prefix` that `up` then refused.
    prefix = table_prefix_for(find_project_root(), table_prefix or "")
    if endpoint_url is not None and aws.endpoint_url_problem(endpoint_url):
        raise UsageError(f"--endpoint-url: {aws.endpoint_url_problem(endpoint_url)}")
    lines, ok = run_validation(prefix, endpoint_url=endpoint_url, verbose=verbose)
    print("\n".join(lines), flush=True)
    if not ok:
        raise TaskExit(1)


SEND_HELP = {
    "detail-type": "the event's detail-type, e.g. EcomIndexSettings.MODIFY (routes match "
    "its prefix)",
    "file": "a JSON file holding the event's `detail` object (default: a minimal one)",
    "project-root": "project folder (default: nearest parent with hippodrome.toml or tasks.py)",
}

_SAMPLE_KEYS = {
    "EcomIndexSettings": {"pk": {"S": "INDEX#test"}, "sk": {"S": "SETTINGS"}},
    "Merchandising": {"pk": {"S": "RULE#test"}},
}


FILE_LIMIT = 16 * 1024 * 1024
"""The most of a `--file` read: far past the webhook's 256 KiB, so a large event still
meets the webhook's own 413, but no device or runaway file is read into memory."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # sent, then refused by the webhook, exit 1


def _finite(text: str) -> float:
    """`1e999` is a JSON number, which Python reads as inf and wrote back as the token
    `Infinity`: the webhook refused the event the file did not hold (adv24 b/4)."""
    value = float(text)
    if value in (math.inf, -math.inf):
        raise ValueError(f"{text} is too large for a double: it would be sent as "
                         "Infinity, which JSON has not; write a smaller number, or a string")
    return value


def _whole(text: str) -> int:
    """An integer of more than INT_DIGITS digits read "not valid JSON (... use
    sys.set_int_max_str_digits() ...)", Python's advice to a user of `hd` (adv25 e/4)."""
    from hippo_contract.json_text import INT_DIGITS, digits_sentence

    digits = len(text.lstrip("-"))
    if digits > INT_DIGITS:
        raise ValueError(digits_sentence(digits))
    return int(text)


def _detail(path: str, detail_type: str, table_prefix: str) -> dict[str, Any]:
    """The file's object, else the smallest detail shaped like event_pipe's records."""
    if path:
        from hippo_contract.json_text import nested_past
        from hippo_tasks.daemon.httpcore import MAX_DEPTH
        from hippo_tasks.model.textfile import Unusable, read_small_text

        try:  # bounded: `--file /dev/zero` grew to 8.7 GB before anything was sent
            text = read_small_text(Path(path), FILE_LIMIT)
            # The event around the detail is one more level: a detail of 512 levels, or
            # of 600, was sent, and the webhook's 400 came back as exit 1.
            if nested_past(text, MAX_DEPTH - 1):
                raise RecursionError
            detail = json.loads(text, parse_constant=_no_constant, parse_float=_finite,
                                parse_int=_whole)
        except OSError as exc:
            raise UsageError(f"--file {path}: {exc.strerror or exc}") from None
        except Unusable as exc:
            raise UsageError(f"--file {path}: {exc} (the webhook takes events up to "
                             "256 KiB)") from None
        except ValueError as exc:
            raise UsageError(f"--file {path}: not valid JSON ({exc})") from None
        except RecursionError:  # the webhook takes 512 levels; Python's parser ~1000
            raise UsageError(f"--file {path}: nested too deeply (the webhook takes at most "
                             f"{MAX_DEPTH} levels of objects and lists, the event around "
                             f"the detail included: {MAX_DEPTH - 1} for the detail)") from None
        if not isinstance(detail, dict):
            raise UsageError(f"--file {path}: the event's detail must be a JSON object")
        return detail
    family, _, op = detail_type.rpartition(".")
    family = family or detail_type
    keys = _SAMPLE_KEYS.get(family, {"pk": {"S": "EVENT#test"}})
    return {"eventName": op if op in ("INSERT", "MODIFY", "REMOVE") else "MODIFY",
            "tableName": f"{table_prefix}{family}Table", "keys": keys,
            "newImage": {"pk": keys["pk"]}}


@task(help=SEND_HELP)
@handles_errors
def send(c: Context, detail_type: str = "", file: str | None = None,
         project_root: str | None = None) -> None:
    """Post one event to the running daemon's webhook and print where it was routed.

    The same path an EventBridge delivery takes, so a route can be tried without AWS.
    Exits 1 when the webhook answers 4xx/5xx (the answer is still printed).
    """
    if not detail_type:
        raise UsageError("--detail-type is required, e.g. --detail-type EcomIndexSettings.MODIFY")
    # or it was sent, and the daemon's 400 was exit 1, where a bad argument is 2 (adv43 V/10)
    check_utf8("--detail-type", detail_type, "an event's detail-type must be (it is sent as JSON)")
    no_empty("--file", file, "leave it out to send the smallest detail")
    webhook_token()  # a bad HIPPODROME_WEBHOOK_TOKEN is refused before anything else
    root = resolve_root(project_root)
    client = DaemonClient.for_project(root)
    daemon = Registry(root).read().get("daemon") or {}
    token = stack_webhook_token(daemon)
    detail = _detail(file or "", detail_type, str(daemon.get("table_prefix") or ""))
    event = {"source": "marqo.dynamodb", "detail-type": detail_type, "detail": detail}
    status, answer = client.post_event(event, token)
    print(json.dumps(answer, indent=2), flush=True)
    if status >= 400:
        print(paint(f"hippodrome: the webhook answered {status}", RED, sys.stderr),
              file=sys.stderr)
        raise TaskExit(1)


REPLAY_HELP = {
    "file": "a recording: its path, or its name in .hippodrome/events/",
    "filter": "only these detail-types: T exactly, or T* for every one starting with T",
    "speed": "N times as fast as recorded (default 1: the recorded pauses)",
    "as-fast-as-possible": "send each delivery as soon as the one before was answered",
    "ignore": "more answer fields to leave out of the comparison (key names, comma-separated)",
    "project-root": SEND_HELP["project-root"],
}


def _usage() -> str:
    """What `events.replay --help` prints (invoke hands a flag to a missing positional
    as its value, so the task sees `--help` as FILE)."""
    import inspect

    rows = [("FILE", REPLAY_HELP["file"])] + [
        ("--" + k, v) for k, v in REPLAY_HELP.items() if k != "file"]
    return ("Usage: invoke events.replay [--filter T] [--speed N | --as-fast-as-possible] "
            "[--ignore a,b] [--project-root DIR] FILE\n\n"
            + inspect.cleandoc(replay.__doc__ or "") + "\n\n"
            + "\n".join(f"  {name:<24}{text}" for name, text in rows))


def _recording(file: str, root: Path) -> Path:
    path = Path(file).expanduser()
    if not path.exists() and not path.is_absolute() and len(path.parts) == 1:
        from hippo_tasks.events.recording import events_dir

        stored = events_dir(root) / path
        if stored.exists():
            return stored
    return path


def _speed(speed: str, fast: bool) -> float | None:
    from hippo_tasks.events.replay import check_speed

    if fast and speed:
        raise UsageError("give --speed N or --as-fast-as-possible, not both")
    if fast:
        return None
    try:
        return check_speed(float(speed or "1"))
    except ValueError:
        raise UsageError(f"--speed must be a number above 0, got {speed!r}") from None


@task(help=REPLAY_HELP)
@handles_errors
def replay(c: Context, file: str, filter: str | None = None, speed: str | None = None,
           as_fast_as_possible: bool = False, ignore: str = "",
           project_root: str | None = None) -> None:
    """Send a webhook recording again through the running stack and compare the answers.

    Exit 0 when every answer matches the recorded one (status and JSON, without times,
    durations and request ids), 1 with a summary of the differences otherwise.
    """
    from hippo_tasks.events.replay import ReplayReport, ReplayStopped, WebhookUnreachable
    from hippo_tasks.events.replay import replay as run_replay

    if file in ("-h", "--help"):
        print(_usage())
        return
    no_empty("FILE", file, "give a recording's name or path")
    no_empty("--filter", filter, "leave it out to replay every delivery")
    no_empty("--speed", speed, "leave it out for the recorded pace")
    pace = _speed(speed or "", as_fast_as_possible)
    webhook_token()
    root = resolve_root(project_root)
    client = DaemonClient.for_project(root)
    entry = Registry(root).read().get("daemon") or {}
    token = stack_webhook_token(entry)
    key = entry.get("replay_key")

    selected = [0]

    def shutting_down() -> bool:
        if client.ended(within=0):
            return True
        entry = Registry(root).read().get("daemon") or {}
        return entry.get("pid") == client.pid and bool(entry.get("shutting_down"))

    def started(report: ReplayReport) -> None:
        selected[0] = report.selected
        how = "as fast as possible" if pace is None else \
            f"over about {report.span_s / pace:.1f} s (speed {pace:g})"
        print(f"hippodrome | replaying {report.selected} of {report.deliveries} deliveries "
              f"from {report.path} {how}", flush=True)

    recording = _recording(file, root)
    client.check_answers()
    try:
        result = run_replay(
            recording, url=client.url,
            token=token, replay_key=key if isinstance(key, str) else None,
            filter=filter or None,
            speed=pace, ignore=[k.strip() for k in ignore.split(",") if k.strip()],
            on_start=started, on_mismatch=lambda m: print("\n".join(m.lines()), flush=True),
            # A paced replay sees a shutdown begin (the registry says so at once) or the
            # daemon end while it waits, not at its next send; the daemon's webhook
            # forwards until its last moment, and a replay went on sending through a
            # 5 s shutdown, exit 0 (adv29 n/5).
            stop=lambda: "the stack is shutting down" if shutting_down() else None)
    except (WebhookUnreachable, ReplayStopped) as exc:
        done = f"after {exc.sent} of {selected[0]} deliveries"
        if isinstance(exc, ReplayStopped) or client.ended():
            # `hd down` (or Ctrl+C of `hd up`) meanwhile: it was said to be hung, `hd down
            # --force` advised, exit 6 (adv28 k/2). Its registry entry tells a shutdown,
            # which marks it and then clears it, from a kill, which leaves it as it was.
            entry = Registry(root).read().get("daemon") or {}
            if entry.get("pid") != client.pid or entry.get("shutting_down"):
                raise StackShutDownError(f"the stack was shut down while the replay ran, "
                                         f"{done}: the rest were not sent; `hd up` starts "
                                         "it again") from None
            raise DaemonEndedError(client.pid, f"{exc.reason}, {done}") from None
        raise DaemonUnreachableError(client.url, client.pid, f"{exc.reason} ({done})") from None
    print("\n".join(result.summary(details=False)), flush=True)
    if not result.ok:
        print(paint(f"hippodrome: {result.different} of {result.sent} deliveries answered "
                    "differently from the recording", RED, sys.stderr), file=sys.stderr)
        raise TaskExit(1)


ns = Collection("events")
ns.add_task(validate)
ns.add_task(send)
ns.add_task(replay)
