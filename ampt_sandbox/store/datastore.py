"""The gateway's data store: the ``data`` SDK's calls on a journal-backed TinyDB.

Every SDK call arrives as ``call(method, params)`` with JSON params and
returns a JSON result, so the same entry point serves the Python runtime,
the ``ampt-sandbox data`` commands and runtimes in other languages. Times
cross that boundary as epoch milliseconds; the SDK turns them into
datetimes.

Items live in the TinyDB table ``items``, with the key as document id::

    {"value": ..., "created": ms, "modified": ms, "ttl": ms, "label1": "ns:x", ...}

``ttl`` and the labels are present only when set. Sorted indexes of the
keys of each collection and of each label's values serve patterns without
scanning. Expired items stay in the table until ``expire`` removes them,
but no call returns them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.table import Table

from ..errors import DataError, ValidationError
from .index import Entry, SortedIndex
from .items import (
    check_document,
    copy_json,
    is_expired,
    json_type,
    new_document,
    public_item,
    split_stored,
    stored_attributes,
)
from .journal import JournalStorage, StoreOpenError
from .keys import (
    LABEL_SLOTS,
    Key,
    KeyRange,
    describe_key,
    parse_key,
    parse_label_slot,
    parse_label_value,
    parse_query,
    parse_removal_key,
)
from .lock import DataDirLock, StoreLockedError
from .merge import ADD, MISSING, merge_value
from .params import (
    MAX_BATCH,
    batch_keys,
    bool_param,
    check_params,
    decode_label_start,
    encode_label_start,
    limit_param,
    required,
)
from .transfer import (
    CONNECTION_COLLECTION,
    ImportResult,
    build_import_documents,
    export_entry,
    overwrite_document,
)
from .values import check_item_size, check_value, resolve_ttl

logger = logging.getLogger("ampt_sandbox.store")

JOURNAL_FILE_NAME = "data.jsonl"
ITEMS_TABLE = "items"

ChangeEvent = dict[str, Any]

__all__ = ["DataStore", "StoreLockedError", "StoreOpenError"]


class ItemTable(Table):
    """TinyDB table whose document ids are the item keys (str, not int)."""

    document_id_class = str  # type: ignore[assignment]


class StoreDatabase(TinyDB):
    """TinyDB with str document ids and no query cache.

    The DataStore writes through the storage directly, which TinyDB's query
    cache would not notice, so the cache is off.
    """

    table_class = ItemTable
    default_table_name = ITEMS_TABLE

    def table(self, name: str, **kwargs: Any) -> Table:
        kwargs.setdefault("cache_size", 0)
        return super().table(name, **kwargs)


def _check_stored_document(table: str, key: str, document: dict[str, Any]) -> None:
    if table == ITEMS_TABLE:
        check_document(document)


def _with_key(error: DataError, key: str) -> DataError:
    """Return the same kind of error with the key appended to its message."""
    return type(error)(f"{error} (key {describe_key(key)})")


class DataStore:
    """The key-value store of one data directory, owned by one process.

    Use ``DataStore.open``. Calls are synchronous and serialised by a lock,
    so any thread may make them. ``on_change`` is called after every
    committed change with
    ``{"name": "created"|"updated"|"deleted", "key", "item", "previous"}``,
    where ``item`` and ``previous`` are items with their meta fields
    (times in epoch milliseconds) or None. It is called on the thread that
    made the change, except for an ``import_entries`` with
    ``defer_events``: its events wait in a queue until ``deliver_events``
    or the next change delivers them, so they stay in commit order.
    """

    def __init__(
        self,
        database: StoreDatabase,
        lock: DataDirLock | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = database
        self.storage: JournalStorage = database.storage  # type: ignore[assignment]
        self.on_change: Callable[[ChangeEvent], None] | None = None
        self._lock = lock
        self._clock = clock
        self._mutex = threading.RLock()
        self._closed = False
        self._undelivered: deque[ChangeEvent] = deque()

        # The storage's own dict: replaced only by TinyDB writes, which a
        # DataStore never makes.
        self._items: dict[str, dict[str, Any]] = self.storage.read().setdefault(ITEMS_TABLE, {})
        self._collections: dict[str, SortedIndex] = {}
        self._labels: dict[tuple[str, str | None], SortedIndex] = {}
        self._expiries: dict[str, int] = {}
        self._build_indexes()

    @classmethod
    def open(
        cls,
        data_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        fsync_interval: float = 1.0,
    ) -> DataStore:
        """Open or create the store in ``data_dir``, taking its lock.

        Args:
            data_dir: the directory, created when missing.
            clock: the time source in epoch seconds (tests replace it).
            fsync_interval: a write fsyncs the journal when the last fsync
                is at least this many seconds old. NOTE: a write followed by
                none waits for ``flush`` or ``close``, so an owner that must
                bound that time calls ``flush`` on a timer.

        Raises:
            StoreLockedError: another process holds the lock.
            StoreOpenError: the directory or the journal cannot be read;
                the message names the file and the problem, and the file is
                left untouched.
        """
        data_dir = Path(data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreOpenError(f"Cannot create the data directory {data_dir}: {exc}") from exc

        try:
            lock = DataDirLock.acquire(data_dir)
        except OSError as exc:
            raise StoreOpenError(f"Cannot lock the data directory {data_dir}: {exc}") from exc
        try:
            database = StoreDatabase(
                data_dir / JOURNAL_FILE_NAME,
                storage=JournalStorage,
                fsync_interval=fsync_interval,
                check_document=_check_stored_document,
            )
            return cls(database, lock, clock=clock)
        except BaseException:
            lock.release()
            raise

    # Lifecycle.

    def count(self) -> int:
        """Return the number of live (unexpired) items."""
        with self._mutex:
            now = self._now()
            expired = sum(1 for expires in self._expiries.values() if expires <= now)
            return len(self._items) - expired

    def expire(self) -> int:
        """Delete the items whose TTL has passed, emitting ``deleted`` for each; return how many.

        Reads already skip expired items, so calling this is optional. It
        frees memory and sends the events that DynamoDB sends when its TTL
        process deletes an item.
        """
        with self._mutex:
            if self._closed:
                return 0
            now = self._now()
            expired = [key for key, expires in self._expiries.items() if expires <= now]
            if not expired:
                return 0
            previous = [(key, self._items[key]) for key in expired]
            self.storage.apply([["del", ITEMS_TABLE, key] for key in expired])
            for key, document in previous:
                self._reindex(key, document, None)
            self._emit(("deleted", key, None, document) for key, document in previous)
            return len(expired)

    def flush(self) -> None:
        """Fsync the journal so that every acknowledged write survives a power loss."""
        with self._mutex:
            if not self._closed:
                self.storage.flush()

    def close(self) -> None:
        """Flush, close the journal and release the lock. Later calls do nothing."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            try:
                self.db.close()
            finally:
                if self._lock is not None:
                    self._lock.release()

    def __enter__(self) -> DataStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # The SDK's calls.

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """Run one SDK call: ``method`` is the SDK method's name, ``params`` its JSON arguments.

        Raises:
            ValidationError: invalid input.
            DataError: the call failed (item exists, not numeric, store closed).
        """
        handler = _METHODS.get(method)
        if handler is None:
            raise DataError(
                f"Unknown data method {method!r}; expected one of {', '.join(sorted(_METHODS))}"
            )
        if not isinstance(params, dict):
            raise ValidationError(f"The params of data.{method} must be an object")
        with self._mutex:
            if self._closed:
                raise DataError("The data store is closed")
            return handler(self, params)

    def _get(self, params: dict[str, Any]) -> Any:
        check_params("get", params, {"key", "limit", "reverse", "start", "meta", "label"})
        if params.get("label") is not None:
            return self._get_by_label(params)
        limit = limit_param(params)
        reverse = bool_param(params, "reverse", False)
        meta = bool_param(params, "meta", False)
        key = required(params, "key")

        if isinstance(key, list):
            return self._batch_get(key, meta)
        query = parse_query(key)
        if isinstance(query, Key):
            document = self._live(query.text)
            if document is None:
                return None
            if meta:
                return public_item(query.text, document, meta=True)
            return copy_json(document["value"])

        index = self._collections.get(query.collection)
        start = self._key_start(params.get("start"), query.collection)
        return self._page(index, query, start, limit, reverse, meta, label_page=False)

    def _get_by_label(self, params: dict[str, Any]) -> dict[str, Any]:
        check_params("get_by_label", params, {"label", "key", "limit", "reverse", "start", "meta"})
        slot = parse_label_slot(params.get("label"))
        limit = limit_param(params)
        reverse = bool_param(params, "reverse", False)
        meta = bool_param(params, "meta", False)

        query = parse_query(required(params, "key"), what=slot)
        if isinstance(query, Key):
            query = KeyRange(query.collection, query.name, True, query.name, True)
        index = self._labels.get((slot, query.collection))
        start = decode_label_start(params.get("start"))
        return self._page(index, query, start, limit, reverse, meta, label_page=True)

    def _page(
        self,
        index: SortedIndex | None,
        bounds: KeyRange,
        start: Entry | None,
        limit: int,
        reverse: bool,
        meta: bool,
        *,
        label_page: bool,
    ) -> dict[str, Any]:
        entries = [] if index is None else index.page(bounds, start=start, limit=limit, reverse=reverse)

        # As in DynamoDB, expired items count towards the limit and are
        # dropped from the page afterwards.
        now = self._now()
        items = []
        for _, key in entries:
            document = self._items[key]
            if not is_expired(document, now):
                items.append(public_item(key, document, meta))

        result: dict[str, Any] = {"items": items}
        if len(entries) == limit:
            name, key = entries[-1]
            result["last_key"] = encode_label_start(name, key) if label_page else key
        return result

    def _batch_get(self, keys: list[Any], meta: bool) -> dict[str, Any]:
        parsed = batch_keys(keys, "get")
        items = []
        for key in parsed:
            document = self._live(key)
            if document is not None:
                items.append(public_item(key, document, meta))
        return {"items": items}

    def _set(self, params: dict[str, Any]) -> Any:
        if "items" in params:
            return self._batch_set(params)
        check_params(
            "set",
            params,
            {"key", "value", "overwrite", "exists", "ttl", "default", "meta", "remove_nulls",
             *LABEL_SLOTS},
        )
        key = parse_key(required(params, "key")).text
        value = check_value(params.get("value"))
        default = params.get("default")
        if default is not None:
            default = check_value(default, "default")
        overwrite = bool_param(params, "overwrite", False)
        remove_nulls = bool_param(params, "remove_nulls", False)
        meta = bool_param(params, "meta", False)
        exists = params.get("exists")
        if exists is not None and not isinstance(exists, bool):
            raise ValidationError(f"'exists' must be true, false or null, got {exists!r}")

        now = self._now()
        previous = self._live(key, now)
        if exists is True and previous is None:
            raise _with_key(DataError("Item does not exist"), key)
        if exists is False and previous is not None:
            raise _with_key(DataError("Item already exists"), key)

        # With overwrite, nothing of the previous item carries over.
        base = None if overwrite else previous
        try:
            new_value = merge_value(
                MISSING if base is None else base["value"],
                value,
                default=default,
                remove_nulls=remove_nulls,
            )
        except DataError as exc:
            raise _with_key(exc, key) from None

        document = new_document(new_value, base, now)
        if "ttl" in params:
            expires = resolve_ttl(params["ttl"], now, key)
            if expires is not None:
                document["ttl"] = expires
        elif base is not None and "ttl" in base:
            document["ttl"] = base["ttl"]
        for slot in LABEL_SLOTS:
            if slot in params:
                if params[slot] is not None:
                    document[slot] = parse_label_value(params[slot], slot).text
            elif base is not None and slot in base:
                document[slot] = base[slot]

        check_item_size(stored_attributes(key, document), key)
        self._commit([(key, document)])
        return public_item(key, document, meta=True) if meta else copy_json(new_value)

    def _batch_set(self, params: dict[str, Any]) -> dict[str, Any]:
        check_params("set", params, {"items", "meta"})
        meta = bool_param(params, "meta", False)
        entries = params["items"]
        if not isinstance(entries, list):
            raise ValidationError("'items' of a batch set must be a list")
        if not entries:
            raise ValidationError("You must provide at least one item")
        if len(entries) > MAX_BATCH:
            raise ValidationError(
                f"You may only provide a maximum of {MAX_BATCH} items in one batch set request"
            )

        now = self._now()
        changes: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ValidationError(
                    f"Item {position} of a batch set must be an object with 'key' and 'value'"
                )
            unknown = set(entry) - {"key", "value", "ttl", *LABEL_SLOTS}
            if unknown:
                raise ValidationError(
                    f"Item {position} of a batch set has unknown fields: "
                    f"{', '.join(sorted(map(str, unknown)))}"
                )
            key = parse_key(required(entry, "key")).text
            if key in seen:
                raise _with_key(
                    ValidationError("Provided list of item keys contains duplicates"), key
                )
            seen.add(key)
            try:
                value = merge_value(MISSING, check_value(entry.get("value")))
            except DataError as exc:
                raise _with_key(exc, key) from None

            changes.append((key, overwrite_document(key, value, entry, now)))

        self._commit(changes)
        return {"items": [public_item(key, document, meta) for key, document in changes]}

    def _add(self, params: dict[str, Any]) -> Any:
        check_params("add", params, {"key", "field", "amount"})
        key = parse_key(required(params, "key")).text
        amount = params.get("amount")
        field = params.get("field")

        now = self._now()
        previous = self._live(key, now)
        stored = MISSING if previous is None else previous["value"]
        if field is None:
            change: dict[str, Any] = {ADD: amount}
        else:
            if not isinstance(field, str) or not field:
                raise ValidationError(f"'field' must be a non-empty str, got {field!r}")
            if stored is not MISSING and not isinstance(stored, dict):
                raise _with_key(
                    DataError(
                        f"Values must be numeric: cannot add to field {field!r} because the "
                        f"stored value is a {json_type(stored)}, not an object"
                    ),
                    key,
                )
            change = {field: {ADD: amount}}

        try:
            new_value = merge_value(stored, change)
        except DataError as exc:
            raise _with_key(exc, key) from None

        document = new_document(new_value, previous, now)
        if previous is not None:
            for attribute in ("ttl", *LABEL_SLOTS):
                if attribute in previous:
                    document[attribute] = previous[attribute]
        check_item_size(stored_attributes(key, document), key)
        self._commit([(key, document)])
        return copy_json(new_value)

    def _remove(self, params: dict[str, Any]) -> bool:
        check_params("remove", params, {"key"})
        key = required(params, "key")
        if isinstance(key, list):
            keys = batch_keys(key, "remove", removal=True)
        else:
            keys = [parse_removal_key(key).text]
        self._commit([(removed, None) for removed in keys if removed in self._items])
        return True

    # Import and export.

    def import_entries(
        self, entries: list[Any], *, overwrite: bool = False, defer_events: bool = False
    ) -> ImportResult:
        """Write the entries of an import file, each as an overwrite of its key.

        Every entry is checked before anything is written, and the whole
        import is one journal line, so the store gets all of it or none.
        With ``overwrite``, every item is deleted first, including the
        ``connection:*`` records of connections that stay open.

        With ``defer_events``, the change events are queued instead of
        passed to ``on_change``, so that a worker thread can run the import
        while the listener's own thread later calls ``deliver_events``.

        Raises:
            InvalidImportError: an entry is invalid; the store is unchanged.
        """
        # The checks need no lock, so other calls can run meanwhile.
        now = self._now()
        documents = build_import_documents(entries, now)
        with self._mutex:
            if self._closed:
                raise DataError("The data store is closed")

            changes: list[tuple[str, dict[str, Any] | None]] = []
            result = ImportResult(imported=len(documents))
            if overwrite:
                for key, document in self._items.items():
                    changes.append((key, None))
                    if is_expired(document, now):
                        continue
                    result.deleted += 1
                    if split_stored(key)[0] == CONNECTION_COLLECTION:
                        result.deleted_connections.append(key)
            changes.extend(documents)
            self._commit(changes, defer_events=defer_events)
            return result

    def export_entries(self) -> list[dict[str, Any]]:
        """Return every live item in the export form, sorted by key."""
        with self._mutex:
            if self._closed:
                raise DataError("The data store is closed")
            now = self._now()
            snapshot = list(self._items.items())
        # A write replaces a stored document and never changes one in place,
        # so the snapshot stays valid after the lock is released.
        snapshot.sort(key=lambda pair: pair[0])
        return [
            copy_json(export_entry(key, document))
            for key, document in snapshot
            if not is_expired(document, now)
        ]

    # Changes, indexes and events.

    def _commit(
        self, changes: list[tuple[str, dict[str, Any] | None]], *, defer_events: bool = False
    ) -> None:
        """Write documents (None deletes) in one journal line, then index them and emit events.

        Changes apply in order, so one key may appear twice (an import with
        ``overwrite`` deletes a key and then writes it again).
        """
        if not changes:
            return
        now = self._now()
        operations = []
        steps = []
        pending: dict[str, dict[str, Any] | None] = {}
        for key, document in changes:
            old = pending[key] if key in pending else self._items.get(key)
            pending[key] = document
            steps.append((key, old, document))
            if document is None:
                operations.append(["del", ITEMS_TABLE, key])
            else:
                operations.append(["put", ITEMS_TABLE, key, document])
        self.storage.apply(operations)

        events = []
        for key, old, document in steps:
            self._reindex(key, old, document)
            live_old = old if old is not None and not is_expired(old, now) else None
            if document is None and live_old is None:
                continue
            if document is None:
                name = "deleted"
            elif live_old is None:
                name = "created"
            else:
                name = "updated"
            events.append((name, key, document, live_old))
        self._emit(events, defer=defer_events)

    def _emit(
        self, events: Iterable[tuple[str, str, dict | None, dict | None]], *, defer: bool = False
    ) -> None:
        if self.on_change is None:
            return
        for name, key, document, previous in events:
            self._undelivered.append({
                "name": name,
                "key": key,
                "item": None if document is None else public_item(key, document, meta=True),
                "previous": None if previous is None else public_item(key, previous, meta=True),
            })
        if not defer:
            self.deliver_events()

    def deliver_events(self, limit: int | None = None) -> int:
        """Pass queued change events to ``on_change``, oldest first, on the calling thread.

        ``limit`` caps how many this call passes. Returns how many remain queued.
        """
        with self._mutex:
            delivered = 0
            while self._undelivered and (limit is None or delivered < limit):
                delivered += 1
                event = self._undelivered.popleft()
                listener = self.on_change
                if listener is None:
                    continue
                try:
                    listener(event)
                except Exception:
                    # The change is committed; a failing listener must not turn
                    # the data call into an error.
                    logger.exception(
                        "data change listener failed on %s of %r", event["name"], event["key"]
                    )
            return len(self._undelivered)

    def _build_indexes(self) -> None:
        collections: dict[str, list[Entry]] = {}
        labels: dict[tuple[str, str | None], list[Entry]] = {}
        for key, document in self._items.items():
            collection, name = split_stored(key)
            if collection is not None:
                collections.setdefault(collection, []).append((name, key))
            for slot in LABEL_SLOTS:
                label = document.get(slot)
                if label is not None:
                    label_collection, label_name = split_stored(label)
                    labels.setdefault((slot, label_collection), []).append((label_name, key))
            if "ttl" in document:
                self._expiries[key] = document["ttl"]
        self._collections = {name: SortedIndex(entries) for name, entries in collections.items()}
        self._labels = {name: SortedIndex(entries) for name, entries in labels.items()}

    def _reindex(
        self, key: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        collection, name = split_stored(key)
        if collection is not None and (old is None) != (new is None):
            if new is not None:
                self._collections.setdefault(collection, SortedIndex()).add((name, key))
            else:
                self._discard(self._collections, collection, (name, key))

        for slot in LABEL_SLOTS:
            old_label = None if old is None else old.get(slot)
            new_label = None if new is None else new.get(slot)
            if old_label == new_label:
                continue
            if old_label is not None:
                label_collection, label_name = split_stored(old_label)
                self._discard(self._labels, (slot, label_collection), (label_name, key))
            if new_label is not None:
                label_collection, label_name = split_stored(new_label)
                index = self._labels.setdefault((slot, label_collection), SortedIndex())
                index.add((label_name, key))

        if new is not None and "ttl" in new:
            self._expiries[key] = new["ttl"]
        else:
            self._expiries.pop(key, None)

    @staticmethod
    def _discard(indexes: dict[Any, SortedIndex], name: Any, entry: Entry) -> None:
        index = indexes.get(name)
        if index is None:
            return
        index.discard(entry)
        if not index:
            del indexes[name]

    # Helpers.

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def _live(self, key: str, now: int | None = None) -> dict[str, Any] | None:
        document = self._items.get(key)
        if document is None or is_expired(document, self._now() if now is None else now):
            return None
        return document

    def _key_start(self, start: Any, collection: str | None) -> Entry | None:
        if start is None:
            return None
        try:
            key = parse_key(start, what="start")
        except ValidationError:
            raise ValidationError(
                f"Invalid 'start': {start!r} is not a last_key returned by a get"
            ) from None
        if key.collection != collection:
            raise ValidationError(
                f"Invalid 'start': {start!r} is not in the collection {collection!r} "
                "of the pattern"
            )
        return (key.name, key.text)


_METHODS: dict[str, Callable[[DataStore, dict[str, Any]], Any]] = {
    "get": DataStore._get,
    "get_by_label": DataStore._get_by_label,
    "set": DataStore._set,
    "add": DataStore._add,
    "remove": DataStore._remove,
}
