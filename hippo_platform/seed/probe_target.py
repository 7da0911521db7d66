"""What `probes --full` and `--fuzz` work against: the stack's URLs, an API key, and a
throwaway index of their own, made through the controller and deleted afterwards.

Both modes write documents and rules, so they refuse any cell but the local one (as
the deterministic data path does), and they never touch the seeded indexes: every run
makes an index named `hippodrome-probe-<mode>-<random>` and removes it at the end,
even when a property fails.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hippo_platform.seed.endpoints import StackView
from hippo_platform.seed.probe_http import Outcome, call


def seg(value: str) -> str:
    """One URL path segment, escaped (an id with '/' must stay one segment)."""
    return quote(value, safe="")


class TargetError(Exception):
    """The probes cannot even start (no key, no index): a readable sentence."""


@dataclass
class Target:
    view: StackView
    key: str
    timeout: float = 10.0

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.key}

    def url(self, service: str) -> str | None:
        if service == "fake_cell":
            return self.view.cell_url
        if service == "controller":
            return self.view.controller_url
        return self.view.url_of(service)

    def serving(self, service: str) -> bool:
        """Running (or external) and healthy by the daemon's account."""
        row = self.view.rows.get(service) or {}
        return bool(row.get("state") in ("running", "external") and row.get("healthy"))

    def cell(self, method: str, path: str, body: Any = None) -> Outcome:
        return call(method, self.view.cell_url + path, body, headers=self.headers,
                    timeout=self.timeout)

    def at(self, service: str, method: str, path: str, body: Any = None,
           headers: Mapping[str, str] | None = None) -> Outcome:
        base = self.url(service)
        if base is None:
            raise TargetError(f"{service} has no URL in this stack")
        return call(method, base.rstrip("/") + path, body,
                    headers=self.headers if headers is None else headers, timeout=self.timeout)

    def new_index(self, mode: str) -> str:
        name = f"hippodrome-probe-{mode}-{secrets.token_hex(4)}"
        made = self.at("controller", "POST", "/api/v2/indexes",
                       {"indexName": name, "settings": {"type": "probe"}})
        if not made.ok:
            raise TargetError(f"cannot create the probes' index: {made.text()}")
        return name

    def drop_index(self, name: str) -> None:
        self.at("controller", "DELETE", "/api/v2/indexes/" + seg(name))

    def search_ids(self, index: str, q: str, *, filter_text: str | None = None,
                   via: str = "fake_cell", limit: int = 1000) -> list[str]:
        """The hit ids in order; a failed call raises AssertionError naming it."""
        body: dict[str, Any] = {"q": q, "limit": limit}
        if filter_text is not None:
            body["filter"] = filter_text
        answer = self.at(via, "POST", f"/indexes/{seg(index)}/search", body)
        assert answer.ok, f"search failed: {answer.text()}"
        hits = (answer.body or {}).get("hits")
        assert isinstance(hits, list), f"search answered without a hits list: {answer.body!r}"
        return [str(h.get("_id")) for h in hits]

    def need(self, outcome: Outcome) -> Any:
        assert outcome.ok, outcome.text()
        return outcome.body


def make_target(root: Path, view: StackView) -> Target:
    """The seeded account's key (or the probes' own), as the data path finds it."""
    from hippo_platform.seed.probe_pass import StepFailed, probe_key  # one place decides the key

    if view.cell != "local":
        raise TargetError(f"not run against the '{view.cell}' cell: the probes write "
                          "documents and rules, so only the local cell")
    try:
        key, _where = probe_key(root, view)
    except StepFailed as exc:
        raise TargetError(f"no API key for the probes: {exc}") from None
    return Target(view, key)
