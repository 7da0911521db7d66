"""Running one hypothesis test outside pytest, bounded, with a readable outcome.

Bounded twice: in examples (`max_examples`) and in time (a `Budget` shared by every
property of a run). When the time is spent, the next example raises `OutOfTime`
instead of running, which ends hypothesis' run there: no further example is drawn
(drawing costs time too, so merely returning would make the run's length grow with
`max_examples`), and a property that starts with the budget spent is not run at all.
The examples not run are counted as left out, and the run ends within about one
example's time of the deadline. Once an example has failed the budget no longer
applies, so hypothesis can replay and shrink the failure (a skipped replay would look
like a flaky test).

The falsifying example is what hypothesis itself prints (captured from its reporter
and the exception's notes), so the report shows the exact call to reproduce it.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.reporting import with_reporter

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass
class Budget:
    seconds: float
    started: float = field(default_factory=time.monotonic)

    def spent(self) -> bool:
        return time.monotonic() - self.started >= self.seconds


class OutOfTime(KeyboardInterrupt):
    """Raised from a test body (or a state machine's step) once the budget is spent;
    `run_test` catches it.

    A KeyboardInterrupt because that is the one exception hypothesis documents as
    interrupting everything: re-raised at once, with no replay or shrinking and nothing
    recorded of the example it cut short. Any other BaseException is recorded as a
    finished example, and a state machine's run cut mid-way then contradicts an earlier
    run that drew the same first steps and went on (FlakyStrategyDefinition: "the second
    run stopped drawing earlier"). A state machine's teardown still runs (hypothesis
    calls it in a `finally`)."""


class Enough(OutOfTime):
    """Raised the same way once `examples` have run. hypothesis counts only the examples
    it deems valid towards `max_examples`, and a state machine's run with no step it
    could take is not one: `--examples 25` ran 26 to 28 fuzz runs, over the bound the
    report had just printed."""


@dataclass
class Result:
    name: str
    status: str
    examples: int = 0
    skipped_for_time: int = 0
    seconds: float = 0.0
    text: str = ""
    falsifying: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "examples": self.examples,
                "skipped_for_time": self.skipped_for_time, "seconds": round(self.seconds, 2),
                "text": self.text, "falsifying": self.falsifying}


def probe_settings(examples: int, *, shrink: bool = True, **more: Any) -> settings:
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(max_examples=examples, deadline=None, database=None, phases=phases,
                    suppress_health_check=list(HealthCheck), print_blob=False, **more)


def run_property(name: str, strategy: st.SearchStrategy[Any], check: Callable[[Any], None],
                 *, examples: int, budget: Budget, seed: int) -> Result:
    """`check(case)` for up to `examples` drawn cases; AssertionError (or any other
    exception) is a failure, shrunk and reported with its falsifying example."""
    counts = {"ran": 0, "failed": 0}
    if budget.spent():
        return left_out(name, examples, 0, 0.0)

    def body(case: Any) -> None:
        if counts["ran"] >= examples and not counts["failed"]:
            raise Enough
        if budget.spent() and not counts["failed"]:
            raise OutOfTime
        counts["ran"] += 1
        try:
            check(case)
        except BaseException:
            counts["failed"] += 1
            raise

    body.__name__ = body.__qualname__ = name.replace(" ", "_")  # what the report prints
    test = hypothesis.seed(seed)(probe_settings(examples)(hypothesis.given(strategy)(body)))
    return run_test(name, test, counts, examples)


def run_test(name: str, test: Callable[[], None], counts: dict[str, int],
             planned: int) -> Result:
    """Run a hypothesis-decorated test (a property or a state machine's TestCase) of up
    to `planned` examples; `counts["ran"]` is how many ran."""
    lines: list[str] = []
    started = time.monotonic()
    try:
        with with_reporter(lambda value: lines.append(str(value))):
            test()
    except Enough:
        pass
    except OutOfTime:
        return left_out(name, planned, counts["ran"], time.monotonic() - started)
    except Exception as exc:  # a failed example, whatever its type: report, never crash
        notes = [n for n in getattr(exc, "__notes__", []) if n not in lines]
        return Result(name, FAIL, counts["ran"], 0, time.monotonic() - started,
                      _reason(exc), [line for line in lines + notes if line.strip()])
    return Result(name, PASS, counts["ran"], 0, time.monotonic() - started,
                  f"{counts['ran']} example(s)")


def left_out(name: str, planned: int, ran: int, seconds: float) -> Result:
    """A run the time budget cut short: what ran passed, the rest of `planned` is
    counted as left out."""
    skipped = max(planned - ran, 0)
    return Result(name, PASS, ran, skipped, seconds,
                  f"{ran} example(s), {skipped} left out when the time budget ran out")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, AssertionError):
        return str(exc) or "assertion failed"
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return last[:300]
