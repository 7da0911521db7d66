"""Property: any stack file either becomes a usable plan or is refused with a HippoError.

Documents are generated over the real field names with values of the right type, the
wrong type, and the awkward corners (NaN, infinities, huge integers, NUL bytes, empty
strings, unknown keys), then written as TOML text and loaded the way `up` loads them.
A plan that comes out must hold only values the runtime can use.
"""

from __future__ import annotations

import math
import string
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippo_tasks.errors import HippoError
from hippo_tasks.model.fields import DAY
from hippo_tasks.model.loader import PROJECT_FILE, load_stack, load_stack_text
from hippo_tasks.model.plan import Options, StackPlan, build_plan

NAMES = ["api", "db", "web", "x-1", "controller", "controler", "console", "1bad", ""]
PROFILES = ["core", "ecom", "full", "extra"]
CELLS = ["local", "staging", "prod", "moon"]
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

awkward_text = st.one_of(
    st.sampled_from(["", " ", "x", "/healthz", "${port}", "${url:db}", "${url:nosuch}",
                     "${env:HOME}", "$$", "${nope}", "a\x00b", "A=B", "src/**/*.py", "/abs",
                     "**x", "([", "\r\n", "\x7f", "é", "😀"]),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
)
awkward_number = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 65535, 65536, 86_400, 86_401, 10**40, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalar = st.one_of(awkward_text, awkward_number, st.booleans())
anything = st.recursive(
    scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(awkward_text, inner, max_size=3)),
    max_leaves=8,
)


MISSING = object()
"""Stands for a key left out of the document (see `rare`)."""


def field(right: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value of the right shape, one time in ten anything at all: documents with
    many fields must still often be valid, or the property would only test refusals."""
    return st.integers(0, 9).flatmap(lambda n: anything if n == 0 else right)


def rare(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A key present one time in ten (an unknown field, say)."""
    return st.integers(0, 9).flatmap(lambda n: strategy if n == 0 else st.just(MISSING))


argv = st.lists(awkward_text, max_size=3)
SERVICE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "command": field(st.one_of(st.just(["python3", "app.py"]),
                               st.just(["python3", "app.py", "--port", "${port}"]), argv)),
    "port": field(st.integers(-5, 70_000)),
    "cwd": field(awkward_text),
    "env": field(st.dictionaries(awkward_text, st.one_of(awkward_text, awkward_number),
                                 max_size=3)),
    "profiles": field(st.lists(st.sampled_from(PROFILES), max_size=3)),
    "cells": field(st.lists(st.sampled_from(CELLS), max_size=3)),
    "depends_on": field(st.lists(st.sampled_from(NAMES), max_size=3)),
    "readiness": field(st.one_of(
        st.just("none"), st.builds(lambda p: {"http": p}, awkward_text),
        st.just({"tcp": True}), st.builds(lambda p: {"log": p}, awkward_text))),
    "start_timeout": field(awkward_number),
    "stop_timeout": field(awkward_number),
    "blocking": field(st.booleans()),
    "auto_restart": field(st.booleans()),
    "max_restarts": field(st.integers(-3, 20_000)),
    "external": field(st.booleans()),
    "external_in": field(st.lists(st.sampled_from(PROFILES), max_size=2)),
    "watch": field(st.lists(awkward_text, max_size=2)),
    "kind": field(st.sampled_from(["service", "job", "daemon"])),
    "setup": field(st.fixed_dictionaries({"command": argv, "creates": awkward_text})),
    "enabled": field(st.booleans()),
    "description": field(awkward_text),
    "prot": rare(anything),  # an unknown field
}
PLAUSIBLE_SERVICE = st.fixed_dictionaries({
    "command": st.lists(awkward_text, max_size=2).map(lambda rest: ["python3", "app.py", *rest]),
}, optional={
    "port": st.integers(1024, 60_000),
    "env": st.dictionaries(st.from_regex(r"[A-Z_]{1,6}", fullmatch=True),
                           st.one_of(awkward_text, st.integers()), max_size=3),
    "depends_on": st.lists(st.sampled_from(NAMES[:5]), max_size=2),
    "readiness": st.sampled_from(["none", {"tcp": True}, {"http": "/healthz"}, {"log": "up"}]),
    "start_timeout": st.floats(0.1, DAY),
    "stop_timeout": st.integers(0, 60),
    "kind": st.sampled_from(["service", "job"]),
    "profiles": st.lists(st.sampled_from(PROFILES[:3]), min_size=1, max_size=3),
    "watch": st.just(["src/**/*.py"]),
    "cwd": st.one_of(st.sampled_from([".", "sub", "${state_dir}"]), awkward_text),
})
"""A service table that is usually valid, so that plans with services come out too."""
STACK_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "defaults": field(st.booleans()),
    "dashboard_port": field(st.integers(-5, 70_000)),
    "log_runs_kept": field(st.integers(-1, 2000)),
    "liveness_interval": field(awkward_number),
    "liveness_failures": field(st.integers(-1, 200)),
    "backoff_initial": field(awkward_number),
    "backoff_max": field(awkward_number),
    "log_buffer_lines": field(st.integers(0, 2_000_000)),
}


