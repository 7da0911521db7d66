"""Where the stack's services are, from the env contract and the running daemon.

The seed job and the probes get the stack's `[env]` contract from the orchestrator
that runs them (as a job of the stack, or as `hd seed` / `hd probes`, which
render the same contract for the running stack's profile, cell, table prefix and port
offset), so the URLs they use are exactly the ones the services were given. The
daemon's `/api/status` rows, fetched over HTTP from HIPPODROME_DASHBOARD_URL, add what
the contract does not name (exporters, event_pipe, console, dashboard) and say which
services are actually running.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The contract variables `.env.e2e` carries over (never credentials: those are fixed).
CONTRACT_VARS = (
    "CONTROLLER_URL", "MARQO_BASE_URL", "CONTROL_PLANE_URL_OVERRIDE", "ADMIN_SERVER_URL",
    "FAKE_COGNITO_URL", "ECOM_INGEST_URL", "GLOBAL_WORKER_URL", "SEARCH_PROXY_URL",
    "AWS_ENDPOINT_URL", "HIPPODROME_WEBHOOK_URL", "HIPPODROME_TABLE_PREFIX", "HIPPODROME_CELL",
    "HIPPODROME_PROFILE", "CONTROLLER_CELL", "DATA_PLANE_CELLS", "ECOM_INDEX_SETTINGS_TABLE",
    "MERCHANDISING_TABLE", "ECOM_EVENT_BUS", "MERCHANDISING_EVENT_BUS",
)
DEFAULT_CONTROLLER = "http://127.0.0.1:9002"
DEFAULT_CELL = "http://127.0.0.1:9001"


@dataclass(frozen=True)
class StackView:
    env: Mapping[str, str]  # the env contract
    rows: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # daemon rows by name
    dashboard_url: str | None = None

    @property
    def controller_url(self) -> str:
        return self._url("CONTROLLER_URL", "controller") or DEFAULT_CONTROLLER

    @property
    def cell_url(self) -> str:
        return (self.env.get("MARQO_BASE_URL") or self.env.get("CONTROL_PLANE_URL_OVERRIDE")
                or self._row_url("fake_cell") or DEFAULT_CELL)

    @property
    def cell(self) -> str:
        return self.env.get("HIPPODROME_CELL") or "local"

    def url_of(self, service: str) -> str | None:
        """A service's URL: its daemon row, else its contract variable."""
        return self._row_url(service) or self.env.get(service.upper() + "_URL") or None

    def _url(self, var: str, service: str) -> str | None:
        return self.env.get(var) or self._row_url(service)

    def _row_url(self, service: str) -> str | None:
        row = self.rows.get(service) or {}
        url = row.get("url")
        return str(url) if url else None

    def service_urls(self) -> dict[str, str]:
        """`{NAME}_URL` for every service with a port, and the dashboard's."""
        urls = {f"{name.upper()}_URL": str(row["url"])
                for name, row in self.rows.items() if row.get("url")}
        if self.dashboard_url:
            urls["HIPPODROME_DASHBOARD_URL"] = self.dashboard_url
        return urls


def daemon_status(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The running daemon's /api/status, or None when there is none (or it is silent).

    The daemon is only an HTTP peer here: its URL is HIPPODROME_DASHBOARD_URL, which
    the stack's env contract gives every service and every stack command."""
    url = env.get("HIPPODROME_DASHBOARD_URL")
    if not url:
        return None
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/status", timeout=5) as answer:
            body = json.loads(answer.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def view_from_env(env: Mapping[str, str], status: Mapping[str, Any] | None = None) -> StackView:
    """The contract is our environment (the daemon rendered it for us, as a job of the
    stack or as a stack command); the daemon's status adds its rows."""
    if status is None:
        status = daemon_status(env)
    rows = _rows(status)
    dashboard = (status.get("dashboard_url") if status else None) or env.get(
        "HIPPODROME_DASHBOARD_URL")
    contract = {k: v for k, v in env.items() if k in CONTRACT_VARS}
    if "CONTROLLER_URL" not in contract and status is not None:
        # Not started with the contract (a stack file without it): the rows will do.
        for var, service in (("CONTROLLER_URL", "controller"), ("MARQO_BASE_URL", "fake_cell"),
                             ("ADMIN_SERVER_URL", "admin_server")):
            url = (rows.get(service) or {}).get("url")
            if url and var not in contract:
                contract[var] = str(url)
        contract.setdefault("HIPPODROME_CELL", str(status.get("cell") or "local"))
        contract.setdefault("HIPPODROME_PROFILE", str(status.get("profile") or "core"))
    return StackView(contract, rows, str(dashboard) if dashboard else None)


def _rows(status: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    if not status:
        return {}
    return {str(row["name"]): row for row in status.get("services") or []}
