"""What `--enable-events` made, as recorded in the registry, and how it is unmade.

Every resource is written to the registry's `resources` list *before* the call that
creates it (an AWS entry with `arn: null` until the call returns; the tunnel right
after its process starts), because everything here is deletable by name: an entry for
a create that never happened costs one "already gone" at cleanup, while a resource
created but not yet recorded when `hd up` is killed would live on in the account.

Entries carry their session, their owner process (PID + start time) and the region
and endpoint they were made in, so cleanup goes to the right place even if the shell's
AWS settings changed since. `cleanup_recorded` acts only on sessions whose owner is
dead (a running `up` cleans up its own), unless forced.

Deleting: targets before their rule, then the rule, the API destination, the
connection; the tunnel's process group is ended first (local, cannot hang on the
network). The IAM role is shared by every run and is never deleted. A resource that
is already gone counts as deleted; one that cannot be deleted stays recorded, so the
next `up`/`down` tries again, and the message names it (it is safe to delete by hand).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hippo_tasks.errors.state_dir import StateDirError
from hippo_tasks.events import aws
from hippo_tasks.events import tunnel as tunnels
from hippo_tasks.registry.store import Data, Registry, identity, is_same_process

TUNNEL = "tunnel"
TARGET = "rule-target"
RULE = "rule"
DESTINATION = "api-destination"
CONNECTION = "connection"
ROLE = "iam-role"
KINDS = (TUNNEL, TARGET, RULE, DESTINATION, CONNECTION, ROLE)
_DELETE_ORDER = (TARGET, RULE, DESTINATION, CONNECTION)
_GONE_CODES = {"ResourceNotFoundException", "NotFoundException", "NoSuchEntity"}

Entry = dict[str, Any]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def entry_key(entry: Entry) -> tuple[Any, ...]:
    return (entry.get("session"), entry.get("kind"), entry.get("name"), entry.get("bus"))


def owner_of(pid: int) -> dict[str, Any]:
    return {"pid": pid, "create_time": identity(pid)}


class Ledger:
    """One session's entries: mirrored in memory, written through to the registry.

    The memory copy is what `close()` works from, so a registry moved aside as corrupt
    mid-run does not make this process forget what it created.
    """

    def __init__(self, registry: Registry, session: str, owner: dict[str, Any]) -> None:
        self.registry = registry
        self.session = session
        self.owner = owner
        self.entries: list[Entry] = []

    def add(self, kind: str, name: str, **fields: Any) -> Entry:
        entry: Entry = {
            "session": self.session,
            "kind": kind,
            "name": name,
            "bus": None,
            "created_at": now_iso(),
            "owner": dict(self.owner),
            **fields,
        }
        self.entries.append(entry)
        self.registry.update(lambda data: _resources(data).append(dict(entry)))
        return entry

    def set(self, entry: Entry, **fields: Any) -> None:
        entry.update(fields)
        key = entry_key(entry)

        def change(data: Data) -> None:
            for item in _resources(data):
                if entry_key(item) == key:
                    item.update(fields)

        self.registry.update(change)

    def hand_over(self, owner: dict[str, Any]) -> None:
        self.owner = owner
        for entry in self.entries:
            self.set(entry, owner=dict(owner))


def recorded(registry: Registry) -> list[Entry]:
    """Entries this module wrote (other kinds in `resources` are left alone)."""
    return [
        e
        for e in _resources(registry.read())
        if isinstance(e, dict) and e.get("session") and e.get("kind") in KINDS
    ]


def cleanup_recorded(
    registry: Registry,
    *,
    force: bool = False,
    owner_pid: int | None = None,
    say: Callable[[str], None] | None = None,
) -> list[str]:
    """Unmake what earlier `--enable-events` runs left behind (crash, kill -9, detach).

    Sessions whose owner process still runs are skipped (it cleans up itself), except
    with `force` (for `down --force`) or when `owner_pid` is that owner (the owner
    itself, shutting down: the detached daemon a session was handed over to).
    Returns one line per action or failure; nothing when there was nothing to do.
    """
    sessions: dict[str, list[Entry]] = {}
    for entry in recorded(registry):
        sessions.setdefault(str(entry["session"]), []).append(entry)
    lines: list[str] = []
    for session, entries in sessions.items():
        owner = entries[0].get("owner") or {}
        alive = _owner_alive(entries[0])
        ending = owner_pid is not None and owner.get("pid") == owner_pid
        if alive and not (force or ending):
            continue
        if not alive:
            why = f"its process {owner.get('pid')} is gone"
        else:
            why = "its owner is ending" if ending else "forced"
        lines.append(f"[eventbridge] cleaning up --enable-events session {session} ({why})")
        lines += unmake(registry, entries)
    prune_tunnel_logs(registry)
    for line in lines:
        if say is not None:
            say(line)
    return lines


def left_behind(registry: Registry, force: bool = False) -> int:
    """How many AWS resources stay recorded that a clean-up (`force`d or not) had to
    delete: those it could not. A tunnel is always ended and the role is kept on
    purpose, so neither counts."""
    return sum(1 for e in recorded(registry)
               if e["kind"] in _DELETE_ORDER and (force or not _owner_alive(e))
               and entry_key(e) not in _UNFORGOTTEN)


def live_owners(registry: Registry, but: int) -> set[int]:
    """The live processes other than `but` that own recorded entries (an `up` still
    setting AWS up, or deleting what it made)."""
    return {int(e["owner"]["pid"]) for e in recorded(registry)
            if _owner_alive(e) and e["owner"]["pid"] != but}


def _owner_alive(entry: Entry) -> bool:
    owner = entry.get("owner") or {}
    return is_same_process(owner.get("pid"), owner.get("create_time"))


def unmake(
    registry: Registry,
    entries: list[Entry],
    live: tunnels.Tunnel | None = None,
    clients: dict[tuple[str, str | None], Any] | None = None,
) -> list[str]:
    """End the tunnel, delete the AWS resources, forget what is gone. Never raises
    for an AWS failure: it is reported and the entry stays for the next attempt.

    `live` is the tunnel object when this process started it (so it is also reaped);
    `clients` maps (region, endpoint) to an events client already made (saves loading
    the service model again, a third of a second).
    """
    lines: list[str] = []
    done: list[Entry] = []
    for entry in (e for e in entries if e["kind"] == TUNNEL):
        if live is not None and live.pid == entry.get("pid"):
            outcome = live.stop()
        else:
            outcome = f"{entry['name']} tunnel (pid {entry.get('pid')}): " + (
                tunnels.end_process_group(
                    int(entry["pid"]), int(entry["pgid"]), entry.get("create_time"),
                    entry.get("log")
                )
            )
        lines.append(f"[tunnel] {outcome}")
        done.append(entry)
    groups: dict[tuple[str, str | None], list[Entry]] = {}
    for entry in entries:
        if entry["kind"] in _DELETE_ORDER:
            groups.setdefault((entry["region"], entry.get("endpoint")), []).append(entry)
    for (region, endpoint), group in groups.items():
        client = (clients or {}).get((region, endpoint))
        gone, group_lines = _delete_group(region, endpoint, group, client)
        done += gone
        lines += group_lines
    done += [e for e in entries if e["kind"] == ROLE]  # shared: kept, only forgotten
    try:
        forget(registry, done)
    except (StateDirError, OSError) as exc:  # a full or read-only disk: said, not fatal
        why = exc.problem if isinstance(exc, StateDirError) else exc.strerror or str(exc)
        _UNFORGOTTEN.update(entry_key(e) for e in done)
        lines.append(f"[eventbridge] what was deleted could not be struck from "
                     f"{registry.path} ({why}): it stays listed there, and the next `hd "
                     "down` or `hd up` strikes it once the file can be written (deleting "
                     "it again is harmless)")
    return lines


_UNFORGOTTEN: set[Any] = set()
"""Entries this process deleted but could not strike from the registry: not "left
behind". A `down` on a full disk deleted everything, then ended on the pre-flight's
"nothing was started or stopped", exit 10 (q/6)."""


def forget(registry: Registry, entries: Iterable[Entry]) -> None:
    keys = {entry_key(e) for e in entries}
    if not keys:
        return

    def change(data: Data) -> None:
        data["resources"] = [e for e in _resources(data) if entry_key(e) not in keys]

    registry.update(change)


def prune_tunnel_logs(registry: Registry, min_age_s: float = 600.0) -> None:
    """Logs of tunnels no longer recorded, once they are old enough to be of no use.

    Kept a while so a failed start can still be read; the age also spares the log of
    a session in another process that has started its tunnel but not yet recorded it.
    """
    live = {f"tunnel-{e['session']}.log" for e in recorded(registry)}
    cutoff = time.time() - min_age_s
    for path in registry.dir.glob("tunnel-*.log"):
        with contextlib.suppress(OSError):
            if path.name not in live and path.stat().st_mtime < cutoff:
                path.unlink()


def explain(exc: BaseException, service: str, secret: str | None = None) -> aws.AwsError:
    """`aws.explain` with the webhook token blanked out of any text AWS echoed back."""
    err = aws.explain(exc, service)
    if not secret or secret not in err.sentence:
        return err
    return aws.AwsError(err.kind, err.sentence.replace(secret, "****"), err.permission,
                        err.code)


def label(entry: Entry) -> str:
    kind, name, bus = entry["kind"], entry["name"], entry.get("bus")
    if kind == TARGET:
        return f"target {name} of rule {entry.get('rule')} on {bus}"
    if kind == RULE:
        return f"rule {name} on {bus}"
    return f"{'API destination' if kind == DESTINATION else 'connection'} {name}"


def _delete_group(
    region: str, endpoint: str | None, group: list[Entry], events: Any = None
) -> tuple[list[Entry], list[str]]:
    where = f"{region}" + (f" at {aws.shown_url(endpoint)}" if endpoint else "")
    if endpoint and aws.is_loopback(endpoint):
        try:
            aws.probe_endpoint(endpoint, timeout=1.0)
        except aws.AwsError:
            # A local endpoint is the stack's in-memory moto: gone with what it held.
            return group, [
                f"[eventbridge] {aws.shown_url(endpoint)} no longer answers; the resources "
                "recorded there "
                "went with it"
            ]
    lines: list[str] = []
    gone: list[Entry] = []
    failed: list[Entry] = []
    try:
        events = events or aws.client("events", endpoint, region)
    except aws.AwsError as exc:
        return [], [_failure_line(group, where, exc.sentence)]
    ordered = sorted(group, key=lambda e: _DELETE_ORDER.index(e["kind"]))
    for index, entry in enumerate(ordered):
        try:
            _delete(events, entry)
            gone.append(entry)
        except Exception as exc:  # every botocore failure, as one sentence
            err = explain(exc, "events")
            failed.append(entry)
            lines.append(_failure_line([entry], where, err.sentence))
            if err.fatal:
                rest = ordered[index + 1 :]
                if rest:
                    lines.append(_failure_line(rest, where, "not tried after that error."))
                break
    if gone and not failed:
        lines.insert(0, _summary(gone))
    else:
        lines = [f"[eventbridge] deleted {label(e)}" for e in gone] + lines
    return gone, lines


def _delete(events: Any, entry: Entry) -> None:
    """Delete one resource by name; a missing one is fine."""
    kind, name = entry["kind"], entry["name"]
    try:
        if kind == TARGET:
            answer = events.remove_targets(
                Rule=entry["rule"], EventBusName=entry["bus"], Ids=[name]
            )
            for failure in answer.get("FailedEntries") or []:
                if "NotFound" not in str(failure.get("ErrorCode")):
                    raise RuntimeError(
                        f"RemoveTargets failed with {failure.get('ErrorCode')}: "
                        f"{failure.get('ErrorMessage')}"
                    )
        elif kind == RULE:
            events.delete_rule(Name=name, EventBusName=entry["bus"])
        elif kind == DESTINATION:
            events.delete_api_destination(Name=name)
        elif kind == CONNECTION:
            events.delete_connection(Name=name)
    except Exception as exc:
        if aws.error_code(exc) in _GONE_CODES:
            return
        raise


def _summary(gone: list[Entry]) -> str:
    rules = sorted({e["name"] for e in gone if e["kind"] == RULE})
    buses = sorted({str(e["bus"]) for e in gone if e["kind"] in (RULE, TARGET)})
    parts = []
    if rules:
        parts.append(f"rule {', '.join(rules)} and its targets on {', '.join(buses)}")
    parts += [label(e) for e in gone if e["kind"] in (DESTINATION, CONNECTION)]
    return "[eventbridge] deleted " + "; ".join(parts)


def _failure_line(entries: list[Entry], where: str, sentence: str) -> str:
    names = "; ".join(label(e) for e in entries)
    return (
        f"[eventbridge] could not delete {names} ({where}): {sentence} It stays recorded: "
        "the next `hd up` or `hd down` tries again, and it is safe to delete by hand "
        "in the EventBridge console."
    )


def _resources(data: Data) -> list[Entry]:
    resources = data.get("resources")
    if not isinstance(resources, list):
        resources = data["resources"] = []
    return resources


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def tunnel_log_path(registry: Registry, session: str) -> Path:
    return registry.dir / f"tunnel-{session}.log"
