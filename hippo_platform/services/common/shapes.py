"""Field checks for JSON bodies: a wrong shape is a 400 naming the field, never a 500.

Small on purpose: services validate a handful of fields each, and a schema library
would cost more memory than the checks it replaces.
"""

from __future__ import annotations

import re
from typing import Any

from hippo_platform.services.common.errors import BadRequest

INDEX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
"""The cell's index and alias names."""


def index_name(value: str, what: str = "index name") -> str:
    """`value` when the cell can name an index (or an alias) so, else a 400. One check
    for the cell and the controller: a fork's target was checked only by the cell, so
    in ecom/full a bad one was 202 RUNNING and a Step Functions execution, FAILED later,
    where core refused it at once."""
    if not INDEX_NAME.match(value):
        raise BadRequest(f"bad {what} {value!r}: 1-128 letters, digits, '_', '-', '.', "
                         "starting with a letter or digit")
    return value


def require_str(obj: dict[str, Any], key: str, *, max_len: int = 1024) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"field '{key}' is required and must be a non-empty string")
    if len(value) > max_len:
        raise BadRequest(f"field '{key}' is longer than {max_len} characters")
    return value


def optional_str(obj: dict[str, Any], key: str, default: str = "") -> str:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadRequest(f"field '{key}' must be a string")
    return value


def optional_int(obj: dict[str, Any], key: str, default: int, *, low: int, high: int) -> int:
    value = obj.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"field '{key}' must be an integer")
    if not low <= value <= high:
        raise BadRequest(f"field '{key}' must be between {low} and {high}")
    return value


def optional_object(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"field '{key}' must be a JSON object")
    return value


def require_list(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list):
        raise BadRequest(f"field '{key}' is required and must be a list")
    return value
