"""The health half of `probes`: the daemon's view of each service, and our own call.

The daemon says whether a service is running and passed its readiness check; the probe
then calls the service's health route itself, so the report can say *why* one does
not answer: `error_type` (connection_refused, timeout, transport_error, http_error,
parse_error; probe_http) and `status_code`, per service, in the printed line and in
`--json`'s `services`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hippo_platform.seed.probe_http import Outcome, call

# Every bundled service answers JSON at /healthz but moto, whose page is HTML.
HEALTH_PATHS: dict[str, tuple[str, bool]] = {"moto": ("/moto-api/", False)}


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"OK": 0, "WARN": 0, "FAIL": 0,
                                                            "SKIP": 0})

    services: list[dict[str, Any]] = field(default_factory=list)

    def add(self, status: str, name: str, text: str, ms: float | None = None, *,
            service: tuple[str, Outcome | None] | None = None) -> None:
        self.counts[status] += 1
        if service is not None:
            outcome = service[1]
            self.services.append({
                "name": service[0], "status": status, "text": text,
                "error_type": outcome.error_type if outcome else None,
                "status_code": outcome.status_code if outcome else None})
        timing = f"  {ms:6.1f} ms" if ms is not None else ""
        tag = f"[{status}]"
        self.lines.append(f"  {tag:<7}{name:<23}{text:<52}{timing}".rstrip())

    @property
    def ok(self) -> bool:
        return self.counts["FAIL"] == 0

    def summary(self) -> str:
        c = self.counts
        return (f"probes: {c['OK']} passed, {c['WARN']} warning(s), {c['FAIL']} failed"
                + (f", {c['SKIP']} skipped" if c["SKIP"] else ""))


def service_health(status: Mapping[str, Any], report: Report,
                   check: Callable[[str, str], Outcome] | None = None) -> None:
    """The daemon's view of each service, plus our own call to its health route: the
    call's `error_type` and `status_code` say why a service does not answer."""
    check = check or deep_health
    for row in status.get("services") or []:
        name, state = str(row["name"]), str(row["state"])
        url = f"  {row['url']}" if row.get("url") else ""
        outcome = check(name, str(row["url"])) if row.get("url") else None
        seen = _seen(outcome)
        if row.get("kind") == "job":
            code = row.get("exit_code")
            if state == "stopped" and code == 0:
                report.add("OK", name, "job, exited 0", service=(name, outcome))
            elif state in ("pending", "starting"):
                report.add("WARN", name, f"job still {state}", service=(name, outcome))
            else:
                why = row.get("reason") or ""
                report.add("FAIL", name, f"job {state}, exit code {code}: {why}",
                           service=(name, outcome))
        elif state == "external":
            if outcome is not None and outcome.ok:
                report.add("OK", name, f"external, answering{url}", service=(name, outcome))
            else:
                report.add("WARN", name, f"external (not started by the stack), not answering"
                           f"{seen}{url}", service=(name, outcome))
        elif state == "running" and row.get("healthy") and (outcome is None or outcome.ok):
            report.add("OK", name, f"running, healthy{url}", service=(name, outcome))
        else:
            why = f": {row['reason']}" if row.get("reason") else ""
            health = "" if state != "running" else ", unhealthy"
            if state == "running" and row.get("healthy"):
                health = ", healthy to the daemon but not to the probe"
            report.add("FAIL", name, f"{state}{health}{why}{seen}{url}", service=(name, outcome))


def deep_health(name: str, url: str) -> Outcome:
    path, json_body = HEALTH_PATHS.get(name, ("/healthz", True))
    return call("GET", url.rstrip("/") + path, timeout=5.0, json_body=json_body)


def _seen(outcome: Outcome | None) -> str:
    if outcome is None or outcome.ok:
        return ""
    code = f" {outcome.status_code}" if outcome.status_code is not None else ""
    return f" [{outcome.error_type}{code}]"
