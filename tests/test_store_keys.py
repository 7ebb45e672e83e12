"""Key, pattern and label rules of the data store (no files)."""

from __future__ import annotations

import pytest

from ampt_sandbox.errors import ValidationError
from ampt_sandbox.store.keys import (
    Key,
    KeyRange,
    is_conditional,
    parse_key,
    parse_label_slot,
    parse_label_value,
    parse_query,
    parse_removal_key,
    prefix_range,
    prefix_successor,
)


@pytest.mark.parametrize(
    ("raw", "collection", "name"),
    [
        ("foo", None, "foo"),
        ("ns:foo", "ns", "foo"),
        ("ns:a:b:c", "ns", "a:b:c"),
        ("  foo  ", None, "foo"),
        (" ns : foo ", "ns", "foo"),
        ("ns: a : b ", "ns", "a:b"),
        ("simple*key|x", None, "simple*key|x"),
        ("<simple", None, "<simple"),
        ("ns:a<b", "ns", "a<b"),
        ("ns:é", "ns", "é"),
    ],
)
def test_parse_key_valid(raw, collection, name):
    key = parse_key(raw)
    assert key == Key(collection, name)


def test_key_text_is_normalised():
    assert parse_key(" ns : a ").text == "ns:a"
    assert parse_key(" a ").text == "a"


@pytest.mark.parametrize("raw", ["", "   ", "ns:", "ns:  ", ":x", " : x", ":"])
def test_parse_key_empty_parts(raw):
    with pytest.raises(ValidationError) as raised:
        parse_key(raw)
    assert str(raised.value).startswith("Invalid key (key ")


@pytest.mark.parametrize("raw", [None, 5, b"ns:a", ["a"], {"key": "a"}])
def test_parse_key_not_a_string(raw):
    with pytest.raises(ValidationError, match="^Invalid key"):
        parse_key(raw)


def test_key_error_quotes_the_key():
    with pytest.raises(ValidationError) as raised:
        parse_key("ns:")
    assert str(raised.value) == 'Invalid key (key "ns:")'


def test_key_size_limit_is_256_bytes():
    assert parse_key("k" * 256).name == "k" * 256
    assert parse_key("ns:" + "k" * 256).name == "k" * 256
    with pytest.raises(ValidationError) as raised:
        parse_key("k" * 257)
    assert str(raised.value).startswith("Invalid key: Maximum Key size is 256 bytes")
    with pytest.raises(ValidationError, match="^Invalid key: Maximum Key size is 256 bytes"):
        parse_key("ns:" + "k" * 257)


def test_key_size_counts_utf8_bytes():
    assert parse_key("é" * 128).name == "é" * 128  # 256 bytes
    with pytest.raises(ValidationError, match="Maximum Key size"):
        parse_key("é" * 128 + "a")


def test_collection_size_limit():
    assert parse_key("c" * 256 + ":a").collection == "c" * 256
    with pytest.raises(ValidationError) as raised:
        parse_key("c" * 257 + ":a")
    assert str(raised.value).startswith("Invalid key: Maximum collection name size is 256 bytes")


def test_long_key_is_cut_in_message():
    with pytest.raises(ValidationError) as raised:
        parse_key("k" * 5000)
    assert len(str(raised.value)) < 400


def test_lone_surrogate_key_is_invalid():
    with pytest.raises(ValidationError, match="^Invalid key"):
        parse_key("ns:\ud83d")


@pytest.mark.parametrize("raw", ["ns:a|b", "ns:a*", "ns:*", "ns:|"])
def test_collection_names_reject_pipe_and_star(raw):
    with pytest.raises(ValidationError) as raised:
        parse_key(raw)
    assert str(raised.value).startswith(
        "Invalid key: Key names in collections cannot contain the '|' or the '*' characters."
    )


@pytest.mark.parametrize("raw", ["ns:<a", "ns:>a", "ns: >a"])
def test_collection_names_reject_leading_comparison(raw):
    with pytest.raises(ValidationError) as raised:
        parse_key(raw)
    assert str(raised.value).startswith(
        "Invalid key: Key names in collections cannot start with the '>' or '<' characters."
    )


