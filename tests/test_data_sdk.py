"""The runtime's ``data`` SDK, wired to a real DataStore through a JSON round trip."""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ampt_sandbox.errors import ERROR_TYPES, DataError, ValidationError
from ampt_sandbox.runtime.data import Data
from ampt_sandbox.store import DataStore


class Channel:
    """Carries calls as the gateway channel does: JSON both ways, errors by type name."""

    def __init__(self, store: DataStore) -> None:
        self.store = store
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, method: str, params: dict[str, Any]) -> Any:
        params = json.loads(json.dumps(params, allow_nan=False))
        self.calls.append((method, params))
        try:
            result = self.store.call(method, params)
        except DataError as exc:
            error = {"type": type(exc).__name__, "message": str(exc)}
            raise ERROR_TYPES[error["type"]](error["message"]) from None
        return json.loads(json.dumps(result, allow_nan=False))


@pytest.fixture
def channel(tmp_path):
    store = DataStore.open(tmp_path)
    yield Channel(store)
    store.close()


@pytest.fixture
def data(channel) -> Data:
    return Data(channel)


async def test_set_and_get(data):
    assert await data.set("greeting", "hello") == "hello"
    assert await data.get("greeting") == "hello"
    assert await data.get("missing") is None


async def test_merge_and_remove(data):
    await data.set("user:1", {"name": "Ann", "age": 3})
    assert await data.set("user:1", {"age": None}) == {"name": "Ann"}
    assert await data.remove("user:1") is True
    assert await data.get("user:1") is None


async def test_pattern_page(data):
    for number in range(5):
        await data.set(f"ns:{number}", number)
    page = await data.get("ns:*", limit=2)
    assert page == {"items": [{"key": "ns:0", "value": 0}, {"key": "ns:1", "value": 1}], "last_key": "ns:1"}
    rest = await data.get("ns:*", limit=10, start=page["last_key"])
    assert [item["value"] for item in rest["items"]] == [2, 3, 4]


async def test_meta_times_are_datetimes(data):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    item = await data.set("k", 1, ttl=60, meta=True)
    assert isinstance(item["created"], datetime)
    assert item["created"].tzinfo is not None
    assert item["created"] >= before
    assert item["ttl"] - item["created"] == timedelta(seconds=60)
    got = await data.get("k", meta=True)
    assert got["modified"] == item["modified"]


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (b"bytes", "value"),
        ({"a": [1, 2, {1, 2}]}, 'value["a"][2]'),
        ({"a": [1, 2, float("nan")]}, 'value["a"][2]'),
        ({"a": math.inf}, 'value["a"]'),
        ({("a", 1): 1}, "value[('a', 1)]"),
        ({"a": (1, 2)}, 'value["a"]'),
        ({"a": object()}, 'value["a"]'),
        ({"a": {"b": "\ud83d"}}, 'value["a"]["b"]'),
    ],
)
async def test_invalid_values_raise_before_sending(data, channel, value, where):
    with pytest.raises(ValidationError) as raised:
        await data.set("k", value)
    assert f"at {where}:" in str(raised.value)
    assert channel.calls == []


async def test_invalid_key_raises_before_sending(data, channel):
    with pytest.raises(ValidationError, match=r'^Invalid key \(key "ns:"\)$'):
        await data.set("ns:", 1)
    with pytest.raises(ValidationError, match="^Invalid key"):
        await data.get(5)
    assert channel.calls == []


async def test_store_errors_arrive_as_their_class(data):
    await data.set("k", {"a": 1})
    with pytest.raises(DataError) as raised:
        await data.set("k", 1, exists=False)
    assert type(raised.value) is DataError
    assert str(raised.value).startswith("Item already exists")


# data.on


async def handler(event):
    return event


async def other_handler(event):
    return event


def test_on_call_and_decorator_forms(data):
    assert data.on("created:ns:*", handler) is None

    @data.on("*", timeout=10)
    async def decorated(event):
        return event

    event = {"name": "created", "key": "ns:a", "item": None, "previous": None}
    assert data.handlers_for(event) == [(handler, 5.0), (decorated, 10.0)]
    assert data.event_names == ["created:ns:*", "*"]


def test_on_every_matching_handler_runs(data):
    data.on("created:foo", handler)
    data.on("created:foo", other_handler)
    data.on("updated:foo", other_handler)
    event = {"name": "created", "key": "foo", "item": None, "previous": None}
    assert [entry[0] for entry in data.handlers_for(event)] == [handler, other_handler]


def test_on_simple_key_filter_ignores_collections(data):
    data.on("created:foo", handler)
    assert data.handlers_for({"name": "created", "key": "foo:bar"}) == []


@pytest.mark.parametrize("name", ["create", "created:", "removed:ns:*", "", "created:ns:a*b", 5])
def test_on_invalid_names(data, name):
    with pytest.raises(ValueError, match="^Invalid event name: "):
        data.on(name, handler)


def test_on_rejects_sync_handler(data):
    def not_async(event):
        return event

    with pytest.raises(TypeError, match="async def"):
        data.on("created", not_async)
    assert data.event_names == []


def test_on_timeout_is_lowered_to_60(data, caplog):
    with caplog.at_level(logging.WARNING, logger="ampt_sandbox.sdk"):
        data.on("deleted", handler, timeout=120)
    assert data.handlers_for({"name": "deleted", "key": "x"}) == [(handler, 60.0)]
    assert "maximum" in caplog.text


