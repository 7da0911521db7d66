"""The tools' JSON schemas, as data: what an agent reads to call a tool right, and what
its arguments are checked against before anything runs (`tools.check_args`).

Inputs are closed (`additionalProperties: false`), so a misspelt argument is an error
naming it, not silently ignored. Outputs describe the fields an agent relies on and
leave room for more (the daemon's answers grow fields over time).
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

NAME = {"type": "string", "minLength": 1, "maxLength": 63,
        "pattern": "^[A-Za-z][A-Za-z0-9_-]*$"}


def service_arg(what: str) -> Schema:
    return {**NAME, "description": what}


def closed(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties,
                      "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def shape(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    """An output object: these fields at least."""
    return {"type": "object", "properties": properties, "required": list(required)}


STR_OR_NULL = {"type": ["string", "null"]}
INT_OR_NULL = {"type": ["integer", "null"]}
LINES = {"type": "array", "items": {"type": "string"}}

SERVICE_ROW = shape({
    "name": {"type": "string"},
    "state": {"type": "string", "enum": ["pending", "starting", "running", "stopping",
                                         "stopped", "backoff", "failed", "external"]},
    "ready": {"type": "boolean"}, "healthy": {"type": "boolean"},
    "pid": INT_OR_NULL, "port": INT_OR_NULL, "reason": {"type": "string"},
    "blocking": {"type": "boolean"},
}, ("name", "state", "ready"))

NOT_READY = shape({
    "service": {"type": "string"}, "state": {"type": "string"},
    "reason": {"type": "string"}, "last_lines": LINES, "log_path": STR_OR_NULL,
}, ("service", "state", "reason", "last_lines", "log_path"))

STATUS_OUT = shape({
    "profile": {"type": "string"}, "project_root": {"type": "string"},
    "dashboard_url": {"type": "string"}, "logs_dir": {"type": "string"},
    "services": {"type": "array", "items": SERVICE_ROW},
}, ("services",))

OUTCOME_OUT = shape({
    "ok": {"type": "boolean"},
    "summary": {"type": "string"},
    "services": {"type": "array", "items": SERVICE_ROW},
    "not_ready": {"type": "array", "items": NOT_READY},
    "launched": {"type": "boolean"},
    "left_out": {"type": "array", "items": {"type": "string"}},
}, ("ok", "summary", "services", "not_ready"))

START_IN = closed({
    "service": service_arg("The service to start, with what it depends on. Omit to start "
                           "the whole stack."),
    "profile": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$",
                "description": "Only when no stack is running yet (hd mcp): the stack "
                               "file's profile (the bundled stack has core, ecom, full) "
                               "to bring up with `hd up --detach` (default core)."},
})
STOP_IN = closed({
    "service": service_arg("The service to stop. Omit to stop every service (the daemon "
                           "stays up, so start can bring them back)."),
})
RESTART_IN = closed({
    "service": service_arg("The service to restart while the rest keep running. Omit to "
                           "restart the whole stack."),
    "cascade": {"type": "boolean", "default": False,
                "description": "Also restart everything that depends on the service, in "
                               "dependency order, each once the one before is ready. "
                               "Needs service."},
})

LOGS_IN = closed({
    "service": service_arg("The service whose output to read."),
    "limit": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100,
              "description": "At most this many lines (the newest ones, unless since_seq "
                             "is given)."},
    "since_seq": {"type": "integer", "minimum": 0, "maximum": 2**62,
                  "description": "Only lines after this sequence number, oldest first: "
                                 "pass a previous answer's last_seq to read what came "
                                 "since, or its next.since_seq to page on."},
    "before_seq": {"type": "integer", "minimum": 1, "maximum": 2**62,
                   "description": "Only lines before this sequence number (page backwards "
                                  "with a previous answer's next.before_seq)."},
    "since_time": {"type": ["number", "string"], "minLength": 1, "maxLength": 100,
                   "description": "Only lines logged at or after this time: Unix seconds, "
                                  "an ISO 8601 time, or a duration ago like '90s', '5m', "
                                  "'2h'."},
    "text": {"type": "string", "minLength": 1, "maxLength": 500,
             "description": "Only lines containing this text (case-insensitive)."},
    "regex": {"type": "string", "minLength": 1, "maxLength": 500,
              "description": "Only lines matching this Python regular expression "
                             "(searched, not anchored). A safe subset: no nested or "
                             "alternated repeats like (a+)+ or (a|b)+ with groups, no "
                             "backreferences or lookarounds, at most two open-ended "
                             "repeats."},
    "errors_only": {"type": "boolean", "default": False,
                    "description": "Only lines that look like errors (error, exception, "
                                   "traceback, fatal, failed...)."},
}, ("service",))

LOG_LINE = shape({"seq": {"type": "integer"}, "ts": {"type": "number"},
                  "line": {"type": "string"}, "system": {"type": "boolean"}},
                 ("seq", "ts", "line"))
LOGS_OUT = shape({
    "service": {"type": "string"},
    "lines": {"type": "array", "items": LOG_LINE},
    "last_seq": {"type": "integer"}, "first_seq": {"type": "integer"},
    "more": {"type": "boolean"}, "incomplete": {"type": "boolean"},
    "next": {"type": ["object", "null"]},
    "log_path": STR_OR_NULL, "hint": {"type": "string"},
}, ("service", "lines", "last_seq", "more", "next"))

WAIT_IN = closed({
    "services": {"type": "array", "items": NAME, "minItems": 1, "maxItems": 200,
                 "uniqueItems": True,
                 "description": "The services to wait for. Omit for the whole stack "
                                "(every blocking service; a non-blocking one that failed "
                                "does not hold it up)."},
    "timeout_s": {"type": "number", "minimum": 0, "maximum": 600, "default": 60,
                  "description": "Give up after this many seconds."},
})
WAIT_OUT = shape({
    "ready": {"type": "boolean"}, "timed_out": {"type": "boolean"},
    "waited_s": {"type": "number"}, "summary": {"type": "string"},
    "services": {"type": "array", "items": SERVICE_ROW},
    "not_ready": {"type": "array", "items": NOT_READY},
}, ("ready", "timed_out", "summary", "not_ready"))

WHY_IN = closed({"service": service_arg("The service to explain.")}, ("service",))
WHY_OUT = shape({
    "service": {"type": "string"}, "state": {"type": "string"},
    "healthy": {"type": "boolean"}, "summary": {"type": "string"},
    "blockers": {"type": "array", "items": shape({
        "service": {"type": "string"}, "state": {"type": "string"},
        "reason": {"type": "string"}, "last_lines": LINES, "log_path": STR_OR_NULL,
    }, ("service", "state"))},
}, ("service", "state", "summary", "blockers"))

EVENTS_SEND_IN = closed({
    "detail_type": {"type": "string", "minLength": 1, "maxLength": 256,
                    "description": "The event's detail-type, e.g. "
                                   "'EcomIndexSettings.MODIFY'; the stack's routes match "
                                   "its prefix."},
    "detail": {"type": "object", "description": "The event's detail object (default {})."},
    "source": {"type": "string", "minLength": 1, "maxLength": 256,
               "default": "marqo.dynamodb", "description": "The event's source."},
}, ("detail_type",))
EVENTS_SEND_OUT = shape({
    "ok": {"type": "boolean"}, "http_status": {"type": "integer"},
    "answer": {}, "summary": {"type": "string"},
}, ("ok", "http_status", "answer", "summary"))

RECORDINGS_IN = closed({})
RECORDINGS_OUT = shape({"recordings": {"type": "array", "items": shape({
    "name": {"type": "string"}, "bytes": {"type": "integer"},
    "current": {"type": "boolean"}}, ("name", "bytes"))}}, ("recordings",))
REPLAY_IN = closed({
    "recording": {"type": "string", "minLength": 1, "maxLength": 200,
                  "pattern": "^[^/\\\\]+$",
                  "description": "The recording's name, as events_recordings lists it."},
    "filter": {"type": "string", "minLength": 1, "maxLength": 256,
               "description": "Only these detail-types: T exactly, or T* for every one "
                              "starting with T."},
    "speed": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000,
              "description": "N times as fast as recorded. Omit to send each delivery as "
                             "soon as the one before was answered."},
    "ignore": {"type": "array", "items": {"type": "string", "minLength": 1},
               "maxItems": 50,
               "description": "More answer fields to leave out of the comparison."},
}, ("recording",))
REPLAY_OUT = shape({
    "ok": {"type": "boolean"}, "summary": {"type": "string"},
    "sent": {"type": "integer"}, "equal": {"type": "integer"},
    "different": {"type": "integer"}, "mismatches": {"type": "array"},
}, ("ok", "summary", "sent", "equal", "different", "mismatches"))

TASK_IN = closed({
    "timeout_s": {"type": "number", "minimum": 1, "maximum": 900, "default": 300,
                  "description": "Stop the command after this many seconds."},
})
SEED_IN = closed({
    **TASK_IN["properties"],
    "seed": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1,
             "description": "Random seed (default HIPPODROME_RANDOM_SEED, else 42)."},
})
PROBES_IN = closed({
    **TASK_IN["properties"],
    "mode": {"type": "string", "enum": ["health", "full", "fuzz"],
             "description": "health (default): every service's health and one data path; "
                            "full: property-based search checks; fuzz: a random walk over "
                            "the platform's APIs (infrastructure errors counted apart)."},
    "examples": {"type": "integer", "minimum": 1, "maximum": 1000,
                 "description": "Examples per property (full) or runs (fuzz)."},
})
TASK_OUT = shape({
    "ok": {"type": "boolean"}, "exit_code": {"type": "integer"},
    "summary": {"type": "string"}, "lines": LINES,
    "checks": {"type": "array", "items": shape({"status": {"type": "string"},
                                                 "text": {"type": "string"}},
                                                ("status", "text"))},
    "omitted_lines": {"type": "integer"},
}, ("ok", "exit_code", "summary", "lines"))
