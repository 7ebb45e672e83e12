"""Import and export files of the data store (no I/O).

The file is a JSON array of items::

    [{"key": "ns:a", "value": ..., "label1": "room:x", "ttl": 1767225600}, ...]

with the labels and ``ttl`` optional. ``ttl`` follows the rules of ``set``:
seconds from now below 315,360,000, epoch seconds above, or an ISO 8601
string; an export writes epoch seconds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ValidationError
from .items import Document, json_type, new_document, stored_attributes
from .keys import LABEL_SLOTS, parse_key, parse_label_value
from .merge import MISSING, merge_value
from .values import check_item_size, check_value, resolve_ttl

ENTRY_FIELDS = frozenset({"key", "value", "ttl", *LABEL_SLOTS})
CONNECTION_COLLECTION = "connection"
# The whitespace that JSON allows between tokens.
_WHITESPACE = re.compile(r"[ \t\n\r]*")


class InvalidImportError(ValidationError):
    """An import file that is not a valid array of items; the message names the invalid part."""


@dataclass(slots=True)
class ImportResult:
    """Counts of an import's changes.

    ``deleted`` counts the live items that ``overwrite`` deleted first.
    ``deleted_connections`` lists the ``connection:*`` keys among them,
    which are the records that handlers keep for open connections.
    """

    imported: int
    deleted: int = 0
    deleted_connections: list[str] = field(default_factory=list)


def parse_import(text: str, name: str) -> list[Any]:
    """Decode an import file's text, which must be a JSON array.

    Raises:
        InvalidImportError: the text is not JSON (with the parser's message
            and position) or not an array.
    """
    try:
        entries = _decode_array(text)
    except json.JSONDecodeError as exc:
        raise InvalidImportError(
            f"{name} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(character {exc.pos})"
        ) from None
    except RecursionError:
        raise InvalidImportError(f"{name} is not valid JSON: it is nested too deeply") from None
    if not isinstance(entries, list):
        raise InvalidImportError(
            f"{name} must contain a JSON array of items, but it contains a {json_type(entries)}"
        )
    return entries


def _decode_array(text: str) -> Any:
    """Decode JSON text like ``json.loads``, a top-level array one element per call.

    ``json.loads`` holds the GIL for the whole text, so other threads stall
    (about a second for 300 MB in one measurement). Between two elements,
    they can run. Errors carry the same messages and positions as
    ``json.loads``.
    """
    position = _skip_whitespace(text, 0)
    if not text.startswith("[", position):
        return json.loads(text)

    decoder = json.JSONDecoder()
    entries: list[Any] = []
    position = _skip_whitespace(text, position + 1)
    if text.startswith("]", position):
        position += 1
    else:
        while True:
            entry, position = decoder.raw_decode(text, position)
            entries.append(entry)
            position = _skip_whitespace(text, position)
            if text.startswith(",", position):
                position = _skip_whitespace(text, position + 1)
            elif text.startswith("]", position):
                position += 1
                break
            else:
                raise json.JSONDecodeError("Expecting ',' delimiter", text, position)

    position = _skip_whitespace(text, position)
    if position != len(text):
        raise json.JSONDecodeError("Extra data", text, position)
    return entries


def _skip_whitespace(text: str, position: int) -> int:
    return _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]


def build_import_documents(entries: list[Any], now_ms: int) -> list[tuple[str, Document]]:
    """Check every entry of an import and return the documents to store, in file order.

    Each entry is a plain overwrite of its key, as a ``set`` with
    ``overwrite=True`` would store it. A key that appears twice keeps its
    last entry, as writing the entries in order would.

    Raises:
        InvalidImportError: naming the first invalid entry by its index.
    """
    documents = []
    for index, entry in enumerate(entries):
        try:
            documents.append(_build_document(entry, now_ms))
        except ValidationError as exc:
            raise InvalidImportError(f"Item {index}: {exc}") from None
    return documents


def _build_document(entry: Any, now_ms: int) -> tuple[str, Document]:
    if not isinstance(entry, dict):
        raise ValidationError(f"an item must be an object, not a {json_type(entry)}")
    for name in ("key", "value"):
        if name not in entry:
            raise ValidationError(f'the item has no "{name}"')
    unknown = set(entry) - ENTRY_FIELDS
    if unknown:
        raise ValidationError(
            f"unknown fields {', '.join(sorted(unknown))}; an item may have key, value, "
            "label1 to label5 and ttl"
        )

    key = parse_key(entry["key"]).text
    value = merge_value(MISSING, check_value(entry["value"]))
    return key, overwrite_document(key, value, entry, now_ms)


def overwrite_document(key: str, value: Any, entry: dict[str, Any], now_ms: int) -> Document:
    """Build the document that a plain overwrite of ``key`` stores.

    ``value`` is already checked. The TTL and labels come from ``entry``,
    and the size of the whole item is checked against the 400 KB limit.
    """
    document = new_document(value, None, now_ms)
    expires = resolve_ttl(entry.get("ttl"), now_ms, key)
    if expires is not None:
        document["ttl"] = expires
    for slot in LABEL_SLOTS:
        if entry.get(slot) is not None:
            document[slot] = parse_label_value(entry[slot], slot).text
    check_item_size(stored_attributes(key, document), key)
    return document


def export_entry(key: str, document: Document) -> dict[str, Any]:
    """Return the export form of an item: key, value, labels and ttl in epoch seconds."""
    entry: dict[str, Any] = {"key": key, "value": document["value"]}
    for slot in LABEL_SLOTS:
        if slot in document:
            entry[slot] = document[slot]
    if "ttl" in document:
        seconds, milliseconds = divmod(document["ttl"], 1000)
        entry["ttl"] = seconds if milliseconds == 0 else document["ttl"] / 1000
    return entry