def test_clear_handlers(data):
    data.on("*", handler)
    data.clear_handlers()
    assert data.handlers_for({"name": "created", "key": "x"}) == []


def test_decode_event_turns_times_into_datetimes():
    event = {
        "name": "updated",
        "key": "k",
        "item": {"key": "k", "value": 2, "created": 0, "modified": 1000, "ttl": None},
        "previous": {"key": "k", "value": 1, "created": 0, "modified": 0, "ttl": None},
    }
    decoded = Data.decode_event(event)
    assert decoded["item"]["modified"] == datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc)
    assert decoded["item"]["ttl"] is None
    assert decoded["previous"]["value"] == 1


# More SDK forms


async def test_ttl_datetime_is_absolute(data, channel):
    moment = datetime(2030, 1, 1, tzinfo=timezone.utc)
    item = await data.set("k", 1, ttl=moment, meta=True)
    assert item["ttl"] == moment
    assert channel.calls[-1][1]["ttl"] == "2030-01-01T00:00:00+00:00"


async def test_naive_datetime_ttl_is_utc(data):
    item = await data.set("k", 1, ttl=datetime(2030, 1, 1), meta=True)
    assert item["ttl"] == datetime(2030, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("ttl", ["soon", True, [1], float("nan")])
async def test_invalid_ttl_raises_before_sending(data, channel, ttl):
    with pytest.raises(ValidationError, match=r"^Invalid ttl value\."):
        await data.set("k", 1, ttl=ttl)
    assert channel.calls == []


async def test_omitted_ttl_and_labels_are_not_sent(data, channel):
    await data.set("k", {"a": 1}, ttl=60, label1="room:a")
    await data.set("k", {"b": 1})
    assert "ttl" not in channel.calls[-1][1]
    assert "label1" not in channel.calls[-1][1]
    item = await data.get("k", meta=True)
    assert item["ttl"] is not None
    assert item["label1"] == "room:a"


async def test_none_removes_ttl_and_label(data):
    await data.set("k", {"a": 1}, ttl=60, label1="room:a")
    item = await data.set("k", {"b": 1}, ttl=None, label1=None, meta=True)
    assert item["ttl"] is None
    assert item["label1"] is None


async def test_get_by_label_and_label_option(data):
    await data.set("connection:1", {"name": "ann"}, label1="room:lobby")
    await data.set("connection:2", {"name": "bob"}, label1="room:dev")
    page = await data.get_by_label("label1", "room:lobby")
    assert page == {"items": [{"key": "connection:1", "value": {"name": "ann"}}]}
    assert await data.get("room:*", label="1") == {
        "items": [
            {"key": "connection:2", "value": {"name": "bob"}},
            {"key": "connection:1", "value": {"name": "ann"}},
        ]
    }


async def test_batch_get_and_remove(data):
    await data.set("a", 1)
    await data.set("b", 2)
    assert await data.get(["a", "b", "c"]) == {"items": [{"key": "a", "value": 1}, {"key": "b", "value": 2}]}
    assert await data.remove(["a", "b"]) is True
    assert await data.get(["a", "b"]) == {"items": []}


async def test_batch_limits_raise_before_sending(data, channel):
    with pytest.raises(ValidationError, match="^You must provide at least one key$"):
        await data.get([])
    with pytest.raises(ValidationError, match="maximum of 25 items in one batch remove request"):
        await data.remove([f"k{i}" for i in range(26)])
    with pytest.raises(ValidationError, match="You cannot delete items using conditionals"):
        await data.remove(["ns:a", "ns:*"])
    assert channel.calls == []


async def test_batch_set(data):
    moment = datetime(2030, 1, 1, tzinfo=timezone.utc)
    result = await data.set(
        [{"key": "a", "value": 1}, {"key": "b", "value": {"x": 1}, "label1": "l:1", "ttl": moment}],
        meta=True,
    )
    assert [item["key"] for item in result["items"]] == ["a", "b"]
    assert result["items"][1]["ttl"] == moment
    with pytest.raises(ValidationError) as raised:
        await data.set([{"key": "c", "value": {"bad": b"x"}}])
    assert 'items[0]["value"]["bad"]' in str(raised.value)


async def test_add_forms(data):
    assert await data.add("n", 5) == 5
    assert await data.add("n", -1.5) == 3.5
    assert await data.add("d", "hits", 2) == {"hits": 2}
    with pytest.raises(ValidationError, match=r"^'value' must be a number when using \$add$"):
        await data.add("n", "1")
    with pytest.raises(DataError, match="^Values must be numeric$"):
        await data.add("d", "hits", "2")


async def test_limit_checked_before_sending(data, channel):
    for limit in (0, 1001, True, 2.0):
        with pytest.raises(ValidationError, match=r"^'limit' must be between 1 and 1000$"):
            await data.get("ns:*", limit=limit)
    assert channel.calls == []


async def test_default_and_exists(data):
    assert await data.set("counter", None, default={"count": 0}) == {"count": 0}
    assert await data.set("counter", {"count": {"$add": 1}}, exists=True) == {"count": 1}
    with pytest.raises(ValidationError, match=r'^Invalid value at default\["x"\]'):
        await data.set("counter", {"a": 1}, default={"x": {1, 2}})
