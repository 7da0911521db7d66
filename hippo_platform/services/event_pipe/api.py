"""event_pipe's HTTP side: /healthz (ready once every stream is joined) and /stats."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hippo_platform.services.common import App, ServiceUnavailable
from hippo_platform.services.event_pipe.stats import PipeStats

NAME = "event_pipe"


def build_app(stats: PipeStats, settings: Mapping[str, Any], *, debug: bool = False) -> App:
    def health() -> dict[str, Any]:
        snap = stats.snapshot()
        waiting = [t for t in snap["tables"] if not t["positioned"]]
        if waiting:
            why = "; ".join(f"{t['table']}: {t['last_error'] or 'joining its stream'}"
                            for t in waiting)
            raise ServiceUnavailable(f"not yet following every stream ({why})")
        return {
            "relayed": snap["relayed"],
            "retrying": [t["table"] for t in snap["tables"] if t["retrying"]],
        }

    app = App(NAME, debug=debug, health=health)

    @app.router.get("/stats")
    def get_stats(_req: object) -> dict[str, Any]:
        return {**stats.snapshot(), **settings}

    return app
