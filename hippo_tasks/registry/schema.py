"""The shape of `.hippodrome/registry.json`, checked on every read.

Every command reads the registry, and several act on it (end process groups, call the
daemon's URL). A file of the wrong shape, `{"services": {"x": null}}` or a string
where a pid belongs, must be refused as a whole, like a file that is not JSON at all,
before any of those readers indexes into it. Known keys are checked strictly; unknown
keys are kept, so a newer Hippodrome's file still reads.

Hand-written checks on the standard library only: this module is imported by every
command, so it must cost nothing to import. A field is one row in a table below.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

PID_MAX = 2**31 - 1
"""What a pid_t can hold: a larger number is no process; a smaller unused one is just
not alive (checked with its start time, never trusted)."""
TIME_MAX = 1e11
"""Seconds since the epoch (or since boot), with room to spare: about the year 5138."""
DEPTH_MAX = 16
"""The deepest nesting a registry holds is four; deeper cannot be ours, and much deeper
would break the recursive JSON writer when the file is written back."""

Check = Callable[[Any, str], None]
"""Raises Invalid naming `where` (a path such as services.api.pgid) when the value is
not of the shape wanted."""


class Invalid(ValueError):
    """The registry is not of the shape this version reads; the message names the key."""


def describe(value: Any) -> str:
    """A value as a message can show it: short, whatever its size."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**12 else "a huge integer"
    if isinstance(value, float):  # 1.0 as `1`: "must be an integer ..., not 1" (adv58)
        return repr(value) if value.is_integer() and abs(value) < 1e16 else f"{value:g}"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _wrong(where: str, wanted: str, value: Any) -> Invalid:
    return Invalid(f"{where or 'the file'} must be {wanted}, not {describe(value)}")


def integer(lo: int, hi: int, wanted: str) -> Check:
    def check(value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise _wrong(where, wanted, value)

    return check


def number(lo: float, hi: float, wanted: str) -> Check:
    def check(value: Any, where: str) -> None:
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or not lo <= value <= hi):
            raise _wrong(where, wanted, value)

    return check


def string(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise _wrong(where, "a string", value)


def boolean(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise _wrong(where, "true or false", value)


def optional(check: Check) -> Check:
    def maybe(value: Any, where: str) -> None:
        if value is not None:
            check(value, where)

    return maybe


def list_of(check: Check) -> Check:
    def items(value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise _wrong(where, "a list", value)
        for i, item in enumerate(value):
            check(item, f"{where}[{i}]")

    return items


def pair(first: Check, second: Check) -> Check:
    def both(value: Any, where: str) -> None:
        if not isinstance(value, list) or len(value) != 2:
            raise _wrong(where, "a [pid, start time] pair", value)
        first(value[0], f"{where}[0]")
        second(value[1], f"{where}[1]")

    return both


def obj(fields: Mapping[str, Check], required: tuple[str, ...] = ()) -> Check:
    """An object whose known keys have the given shapes; other keys are let through."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _wrong(where, "an object", value)
        for key in required:
            if key not in value:
                raise Invalid(f"{where} has no '{key}'")
        for key, field in fields.items():
            if key in value:
                field(value[key], f"{where}.{key}" if where else key)

    return check


def mapping_of(check: Check) -> Check:
    def entries(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _wrong(where, "an object", value)
        for key, item in value.items():
            check(item, f"{where}.{key}")

    return entries


PID = integer(1, PID_MAX, f"a process id (an integer from 1 to {PID_MAX})")
PORT = integer(1, 65535, "a port (an integer from 1 to 65535)")
TIME = number(0, TIME_MAX, "a time in seconds")
IDENTITY = number(-TIME_MAX, TIME_MAX, "a start time")

DAEMON = obj({
    "pid": PID,
    "create_time": optional(TIME),
    "url": string,
    "port": PORT,
    "guard_pid": optional(PID),
    "started_at": TIME,
    "up_started": optional(IDENTITY),
    "profile": string,
    "cell": string,
    "table_prefix": string,
    "logs_dir": string,
    "token": string,
    "webhook_token": optional(string),
    "replay_key": optional(string),
    "cgroup": optional(string),
    "mode": string,
    "mode_why": optional(string),
    "started": boolean,
    "stack_file": optional(string),
}, required=("pid", "url", "port"))

SERVICE = obj({
    "pid": optional(PID),
    "pgid": optional(PID),
    "create_time": optional(TIME),
    "port": optional(PORT),
    "state": string,
    "started_at": optional(TIME),
    "reason": string,
    "ready": boolean,
    "blocking": boolean,
    "kind": string,
    "cgroup": optional(string),
    "token": optional(string),
    "members": list_of(pair(PID, IDENTITY)),
}, required=("state",))

FAILURE = obj({
    "service": optional(string),  # null: the stack as a whole failed (a bad file, a port)
    "reason": string,
    "last_lines": list_of(string),
    "log_path": optional(string),
    "log_note": optional(string),
    "final": boolean,
})

OWNER = obj({"pid": PID, "create_time": optional(TIME)})

_RESOURCE_FIELDS = obj({
    "session": string,
    "kind": string,
    "name": string,
    "bus": optional(string),
    "created_at": string,
    "owner": optional(OWNER),
    "arn": optional(string),
    "keep": boolean,
    "region": string,
    "endpoint": optional(string),
    "rule": string,
    "tool": string,
    "pid": PID,
    "pgid": PID,
    "create_time": optional(TIME),
    "log": string,
    "public_url": optional(string),
})

RESOURCE_NEEDS: dict[str, tuple[str, ...]] = {
    "tunnel": ("session", "name", "pid", "pgid"),
    "rule-target": ("session", "name", "region", "rule", "bus"),
    "rule": ("session", "name", "region", "bus"),
    "api-destination": ("session", "name", "region"),
    "connection": ("session", "name", "region"),
    "iam-role": ("session", "name"),
}
"""Keys the events cleanup reads without a default, per kind of recorded AWS resource
(events/bridge_records.py); other kinds are someone else's and only type-checked."""


def resource(value: Any, where: str) -> None:
    _RESOURCE_FIELDS(value, where)
    for key in RESOURCE_NEEDS.get(value.get("kind"), ()):
        if key not in value:
            raise Invalid(f"{where} ({value['kind']}) has no '{key}'")
    if value.get("kind") in ("rule", "rule-target") and value.get("bus") is None:
        raise _wrong(f"{where}.bus", "a string", None)


REGISTRY = obj({
    "version": integer(0, 2**31, "an integer"),
    "project_root": string,
    "daemon": optional(DAEMON),
    "services": mapping_of(SERVICE),
    "failure": optional(FAILURE),
    "resources": list_of(resource),
})


def check_depth(value: Any, limit: int = DEPTH_MAX) -> None:
    """Refuse nesting deeper than `limit`, without recursing (the value may come from a
    hand-edited file of any depth json.loads still took)."""
    todo: list[tuple[Any, int]] = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                raise Invalid(f"nested more than {limit} levels deep")
            todo.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict)
                                                 else item))


def validate(value: Any) -> dict[str, Any]:
    """The registry as read from JSON, if it has the shape we write; else Invalid."""
    check_depth(value)
    REGISTRY(value, "")
    data: dict[str, Any] = value
    return data
