"""Keys, key patterns and label values of the data store (no I/O).

A key without a colon is a simple key. ``ns:rest`` is the item ``rest`` in
the collection ``ns``; further colons stay part of ``rest``. Spaces around
each colon-separated part are removed, so ``" ns : a "`` is ``ns:a``.

Label values follow the same rules, so an item can be found by its label
with the same pattern syntax as keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError

MAX_KEY_BYTES = 256
MAX_COLLECTION_BYTES = 256

# Messages of the cloud's SDK; each error appends the key it is about.
INVALID_KEY = "Invalid key"
KEY_TOO_LONG = "Invalid key: Maximum Key size is 256 bytes"
COLLECTION_TOO_LONG = "Invalid key: Maximum collection name size is 256 bytes"
FORBIDDEN_CHARACTERS = (
    "Invalid key: Key names in collections cannot contain the '|' or the '*' characters."
)
FORBIDDEN_START = "Invalid key: Key names in collections cannot start with the '>' or '<' characters."
CONDITIONAL_REMOVE = (
    "You cannot delete items using conditionals. Please remove each item separately."
)

# Keys longer than this are cut in error messages, which would otherwise
# repeat a multi-kilobyte string.
_MAX_SHOWN_CHARACTERS = 300

# The highest code point: no string that starts with a prefix sorts at or
# above the prefix with its last character raised by one.
_MAX_CHARACTER = "\U0010ffff"


def describe_key(key: Any) -> str:
    """Format a key for an error message: JSON-quoted, cut when very long."""
    if not isinstance(key, str):
        return f"{key!r} (a {type(key).__name__}, not a str)"
    if len(key) > _MAX_SHOWN_CHARACTERS:
        key = key[:_MAX_SHOWN_CHARACTERS] + "..."
    quoted = json.dumps(key, ensure_ascii=False)
    try:
        quoted.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate could not be printed; show it escaped.
        quoted = json.dumps(key)
    return quoted


def key_error(text: str, key: Any, what: str = "key") -> ValidationError:
    """Build the ValidationError for ``key``: the cloud's text, then the key in quotes.

    ``what`` names the input in the message, e.g. ``label1`` for a label value.
    """
    return ValidationError(f"{text} ({what} {describe_key(key)})")


@dataclass(frozen=True, slots=True)
class Key:
    """A parsed key: ``collection`` is None for a simple key."""

    collection: str | None
    name: str

    @property
    def text(self) -> str:
        """The normalised key as it is stored."""
        if self.collection is None:
            return self.name
        return f"{self.collection}:{self.name}"


@dataclass(frozen=True, slots=True)
class KeyRange:
    """A key pattern: the names of one collection between two bounds.

    ``lower`` and ``upper`` are None when that side is open. A prefix
    pattern is the range from the prefix (included) to the smallest string
    above every string that starts with it (excluded).
    """

    collection: str | None
    lower: str | None = None
    lower_inclusive: bool = True
    upper: str | None = None
    upper_inclusive: bool = False

    def matches(self, name: str) -> bool:
        if self.lower is not None:
            if name < self.lower or (name == self.lower and not self.lower_inclusive):
                return False
        if self.upper is not None:
            if name > self.upper or (name == self.upper and not self.upper_inclusive):
                return False
        return True


def prefix_range(collection: str | None, prefix: str) -> KeyRange:
    """Return the range of the names that start with ``prefix``."""
    return KeyRange(collection, prefix or None, True, prefix_successor(prefix), False)


def prefix_successor(prefix: str) -> str | None:
    """Return the smallest string above every string that starts with ``prefix``.

    Returns None when there is none, because the prefix is empty or made only
    of the highest code point.
    """
    stripped = prefix.rstrip(_MAX_CHARACTER)
    if not stripped:
        return None
    return stripped[:-1] + chr(ord(stripped[-1]) + 1)


def _utf8_length(text: str, key: Any, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        # A lone surrogate cannot be stored: DynamoDB keys are UTF-8.
        raise key_error(INVALID_KEY, key, what) from None


def _split(key: Any, what: str) -> tuple[str | None, str]:
    """Split a key into its stripped collection (None for a simple key) and name."""
    if not isinstance(key, str):
        raise key_error(INVALID_KEY, key, what)

    parts = [part.strip() for part in key.split(":")]
    if len(parts) == 1:
        collection, name = None, parts[0]
    else:
        collection, name = parts[0], ":".join(parts[1:])
        if not collection:
            raise key_error(INVALID_KEY, key, what)
        if _utf8_length(collection, key, what) > MAX_COLLECTION_BYTES:
            raise key_error(COLLECTION_TOO_LONG, key, what)

    if not name:
        raise key_error(INVALID_KEY, key, what)
    if _utf8_length(name, key, what) > MAX_KEY_BYTES:
        raise key_error(KEY_TOO_LONG, key, what)
    return collection, name


def parse_key(key: Any, what: str = "key") -> Key:
    """Parse an exact key, as ``set`` and ``remove`` take it.

    ``what`` names the input in error messages (``label1`` for a label value).

    Raises:
        ValidationError: the key is not a str, has an empty part, is too
            long, or names an item of a collection with ``|``, ``*`` or a
            leading ``<``/``>``.
    """
    collection, name = _split(key, what)
    if collection is not None:
        if "|" in name or "*" in name:
            raise key_error(FORBIDDEN_CHARACTERS, key, what)
        if name.startswith(("<", ">")):
            raise key_error(FORBIDDEN_START, key, what)
    return Key(collection, name)


def is_conditional(key: Any) -> bool:
    """Return whether ``key`` is a pattern that ``remove`` rejects."""
    if not isinstance(key, str) or ":" not in key:
        return False
    name = key.split(":", 1)[1].strip()
    return "*" in name or "|" in name or name.startswith(("<", ">"))


def parse_removal_key(key: Any) -> Key:
    """Parse a key given to ``remove``, rejecting patterns with the cloud's message."""
    if is_conditional(key):
        raise key_error(CONDITIONAL_REMOVE, key)
    return parse_key(key)


