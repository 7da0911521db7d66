"""What every flow test needs from .env.e2e: the service URLs, the seeded API key, and
one small JSON-over-HTTP helper on the standard library (no client library to install)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Answer:
    status: int
    body: Any


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         raw: bytes | None = None, timeout: float = 20) -> Answer:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    sent = {"content-type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            status, text = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read()
    try:
        return Answer(status, json.loads(text) if text.strip() else None)
    except ValueError:
        return Answer(status, text.decode("utf-8", "replace"))


def answers(url: str) -> bool:
    try:
        return call("GET", url + "/healthz", timeout=3).status == 200
    except OSError:
        return False


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(0.2)


@dataclass
class Stack:
    env: dict[str, str]
    key: str

    def url(self, service: str) -> str:
        name = f"{service.upper()}_URL"
        value = self.env.get(name)
        if not value:
            pytest.skip(f"{name} is not in .env.e2e: this stack has no {service}")
        return value.rstrip("/")

    @property
    def auth(self) -> dict[str, str]:
        return {"x-api-key": self.key}

    def cell_docs(self, index: str) -> list[dict[str, Any]]:
        got = call("POST", f"{self.url('marqo_base')}/indexes/{index}/search",
                   {"q": "", "limit": 1000}, self.auth)
        assert got.status == 200, got.body
        return sorted(({k: v for k, v in h.items() if k != "_score"} for h in got.body["hits"]),
                      key=lambda d: str(d["_id"]))

    def new_index(self, settings: dict[str, Any] | None = None) -> str:
        name = "e2e-" + uuid.uuid4().hex[:10]
        made = call("POST", f"{self.url('controller')}/api/v2/indexes",
                    {"indexName": name, "settings": settings or {}}, self.auth)
        assert made.status == 201, made.body
        return name

    def add_docs(self, index: str, docs: list[dict[str, Any]]) -> None:
        added = call("POST", f"{self.url('marqo_base')}/indexes/{index}/documents",
                     {"documents": docs}, self.auth)
        assert added.status == 200, added.body


@pytest.fixture(scope="session")
def stack() -> Stack:
    env = dict(os.environ)
    if env.get("ENVIRONMENT") != "hippodrome" or not env.get("HIPPODROME_API_KEY"):
        pytest.skip("not run against a Hippodrome stack: use `invoke e2e hippo_platform.e2e "
                    "-- --pyargs` (it loads .env.e2e)")
    return Stack(env, env["HIPPODROME_API_KEY"])


@pytest.fixture
def cleanup(stack: Stack) -> Iterator[list[str]]:
    """Indexes (and aliases, as 'alias:NAME') a test made, removed afterwards."""
    made: list[str] = []
    yield made
    for name in reversed(made):
        if name.startswith("alias:"):
            call("DELETE", f"{stack.url('controller')}/api/v2/aliases/{name[6:]}",
                 headers=stack.auth)
        else:
            call("DELETE", f"{stack.url('controller')}/api/v2/indexes/{name}",
                 headers=stack.auth)
