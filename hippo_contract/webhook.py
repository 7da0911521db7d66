"""The daemon's EventBridge webhook, as its senders see it (DESIGN section 4).

event_pipe (platform) posts to it with the token, the daemon (orchestrator) checks it,
and the EventBridge connection made by `up --enable-events` sends it as an API key.
"""

TOKEN_HEADER = "x-hippodrome-webhook-token"
WEBHOOK_PATH = "/webhook/eventbridge"


def token_problem(token: str) -> str:
    """Why `token` cannot be the webhook's token, in words that never quote it; '' when
    it can. A header's value is sent as the token's UTF-8 bytes and read back with the
    spaces and tabs around it dropped: a token with a control character (a carriage
    return left by a file with Windows line endings) cannot be sent at all, one with
    whitespace at either end arrives without it, and one that is not text (bytes of
    no UTF-8 in the environment) cannot be encoded. Each made a webhook that refused
    every request, its own senders' too."""
    if token[-1:] == "\r":
        return ("it ends with a carriage return (\\r), as a token read from a file with "
                "Windows line endings does")
    if token != token.strip():
        return "it starts or ends with whitespace, which HTTP drops from a header"
    if any(c < " " or "\x7f" <= c <= "\x9f" for c in token):
        return "it holds a control character (a line break, a tab...), which no header carries"
    if any("\ud800" <= c <= "\udfff" for c in token):
        return "it holds bytes that are not UTF-8"
    if len(token.encode("utf-8")) > MAX_TOKEN_BYTES:
        return (f"it is longer than the {MAX_TOKEN_BYTES} bytes a token may be (a header "
                "line holds 64 KiB at most, and the webhook answered every request 431)")
    return ""


MAX_TOKEN_BYTES = 4096
"""The longest token taken: far below the 64 KiB header line the daemon reads, past
which every request, its own senders' too, was refused 431."""
