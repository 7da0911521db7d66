"""`POST /webhook/eventbridge`: EventBridge events routed to local services by detail-type.

Four modules over the daemon's HTTP core: `receive` (who may post, and reading the
event), `forward` (the HTTP/1.1 client to the target services), `routing` (the
routes, the handler, and what each delivery leaves behind), `record` (the recording
of every delivery on disk).

The answers are the contract of DESIGN section 4 and the reference README, word for
word: forwarded `200 {"webhook_status": "forwarded", "target": "localhost:PORT",
"service_response": ...}`, unrouted `200 {"status": "ignored", "reason": "No route
configured for detail-type: T"}`, `400 {"error": "Missing 'detail-type' field in
event"}`, target down `503 {"error": "Service unavailable: ..."}`, and 401 without the
`x-hippodrome-webhook-token` header when the daemon has a token. Routes are the stack
file's `[[routes]]`, in order; the first prefix that matches wins.

Where the contract leaves a choice open, and why:

- Bodies over 256 KiB get 413: EventBridge's own limit per event, so every real event
  fits and nothing bigger is ever parsed. Over-limit bodies up to 8 MiB are read and
  dropped first, so the client reads the 413 instead of a connection reset; past that
  the connection is closed. A body missing Content-Length (or chunked) is 411; an
  invalid one 400, and the connection closes, since its end cannot be known.
- A body that does not arrive within HIPPODROME_WEBHOOK_READ_TIMEOUT seconds (10) is
  408 and the connection closes: a stuck client costs its own thread, never others.
- Strict JSON: UTF-8 only, no NaN/Infinity, an object, `detail-type` a string, so
  whatever is forwarded every consumer can parse. The bytes are forwarded as received.
- Who may post (see `guard`): with a token, whoever sends it, with any JSON-ish
  Content-Type (none, JSON types, text/plain, and the form type `curl -d` sends by
  default; multipart and the rest are 415). Without a token (the default), only
  requests to a loopback Host name, without another site's Origin, and with a JSON
  Content-Type: 403/415 otherwise, so no web page can make the browser post an event.
- The target's answer: JSON is passed on as `service_response`; anything else as
  `{"raw": <its first 4 KiB as text>}`. A 2xx answer is our 200 with exactly the
  contract's keys; a 4xx/5xx answer keeps the target's status and adds
  `"service_status"`, so EventBridge (which retries 5xx and 429) sees the failure.
  A 3xx, a malformed answer or one over 1 MiB is 502.
- A target silent for HIPPODROME_WEBHOOK_TIMEOUT seconds (5) is 504 naming it, and
  that connection is dropped so a late answer is never read as the next event's.
- Connections to targets are kept alive, a few idle ones per port: a new TCP
  connection per event would cost more than the whole forward. A pooled connection
  the service closed while idle (it restarted, or its keep-alive timeout passed) shows
  its end before anything is sent on it and is dropped unused, else every restart
  would cost an event; one reset before any byte of the event went is retried once on
  a fresh one. Once a byte went, a connection closed or reset without an answer is
  502 and not sent again: the service may have read the event and failed while
  acting on it, or acted and closed with bytes unread (which the kernel turns into a
  reset, adv59 F1), and a resend would hand it the event twice (EventBridge may still
  retry the 502 itself). A refused connection is 503. The HTTP/1.1 client is a small
  hand-written one (see hippo_contract/http_client.py for the profile that made it
  worth it).

Every request is recorded in `Webhook.deliveries` (the dashboard reads those keys)
and, when it had a target, noted in that service's log. Log notes are handed to the
engine's loop, which alone writes logs, in batches 50 ms apart: waking the loop per
event cost a third of the daemon's CPU per event and put millisecond stalls into the
forwarding thread's latency. The token is compared in constant time and never logged,
nor passed on to the services. Every request whose event could be read is also
appended to the run's recording (`record`, off with `up --no-record`), which
`hd events.replay` sends again.
"""
