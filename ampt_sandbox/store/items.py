"""The stored form of an item and the forms callers see (no I/O).

An item is stored in the ``items`` table under its key as::

    {"value": ..., "created": ms, "modified": ms, "ttl": ms, "label1": "ns:x", ...}

``ttl`` and the labels are present only when set, and times are epoch
milliseconds. A write stores a new document and never changes a stored one
in place. Results and events carry copies (``copy_json``) because their
receivers may change them.
"""

from __future__ import annotations

from typing import Any

from .keys import LABEL_SLOTS

Document = dict[str, Any]
STORED_FIELDS = frozenset({"value", "created", "modified", "ttl", *LABEL_SLOTS})


def copy_json(value: Any) -> Any:
    """Return a deep copy of a JSON value."""
    if isinstance(value, dict):
        return {field: copy_json(element) for field, element in value.items()}
    if isinstance(value, list):
        return [copy_json(element) for element in value]
    return value


def split_stored(text: str) -> tuple[str | None, str]:
    """Split a normalised key or label value into its collection and name."""
    collection, separator, name = text.partition(":")
    if not separator:
        return None, text
    return collection, name


def is_expired(document: Document, now: int) -> bool:
    expires = document.get("ttl")
    return expires is not None and expires <= now


def new_document(value: Any, previous: Document | None, now: int) -> Document:
    created = now if previous is None else previous["created"]
    return {"value": value, "created": created, "modified": now}


def check_document(document: Document) -> None:
    """Raise ValueError unless ``document`` has the stored form that every reader relies on."""
    for field in ("value", "created", "modified"):
        if field not in document:
            raise ValueError(f'the item has no "{field}" field')
    for field in ("created", "modified", "ttl"):
        if field in document and not _is_integer(document[field]):
            raise ValueError(f'"{field}" must be an integer number of epoch milliseconds')
    for slot in LABEL_SLOTS:
        if slot in document and not isinstance(document[slot], str):
            raise ValueError(f'"{slot}" must be a string')
    unknown = set(document) - STORED_FIELDS
    if unknown:
        raise ValueError(f"the item has unknown fields: {', '.join(sorted(unknown))}")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def stored_attributes(key: str, document: Document) -> Document:
    """Return the attributes that count towards the item size: key, value, labels, TTL."""
    attributes: Document = {"key": key, "value": document["value"]}
    for slot in LABEL_SLOTS:
        if slot in document:
            attributes[slot] = document[slot]
    if "ttl" in document:
        # DynamoDB stores a TTL as a number of epoch seconds.
        attributes["ttl"] = document["ttl"] // 1000
    return attributes


def public_item(key: str, document: Document, meta: bool) -> Document:
    item = {"key": key, "value": copy_json(document["value"])}
    if meta:
        item["created"] = document["created"]
        item["modified"] = document["modified"]
        item["ttl"] = document.get("ttl")
        for slot in LABEL_SLOTS:
            item[slot] = document.get(slot)
    return item


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "null" if value is None else type(value).__name__
