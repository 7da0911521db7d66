"""Whether a start, stop or restart did what it was asked, judged once from its rows.

The command line, the HTTP API and the MCP tools each answer an action with the rows the
daemon settled on. Each judged them on its own: `hd restart -s flaky` exited 1 for a
new process that exited 3, the MCP tool said `ok: false`, and the API answered a plain
200, so a script driving the API took the failure for a success. The rule lives here,
and each of the three says its outcome from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

Row = Mapping[str, Any]
MOVING = ("pending", "starting", "stopping")
EXITED = "its main process exited"
"""The reason a row reads while its service's own exit is being taken in (snapshot.py)."""


class Problem(NamedTuple):
    text: str
    in_row: bool
    """Already said by the row's own line (`x: failed — reason`): the command line does
    not print it twice."""


def changed_meanwhile(unsettled: Sequence[str]) -> str:
    """Why a start or restart is not a success though nothing failed. With no service
    left in motion (a whole-stack stop came in) it said `no service did not come up`."""
    what = f"{', '.join(unsettled)} did not come up" if unsettled else "no service came up"
    return (f"{what}: another command (a stop, `hd down`) changed the stack while this one "
            "waited; `hd status` shows where it is now")


def problems(verb: str, service: str | None, cascade: bool,
             rows: Sequence[Row]) -> list[Problem]:
    """What went wrong, one sentence each; empty when the action succeeded. A whole-stack
    start or restart succeeds with a non-blocking service failed (as `up --detach`
    judges it); a service asked for by name must be ready."""
    if verb == "stop":
        return [Problem(f"{r['name']} is external: Hippodrome does not run it, so it was "
                        "not stopped", False) if r["state"] == "external" else
                Problem(f"{r['name']} is still {r['state']}", True) for r in rows
                if r["state"] not in ("stopped", "failed")
                and (r["state"] != "external" or r["name"] == service)]
    found: list[Problem] = []
    unsettled: list[str] = []
    whole = service is None  # a whole-stack action asks every service
    for row in rows:
        name, state = row["name"], row["state"]
        # A start asks for what the service needs too: one another command stopped
        # meanwhile was answered `stopped`, exit 0 (adv29 n/3)
        asked = whole or name == service or cascade or verb == "start"
        own_end = state in ("failed", "backoff") or (state == "stopping"
                                                      and row.get("reason") == EXITED)
        if row.get("not_restarted"):
            found.append(Problem(f"{name}: {row['not_restarted']}", True))
        elif state == "external" and name == service and cascade and verb == "restart":
            # `restart -s ext --cascade`: what runs on it is restarted, the use of it
            # (one restarted ext by hand); it said "not restarted", exit 1, having done
            # just that (adv28 l/5)
            continue
        elif state == "external" and name == service and (verb == "restart"
                                                         or not row.get("healthy")):
            # (`ready` is always true for an external: dependants never wait on it; its
            # probe says whether it answers, adv25 e/1)
            # As a stop of it says: a restart exited 0 having done nothing, and a start
            # exited 0 for one that does not answer (adv24 b/8).
            found.append(Problem(
                f"{name} is external: Hippodrome does not run it, so it was not restarted"
                if verb == "restart" else
                f"{name} is external and does not answer: Hippodrome does not run it; "
                "start it yourself", False))
        elif row.get("ready") or state == "external":
            continue
        elif whole and own_end and not row.get("blocking", True):
            continue  # a non-blocking service's own end does not fail the stack's action
        elif state == "failed":
            found.append(Problem(f"{name} failed: {row.get('reason') or 'no reason given'}",
                                 True))
        elif state == "stopping" and row.get("reason") == EXITED:
            # Its own exit, as it started: it read "another command changed the stack".
            found.append(Problem(f"{name} exited as it started; `hd logs --service {name}` "
                                 "shows its last words", False))
        elif state in MOVING:
            unsettled.append(name)
        elif state == "stopped" and asked:
            # (a whole-stack restart answered `running` for a service another command
            # stopped meanwhile, with exit 0: commands.py now gives its row as it ended)
            why = row.get("reason") or "another command stopped it"
            found.append(Problem(f"'{name}' is stopped ({why}, while this one waited); "
                                 f"`hd start --service {name}` starts it with what it "
                                 "depends on", False))
        elif state == "backoff" and asked:
            found.append(Problem(f"{name} is backing off before a restart: "
                                 f"{row.get('reason', '')}", True))
    if unsettled:
        found.append(Problem(changed_meanwhile(unsettled), False))
    return found
