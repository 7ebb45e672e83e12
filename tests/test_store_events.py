"""Parsing and matching of data.on event names (no files)."""

from __future__ import annotations

import pytest

from ampt_sandbox.store.events import parse_event_filter


@pytest.mark.parametrize(
    ("name", "event", "key", "matches"),
    [
        ("created", "created", "foo", True),
        ("created", "created", "ns:foo", True),
        ("created", "updated", "foo", False),
        ("*", "deleted", "ns:x", True),
        ("created:*", "created", "ns:x", True),
        ("*:*", "updated", "x", True),
        ("created:foo", "created", "foo", True),
        ("created:foo", "created", "foo:bar", False),
        ("created:foo", "created", "food", False),
        ("created:fo*", "created", "food", True),
        ("created:fo*", "created", "foo:bar", False),
        ("created:ns:*", "created", "ns:a", True),
        ("created:ns:*", "created", "ns", False),
        ("created:ns:*", "created", "nsx:a", False),
        ("created:ns:a*", "created", "ns:abc", True),
        ("created:ns:a*", "created", "ns:b", False),
        ("created:ns:a", "created", "ns:a", True),
        ("created:ns:a", "created", "ns:ab", False),
        ("created:ns:a:b", "created", "ns:a:b", True),
        ("updated:connection:*", "updated", "connection:abc", True),
        ("deleted: ns : a ", "deleted", "ns:a", True),
        ("*:ns:*", "created", "ns:z", True),
    ],
)
def test_event_filter_matches(name, event, key, matches):
    assert parse_event_filter(name).matches(event, key) is matches


@pytest.mark.parametrize(
    "name",
    ["", "create", "Created", "removed:ns:*", "created:", "created: ", "created:ns:", "created::a", "created:a*b", "created:ns:*a", None, 3],
)
def test_invalid_event_names(name):
    with pytest.raises(ValueError, match="^Invalid event name: "):
        parse_event_filter(name)
