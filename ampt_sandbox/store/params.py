"""Parsing of the JSON params that each DataStore call receives (no I/O).

The store never trusts its caller: the Python SDK checks its arguments, but
the ``data`` commands and runtimes in other languages call the store too.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ValidationError
from .index import Entry
from .keys import Key, describe_key, parse_query, parse_removal_key

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_BATCH = 25


def get_params(
    key_or_pattern: Any,
    *,
    limit: Any = DEFAULT_LIMIT,
    reverse: Any = False,
    start: Any = None,
    meta: Any = False,
    label: Any = None,
) -> dict[str, Any]:
    """Build the params of a ``get`` call; ``start`` and ``label`` are left out when None."""
    params: dict[str, Any] = {"key": key_or_pattern, "limit": limit, "reverse": reverse, "meta": meta}
    if start is not None:
        params["start"] = start
    if label is not None:
        params["label"] = label
    return params


def encode_label_start(label_name: str, key: str) -> str:
    # A label page resumes after a (label name, key) pair, since many items
    # may carry the same label value.
    return json.dumps([label_name, key], ensure_ascii=False)


def decode_label_start(start: Any) -> Entry | None:
    if start is None:
        return None
    try:
        decoded = json.loads(start) if isinstance(start, str) else None
    except ValueError:
        decoded = None
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or not all(isinstance(part, str) for part in decoded)
    ):
        raise ValidationError(
            f"Invalid 'start': {start!r} is not a last_key returned by a get_by_label"
        )
    return (decoded[0], decoded[1])


def check_params(method: str, params: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(params) - allowed
    if unknown:
        raise ValidationError(
            f"Unknown parameters for data.{method}: {', '.join(sorted(map(str, unknown)))}; "
            f"expected {', '.join(sorted(allowed))}"
        )


def required(params: dict[str, Any], name: str) -> Any:
    if name not in params:
        raise ValidationError(f"The parameter '{name}' is required")
    return params[name]


def bool_param(params: dict[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValidationError(f"'{name}' must be true or false, got {value!r}")
    return value


def limit_param(params: dict[str, Any]) -> int:
    limit = params.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError("'limit' must be between 1 and 1000")
    return limit


def batch_keys(keys: list[Any], verb: str, *, removal: bool = False) -> list[str]:
    # The cloud's messages name "keys" for a batch get and "items" for the others.
    noun = "key" if verb == "get" else "item"
    if not keys:
        raise ValidationError(f"You must provide at least one {noun}")
    if len(keys) > MAX_BATCH:
        raise ValidationError(
            f"You may only provide a maximum of {MAX_BATCH} {noun}s in one batch {verb} request"
        )
    parsed = []
    for key in keys:
        if removal:
            parsed.append(parse_removal_key(key).text)
            continue
        query = parse_query(key)
        if not isinstance(query, Key):
            raise ValidationError(
                f"Invalid key: a batch get takes exact keys, not patterns (key {describe_key(key)})"
            )
        parsed.append(query.text)
    if len(set(parsed)) != len(parsed):
        raise ValidationError("Provided list of item keys contains duplicates")
    return parsed
