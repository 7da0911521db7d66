"""The event tools: one event through the webhook, the recordings, and a replay.

All three go over the daemon's HTTP API, for `hd mcp` and for the daemon's own `/mcp`
alike: an event must take the webhook's own path (routing, guard, recording) to test
anything, and recordings belong to the API that lists and replays them for the page.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from hippo_tasks.mcp.backend import Stack

MAX_ANSWER_CHARS = 16_000


def send(stack: Stack, args: dict[str, Any]) -> dict[str, Any]:
    client = stack.client()
    event = {"source": args.get("source", "marqo.dynamodb"),
             "detail-type": args["detail_type"], "detail": args.get("detail", {})}
    status, answer = client.post_event(event, stack.webhook_token())
    text = json.dumps(answer, ensure_ascii=False)  # counted as the agent reads it
    if len(text) > MAX_ANSWER_CHARS:
        answer = {"truncated": text[:MAX_ANSWER_CHARS],
                  "note": f"the answer was {len(text)} characters; the first "
                          f"{MAX_ANSWER_CHARS} are shown"}
    where = answer.get("target") if isinstance(answer, dict) else None
    outcome = (answer.get("webhook_status") or answer.get("status") or answer.get("error")
               if isinstance(answer, dict) else None)
    summary = f"webhook answered {status}" + (f": {outcome}" if outcome else "") + \
        (f" (target {where})" if where else "")
    return {"ok": status < 400, "http_status": status, "answer": answer, "summary": summary}


def recordings(stack: Stack, args: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = stack.client().call("GET", "/api/events/recordings", timeout=30)
    return result


def replay(stack: Stack, args: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if "filter" in args:
        body["filter"] = args["filter"]
    if "speed" in args:
        body["speed"] = args["speed"]
        body["as_fast_as_possible"] = False
    else:
        body["as_fast_as_possible"] = True
    if "ignore" in args:
        body["ignore"] = args["ignore"]
    name = urllib.parse.quote(args["recording"], safe="")
    result: dict[str, Any] = stack.client().call(
        "POST", f"/api/events/recordings/{name}/replay", body, timeout=900)
    sent, same = result.get("sent", 0), result.get("equal", 0)
    result["summary"] = (f"replayed {sent} of {result.get('deliveries', sent)} deliveries: "
                         f"{same} answered as recorded, {sent - same} differently")
    return result
