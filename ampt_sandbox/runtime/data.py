"""The ``data`` SDK: the key-value store's calls for handler code.

Every call goes to the gateway, which owns the store, as ``(method,
params)`` with JSON params. This side checks what it can without the store
(value types that JSON cannot carry, key syntax, limits), so that such
errors name the bad part of the value and nothing is sent; the gateway
checks everything again, since other clients call it too. Times arrive as
epoch milliseconds and are returned as timezone-aware UTC datetimes.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import DataError, ValidationError
from ..store.events import EventFilter, parse_event_filter
from ..store.keys import LABEL_SLOTS, parse_key, parse_label_slot, parse_query, parse_removal_key
from ..store.merge import ADD_NEEDS_NUMBER, VALUES_MUST_BE_NUMERIC, is_number
from ..store.params import get_params
from ..store.values import check_number, check_value, resolve_ttl

logger = logging.getLogger("ampt_sandbox.sdk")

DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 60.0
MAX_BATCH = 25

Call = Callable[[str, dict[str, Any]], Awaitable[Any]]
Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class _Omitted:
    """Marks an argument left out, which differs from None (None removes)."""

    def __repr__(self) -> str:
        return "<omitted>"


OMITTED: Any = _Omitted()

_TIME_FIELDS = ("created", "modified", "ttl")


@dataclass(frozen=True, slots=True)
class DataRegistration:
    """A handler registered with ``data.on``."""

    filter: EventFilter
    handler: Handler
    timeout: float


def _from_epoch_ms(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=timezone.utc)
    return value


def decode_item(item: Any) -> Any:
    """Return a copy of a result item with its times as datetimes."""
    if not isinstance(item, dict):
        return item
    decoded = dict(item)
    for field in _TIME_FIELDS:
        if field in decoded:
            decoded[field] = _from_epoch_ms(decoded[field])
    return decoded


def _decode_page(result: Any) -> Any:
    if isinstance(result, dict) and isinstance(result.get("items"), list):
        return {**result, "items": [decode_item(item) for item in result["items"]]}
    return result


def _encode_ttl(ttl: Any, key: Any) -> Any:
    """Return ``ttl`` as JSON: a datetime becomes an ISO 8601 string.

    A naive datetime is sent without an offset, which the store reads as
    UTC, as the cloud's functions run in UTC.
    """
    if isinstance(ttl, datetime):
        return ttl.isoformat()
    # Check now so that the error comes before anything is sent; the store
    # resolves relative times on its own clock.
    resolve_ttl(ttl, int(time.time() * 1000), key if isinstance(key, str) else repr(key))
    return ttl


def _check_timeout(timeout: Any, name: str) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout for data event {name!r} must be a number of seconds, got {timeout!r}")
    if not timeout > 0:
        raise ValueError(f"timeout for data event {name!r} must be more than 0 seconds, got {timeout!r}")
    if timeout > MAX_TIMEOUT:
        logger.warning(
            "Timeout of %s s for data event %r is above the maximum; using %s s",
            timeout,
            name,
            MAX_TIMEOUT,
        )
        return MAX_TIMEOUT
    return float(timeout)


def _check_limit(limit: Any) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ValidationError("'limit' must be between 1 and 1000")


def _check_flag(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise ValidationError(f"'{name}' must be True or False, got {value!r}")


def _check_batch_size(keys: list[Any], verb: str) -> None:
    noun = "key" if verb == "get" else "item"
    if not keys:
        raise ValidationError(f"You must provide at least one {noun}")
    if len(keys) > MAX_BATCH:
        raise ValidationError(
            f"You may only provide a maximum of {MAX_BATCH} {noun}s in one batch {verb} request"
        )


class Data:
    """The ``data`` object: store calls, and ``on`` for change events.

    Args:
        call: sends ``(method, params)`` to the store and returns its
            result, raising DataError or ValidationError.
    """

    def __init__(self, call: Call) -> None:
        self._call = call
        self._registrations: list[DataRegistration] = []

    # Reading.

    async def get(
        self,
        key_or_pattern: str | list[str],
        limit: int = 100,
        reverse: bool = False,
        start: str | None = None,
        meta: bool = False,
        label: str | None = None,
    ) -> Any:
        """Return the value of a key, a page of items for a pattern, or a batch of keys.

        An exact key returns its value, or None when it is missing or
        expired; with ``meta=True`` it returns the item with its meta fields.
        A pattern (``ns:*``, ``ns:a*``, ``ns:<x``, ``ns:a|b``, ...) returns
        ``{"items": [...], "last_key": ...}``, where ``last_key`` is present
        whenever the page reached ``limit``; pass it as ``start`` to continue.
        A list of keys returns ``{"items": [...]}`` of those found. With
        ``label``, the pattern applies to that label's values instead.
        """
        _check_limit(limit)
        _check_flag(reverse, "reverse")
        _check_flag(meta, "meta")
        if start is not None and not isinstance(start, str):
            raise ValidationError(f"'start' must be a last_key string, got {start!r}")
        if label is not None:
            return await self.get_by_label(
                label, key_or_pattern, limit=limit, reverse=reverse, start=start, meta=meta
            )

        if isinstance(key_or_pattern, list):
            _check_batch_size(key_or_pattern, "get")
            for key in key_or_pattern:
                parse_query(key)
        else:
            parse_query(key_or_pattern)

        params = get_params(key_or_pattern, limit=limit, reverse=reverse, start=start, meta=meta)
        result = await self._call("get", params)
        if isinstance(result, dict) and "items" in result:
            return _decode_page(result)
        return decode_item(result) if meta else result

    async def get_by_label(
        self,
        label: str,
        key_or_pattern: str,
        limit: int = 100,
        reverse: bool = False,
        start: str | None = None,
        meta: bool = False,
    ) -> dict[str, Any]:
        """Return a page of the items whose label (``label1``..``label5``) matches ``key_or_pattern``.

        The pattern syntax is that of ``get``. The result is always
        ``{"items": [...]}``, with ``last_key`` when the page reached ``limit``.
        """
        slot = parse_label_slot(label)
        parse_query(key_or_pattern, what=slot)
        _check_limit(limit)
        _check_flag(reverse, "reverse")
        _check_flag(meta, "meta")
        if start is not None and not isinstance(start, str):
            raise ValidationError(f"'start' must be a last_key string, got {start!r}")

        params: dict[str, Any] = {
            "label": slot,
            "key": key_or_pattern,
            "limit": limit,
            "reverse": reverse,
            "meta": meta,
        }
        if start is not None:
            params["start"] = start
        return _decode_page(await self._call("get_by_label", params))

    # Writing.

    async def set(
        self,
        key: str | list[dict[str, Any]],
        value: Any = None,
        *,
        overwrite: bool = False,
        exists: bool | None = None,
        ttl: Any = OMITTED,
        label1: str | None = OMITTED,
        label2: str | None = OMITTED,
        label3: str | None = OMITTED,
        label4: str | None = OMITTED,
        label5: str | None = OMITTED,
        default: Any = None,
        meta: bool = False,
        remove_nulls: bool = False,
    ) -> Any:
        """Write an item and return the stored value (the item with ``meta=True``).

        Dicts merge into a stored dict (a field set to None is removed, unless
        ``remove_nulls``); ``{"$add": n}`` adds to a number. ``ttl`` is
        seconds from now below 315,360,000, else epoch seconds, or an ISO
        string or datetime; None removes it and leaving it out keeps it.
        Labels work the same way. A list of ``{"key", "value", "label1"..,
        "ttl"}`` dicts is a batch set of plain overwrites.
        """
        _check_flag(meta, "meta")
        if isinstance(key, list):
            return await self._batch_set(key, value, meta)

        parse_key(key)
        _check_flag(overwrite, "overwrite")
        _check_flag(remove_nulls, "remove_nulls")
        if exists is not None:
            _check_flag(exists, "exists")

        params: dict[str, Any] = {
            "key": key,
            "value": check_value(value),
            "overwrite": overwrite,
            "meta": meta,
            "remove_nulls": remove_nulls,
        }
        if exists is not None:
            params["exists"] = exists
        if ttl is not OMITTED:
            params["ttl"] = _encode_ttl(ttl, key)
        labels = {"label1": label1, "label2": label2, "label3": label3, "label4": label4,
                  "label5": label5}
        for slot, label in labels.items():
            if label is not OMITTED:
                if label is not None:
                    parse_key(label, what=slot)
                params[slot] = label
        if default is not None:
            params["default"] = check_value(default, "default")

        result = await self._call("set", params)
        return decode_item(result) if meta else result

    async def _batch_set(self, entries: list[Any], value: Any, meta: bool) -> dict[str, Any]:
        if value is not None:
            raise TypeError("a batch set takes only the list of items; put each value in its item")
        _check_batch_size(entries, "set")
        items = []
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ValidationError(
                    f"Item {position} of a batch set must be a dict with 'key' and 'value'"
                )
            unknown = set(entry) - {"key", "value", "ttl", *LABEL_SLOTS}
            if unknown:
                raise ValidationError(
                    f"Item {position} of a batch set has unknown fields: "
                    f"{', '.join(sorted(map(str, unknown)))}"
                )
            key = entry.get("key")
            parse_key(key)
            item: dict[str, Any] = {
                "key": key,
                "value": check_value(entry.get("value"), f"items[{position}][\"value\"]"),
            }
            if "ttl" in entry:
                item["ttl"] = _encode_ttl(entry["ttl"], key)
            for slot in LABEL_SLOTS:
                if entry.get(slot) is not None:
                    parse_key(entry[slot], what=slot)
                    item[slot] = entry[slot]
            items.append(item)
        return _decode_page(await self._call("set", {"items": items, "meta": meta}))

    async def add(self, key: str, field_or_amount: Any, amount: Any = None) -> Any:
        """Add to a number atomically; a missing number starts at 0.

        ``add(key, amount)`` adds to the whole value and returns the new
        number. ``add(key, field, amount)`` adds to one field of a dict and
        returns the whole stored dict.
        """
        parse_key(key)
        if amount is None:
            if not is_number(field_or_amount):
                raise ValidationError(ADD_NEEDS_NUMBER)
            check_number(field_or_amount, ["amount"])
            return await self._call("add", {"key": key, "amount": field_or_amount})

        if not isinstance(field_or_amount, str) or not field_or_amount:
            raise ValidationError(f"'field' must be a non-empty str, got {field_or_amount!r}")
        if not is_number(amount):
            raise DataError(VALUES_MUST_BE_NUMERIC)
        check_number(amount, ["amount"])
        return await self._call("add", {"key": key, "field": field_or_amount, "amount": amount})

    async def remove(self, key_or_keys: str | list[str]) -> bool:
        """Remove one key or a list of 1 to 25 keys; return True whether or not they existed.

        Patterns are rejected: each item must be removed by its key.
        """
        if isinstance(key_or_keys, list):
            _check_batch_size(key_or_keys, "remove")
            for key in key_or_keys:
                parse_removal_key(key)
        else:
            parse_removal_key(key_or_keys)
        return bool(await self._call("remove", {"key": key_or_keys}))

    # Change events.

    def on(
        self,
        name: str,
        handler: Handler | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Any:
        """Register a handler of change events; without a handler, return a decorator.

        ``name`` is ``created``, ``updated``, ``deleted`` or ``*``, optionally
        followed by ``:`` and a key or key pattern (``created:connection:*``).
        Every handler whose name matches an event runs, each with its own
        timeout (default 5 s, at most 60 s).

        Raises:
            ValueError: the event name is invalid.
            TypeError: the handler is not an ``async def`` function.
        """
        event_filter = parse_event_filter(name)
        seconds = _check_timeout(timeout, name)

        def register(function: Handler) -> Handler:
            if not inspect.iscoroutinefunction(function):
                raise TypeError(
                    f"handler for data event {name!r} must be an 'async def' function, "
                    f"got {function!r}"
                )
            self._registrations.append(DataRegistration(event_filter, function, seconds))
            return function

        if handler is None:
            return register
        register(handler)
        return None

    def handlers_for(self, event: dict[str, Any]) -> list[tuple[Handler, float]]:
        """Return every registered handler whose name matches ``event``, with its timeout."""
        name, key = event.get("name"), event.get("key")
        if not isinstance(name, str) or not isinstance(key, str):
            return []
        return [
            (registration.handler, registration.timeout)
            for registration in self._registrations
            if registration.filter.matches(name, key)
        ]

    @property
    def event_names(self) -> list[str]:
        """The event names registered with ``on``, in registration order, without repeats."""
        return list(dict.fromkeys(r.filter.text for r in self._registrations))

    def has_handlers(self) -> bool:
        """Return whether any handler is registered, so the gateway sends events at all."""
        return bool(self._registrations)

    def max_timeout(self) -> float:
        """Return the longest timeout of the registered handlers, 0 when there are none."""
        return max((registration.timeout for registration in self._registrations), default=0.0)

    def clear_handlers(self) -> None:
        self._registrations.clear()

    @staticmethod
    def decode_event(event: dict[str, Any]) -> dict[str, Any]:
        """Return the dict a handler receives: the event with its times as datetimes."""
        return {
            "name": event.get("name"),
            "key": event.get("key"),
            "item": decode_item(event.get("item")),
            "previous": decode_item(event.get("previous")),
        }
