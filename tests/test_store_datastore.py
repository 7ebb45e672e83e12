"""DataStore calls on a real journal in a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ampt_sandbox.errors import DataError, ValidationError
from ampt_sandbox.store import DataStore

NOW = 1_700_000_000.0  # epoch seconds of the fake clock at the start


class FakeClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock):
    opened = DataStore.open(tmp_path / ".ampt", clock=clock)
    yield opened
    opened.close()


def reopen(store: DataStore, clock: FakeClock) -> DataStore:
    data_dir = store.storage.path.parent
    store.close()
    return DataStore.open(data_dir, clock=clock)


# get / set / remove basics


def test_get_missing_key_returns_none(store):
    assert store.call("get", {"key": "nothing"}) is None


def test_set_returns_and_stores_value(store):
    assert store.call("set", {"key": "greeting", "value": "hello"}) == "hello"
    assert store.call("get", {"key": "greeting"}) == "hello"


def test_set_normalises_spaces_in_key(store):
    store.call("set", {"key": " ns : a ", "value": 1})
    assert store.call("get", {"key": "ns:a"}) == 1


def test_keys_are_case_sensitive(store):
    store.call("set", {"key": "ns:A", "value": 1})
    assert store.call("get", {"key": "ns:a"}) is None


def test_set_merges_dicts(store):
    store.call("set", {"key": "user:1", "value": {"name": "Ann", "age": 30, "tags": [1]}})
    result = store.call("set", {"key": "user:1", "value": {"age": None, "tags": [2], "x": {"a": 1}}})
    assert result == {"name": "Ann", "tags": [2], "x": {"a": 1}}
    assert store.call("get", {"key": "user:1"}) == result


def test_set_replaces_nested_values_whole(store):
    store.call("set", {"key": "k", "value": {"nested": {"a": 1, "b": 2}}})
    store.call("set", {"key": "k", "value": {"nested": {"a": 3}}})
    assert store.call("get", {"key": "k"}) == {"nested": {"a": 3}}


def test_set_scalar_over_dict_is_rejected(store):
    store.call("set", {"key": "k", "value": {"a": 1}})
    with pytest.raises(ValidationError, match=r"^Cannot convert an existing object to a simple value\."):
        store.call("set", {"key": "k", "value": 5})
    assert store.call("get", {"key": "k"}) == {"a": 1}


def test_set_scalar_over_dict_with_overwrite(store):
    store.call("set", {"key": "k", "value": {"a": 1}})
    assert store.call("set", {"key": "k", "value": 5, "overwrite": True}) == 5


def test_set_none_value_without_default_is_rejected(store):
    with pytest.raises(ValidationError):
        store.call("set", {"key": "k", "value": None})


def test_remove_returns_true_and_deletes(store):
    store.call("set", {"key": "ns:a", "value": 1})
    assert store.call("remove", {"key": "ns:a"}) is True
    assert store.call("get", {"key": "ns:a"}) is None
    assert store.call("remove", {"key": "ns:a"}) is True


def test_remove_list_of_keys(store):
    for name in "abc":
        store.call("set", {"key": f"ns:{name}", "value": name})
    assert store.call("remove", {"key": ["ns:a", "ns:c", "ns:missing"]}) is True
    assert store.call("get", {"key": "ns:*"})["items"] == [{"key": "ns:b", "value": "b"}]


@pytest.mark.parametrize("key", ["ns:*", "ns:a*", "ns:a|b", "ns:<b", "ns:>a", "ns:>=a"])
def test_remove_rejects_patterns(store, key):
    message = "You cannot delete items using conditionals. Please remove each item separately."
    with pytest.raises(ValidationError) as raised:
        store.call("remove", {"key": key})
    assert str(raised.value).startswith(message)
    with pytest.raises(ValidationError):
        store.call("remove", {"key": ["ns:ok", key]})


def test_remove_batch_limits(store):
    with pytest.raises(ValidationError, match="^You must provide at least one item$"):
        store.call("remove", {"key": []})
    with pytest.raises(
        ValidationError, match="^You may only provide a maximum of 25 items in one batch remove request$"
    ):
        store.call("remove", {"key": [f"k{i}" for i in range(26)]})


def test_count_counts_live_items(store, clock):
    store.call("set", {"key": "a", "value": 1})
    store.call("set", {"key": "b", "value": 1, "ttl": 10})
    assert store.count() == 2
    clock.now += 11
    assert store.count() == 1


# Patterns and pagination


@pytest.fixture
def letters(store):
    for name in "abcdefg":
        store.call("set", {"key": f"ns:{name}", "value": name})
    store.call("set", {"key": "other:a", "value": "x"})
    store.call("set", {"key": "ns", "value": "simple"})
    return store


def names(result):
    return "".join(item["key"].split(":", 1)[1] for item in result["items"])


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("ns:*", "abcdefg"),
        ("ns:c*", "c"),
        ("ns:<c", "ab"),
        ("ns:<=c", "abc"),
        ("ns:>e", "fg"),
        ("ns:>=e", "efg"),
        ("ns:b|d", "bcd"),
        ("ns:d|b", ""),
        ("ns:zz*", ""),
        ("nothing:*", ""),
    ],
)
def test_get_patterns(letters, pattern, expected):
    result = letters.call("get", {"key": pattern})
    assert names(result) == expected
    assert "last_key" not in result


def test_get_prefix_pattern_excludes_neighbours(store):
    for name in ["ab", "abc", "abd", "ac", "a", "b"]:
        store.call("set", {"key": f"p:{name}", "value": 1})
    result = store.call("get", {"key": "p:ab*"})
    assert [item["key"] for item in result["items"]] == ["p:ab", "p:abc", "p:abd"]


def test_get_reverse(letters):
    assert names(letters.call("get", {"key": "ns:*", "reverse": True})) == "gfedcba"
    assert names(letters.call("get", {"key": "ns:<=c", "reverse": True})) == "cba"


def test_pagination_forward(letters):
    seen = ""
    start = None
    pages = 0
    while True:
        params = {"key": "ns:*", "limit": 3}
        if start is not None:
            params["start"] = start
        page = letters.call("get", params)
        pages += 1
        seen += names(page)
        start = page.get("last_key")
        if start is None:
            break
    assert seen == "abcdefg"
    assert pages == 3


def test_last_key_present_when_page_is_full(letters):
    page = letters.call("get", {"key": "ns:*", "limit": 7})
    assert page["last_key"] == "ns:g"
    last = letters.call("get", {"key": "ns:*", "limit": 7, "start": page["last_key"]})
    assert last == {"items": []}


def test_pagination_reverse(letters):
    page = letters.call("get", {"key": "ns:*", "limit": 4, "reverse": True})
    assert names(page) == "gfed"
    rest = letters.call("get", {"key": "ns:*", "limit": 4, "reverse": True, "start": page["last_key"]})
    assert names(rest) == "cba"
    assert "last_key" not in rest


def test_start_from_other_collection_is_rejected(letters):
    with pytest.raises(ValidationError, match="start"):
        letters.call("get", {"key": "ns:*", "start": "other:a"})


@pytest.mark.parametrize("limit", [0, 1001, -1, 1.5, "10", True, None])
def test_limit_out_of_range(store, limit):
    with pytest.raises(ValidationError, match=r"^'limit' must be between 1 and 1000$"):
        store.call("get", {"key": "ns:*", "limit": limit})


def test_limit_bounds_accepted(store):
    assert store.call("get", {"key": "ns:*", "limit": 1}) == {"items": []}
    assert store.call("get", {"key": "ns:*", "limit": 1000}) == {"items": []}


def test_star_not_at_end_is_rejected(store):
    with pytest.raises(ValidationError, match="^Invalid key"):
        store.call("get", {"key": "ns:a*b"})


# Batch get


def test_batch_get_returns_found_items(letters):
    result = letters.call("get", {"key": ["ns:a", "ns:missing", "ns"]})
    assert result == {"items": [{"key": "ns:a", "value": "a"}, {"key": "ns", "value": "simple"}]}


def test_batch_get_limits(store):
    with pytest.raises(ValidationError, match="^You must provide at least one key$"):
        store.call("get", {"key": []})
    with pytest.raises(
        ValidationError, match="^You may only provide a maximum of 25 keys in one batch get request$"
    ):
        store.call("get", {"key": [f"k{i}" for i in range(26)]})
    assert store.call("get", {"key": [f"k{i}" for i in range(25)]}) == {"items": []}


def test_batch_get_rejects_patterns_and_duplicates(store):
    with pytest.raises(ValidationError):
        store.call("get", {"key": ["ns:*"]})
    with pytest.raises(ValidationError, match="duplicates"):
        store.call("get", {"key": ["a", " a"]})


# Meta


def test_meta_on_exact_key(store, clock):
    store.call("set", {"key": "ns:a", "value": 1, "label1": "room:x"})
    clock.now += 5
    store.call("set", {"key": "ns:a", "value": 2})
    item = store.call("get", {"key": "ns:a", "meta": True})
    assert item == {
        "key": "ns:a",
        "value": 2,
        "created": int(NOW * 1000),
        "modified": int((NOW + 5) * 1000),
        "ttl": None,
        "label1": "room:x",
        "label2": None,
        "label3": None,
        "label4": None,
        "label5": None,
    }


def test_meta_on_pattern_items(store):
    store.call("set", {"key": "ns:a", "value": 1, "ttl": 60})
    item = store.call("get", {"key": "ns:*", "meta": True})["items"][0]
    assert item["ttl"] == int((NOW + 60) * 1000)
    assert item["created"] == int(NOW * 1000)


def test_set_with_meta_returns_item(store):
    item = store.call("set", {"key": "ns:a", "value": 1, "meta": True})
    assert item["key"] == "ns:a"
    assert item["value"] == 1
    assert item["modified"] == int(NOW * 1000)


# Persistence


def test_data_survives_reopen(store, clock):
    store.call("set", {"key": "ns:a", "value": {"x": [1, 2.5, "é", None, True]}, "label2": "l:1"})
    store.call("set", {"key": "ns:b", "value": 1})
    store.call("remove", {"key": "ns:b"})
    store = reopen(store, clock)
    try:
        assert store.call("get", {"key": "ns:*"}) == {
            "items": [{"key": "ns:a", "value": {"x": [1, 2.5, "é", None, True]}}]
        }
        assert store.call("get_by_label", {"label": "label2", "key": "l:1"})["items"][0]["key"] == "ns:a"
    finally:
        store.close()


def test_results_do_not_alias_stored_values(store):
    value = {"list": [1]}
    store.call("set", {"key": "k", "value": value})
    value["list"].append(2)
    result = store.call("get", {"key": "k"})
    result["list"].append(3)
    assert store.call("get", {"key": "k"}) == {"list": [1]}


def test_unknown_method_and_parameter(store):
    with pytest.raises(DataError, match="Unknown data method"):
        store.call("drop_everything", {})
    with pytest.raises(ValidationError, match="Unknown parameters"):
        store.call("get", {"key": "a", "limt": 5})


def test_calls_after_close_fail(tmp_path):
    opened = DataStore.open(tmp_path)
    opened.close()
    opened.close()
    with pytest.raises(DataError, match="closed"):
        opened.call("get", {"key": "a"})


def test_results_are_json_serialisable(store):
    store.call("set", {"key": "ns:a", "value": {"a": 1}, "ttl": 100, "label1": "x"})
    for result in (
        store.call("get", {"key": "ns:a", "meta": True}),
        store.call("get", {"key": "ns:*", "meta": True}),
        store.call("get_by_label", {"label": "1", "key": "x", "meta": True}),
    ):
        assert json.loads(json.dumps(result)) == result


# TTL


def test_expired_item_is_not_returned(store, clock):
    store.call("set", {"key": "ns:a", "value": 1, "ttl": 10})
    assert store.call("get", {"key": "ns:a"}) == 1
    clock.now += 10
    assert store.call("get", {"key": "ns:a"}) is None
    assert store.call("get", {"key": "ns:*"}) == {"items": []}
    assert store.call("get", {"key": ["ns:a"]}) == {"items": []}


def test_expired_items_dropped_after_limit(store, clock):
    store.call("set", {"key": "ns:a", "value": 1, "ttl": 5})
    store.call("set", {"key": "ns:b", "value": 2})
    store.call("set", {"key": "ns:c", "value": 3})
    clock.now += 6
    page = store.call("get", {"key": "ns:*", "limit": 2})
    assert page == {"items": [{"key": "ns:b", "value": 2}], "last_key": "ns:b"}


def test_ttl_omitted_keeps_and_none_removes(store, clock):
    store.call("set", {"key": "k", "value": {"a": 1}, "ttl": 100})
    store.call("set", {"key": "k", "value": {"b": 2}})
    assert store.call("get", {"key": "k", "meta": True})["ttl"] == int((NOW + 100) * 1000)
    store.call("set", {"key": "k", "value": {"c": 3}, "ttl": None})
    assert store.call("get", {"key": "k", "meta": True})["ttl"] is None


def test_ttl_absolute_and_iso(store):
    store.call("set", {"key": "a", "value": 1, "ttl": 2_000_000_000})
    store.call("set", {"key": "b", "value": 1, "ttl": "2033-05-18T03:33:20Z"})
    assert store.call("get", {"key": "a", "meta": True})["ttl"] == 2_000_000_000_000
    assert store.call("get", {"key": "b", "meta": True})["ttl"] == 2_000_000_000_000


def test_invalid_ttl(store):
    with pytest.raises(ValidationError, match=r"^Invalid ttl value\."):
        store.call("set", {"key": "k", "value": 1, "ttl": "next week"})
    assert store.call("get", {"key": "k"}) is None


def test_expired_item_counts_as_missing_for_writes(store, clock):
    store.call("set", {"key": "k", "value": {"old": 1}, "ttl": 1, "label1": "l:x"})
    clock.now += 2
    assert store.call("set", {"key": "k", "value": {"new": 1}}) == {"new": 1}
    item = store.call("get", {"key": "k", "meta": True})
    assert item["ttl"] is None
    assert item["label1"] is None
    assert item["created"] == int(clock.now * 1000)


def test_deferred_import_events_wait_in_order(store):
    events = []
    store.on_change = events.append
    store.import_entries([{"key": "a", "value": 1}, {"key": "b", "value": 2}], defer_events=True)
    assert events == []

    # A later change delivers the queued events first, so the order holds.
    store.call("set", {"key": "a", "value": 3})
    assert [(event["name"], event["key"]) for event in events] == [
        ("created", "a"), ("created", "b"), ("updated", "a"),
    ]
    assert store.deliver_events() == 0


def test_deliver_events_limit(store):
    events = []
    store.on_change = events.append
    store.import_entries([{"key": f"k{n}", "value": n} for n in range(5)], defer_events=True)
    assert store.deliver_events(limit=2) == 3
    assert [event["key"] for event in events] == ["k0", "k1"]
    assert store.deliver_events() == 0
    assert len(events) == 5


def test_expire_deletes_and_emits(store, clock):
    events = []
    store.on_change = events.append
    store.call("set", {"key": "a", "value": 1, "ttl": 5})
    store.call("set", {"key": "b", "value": 1})
    events.clear()
    assert store.expire() == 0
    clock.now += 5
    assert store.expire() == 1
    assert [(event["name"], event["key"]) for event in events] == [("deleted", "a")]
    assert events[0]["previous"]["value"] == 1
    assert store.count() == 1
    store = reopen(store, clock)
    try:
        assert store.call("get", {"key": ["a", "b"]}) == {"items": [{"key": "b", "value": 1}]}
    finally:
        store.close()


# exists, overwrite, default, remove_nulls


def test_exists_true_requires_item(store):
    with pytest.raises(DataError) as raised:
        store.call("set", {"key": "ns:a", "value": 1, "exists": True})
    assert type(raised.value) is DataError
    assert str(raised.value) == 'Item does not exist (key "ns:a")'
    store.call("set", {"key": "ns:a", "value": 1})
    assert store.call("set", {"key": "ns:a", "value": 2, "exists": True}) == 2


def test_exists_false_requires_absence(store):
    assert store.call("set", {"key": "ns:a", "value": 1, "exists": False}) == 1
    with pytest.raises(DataError, match=r'^Item already exists \(key "ns:a"\)$'):
        store.call("set", {"key": "ns:a", "value": 2, "exists": False})
    assert store.call("get", {"key": "ns:a"}) == 1


def test_overwrite_drops_labels_and_ttl(store):
    store.call("set", {"key": "k", "value": {"a": 1}, "ttl": 100, "label1": "l:1", "label2": "l:2"})
    store.call("set", {"key": "k", "value": {"b": 2}, "overwrite": True, "label2": "l:3"})
    item = store.call("get", {"key": "k", "meta": True})
    assert item["value"] == {"b": 2}
    assert item["ttl"] is None
    assert item["label1"] is None
    assert item["label2"] == "l:3"
    assert store.call("get_by_label", {"label": "label1", "key": "l:*"}) == {"items": []}


def test_default_on_missing_and_existing(store):
    assert store.call("set", {"key": "k", "value": None, "default": {"count": 0}}) == {"count": 0}
    store.call("set", {"key": "k", "value": {"count": 5}})
    assert store.call("set", {"key": "k", "value": None, "default": {"count": 0, "x": 1}}) == {
        "count": 5,
        "x": 1,
    }


def test_default_errors(store):
    with pytest.raises(ValidationError, match="^'default' must be of the same type as the value"):
        store.call("set", {"key": "k", "value": 1, "default": "x"})
    with pytest.raises(ValidationError, match=r"^'default' cannot use the \$add keyword"):
        store.call("set", {"key": "k", "value": {"a": 1}, "default": {"a": {"$add": 1}}})


def test_remove_nulls(store):
    assert store.call("set", {"key": "k", "value": {"a": None}, "remove_nulls": True}) == {"a": None}
    assert store.call("get", {"key": "k"}) == {"a": None}


def test_set_rejects_patterns_as_keys(store):
    with pytest.raises(ValidationError, match="cannot contain the '|' or the '\\*' characters"):
        store.call("set", {"key": "ns:*", "value": 1})


def test_set_rejects_invalid_value_from_any_caller(store):
    with pytest.raises(ValidationError, match=r'^Invalid value at value\["a"\]: nan'):
        store.call("set", {"key": "k", "value": {"a": float("nan")}})


# $add and add


def test_set_with_add(store):
    assert store.call("set", {"key": "n", "value": {"$add": 5}}) == 5
    assert store.call("set", {"key": "n", "value": {"$add": -2}}) == 3
    store.call("set", {"key": "d", "value": {"hits": {"$add": 1}, "name": "x"}})
    assert store.call("set", {"key": "d", "value": {"hits": {"$add": 1}}}) == {"hits": 2, "name": "x"}


def test_add_whole_value(store):
    assert store.call("add", {"key": "n", "amount": 2}) == 2
    assert store.call("add", {"key": "n", "amount": 0.5}) == 2.5


def test_add_field_returns_whole_value(store):
    store.call("set", {"key": "d", "value": {"name": "x"}, "ttl": 100, "label1": "l:1"})
    assert store.call("add", {"key": "d", "field": "hits", "amount": 3}) == {"name": "x", "hits": 3}
    item = store.call("get", {"key": "d", "meta": True})
    assert item["ttl"] == int((NOW + 100) * 1000)
    assert item["label1"] == "l:1"


def test_add_errors(store):
    with pytest.raises(ValidationError, match=r"^'value' must be a number when using \$add"):
        store.call("add", {"key": "n", "amount": "1"})
    with pytest.raises(DataError, match="^Values must be numeric") as raised:
        store.call("add", {"key": "d", "field": "f", "amount": "1"})
    assert type(raised.value) is DataError
    store.call("set", {"key": "s", "value": "text"})
    with pytest.raises(DataError, match="^Values must be numeric"):
        store.call("add", {"key": "s", "amount": 1})
    store.call("set", {"key": "num", "value": 4})
    with pytest.raises(DataError, match="^Values must be numeric"):
        store.call("add", {"key": "num", "field": "f", "amount": 1})
    assert store.call("get", {"key": "num"}) == 4


# Item size


def test_item_size_limit_through_set(store):
    with pytest.raises(ValidationError) as raised:
        store.call("set", {"key": "big", "value": "x" * 409_600})
    assert str(raised.value).startswith("Item size of 400.01 KB is greater than the maximum size of 400 KB.")
    assert str(raised.value).endswith('(key "big")')
    assert store.call("get", {"key": "big"}) is None


def test_item_size_counts_merged_value(store):
    store.call("set", {"key": "k", "value": {"a": "x" * 300_000}})
    with pytest.raises(ValidationError, match="^Item size of"):
        store.call("set", {"key": "k", "value": {"b": "y" * 200_000}})
    assert list(store.call("get", {"key": "k"})) == ["a"]


# Labels


@pytest.fixture
def members(store):
    for number, room in enumerate(["lobby", "lobby", "dev", "lobby", "zoo"]):
        store.call("set", {"key": f"connection:{number}", "value": number, "label1": f"room:{room}"})
    return store


def label_keys(result):
    return [item["key"] for item in result["items"]]


def test_get_by_label_exact(members):
    result = members.call("get_by_label", {"label": "label1", "key": "room:lobby"})
    assert label_keys(result) == ["connection:0", "connection:1", "connection:3"]


def test_get_by_label_patterns(members):
    assert label_keys(members.call("get_by_label", {"label": "1", "key": "room:*"})) == [
        "connection:2",
        "connection:0",
        "connection:1",
        "connection:3",
        "connection:4",
    ]
    assert label_keys(members.call("get_by_label", {"label": "1", "key": "room:>lobby"})) == ["connection:4"]
    assert label_keys(members.call("get_by_label", {"label": "1", "key": "room:a|e", "reverse": True})) == [
        "connection:2"
    ]


def test_get_with_label_option(members):
    result = members.call("get", {"key": "room:dev", "label": "label1"})
    assert label_keys(result) == ["connection:2"]


def test_get_by_label_pagination(members):
    first = members.call("get_by_label", {"label": "label1", "key": "room:lobby", "limit": 2})
    assert label_keys(first) == ["connection:0", "connection:1"]
    rest = members.call(
        "get_by_label", {"label": "label1", "key": "room:lobby", "limit": 2, "start": first["last_key"]}
    )
    assert label_keys(rest) == ["connection:3"]
    assert "last_key" not in rest


def test_get_by_label_invalid_start(members):
    with pytest.raises(ValidationError, match="start"):
        members.call("get_by_label", {"label": "label1", "key": "room:*", "start": "connection:1"})


def test_label_change_and_removal(members):
    members.call("set", {"key": "connection:0", "value": 0, "label1": "room:dev"})
    members.call("set", {"key": "connection:1", "value": 1, "label1": None})
    members.call("remove", {"key": "connection:3"})
    assert label_keys(members.call("get_by_label", {"label": "label1", "key": "room:lobby"})) == []
    assert label_keys(members.call("get_by_label", {"label": "label1", "key": "room:dev"})) == [
        "connection:0",
        "connection:2",
    ]


def test_labels_are_independent_slots(store):
    store.call("set", {"key": "k", "value": 1, "label1": "a:x", "label5": "a:x"})
    assert label_keys(store.call("get_by_label", {"label": "label5", "key": "a:x"})) == ["k"]
    assert label_keys(store.call("get_by_label", {"label": "label2", "key": "a:x"})) == []


def test_simple_label_value(store):
    store.call("set", {"key": "ns:a", "value": 1, "label2": "vip"})
    assert label_keys(store.call("get_by_label", {"label": "label2", "key": "vip"})) == ["ns:a"]


def test_invalid_labels(store):
    with pytest.raises(ValidationError, match=r'^Invalid key \(label1 "room:"\)'):
        store.call("set", {"key": "k", "value": 1, "label1": "room:"})
    with pytest.raises(ValidationError, match="^Invalid label"):
        store.call("get_by_label", {"label": "label9", "key": "x"})


# Batch set


def test_batch_set(store):
    store.call("set", {"key": "a", "value": {"old": 1}, "label1": "l:1"})
    result = store.call(
        "set",
        {"items": [{"key": "a", "value": {"new": 1}}, {"key": "ns:b", "value": 2, "label2": "l:2", "ttl": 60}]},
    )
    assert result == {"items": [{"key": "a", "value": {"new": 1}}, {"key": "ns:b", "value": 2}]}
    item = store.call("get", {"key": "a", "meta": True})
    assert item["value"] == {"new": 1}
    assert item["label1"] is None
    assert store.call("get", {"key": "ns:b", "meta": True})["ttl"] == int((NOW + 60) * 1000)


def test_batch_set_limits(store):
    with pytest.raises(ValidationError, match="^You must provide at least one item$"):
        store.call("set", {"items": []})
    with pytest.raises(
        ValidationError, match="^You may only provide a maximum of 25 items in one batch set request$"
    ):
        store.call("set", {"items": [{"key": f"k{i}", "value": i} for i in range(26)]})


def test_batch_set_is_all_or_nothing(store):
    with pytest.raises(ValidationError, match="^Invalid key"):
        store.call("set", {"items": [{"key": "good", "value": 1}, {"key": "ns:", "value": 1}]})
    assert store.call("get", {"key": "good"}) is None
    with pytest.raises(ValidationError, match="duplicates"):
        store.call("set", {"items": [{"key": "a", "value": 1}, {"key": "a", "value": 2}]})
    with pytest.raises(ValidationError, match="unknown fields"):
        store.call("set", {"items": [{"key": "a", "value": 1, "overwrite": True}]})


# Change events


@pytest.fixture
def events(store):
    received = []
    store.on_change = received.append
    return received


def test_events_created_updated_deleted(store, events):
    store.call("set", {"key": "ns:a", "value": 1})
    store.call("set", {"key": "ns:a", "value": 2})
    store.call("remove", {"key": "ns:a"})
    store.call("remove", {"key": "ns:a"})
    assert [event["name"] for event in events] == ["created", "updated", "deleted"]
    created, updated, deleted = events
    assert created["key"] == "ns:a"
    assert created["previous"] is None
    assert created["item"]["value"] == 1
    assert created["item"]["created"] == int(NOW * 1000)
    assert updated["previous"]["value"] == 1
    assert updated["item"]["value"] == 2
    assert deleted["item"] is None
    assert deleted["previous"]["value"] == 2


def test_events_for_add_and_batches(store, events):
    store.call("add", {"key": "n", "amount": 1})
    store.call("set", {"items": [{"key": "a", "value": 1}, {"key": "b", "value": 1}]})
    store.call("remove", {"key": ["a", "b", "c"]})
    assert [(event["name"], event["key"]) for event in events] == [
        ("created", "n"),
        ("created", "a"),
        ("created", "b"),
        ("deleted", "a"),
        ("deleted", "b"),
    ]


def test_no_event_for_failed_write(store, events):
    with pytest.raises(DataError):
        store.call("set", {"key": "k", "value": 1, "exists": True})
    assert events == []


def test_failing_listener_does_not_fail_call(store, caplog):
    def broken(event):
        raise RuntimeError("listener bug")

    store.on_change = broken
    assert store.call("set", {"key": "k", "value": 1}) == 1
    assert store.call("get", {"key": "k"}) == 1
    assert "listener bug" in caplog.text


def test_events_are_json_serialisable(store, events):
    store.call("set", {"key": "k", "value": {"a": [1]}, "ttl": 5, "label3": "x:y"})
    assert json.loads(json.dumps(events)) == events


def test_import_overwrite_events(store, events):
    store.call("set", {"key": "a", "value": 1})
    store.call("set", {"key": "b", "value": 1})
    events.clear()
    result = store.import_entries([{"key": "b", "value": 2}, {"key": "c", "value": 3}], overwrite=True)
    assert result.imported == 2
    assert result.deleted == 2
    assert [(event["name"], event["key"]) for event in events] == [
        ("deleted", "a"),
        ("deleted", "b"),
        ("created", "b"),
        ("created", "c"),
    ]
    assert store.call("get", {"key": ["a", "b", "c"]}) == {
        "items": [{"key": "b", "value": 2}, {"key": "c", "value": 3}]
    }
