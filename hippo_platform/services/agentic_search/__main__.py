"""`python -m hippo_platform.services.agentic_search [--port 9007] [--persist] [--state-dir D]`.

A stand-in for the reference's agentic_search Cloudflare Worker: a conversation
endpoint that answers each message by searching an index through search_proxy.

    POST   /conversations/{id}/messages  {"message": "...", "index": "...", "limit": 5}
           (x-api-key: the index's key) -> {"conversationId", "reply", "hits", "turns"}
    GET    /conversations/{id}           -> {"id", "index", "messages": [...]}
    DELETE /conversations/{id}

Environment: SEARCH_PROXY_URL (the HTTP fallback for the SEARCH_PROXY_WORKER service
binding, which does not exist locally; default http://127.0.0.1:9005),
AGENTIC_SEARCH_PERSIST (1/true: as `--persist`), HIPPODROME_STATE_DIR (persisted state
goes to its `agentic_search/` folder, else `.hippodrome/state/agentic_search`),
INSPECTOR_PORT (what a real `wrangler dev --inspector-port` would use; the stand-in only
reports it), DEBUG.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from hippo_platform.services.agentic_search.conversations import Conversations
from hippo_platform.services.common import (
    App,
    BadGateway,
    BadRequest,
    NotFound,
    Request,
    Unauthorized,
    env_flag,
    shapes,
)
from hippo_platform.services.common.client import JsonClient, peer_from_env, segment
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.runner import main
from hippo_platform.services.common.state import FolderLockedError, StateFileError

NAME = "agentic_search"
DEFAULT_PORT = 9007
EXIT_CONFIG = 78  # sysexits EX_CONFIG
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")


def _checked(value: str, what: str) -> str:
    if not _ID.match(value):
        raise BadRequest(f"bad {what} {value!r}: 1-128 letters, digits, '_', '-', '.', ':', "
                         "starting with a letter or digit")
    return value


def _reply(query: str, hits: list[Any]) -> str:
    if not hits:
        return f"I found nothing for '{query}'."
    ids = ", ".join(str(h.get("_id")) for h in hits[:5] if isinstance(h, dict))
    return f"I found {len(hits)} result(s) for '{query}': {ids}."


def build_app(proxy: JsonClient, store: Conversations, *, debug: bool = False) -> App:
    def health() -> dict[str, Any]:
        return {"searchProxyUrl": proxy.base_url, "persist": store.path is not None,
                "stateFile": str(store.path) if store.path else None,
                "conversations": store.count(),
                "inspectorPort": os.environ.get("INSPECTOR_PORT") or None}

    app = App(NAME, debug=debug, health=health)
    app.close_hooks.append(store.close)

    @app.router.post("/conversations/{cid}/messages")
    def message(req: Request) -> dict[str, Any]:
        key = req.header("x-api-key")
        if not key:
            raise Unauthorized("missing x-api-key header (the index's API key)")
        cid = _checked(req.params["cid"], "conversation id")
        body = req.json_object()
        text = shapes.require_str(body, "message", max_len=2000)
        known = store.get(cid)
        index = shapes.optional_str(body, "index", known["index"] if known else "")
        if not index:
            raise BadRequest("field 'index' is required on a conversation's first message")
        _checked(index, "index name")
        limit = shapes.optional_int(body, "limit", 5, low=1, high=50)
        try:
            answer = proxy.request("POST", f"/indexes/{segment(index)}/search",
                                   body={"q": text, "limit": limit},
                                   headers={"x-api-key": key})
        except BadGateway as exc:
            raise BadGateway(f"search_proxy unreachable at {proxy.base_url} (SEARCH_PROXY_URL): "
                             f"{exc.message}; is search_proxy running?",
                             extra={"peer": "search_proxy", "url": proxy.base_url}) from None
        found = answer.body if isinstance(answer.body, dict) else {}
        proxy.check(answer)  # the proxy's 4xx as the same status; a 5xx as a 502
        raw_hits = found.get("hits")
        hits: list[Any] = raw_hits if isinstance(raw_hits, list) else []
        reply = _reply(text, hits)
        turn = store.add_turn(cid, index, [
            {"role": "user", "content": text},
            {"role": "assistant", "content": reply,
             "hits": [h.get("_id") for h in hits if isinstance(h, dict)]},
        ])
        return {"conversationId": cid, "index": index, "reply": reply, "hits": hits,
                "turns": turn["messages"]}

    @app.router.get("/conversations/{cid}")
    def show(req: Request) -> dict[str, Any]:
        cid = _checked(req.params["cid"], "conversation id")
        found = store.get(cid)
        if found is None:
            raise NotFound(f"no conversation '{cid}'"
                           + ("" if store.path else " (persistence is off: conversations "
                              "are lost on restart; run with --persist)"))
        return found

    @app.router.delete("/conversations/{cid}")
    def forget(req: Request) -> dict[str, Any]:
        cid = _checked(req.params["cid"], "conversation id")
        if not store.delete(cid):
            raise NotFound(f"no conversation '{cid}'")
        return {"conversationId": cid, "deleted": True}

    return app


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--persist", action="store_true",
                        help="keep conversations across restarts (as wrangler dev --persist)")
    parser.add_argument("--state-dir", default=None,
                        help="where persisted conversations go (default: "
                             "$HIPPODROME_STATE_DIR/agentic_search)")


def make_app(args: argparse.Namespace) -> App:
    proxy = peer_from_env(NAME, "SEARCH_PROXY_URL", "http://127.0.0.1:9005", "search_proxy")
    folder = None
    if args.persist or env_flag("AGENTIC_SEARCH_PERSIST"):
        base = os.environ.get("HIPPODROME_STATE_DIR") or ".hippodrome/state"
        folder = Path(args.state_dir or Path(base) / NAME)
    try:
        store = Conversations(folder)
    except StateFileError as exc:  # a link or a pipe where its files go: not "in use"
        log_error(f"{NAME}: {exc}")
        raise SystemExit(EXIT_CONFIG) from None
    except (FolderLockedError, OSError) as exc:
        log_error(f"{NAME}: cannot use state folder {folder}: {exc} (another agentic_search "
                  "is using it: stop that one, or give this one --state-dir)")
        raise SystemExit(EXIT_CONFIG) from None
    where = f"persisted in {store.path}" if store.path else "in memory (no --persist)"
    log_line(f"{NAME}: searching through search_proxy at {proxy.base_url}; conversations {where}")
    return build_app(proxy, store, debug=env_flag("DEBUG"))


if __name__ == "__main__":
    sys.exit(main(NAME, DEFAULT_PORT, make_app, sys.argv[1:], _add_arguments))
