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
