"""Task declarations that do not import invoke, so `hd`'s fast path can run them.

`@task(help=...)` here records invoke's options on the plain function; `as_task` turns
it into invoke's `Task` (the same `Task(body, **options)` invoke's own decorator
builds) only when the namespace is built. The function itself stays an ordinary
callable: `hd status` can call it without paying for invoke's import (about 0.17 s:
it loads `unittest.mock`, a vendored yaml and `email` before any task runs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = "__hd_task_options__"
_TASK = "__hd_invoke_task__"


def task(**options: Any) -> Callable[[F], F]:
    """Declare a task with invoke's `@task` options, without importing invoke."""

    def declare(fn: F) -> F:
        setattr(fn, _OPTIONS, options)
        return fn

    return declare


def as_task(fn: Any) -> Any:
    """The invoke Task for a declared function (built once, so the top-level and the
    `control.` names share one Task, as they did with invoke's decorator); anything
    else (already a Task) is returned as it is."""
    options = getattr(fn, _OPTIONS, None)
    if options is None:
        return fn
    built = getattr(fn, _TASK, None)
    if built is None:
        from invoke.tasks import Task

        built = Task(fn, **options)
        setattr(fn, _TASK, built)
    return built