# Patterns


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ns:*", KeyRange("ns", None, True, None, False)),
        ("ns:ab*", KeyRange("ns", "ab", True, "ac", False)),
        ("ns:<m", KeyRange("ns", upper="m", upper_inclusive=False)),
        ("ns:<=m", KeyRange("ns", upper="m", upper_inclusive=True)),
        ("ns:>m", KeyRange("ns", lower="m", lower_inclusive=False)),
        ("ns:>=m", KeyRange("ns", lower="m", lower_inclusive=True)),
        ("ns:> m", KeyRange("ns", lower="m", lower_inclusive=False)),
        ("ns:a|f", KeyRange("ns", "a", True, "f", True)),
        ("ns: a | f ", KeyRange("ns", "a", True, "f", True)),
    ],
)
def test_parse_query_patterns(raw, expected):
    assert parse_query(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [("ns:a", Key("ns", "a")), ("a*", Key(None, "a*"))])
def test_parse_query_exact_keys(raw, expected):
    assert parse_query(raw) == expected


@pytest.mark.parametrize("raw", ["ns:a*b", "ns:**", "ns:*a", "ns:<", "ns:>=", "ns:a|", "ns:|b", "ns:a|b|c", "ns:<a*", "ns:a|b*"])
def test_parse_query_malformed(raw):
    with pytest.raises(ValidationError, match="^Invalid key"):
        parse_query(raw)


@pytest.mark.parametrize(
    ("bounds", "inside", "outside"),
    [
        (KeyRange("ns", "b", True, "d", True), ["b", "c", "d", "bz"], ["a", "d0", "e"]),
        (KeyRange("ns", "b", False, "d", False), ["ba", "c"], ["b", "d"]),
        (prefix_range("ns", "ab"), ["ab", "abc", "ab\U0010ffff"], ["aa", "ac", "a", "b"]),
    ],
)
def test_key_range_matches(bounds, inside, outside):
    for name in inside:
        assert bounds.matches(name), name
    for name in outside:
        assert not bounds.matches(name), name


@pytest.mark.parametrize(
    ("prefix", "successor"),
    [("ab", "ac"), ("a\U0010ffff", "b"), ("\U0010ffff", None), ("", None), ("z", "{")],
)
def test_prefix_successor(prefix, successor):
    assert prefix_successor(prefix) == successor


# remove


@pytest.mark.parametrize(
    ("raw", "conditional"),
    [
        ("ns:*", True),
        ("ns:a*", True),
        ("ns:a|b", True),
        ("ns:<a", True),
        ("ns: >=a", True),
        ("ns:a", False),
        ("plain", False),
        ("a*", False),
        (5, False),
    ],
)
def test_is_conditional(raw, conditional):
    assert is_conditional(raw) is conditional


def test_parse_removal_key_message():
    with pytest.raises(ValidationError) as raised:
        parse_removal_key("ns:<b")
    assert str(raised.value) == (
        "You cannot delete items using conditionals. Please remove each item separately. "
        '(key "ns:<b")'
    )


# Labels


@pytest.mark.parametrize(("raw", "slot"), [("label1", "label1"), ("3", "label3"), (" label5 ", "label5")])
def test_parse_label_slot(raw, slot):
    assert parse_label_slot(raw) == slot


@pytest.mark.parametrize("raw", ["label6", "0", "label", "", None, 1])
def test_parse_label_slot_invalid(raw):
    with pytest.raises(ValidationError, match="^Invalid label"):
        parse_label_slot(raw)


def test_label_value_follows_key_rules():
    assert parse_label_value(" email : ann@example.com ", "label1").text == "email:ann@example.com"
    with pytest.raises(ValidationError) as raised:
        parse_label_value("room:", "label2")
    assert str(raised.value) == 'Invalid key (label2 "room:")'
