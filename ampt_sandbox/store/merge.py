"""How ``set`` and ``add`` combine a new value with the stored one (no I/O).

Merge mode: when the stored value and the new value are both dicts, the
top-level fields are merged, a field set to None is removed, nested values
are replaced whole, and fields not given are kept. ``{"$add": n}`` adds
``n`` to the whole value or, as a field's value, to that field. A missing
number starts at 0, or at ``default``'s number when it gives one.
"""

from __future__ import annotations

from typing import Any

from ..errors import DataError, ValidationError
from .values import check_number, format_path

ADD = "$add"

RESERVED_ADD = "'$add' is a reserved keyword and must be in an object with a single key of $add"
ADD_NEEDS_NUMBER = "'value' must be a number when using $add"
VALUES_MUST_BE_NUMERIC = "Values must be numeric"
DEFAULT_WITH_ADD = "'default' cannot use the $add keyword"
DEFAULT_TYPE = "'default' must be of the same type as the value"
CANNOT_CONVERT = "Cannot convert an existing object to a simple value."


class _Missing:
    """The stored value of an item that does not exist."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        if ADD in value:
            return "number"
        return "dict"
    if is_number(value):
        return "number"
    return type(value).__name__


def _contains_add(value: Any) -> bool:
    if isinstance(value, dict):
        return ADD in value or any(_contains_add(element) for element in value.values())
    if isinstance(value, list):
        return any(_contains_add(element) for element in value)
    return False


def _add_amount(operation: dict[str, Any]) -> Any:
    """Return the amount of a ``{"$add": n}`` dict, which may hold no other key."""
    if len(operation) != 1:
        raise ValidationError(RESERVED_ADD)
    return operation[ADD]


def _reject_nested_add(value: Any, path: list[Any]) -> None:
    """Reject ``$add`` below the top-level fields, where it would be stored as data."""
    if isinstance(value, dict):
        if ADD in value:
            if len(value) != 1:
                raise ValidationError(RESERVED_ADD)
            raise ValidationError(
                f"'$add' works only on the whole value or on one of its top-level fields, "
                f"not at {format_path(path)}"
            )
        for field, element in value.items():
            _reject_nested_add(element, [*path, field])
    elif isinstance(value, list):
        for index, element in enumerate(value):
            _reject_nested_add(element, [*path, index])


def _added(current: Any, amount: int | float, path: list[Any]) -> int | float:
    if not is_number(current):
        raise DataError(VALUES_MUST_BE_NUMERIC)
    total = current + amount
    check_number(total, path)
    return total


def merge_value(
    stored: Any,
    new: Any,
    *,
    default: Any = None,
    remove_nulls: bool = False,
) -> Any:
    """Return the value that ``set`` stores.

    ``stored`` is MISSING when the item does not exist (or when ``set``
    overwrites it). ``new`` and ``default`` must have passed ``check_value``.

    Raises:
        ValidationError: misuse of ``$add``, a ``default`` of another type,
            a non-dict value over a stored dict, or None without a default.
        DataError: ``$add`` on a value or field that is not a number.
    """
    if default is not None:
        if _contains_add(default):
            raise ValidationError(DEFAULT_WITH_ADD)
        if new is not None and _kind(new) != _kind(default):
            raise ValidationError(DEFAULT_TYPE)

    if new is None:
        if default is None:
            raise ValidationError(
                "Invalid value: the value is None; pass a value, or a 'default' to write "
                "when the item is missing"
            )
        return _apply_default(stored, default, remove_nulls)

    if isinstance(new, dict) and ADD in new:
        amount = _add_amount(new)
        if not is_number(amount):
            raise ValidationError(ADD_NEEDS_NUMBER)
        if stored is MISSING:
            stored = 0 if default is None else default
        return _added(stored, amount, ["value"])

    if isinstance(new, dict):
        return _merge_fields(stored, new, default, remove_nulls)

    if isinstance(stored, dict):
        raise ValidationError(CANNOT_CONVERT)
    _reject_nested_add(new, ["value"])
    return new


def _apply_default(stored: Any, default: Any, remove_nulls: bool) -> Any:
    if stored is MISSING:
        if isinstance(default, dict) and not remove_nulls:
            return {field: value for field, value in default.items() if value is not None}
        return default
    if isinstance(stored, dict) and isinstance(default, dict):
        result = dict(stored)
        for field, value in default.items():
            if field not in result and (value is not None or remove_nulls):
                result[field] = value
        return result
    return stored


def _merge_fields(
    stored: Any, new: dict[str, Any], default: Any, remove_nulls: bool
) -> dict[str, Any]:
    result = dict(stored) if isinstance(stored, dict) else {}
    defaults = default if isinstance(default, dict) else {}

    for field, value in new.items():
        if isinstance(value, dict) and ADD in value:
            amount = _add_amount(value)
            if not is_number(amount):
                raise DataError(VALUES_MUST_BE_NUMERIC)
            current = result.get(field, MISSING)
            if current is MISSING:
                current = defaults.get(field, 0)
                if current is None:
                    current = 0
            result[field] = _added(current, amount, ["value", field])
        elif value is None and not remove_nulls:
            result.pop(field, None)
        else:
            _reject_nested_add(value, ["value", field])
            result[field] = value

    for field, value in defaults.items():
        if field not in new and field not in result and value is not None:
            result[field] = value
    return result
