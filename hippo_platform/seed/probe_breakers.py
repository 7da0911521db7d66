"""The fuzz mode's bookkeeping: a circuit breaker per service and every answer counted.

A service that stops answering (stopped, restarting, moto without its table yet) is
not a bug in the platform, and hammering it only fills the report with the same
error. After `threshold` infrastructure errors in a row from one service its breaker
opens: the fuzz rules that call it are skipped for the rest of the run, and the report
names the breaker and the error that tripped it. Any good answer resets the count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hippo_platform.seed.probe_http import Outcome, code_of, is_infrastructure


@dataclass
class Failure:
    """A real failure: a call whose answer the platform must not give."""
    service: str
    call: str
    why: str


@dataclass
class Ledger:
    threshold: int = 3
    codes: Counter[tuple[str, str]] = field(default_factory=Counter)
    infrastructure: Counter[str] = field(default_factory=Counter)
    in_a_row: Counter[str] = field(default_factory=Counter)
    tripped: dict[str, str] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    def closed(self, service: str) -> bool:
        return service not in self.tripped

    def record(self, service: str, outcome: Outcome) -> bool:
        """Count the answer; True when it is an infrastructure error (forgiven)."""
        self.codes[(service, code_of(outcome))] += 1
        if not is_infrastructure(outcome):
            self.in_a_row[service] = 0
            return False
        self.infrastructure[service] += 1
        self.in_a_row[service] += 1
        if self.in_a_row[service] >= self.threshold and service not in self.tripped:
            self.tripped[service] = (f"{self.in_a_row[service]} infrastructure errors in a row,"
                                     f" the last {outcome.text()}")
        return True

    def fail(self, service: str, outcome_text: str, why: str) -> None:
        self.failures.append(Failure(service, outcome_text, why))

    def table(self) -> list[str]:
        """The error-code summary: one row per service, one column per code seen."""
        services = sorted({s for s, _ in self.codes})
        codes = sorted({c for _, c in self.codes}, key=lambda c: (not c.isdigit(), c))
        if not services:
            return ["  (no calls made)"]
        width = max(len(s) for s in services) + 2
        widths = [max(len(c), 5) + 2 for c in codes]
        head = "  " + "service".ljust(width) + "".join(
            c.rjust(w) for c, w in zip(codes, widths, strict=True)) + "   infra  breaker"
        rows = [head]
        for service in services:
            cells = "".join(str(self.codes.get((service, c), 0) or "-").rjust(w)
                            for c, w in zip(codes, widths, strict=True))
            state = "OPEN" if service in self.tripped else "closed"
            rows.append(f"  {service.ljust(width)}{cells}"
                        f"{self.infrastructure.get(service, 0):>8}  {state}")
        return rows

    def as_json(self) -> dict[str, object]:
        return {
            "codes": {f"{s} {c}": n for (s, c), n in sorted(self.codes.items())},
            "infrastructure": dict(self.infrastructure),
            "breakers_open": dict(self.tripped),
            "failures": [f.__dict__ for f in self.failures],
        }
