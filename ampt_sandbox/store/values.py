"""Values, item sizes and TTLs of the data store (no I/O).

A value is what JSON can represent and DynamoDB can store: a dict with str
keys, a list, a str, an int, a finite float, a bool, or None as a field.

Sizes are counted the way DynamoDB counts them, as the page "DynamoDB item
sizes and formats" of the Amazon DynamoDB developer guide describes:

- a string or attribute name: its UTF-8 bytes;
- a number: one byte per two significant digits, plus one (an estimate in
  DynamoDB's own words);
- a bool or null: one byte;
- a list or map: three bytes, plus one byte per element.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import ValidationError
from .keys import key_error

MAX_ITEM_BYTES = 400 * 1024

# DynamoDB stores at most 32 levels of nested lists and maps.
# NOTE: DynamoDB counts the top-level attribute as a level, and how the
# cloud wraps ``value`` in its item is not documented, so the exact
# boundary here may differ from the cloud's by one level.
MAX_NESTING = 32

# DynamoDB numbers: 38 significant digits, magnitude from 1E-130 to just
# below 1E+126.
MAX_NUMBER_DIGITS = 38
MIN_NUMBER_MAGNITUDE = 1e-130
NUMBER_MAGNITUDE_LIMIT = 10**126
FLOAT_MAGNITUDE_LIMIT = 1e126

# A numeric ttl below ten years of seconds counts from now; above, it is an
# absolute epoch time in seconds.
RELATIVE_TTL_LIMIT = 315_360_000
# 9999-12-31T23:59:59Z: the last second a Python datetime can represent.
MAX_TTL_SECONDS = 253_402_300_799

INVALID_TTL = "Invalid ttl value."

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ALLOWED_TYPES = "use a dict, list, str, int, float, bool or None"


def format_path(path: list[Any]) -> str:
    """Format a location inside a value the way Python indexes it: ``value["a"][2]``."""
    text = str(path[0])
    for part in path[1:]:
        if isinstance(part, str):
            quoted = json.dumps(part, ensure_ascii=False)
            if not quoted.isascii() and _has_surrogate(part):
                # Escape a lone surrogate, which the message could not be printed with.
                quoted = json.dumps(part)
            text += f"[{quoted}]"
        else:
            text += f"[{part!r}]"
    return text


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _value_error(path: list[Any], problem: str) -> ValidationError:
    return ValidationError(f"Invalid value at {format_path(path)}: {problem}")


def check_value(value: Any, root: str = "value") -> Any:
    """Return a plain copy of ``value`` after checking that the store can hold it.

    Subclasses of dict, list, str, int and float become the base types, so a
    caller that later changes its own objects cannot change stored data.

    Raises:
        ValidationError: naming where the first invalid part sits, as in
            ``value["a"][2]``.
    """
    return _check(value, [root], 0)


def _check(value: Any, path: list[Any], depth: int) -> Any:
    if value is None or value is True or value is False:
        return value

    if isinstance(value, str):
        _check_text(value, path)
        return str(value)
    if isinstance(value, int):
        check_number(value, path)
        return int(value)
    if isinstance(value, float):
        check_number(value, path)
        return float(value)

    if isinstance(value, (dict, list)):
        if depth >= MAX_NESTING:
            raise _value_error(
                path, f"lists and dicts are nested more than {MAX_NESTING} levels deep"
            )
        if isinstance(value, list):
            copy: list[Any] = []
            for index, element in enumerate(value):
                path.append(index)
                copy.append(_check(element, path, depth + 1))
                path.pop()
            return copy
        result: dict[str, Any] = {}
        for field, element in value.items():
            path.append(field)
            if not isinstance(field, str):
                raise _value_error(
                    path, f"a dict key must be a str, not a {type(field).__name__}"
                )
            _check_text(field, path)
            result[str(field)] = _check(element, path, depth + 1)
            path.pop()
        return result

    if isinstance(value, tuple):
        problem = "a tuple cannot be stored; use a list"
    else:
        problem = f"a {type(value).__name__} cannot be stored; {_ALLOWED_TYPES}"
    raise _value_error(path, problem)


def _check_text(text: str, path: list[Any]) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _value_error(
            path, "the string contains a lone surrogate, which is not valid UTF-8"
        ) from None


def check_number(number: int | float, path: list[Any]) -> None:
    """Check that DynamoDB can store ``number``.

    Raises:
        ValidationError: the number is NaN or infinite, outside DynamoDB's
            range, or has more than 38 significant digits.
    """
    if isinstance(number, float):
        if not math.isfinite(number):
            raise _value_error(path, f"{number!r} is not a JSON number; {_ALLOWED_TYPES}")
        magnitude = abs(number)
        if magnitude and not MIN_NUMBER_MAGNITUDE <= magnitude < FLOAT_MAGNITUDE_LIMIT:
            raise _value_error(path, f"{number!r} is outside the range 1E-130 to 1E+126")
        return

    magnitude = abs(number)
    if magnitude >= NUMBER_MAGNITUDE_LIMIT:
        raise _value_error(path, "the int is outside the range 1E-130 to 1E+126")
    if len(str(magnitude).rstrip("0")) > MAX_NUMBER_DIGITS:
        raise _value_error(
            path, f"{number} has more than {MAX_NUMBER_DIGITS} significant digits"
        )


def attribute_size(value: Any) -> int:
    """Return the size of an attribute value, without its name, as DynamoDB counts it."""
    if value is None or value is True or value is False:
        return 1
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8"))
    if isinstance(value, (int, float)):
        return number_size(value)
    if isinstance(value, dict):
        size = 3
        for field, element in value.items():
            size += attribute_size(field) + attribute_size(element) + 1
        return size
    size = 3
    for element in value:
        size += attribute_size(element) + 1
    return size


def number_size(number: int | float) -> int:
    """Return the size of a number: one byte per two significant digits, plus one."""
    if isinstance(number, float):
        mantissa = repr(abs(number)).split("e")[0].replace(".", "")
    else:
        mantissa = str(abs(number))
    digits = len(mantissa.strip("0")) or 1
    return (digits + 1) // 2 + 1


def item_size(attributes: dict[str, Any]) -> int:
    """Return the size of an item given as its stored attributes (name to value)."""
    return sum(
        attribute_size(name) + attribute_size(value) for name, value in attributes.items()
    )


def check_item_size(attributes: dict[str, Any], key: str) -> None:
    """Raise ValidationError when the item is larger than DynamoDB's 400 KB."""
    size = item_size(attributes)
    if size > MAX_ITEM_BYTES:
        text = (
            f"Item size of {size / 1024:.2f} KB is greater than the maximum size of 400 KB."
        )
        raise key_error(text, key)


