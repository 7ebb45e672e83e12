"""Sorted in-memory indexes that serve key and label patterns (no I/O).

An index is a sorted list of ``(name, key)`` entries. In a collection's
index, ``name`` is the item's name and ``key`` its full key. In a label's
index, ``name`` is the name part of the label value and ``key`` the key of
the item that carries it. Pages are found by binary search, so a page costs
O(log n + limit) whatever the size of the collection.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable

from .keys import KeyRange

Entry = tuple[str, str]


class SortedIndex:
    """Entries ``(name, key)`` kept in sorted order."""

    __slots__ = ("entries",)

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self.entries: list[Entry] = sorted(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entry: Entry) -> None:
        # insort moves the tail of the list, a memmove that stays in the
        # microseconds at 100,000 entries.
        insort(self.entries, entry)

    def discard(self, entry: Entry) -> None:
        position = bisect_left(self.entries, entry)
        if position < len(self.entries) and self.entries[position] == entry:
            del self.entries[position]

    def page(
        self,
        bounds: KeyRange,
        *,
        start: Entry | None = None,
        limit: int,
        reverse: bool = False,
    ) -> list[Entry]:
        """Return up to ``limit`` entries whose name is within ``bounds``.

        ``start`` is the last entry of the previous page: the page begins
        after it in the direction of the scan.
        """
        low, high = self._span(bounds)
        if start is not None:
            if reverse:
                high = min(high, bisect_left(self.entries, start))
            else:
                low = max(low, bisect_right(self.entries, start))
        if low >= high:
            return []
        if reverse:
            return self.entries[max(low, high - limit):high][::-1]
        return self.entries[low:min(high, low + limit)]

    def _span(self, bounds: KeyRange) -> tuple[int, int]:
        # A 1-tuple sorts before every entry with the same name. The name
        # followed by NUL is the smallest string above the name. So these
        # searches place each bound before or after all entries of a name.
        entries = self.entries
        low, high = 0, len(entries)
        if bounds.lower is not None:
            lower = bounds.lower if bounds.lower_inclusive else bounds.lower + "\0"
            low = bisect_left(entries, (lower,))
        if bounds.upper is not None:
            upper = bounds.upper + "\0" if bounds.upper_inclusive else bounds.upper
            high = bisect_left(entries, (upper,))
        return low, high

