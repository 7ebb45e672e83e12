"""Sorted indexes that serve patterns, checked against a brute-force scan (no files)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ampt_sandbox.store.index import SortedIndex
from ampt_sandbox.store.keys import KeyRange, prefix_range

ALPHABET = st.sampled_from(["a", "b", "c", "\0", "é", "\U0010ffff"])
NAMES = st.text(ALPHABET, min_size=1, max_size=4)


@st.composite
def ranges(draw) -> KeyRange:
    if draw(st.booleans()):
        return prefix_range("ns", draw(st.text(ALPHABET, max_size=3)))
    lower = draw(st.none() | NAMES)
    upper = draw(st.none() | NAMES)
    return KeyRange("ns", lower, draw(st.booleans()), upper, draw(st.booleans()))


def brute_force(entries, bounds, start, limit, reverse):
    selected = sorted(entry for entry in entries if bounds.matches(entry[0]))
    if reverse:
        selected.reverse()
    if start is not None:
        selected = [entry for entry in selected if (entry < start if reverse else entry > start)]
    return selected[:limit]


@settings(max_examples=300, deadline=None)
@given(
    names=st.lists(NAMES, unique=True, max_size=30),
    bounds=ranges(),
    limit=st.integers(1, 10),
    reverse=st.booleans(),
    start_name=st.none() | NAMES,
)
def test_page_equals_brute_force(names, bounds, limit, reverse, start_name):
    entries = [(name, f"ns:{name}") for name in names]
    index = SortedIndex(entries)
    start = None if start_name is None else (start_name, f"ns:{start_name}")
    assert index.page(bounds, start=start, limit=limit, reverse=reverse) == brute_force(
        entries, bounds, start, limit, reverse
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), NAMES), max_size=40))
def test_add_and_discard_keep_order(operations):
    index = SortedIndex()
    expected = set()
    for add, name in operations:
        entry = (name, f"ns:{name}")
        if add:
            if entry not in expected:
                index.add(entry)
            expected.add(entry)
        else:
            index.discard(entry)
            expected.discard(entry)
    assert index.entries == sorted(expected)


def test_label_entries_with_equal_names_page_by_key():
    index = SortedIndex([("lobby", f"connection:{number}") for number in range(5)])
    bounds = KeyRange("room", "lobby", True, "lobby", True)
    first = index.page(bounds, limit=2)
    assert first == [("lobby", "connection:0"), ("lobby", "connection:1")]
    rest = index.page(bounds, start=first[-1], limit=10)
    assert [key for _, key in rest] == ["connection:2", "connection:3", "connection:4"]
