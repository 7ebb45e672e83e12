"""The key-value store behind the ``data`` SDK, owned by the gateway process.

``DataStore`` opens a data directory. The modules ``keys``, ``values``,
``merge``, ``index`` and ``events`` hold the rules without any I/O, so the
runtime imports them without loading the storage. The names below are
loaded on first use for that reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .datastore import DataStore
    from .journal import JournalStorage, StoreOpenError
    from .lock import StoreLockedError

__all__ = ["DataStore", "JournalStorage", "StoreLockedError", "StoreOpenError"]

_LOCATIONS = {
    "DataStore": ".datastore",
    "JournalStorage": ".journal",
    "StoreOpenError": ".journal",
    "StoreLockedError": ".lock",
}


def __getattr__(name: str) -> Any:
    if name not in _LOCATIONS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LOCATIONS[name], __name__), name)
