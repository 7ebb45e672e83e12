"""Message parsing and encoding rules, without sockets."""

import datetime
import json

import pytest

from ampt_sandbox.protocol.messages import encode_outgoing, parse_message, replace_lone_surrogates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a":1}', {"a": 1}),
        ("[1,2]", [1, 2]),
        ("123", 123),
        ("-1.5e3", -1500.0),
        ("null", None),
        ('"s"', "s"),
        ("false", False),
        ("", None),
        ("hello", "hello"),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("-Infinity", "-Infinity"),
        ('{"a": NaN}', '{"a": NaN}'),
        ("  42  ", 42),
        ("{", "{"),
    ],
)
def test_parse_message(text, expected):
    assert parse_message(text) == expected
    assert type(parse_message(text)) is type(expected)


def test_parse_keeps_int_type():
    assert isinstance(parse_message("123"), int)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain text", b"plain text"),
        ({"a": 1, "b": [1, 2]}, b'{"a":1,"b":[1,2]}'),
        ({"name": "Zoë"}, '{"name":"Zoë"}'.encode()),
        (123, b"123"),
        (None, b"null"),
        (True, b"true"),
        ({"x": float("nan")}, b'{"x":null}'),
        ([float("inf")], b"[null]"),
        ("a\ud83db", "a\ufffdb".encode()),
        ("\ud83d\ude00", "\U0001F600".encode()),
    ],
)
def test_encode_outgoing(value, expected):
    assert encode_outgoing(value) == expected


def test_encode_datetime_as_iso_string():
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert json.loads(encode_outgoing({"at": moment})) == {"at": "2026-01-02T03:04:05.000Z"}


def test_encode_rejects_bytes():
    with pytest.raises(TypeError, match="binary data cannot be sent"):
        encode_outgoing(b"raw")


def test_encode_rejects_unserializable():
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        encode_outgoing({"s": {1, 2}})


def test_replace_lone_surrogates_keeps_valid_text():
    assert replace_lone_surrogates("héllo") == "héllo"