def resolve_ttl(ttl: Any, now_ms: int, key: str) -> int | None:
    """Return the expiry time that ``ttl`` sets, in epoch milliseconds.

    A number below 315,360,000 counts seconds from ``now_ms``, and a larger
    one is an epoch time in seconds. An ISO 8601 string is an absolute time,
    read as UTC when it has no offset because the cloud's functions run in
    UTC. None returns None, which removes the TTL.

    Raises:
        ValidationError: "Invalid ttl value." for anything else, or a time
            after 9999-12-31.
    """
    if ttl is None:
        return None

    if isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        if not math.isfinite(ttl):
            raise _ttl_error(ttl, key)
        if ttl < RELATIVE_TTL_LIMIT:
            expires_ms = now_ms + round(ttl * 1000)
        else:
            expires_ms = round(ttl * 1000)
    elif isinstance(ttl, str):
        try:
            moment = datetime.fromisoformat(ttl.strip())
        except ValueError:
            raise _ttl_error(ttl, key) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        expires_ms = (moment - _EPOCH) // timedelta(milliseconds=1)
    else:
        raise _ttl_error(ttl, key)

    if expires_ms > MAX_TTL_SECONDS * 1000:
        raise _ttl_error(ttl, key)
    return expires_ms


def _ttl_error(ttl: Any, key: str) -> ValidationError:
    text = (
        f"{INVALID_TTL} Use seconds from now (below {RELATIVE_TTL_LIMIT}), epoch seconds, "
        f"an ISO 8601 date string or datetime up to 9999-12-31, or None; got {ttl!r}"
    )
    return key_error(text, key)
