"""Helpers for the record and replay tests: a real stack of event sinks behind routes,
posting through its webhook, and reading what the daemon recorded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rawhttp import json_request
from stackutil import PY, TOYS, hd, stack_header, wait_for, write_stack

SINK = str(TOYS / "event_sink.py")


def sink(name: str, port: int, *flags: str, enabled: bool = True) -> str:
    argv = [PY, SINK, "--port", str(port), *flags]
    text = f"[services.{name}]\ncommand = {json.dumps(argv)}\nport = {port}\n"
    return text + ("" if enabled else "enabled = false\n") + "\n"


def recorded_sink(root: Path, name: str, port: int, *flags: str) -> str:
    """A sink that appends each event it receives to received-NAME.jsonl (`received`)."""
    return sink(name, port, "--record", str(root / f"received-{name}.jsonl"), *flags)


def routes(*pairs: tuple[str, str]) -> str:
    return "".join(f'[[routes]]\ndetail_type_prefix = "{prefix}"\nservice = "{service}"\n'
                   f'path = "/events"\n\n' for prefix, service in pairs)


@dataclass
class Stack:
    root: Path
    dash: int
    ports: dict[str, int]
    token: str | None = None

    @property
    def events_dir(self) -> Path:
        return self.root / ".hippodrome" / "events"

    def post(self, event: Any, token: str | None = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        sent = dict(headers or {})
        if token or self.token:
            sent["x-hippodrome-webhook-token"] = token or self.token or ""
        body = raw if raw is not None else json.dumps(event).encode()
        return json_request(self.dash, body, sent)

    def api(self, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        return json_request(self.dash, data, headers, method=method, path=path)

    def files(self) -> list[Path]:
        return sorted(self.events_dir.glob("*.jsonl")) if self.events_dir.exists() else []

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for p in self.files()
                for line in p.read_text().splitlines() if line.strip()]

    def wait_lines(self, n: int) -> list[dict[str, Any]]:
        """The recording once it holds n lines (the writer batches every 50 ms)."""
        def enough() -> list[dict[str, Any]] | None:
            got = self.lines()
            return got if len(got) >= n else None

        found: list[dict[str, Any]] = wait_for(enough, 10, what=f"{n} recorded lines")
        return found

    def received(self, name: str) -> list[dict[str, Any]]:
        path = self.root / f"received-{name}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


def start(root: Path, dash: int, ports: dict[str, int], body: str,
          env: dict[str, str] | None = None, *flags: str, token: str | None = None) -> Stack:
    write_stack(root, stack_header(dash) + body)
    hd(root, "up", "--detach", *flags, check=True,
       env={"HIPPODROME_WEBHOOK_TOKEN": token or "", **(env or {})})
    return Stack(root, dash, ports, token)


def event(detail_type: str, ident: str, **detail: Any) -> dict[str, Any]:
    return {"source": "test", "detail-type": detail_type, "detail": {"id": ident, **detail}}
