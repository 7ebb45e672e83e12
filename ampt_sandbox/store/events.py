"""Names of data change events and the filters of ``data.on`` (no I/O).

A filter is an event name (``created``, ``updated``, ``deleted`` or ``*``),
optionally followed by ``:`` and a key or a key pattern with a trailing
``*``:

- ``created`` and ``created:*`` match every key;
- ``created:foo`` matches the simple key ``foo`` only, and ``created:fo*``
  the simple keys that start with ``fo``;
- ``created:ns:*`` matches the items of the collection ``ns``, and
  ``created:ns:a*`` those whose name starts with ``a``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EVENT_NAMES = ("created", "updated", "deleted")
ANY_EVENT = "*"


@dataclass(frozen=True, slots=True)
class EventFilter:
    """A parsed ``data.on`` event name.

    ``collection`` is None for a filter on simple keys; ``name`` is an exact
    name, or a prefix when ``prefix`` is true. ``any_key`` matches all keys.
    """

    text: str
    event: str
    any_key: bool = True
    collection: str | None = None
    name: str = ""
    prefix: bool = False

    def matches(self, event_name: str, key: str) -> bool:
        """Return whether an event ``event_name`` on ``key`` passes this filter."""
        if self.event != ANY_EVENT and self.event != event_name:
            return False
        if self.any_key:
            return True

        collection, separator, name = key.partition(":")
        if not separator:
            collection, name = None, key  # type: ignore[assignment]
        if collection != self.collection:
            return False
        if self.prefix:
            return name.startswith(self.name)
        return name == self.name


def parse_event_filter(text: Any) -> EventFilter:
    """Parse a ``data.on`` event name.

    Raises:
        ValueError: ``Invalid event name: <text>`` for an unknown event or a
            malformed key pattern.
    """
    if not isinstance(text, str):
        raise ValueError(f"Invalid event name: {text!r}")
    event, separator, rest = text.partition(":")
    if event not in EVENT_NAMES and event != ANY_EVENT:
        raise ValueError(
            f"Invalid event name: {text}; it must start with created, updated, deleted or *"
        )
    if not separator:
        return EventFilter(text, event)
    rest = rest.strip()
    if not rest:
        raise ValueError(f"Invalid event name: {text}; the key after ':' is empty")
    if rest == "*":
        return EventFilter(text, event)

    parts = [part.strip() for part in rest.split(":")]
    if len(parts) == 1:
        collection, name = None, parts[0]
    else:
        collection, name = parts[0], ":".join(parts[1:])
        if not collection or not name:
            raise ValueError(f"Invalid event name: {text}; the key has an empty part")

    prefix = name.endswith("*")
    if prefix:
        name = name[:-1]
    if "*" in name:
        raise ValueError(f"Invalid event name: {text}; '*' is allowed only at the end")
    return EventFilter(text, event, False, collection, name, prefix)
