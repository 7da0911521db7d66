"""Who may reach the daemon: the Host and Origin rules, written once for every route.

A web page the user has open elsewhere can make the browser send requests to
127.0.0.1 (a form POST to /api/stack/stop, a no-cors `fetch` to the webhook), or rebind
its own hostname to 127.0.0.1 and then read the answers as its own. Browsers always
send `Host` as the name the page used, and send `Origin` on every cross-site POST, so
two checks close both doors: the Host must be a loopback name, and a request that
changes something must not carry another site's Origin. A request that reads
(`<img src=.../api/...>`, a no-cors fetch) carries no Origin, but the browser's
Sec-Fetch-Site says it came from another site's page: refused too, unless it is a
top-level navigation.

The control API applies them as `refusal` (Host only when the daemon listens on
loopback: bound to 0.0.0.0 in Docker it is reached by other names). The webhook is
meant for the tunnel and is guarded by its token; without a token (no
`--enable-events`) it applies `webhook_refusal`, which is stricter: loopback Host
names whatever the bind address (in Docker, `docker run -p 9000:9000` is still reached
as localhost from the host; a caller that must use another name sets a token), and no
body type a browser may send cross-site without a preflight.
"""

from __future__ import annotations

from typing import NamedTuple

from hippo_contract.http_head import Headers

PROXY_HEADERS = ("Cf-Connecting-Ip", "Cf-Ray", "X-Forwarded-For", "Ngrok-Trace-Id")
"""Headers the tunnel tools add: such a request came from the internet, not this machine."""
TUNNEL_PATHS = frozenset({"/webhook/eventbridge"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
BROWSER_SIMPLE_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded",
                                  "multipart/form-data"})
"""The body types a page may POST to any site without asking first (CORS "simple")."""


class Refusal(NamedTuple):
    """Why a request may not go on: a status (403 or 415) and a sentence saying what to do."""

    status: int
    message: str


def host_name(host_header: str) -> str:
    """The name part of a Host header: `localhost:9000` -> `localhost`, `[::1]:9000` -> `[::1]`.
    After a last `:` that is not a port (`127.0.0.1:80@evil.example`, `localhost:a b`,
    `127.0.0.1:99999999`) the whole header is the name, which no check takes for loopback:
    the part was passed over, and such a Host was let in (adv41 I/5)."""
    if host_header.endswith("]"):
        return host_header.lower()
    name, colon, port = host_header.rpartition(":")
    if colon and (port == "" or port.isascii() and port.isdigit() and len(port) <= 5
                  and int(port) <= 65535):
        return name.lower()
    return host_header.lower()


def is_loopback_name(name: str) -> bool:
    """localhost, [::1], or an address of 127.0.0.0/8 written as a browser sends it (four
    plain decimal parts): `HIPPODROME_DASHBOARD_HOST=127.0.0.2` served a daemon whose own
    webhook refused its Host. A name that resolves there (a rebinding page's) is not one."""
    if name in LOOPBACK_NAMES:
        return True
    parts = name.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(
        p.isascii() and p.isdigit() and str(int(p)) == p and int(p) < 256 for p in parts)


def _foreign_host(host: str, hint: str) -> str | None:
    if is_loopback_name(host_name(host)):
        return None
    return f"Host {host!r} is not this machine's loopback; {hint}"


def _foreign_origin(headers: Headers) -> str | None:
    origin = headers.get("Origin")
    if origin is None or origin == f"http://{headers.get('Host') or ''}":
        return None
    return f"cross-origin request from {origin!r} refused"


def _other_sites_page(method: str, headers: Headers) -> str | None:
    """A request another site's page made the browser send: an `<img>` or no-cors
    fetch carries no Origin, but browsers say where it came from in Sec-Fetch-Site
    (another port of 127.0.0.1 is `same-site`, another host `cross-site`). Only a
    top-level navigation (a link or a typed address) comes through: reading the page or
    the JSON in a tab of its own is the user's doing. A value that is none of the four a
    browser sends counts as another site's (`same-origin, cross-site`, two fields joined
    by a proxy, passed: adv51 H/3)."""
    given = headers.get("Sec-Fetch-Site")
    site = (given or "").strip().lower()
    if given is None or site in ("same-origin", "none"):  # (present and empty: refused)
        return None
    if method == "GET" and (headers.get("Sec-Fetch-Mode") or "").lower() == "navigate" \
            and (headers.get("Sec-Fetch-Dest") or "").lower() == "document":
        return None
    return (f"a request from another site's page ({site}) refused: the API answers the "
            "dashboard, `hd` and scripts, not other pages")


def refusal(path: str, method: str, headers: Headers,
            loopback_only: bool) -> Refusal | None:
    """Why a request may not reach the control API or the page, or None.

    The webhook's path is exempt here: `webhook_refusal` decides for it, since it is
    meant to be reached through the tunnel.
    """
    if path in TUNNEL_PATHS:
        return None
    if any(h in headers for h in PROXY_HEADERS):
        return Refusal(403, "only POST /webhook/eventbridge is reachable through the events "
                            "tunnel")
    if loopback_only:
        why = _foreign_host(headers.get("Host") or "", "open the dashboard at 127.0.0.1")
        if why is not None:
            return Refusal(403, why)
    why = _other_sites_page(method, headers)
    if why is not None:
        return Refusal(403, why)
    if method != "GET":
        why = _foreign_origin(headers)
        if why is not None:
            return Refusal(403, why)
    return None


def media_type(headers: Headers) -> str:
    """`Content-Type` without parameters, lower case; '' when absent."""
    return (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()


def webhook_refusal(headers: Headers, url: str = "http://127.0.0.1:PORT") -> Refusal | None:
    """Why a token-less webhook request may not go on, or None. `url`: the daemon's
    own (with HIPPODROME_DASHBOARD_HOST=127.0.0.2 the advice named 127.0.0.1, where
    nothing listened).

    A missing Content-Type is refused too: `fetch(url, {mode: "no-cors", body: blob})`
    sends none, without a preflight.
    """
    how = (f"post from this machine to {url}/webhook/eventbridge with curl or `hd "
           "events.send`, or set HIPPODROME_WEBHOOK_TOKEN and send it in "
           "x-hippodrome-webhook-token")
    why = _foreign_host(headers.get("Host") or "", "without a webhook token the webhook "
                        "answers only requests to localhost, [::1] or an address of "
                        "127.0.0.0/8 as written in full: " + how)
    if why is not None:
        return Refusal(403, why)
    why = _foreign_origin(headers)
    if why is not None:
        return Refusal(403, f"{why}: web pages may not post events; {how}")
    ctype = media_type(headers)
    if ctype in BROWSER_SIMPLE_TYPES or not ctype:
        shown = f"Content-Type '{ctype}'" if ctype else "a missing Content-Type"
        return Refusal(415, f"{shown} is refused without a webhook token (a web page could "
                            "send it from another site): send the event with "
                            "-H 'Content-Type: application/json'")
    return None
