"""Receiving an event: who may post (the token, or without one the browser guard), the
body's framing, size and type, and strict JSON with a string `detail-type`.
"""

from __future__ import annotations

from typing import Any

from hippo_contract.webhook import TOKEN_HEADER as TOKEN_HEADER
from hippo_tasks.daemon.guard import media_type, webhook_refusal
from hippo_tasks.daemon.httpcore import HttpError, Request, decode_json, json_type

MAX_EVENT = 256 * 1024
ACCEPTED_TYPES = ("application/json", "text/plain", "application/x-www-form-urlencoded")
MISSING_DETAIL_TYPE = "Missing 'detail-type' field in event"


class Refused(HttpError):
    """Refused before the event was read: no token or a wrong one, or (with no token) a
    request from a web page the browser guard stops. Kept apart from the deliveries:
    listed there, a page anyone visits pushed every real delivery out of the 200 kept
    with a few hundred no-cors POSTs (adv26 h/3)."""


def authorised(req: Request, token: str) -> bool:
    """The token header matches, compared in constant time. hmac is imported here: with
    hashlib it is 0.27 MB of the daemon's memory, and only a stack with a token (set
    for a tunnel) ever compares one."""
    import hmac

    given = req.headers.get(TOKEN_HEADER)
    if given is None:
        return False
    try:
        return hmac.compare_digest(given.encode("latin-1"), token.encode("utf-8"))
    except UnicodeEncodeError:
        return False


def read_event(req: Request, token: str | None, read_timeout: float,
               url: str = "http://127.0.0.1:PORT") -> tuple[dict[str, Any], bytes]:
    """The event and its bytes, once the caller may send one; refusals as HttpError."""
    body = req.body
    refusal: Refused | None = None
    if token is not None:
        given = req.headers.get_all(TOKEN_HEADER) or []
        if len(given) > 1:  # the first alone was compared: the order decided (adv46 H/4)
            refusal = Refused(400, f"{TOKEN_HEADER} given {len(given)} times: send it once")
        elif not authorised(req, token):
            refusal = Refused(401, f"Missing or invalid {TOKEN_HEADER} header")
    else:
        refused = webhook_refusal(req.headers, url)
        if refused is not None:
            refusal = Refused(refused.status, refused.message)
    if refusal is not None:
        # Before the body's framing is judged: a token-less chunked (411) or malformed
        # Content-Length (400) post was a delivery, and a sender without the token
        # pushed every real one out of the list (adv27 j/1).
        try:
            length = body.length(required=True, noun="the event")
        except HttpError:
            refusal.close = True
            raise refusal from None
        raise body.discard(length, refusal, read_timeout)
    length = body.length(required=True, noun="the event")
    ctype = media_type(req.headers)
    if ctype and ctype not in ACCEPTED_TYPES and not ctype.endswith("+json"):
        raise body.discard(length, HttpError(
            415, f"Unsupported Content-Type '{ctype}': send the event as "
                 "application/json"), read_timeout)
    raw = body.read(MAX_EVENT, read_timeout, noun="the event", length=length,
                    too_large=f"Event too large: {length} bytes; the limit "
                              f"is {MAX_EVENT} bytes (EventBridge's own maximum event size)")
    if not raw:
        raise HttpError(400, "Empty body: send the event as a JSON object")
    event = decode_json(raw, "the event")
    if not isinstance(event, dict):
        raise HttpError(400, f"Event must be a JSON object, got {json_type(event)}")
    return event, raw


def detail_type(event: dict[str, Any]) -> str:
    value = event.get("detail-type")
    if value is None or value == "":
        raise HttpError(400, MISSING_DETAIL_TYPE)
    if not isinstance(value, str):
        raise HttpError(400, f"'detail-type' must be a string, got {json_type(value)}")
    return value
