"""Running one hypothesis test outside pytest, bounded, with a readable outcome.

Bounded twice: in examples (`max_examples`) and in time (a `Budget` shared by every
property of a run). When the time is spent, the remaining examples return at once
without touching the stack, so the run ends within about one example's time of the
deadline; once an example has failed the budget no longer applies, so hypothesis can
replay and shrink the failure (a skipped replay would look like a flaky test).

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
    counts = {"ran": 0, "skipped": 0, "failed": 0}

    def body(case: Any) -> None:
        if budget.spent() and not counts["failed"]:
            counts["skipped"] += 1
            return
        counts["ran"] += 1
        try:
            check(case)
        except BaseException:
            counts["failed"] += 1
            raise

    body.__name__ = body.__qualname__ = name.replace(" ", "_")  # what the report prints
    test = hypothesis.seed(seed)(probe_settings(examples)(hypothesis.given(strategy)(body)))
    return run_test(name, test, counts)


def run_test(name: str, test: Callable[[], None], counts: dict[str, int]) -> Result:
    """Run a hypothesis-decorated test (a property or a state machine's TestCase)."""
    lines: list[str] = []
    started = time.monotonic()
    try:
        with with_reporter(lambda value: lines.append(str(value))):
            test()
    except Exception as exc:  # a failed example, whatever its type: report, never crash
        notes = [n for n in getattr(exc, "__notes__", []) if n not in lines]
        return Result(name, FAIL, counts["ran"], counts["skipped"],
                      time.monotonic() - started, _reason(exc),
                      [line for line in lines + notes if line.strip()])
    status_text = f"{counts['ran']} example(s)"
    if counts["skipped"]:
        status_text += f", {counts['skipped']} left out when the time budget ran out"
    return Result(name, PASS, counts["ran"], counts["skipped"], time.monotonic() - started,
                  status_text)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, AssertionError):
        return str(exc) or "assertion failed"
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return last[:300]