def some_of(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


route = st.fixed_dictionaries({}, optional={
    "detail_type_prefix": field(awkward_text), "service": field(st.sampled_from(NAMES)),
    "path": field(st.one_of(st.just("/events"), awkward_text)), "extra": rare(anything)})
document = st.fixed_dictionaries({
    "services": field(st.dictionaries(
        st.integers(0, 9).flatmap(lambda n: st.one_of(st.sampled_from(NAMES), awkward_text)
                                  if n == 0 else st.sampled_from(NAMES[:5])),
        st.one_of(PLAUSIBLE_SERVICE, st.fixed_dictionaries(
            {"command": st.integers(0, 9).flatmap(
                lambda n: st.just(MISSING) if n == 0 else SERVICE_FIELDS["command"])},
            optional={k: v for k, v in SERVICE_FIELDS.items() if k != "command"})),
        min_size=1, max_size=4)),
}, optional={
    "stack": field(some_of(STACK_FIELDS)),
    "routes": field(st.lists(route, max_size=2)),
    "cells": field(st.dictionaries(st.sampled_from(CELLS),
                                   some_of({"url": field(awkward_text), "x": anything}),
                                   max_size=2)),
    "env": field(st.dictionaries(awkward_text, st.one_of(awkward_text, awkward_number),
                                 max_size=3)),
    "surprise": rare(anything),
})
plausible_document = st.fixed_dictionaries({
    "services": st.dictionaries(st.sampled_from(NAMES[:5]), PLAUSIBLE_SERVICE,
                                min_size=1, max_size=4),
}, optional={
    "env": st.dictionaries(awkward_text, st.one_of(awkward_text, awkward_number), max_size=2),
    "stack": st.fixed_dictionaries({}, optional={
        "dashboard_port": st.integers(1, 65535), "backoff_max": awkward_number}),
})
"""Documents that usually plan, with an awkward value or two: the refusals that matter
most (a NUL in argv, an env name with '=', a shifted port) must come from the loader,
not from some other field being wrong too."""
options = st.fixed_dictionaries({
    "profile": st.sampled_from(PROFILES),
    "cell": st.sampled_from(CELLS[:3]),
    "port_offset": st.one_of(st.just(0), st.integers(-1000, 1000), st.integers(-70_000, 70_000)),
})


def toml_key(key: str) -> str:
    return toml_str(key)


def toml_str(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)  # inf, -inf, 1e+30 are TOML
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"


def to_toml(doc: dict[str, Any]) -> str:
    """Services as [services."name"] tables where they are tables (so line lookups run),
    everything else inline."""
    doc = _present(doc)
    services = doc.get("services")
    as_tables = isinstance(services, dict) and all(isinstance(t, dict)
                                                    for t in services.values())
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items()
             if k != "services" or not as_tables]
    if as_tables:
        for name, table in services.items():  # type: ignore[union-attr]
            lines.append(f"[services.{toml_key(name)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _present(value: Any) -> Any:
    """The document without the keys `rare` left out."""
    if isinstance(value, dict):
        return {k: _present(v) for k, v in value.items() if v is not MISSING}
    if isinstance(value, list):
        return [_present(v) for v in value]
    return value


def assert_usable(plan: StackPlan) -> None:
    """What the supervisor will hand to the kernel and the event loop."""
    assert 0 < plan.dashboard_port < 65536
    for svc in plan.services:
        assert svc.port is None or 0 < svc.port < 65536
        for text in (*svc.argv, str(svc.cwd), *svc.env.values(), *svc.setup_argv):
            assert "\x00" not in text
        for name in svc.env:
            assert name and "=" not in name and "\x00" not in name
        for seconds in (svc.spec.start_timeout, svc.spec.stop_timeout):
            assert math.isfinite(seconds) and 0 <= seconds <= DAY
        assert svc.spec.kind in ("service", "job")
    for seconds in (plan.settings.liveness_interval, plan.settings.backoff_initial,
                    plan.settings.backoff_max):
        assert math.isfinite(seconds) and 0 <= seconds <= DAY


def plan_or_refuse(load: Any, opts: dict[str, Any]) -> None:
    try:
        plan = build_plan(load(), Options(project_root=Path("/p"), env={"HOME": "/h"}, **opts))
    except HippoError as exc:
        assert exc.message()  # it renders, naming what is wrong
        return
    assert_usable(plan)


@SETTINGS
@given(doc=document, opts=options)
def test_any_stack_file_is_planned_or_refused(doc: dict[str, Any], opts: dict[str, Any]) -> None:
    text = to_toml(doc)
    plan_or_refuse(lambda: load_stack_text(text, "stack.toml"), opts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=plausible_document, opts=options)
def test_plausible_stack_files_plan_only_usable_values(doc: dict[str, Any],
                                                       opts: dict[str, Any]) -> None:
    text = to_toml(doc)
    plan_or_refuse(lambda: load_stack_text(text, "stack.toml"), opts)


@settings(max_examples=80, deadline=None)
@given(doc=document, opts=options)
def test_any_project_file_over_the_bundle_is_planned_or_refused(
        doc: dict[str, Any], opts: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / PROJECT_FILE).write_text(to_toml(doc), encoding="utf-8")
        plan_or_refuse(lambda: load_stack(root), opts)


@settings(max_examples=150, deadline=None)
@given(text=st.text(st.sampled_from(string.printable + "[]{}=\"'.\x00é"), max_size=200))
def test_any_text_is_planned_or_refused(text: str) -> None:
    plan_or_refuse(lambda: load_stack_text(text, "stack.toml"), {})
