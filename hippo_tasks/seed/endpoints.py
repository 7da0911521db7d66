"""Where the stack's services are, from the env contract and the running daemon.

The seed job gets the stack's `[env]` contract from the daemon that starts it, so the
URLs are already in its environment. `invoke seed` and `invoke probes` run from a
shell, so they rebuild the same contract from the stack file and the daemon's
`/api/status` (profile, cell, table prefix, and the port offset read off the dashboard
URL): the URLs they use are exactly the ones the services were given. The daemon's
rows add what the contract does not name (exporters, event_pipe, console, dashboard)
and say which services are actually running.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


def daemon_status(root: Path) -> dict[str, Any] | None:
    """The running daemon's /api/status, or None when there is none (or it is silent)."""
    from hippo_tasks.daemon.client import DaemonClient
    from hippo_tasks.errors import HippoError

    try:
        return DaemonClient.for_project(root).status()
    except HippoError:
        return None


def view_from_env(root: Path, env: Mapping[str, str]) -> StackView:
    """For the seed job: the contract is our environment; the daemon adds its rows."""
    status = daemon_status(root)
    rows = _rows(status)
    dashboard = status.get("dashboard_url") if status else None
    if "CONTROLLER_URL" not in env and status is not None:
        return view_from_status(root, status, env)
    return StackView({k: v for k, v in env.items() if k in CONTRACT_VARS}, rows, dashboard)


def view_from_status(root: Path, status: Mapping[str, Any],
                     env: Mapping[str, str] | None = None) -> StackView:
    """For tasks run from a shell: rebuild the contract the daemon gave its services."""
    rows = _rows(status)
    dashboard = status.get("dashboard_url")
    contract = _contract_from_plan(root, status, env if env is not None else os.environ)
    if contract is None:  # the stack file changed or broke since `up`: the rows will do
        contract = {}
        for var, service in (("CONTROLLER_URL", "controller"), ("MARQO_BASE_URL", "fake_cell"),
                             ("ADMIN_SERVER_URL", "admin_server")):
            url = (rows.get(service) or {}).get("url")
            if url:
                contract[var] = str(url)
        contract["HIPPODROME_CELL"] = str(status.get("cell") or "local")
        contract["HIPPODROME_PROFILE"] = str(status.get("profile") or "core")
    return StackView(contract, rows, str(dashboard) if dashboard else None)


def _rows(status: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    if not status:
        return {}
    return {str(row["name"]): row for row in status.get("services") or []}


def _contract_from_plan(root: Path, status: Mapping[str, Any],
                        env: Mapping[str, str]) -> dict[str, str] | None:
    from hippo_tasks.errors import HippoError
    from hippo_tasks.model.loader import load_stack
    from hippo_tasks.model.plan import Options, build_plan

    try:
        spec = load_stack(root)
        dashboard_port = urlsplit(str(status.get("dashboard_url") or "")).port
        offset = (dashboard_port or spec.settings.dashboard_port) - spec.settings.dashboard_port
        opts = Options(project_root=root, profile=str(status["profile"]),
                       cell=str(status["cell"]), table_prefix=str(status["table_prefix"]),
                       port_offset=offset, python=sys.executable, env=dict(env))
        plan = build_plan(spec, opts)
    except (HippoError, KeyError, ValueError):
        return None
    if not plan.services:
        return None
    names = {name for name, _ in spec.env} & set(CONTRACT_VARS)
    return {k: v for k, v in plan.services[0].env.items() if k in names}