def parse_query(key: Any, what: str = "key") -> Key | KeyRange:
    """Parse the key or pattern given to ``get`` or ``get_by_label``.

    Patterns exist only inside a collection: ``ns:*``, ``ns:prefix*``,
    ``ns:<x``, ``ns:<=x``, ``ns:>x``, ``ns:>=x`` and ``ns:a|b`` (both ends
    included). A simple key is always an exact key.

    Raises:
        ValidationError: the key is invalid, or the pattern is malformed (a
            ``*`` before the end, an empty bound, two operators).
    """
    collection, name = _split(key, what)
    if collection is None:
        return Key(None, name)

    for operator in ("<=", ">=", "<", ">"):
        if name.startswith(operator):
            bound = name[len(operator):].strip()
            _check_bound(bound, key, what)
            if operator[0] == "<":
                return KeyRange(collection, upper=bound, upper_inclusive=operator == "<=")
            return KeyRange(collection, lower=bound, lower_inclusive=operator == ">=")

    if "|" in name:
        first, _, last = name.partition("|")
        first, last = first.strip(), last.strip()
        _check_bound(first, key, what)
        _check_bound(last, key, what)
        return KeyRange(collection, first, True, last, True)

    if "*" in name:
        if name.index("*") != len(name) - 1:
            message = f"{INVALID_KEY}: '*' is allowed only at the end of a pattern"
            raise key_error(message, key, what)
        return prefix_range(collection, name[:-1])

    return Key(collection, name)


def _check_bound(bound: str, key: Any, what: str) -> None:
    if not bound:
        raise key_error(f"{INVALID_KEY}: the pattern has an empty bound", key, what)
    if "*" in bound or "|" in bound or bound.startswith(("<", ">")):
        raise key_error(f"{INVALID_KEY}: a pattern may use only one operator", key, what)


LABEL_SLOTS = ("label1", "label2", "label3", "label4", "label5")


def parse_label_slot(label: Any) -> str:
    """Return the label attribute (``"label1"`` to ``"label5"``) that ``label`` names.

    Accepts ``"label1"``..``"label5"`` and ``"1"``..``"5"``.
    """
    if isinstance(label, str):
        name = label.strip()
        if name in LABEL_SLOTS:
            return name
        if name in ("1", "2", "3", "4", "5"):
            return f"label{name}"
    raise ValidationError(
        f"Invalid label: {label!r}; use one of 'label1' to 'label5' (or '1' to '5')"
    )


def parse_label_value(value: Any, slot: str) -> Key:
    """Parse the value of a label attribute, which follows the rules of exact keys."""
    return parse_key(value, what=slot)
