"""What the command line takes for granted in the daemon's answers, checked once.

A process on the registry's port that runs in the project folder (a daemon of another
Hippodrome version, a dev server) answers with documents of its own: `hd status`, `why`,
`start` and `restart` read them as ours and died with KeyError, TypeError or
RecursionError tracebacks, or printed `web: running (pid 1)` for a restart nothing did
(adv26 f/1, adv27 j/3). Each answer is checked for the fields its reader uses; one that
is not ours is said as a daemon that does not answer (exit 6).
"""

from __future__ import annotations

from typing import Any

_INT = (int,)
_NUM = (int, float)
ROW_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,), "state": (str,), "healthy": (bool,), "restarts": _INT,
}
ROW_OPTIONAL: dict[str, tuple[type, ...]] = {
    "pid": _INT, "port": _INT, "uptime_s": _NUM, "exit_code": _INT, "reason": (str,),
}
STATUS_FIELDS = ("profile", "cell", "table_prefix")


def _typed(value: Any, types: tuple[type, ...]) -> bool:
    return isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


def row_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return "a service row that is not an object"
    for key, types in ROW_FIELDS.items():
        if not _typed(row.get(key), types):
            return f"a service row's {key!r} missing or of another type"
    for key, types in ROW_OPTIONAL.items():
        if row.get(key) is not None and not _typed(row[key], types):
            return f"a service row's {key!r} of another type"
    return None


def rows_problem(answer: Any) -> str | None:
    if not isinstance(answer, dict) or not isinstance(answer.get("services"), list):
        return "no 'services' list"
    for row in answer["services"]:
        problem = row_problem(row)
        if problem:
            return problem
    return None


def status_problem(answer: Any) -> str | None:
    """Why `answer` is not an `/api/status` document of ours, or None."""
    if not isinstance(answer, dict):
        return "not an object"
    for key in STATUS_FIELDS:
        if not isinstance(answer.get(key), str):
            return f"no {key!r}"
    return rows_problem(answer)


def action_problem(answer: Any) -> str | None:
    """An action's answer: its rows, judged (`ok` and `problems`, daemon/api.judged)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool) or \
            not isinstance(answer.get("problems"), list):
        return "no 'ok' and 'problems'"
    return rows_problem(answer)


def why_problem(answer: Any) -> str | None:
    if not isinstance(answer, dict) or not isinstance(answer.get("summary"), str):
        return "no 'summary'"
    return None
