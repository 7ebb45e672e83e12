"""Value checks, item sizes and TTLs of the data store (no files)."""

from __future__ import annotations

import math
from collections import OrderedDict
from datetime import datetime, timezone

import pytest

from ampt_sandbox.errors import ValidationError
from ampt_sandbox.store.values import (
    MAX_ITEM_BYTES,
    attribute_size,
    check_item_size,
    check_value,
    item_size,
    number_size,
    resolve_ttl,
)

NOW_MS = 1_700_000_000_000


# check_value


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, -5, 1.5, "", "text", "é🙂", [], {}, {"a": [1, {"b": None}]}, 10**37, 1e125, -1e-130],
)
def test_check_value_accepts_json(value):
    assert check_value(value) == value


def test_check_value_copies():
    value = {"list": [1, 2]}
    copy = check_value(value)
    value["list"].append(3)
    assert copy == {"list": [1, 2]}


def test_check_value_turns_subclasses_into_base_types():
    class Name(str):
        pass

    copy = check_value(OrderedDict(a=Name("x")))
    assert type(copy) is dict
    assert type(copy["a"]) is str


@pytest.mark.parametrize(
    ("value", "path", "problem"),
    [
        (b"x", "value", "a bytes cannot be stored"),
        ({"a": [1, 2, {3}]}, 'value["a"][2]', "a set cannot be stored"),
        ({"a": (1,)}, 'value["a"]', "a tuple cannot be stored; use a list"),
        ({("a", 1): 1}, "value[('a', 1)]", "a dict key must be a str, not a tuple"),
        ({1: 1}, "value[1]", "a dict key must be a str, not a int"),
        ([float("nan")], "value[0]", "nan is not a JSON number"),
        ({"x": math.inf}, 'value["x"]', "inf is not a JSON number"),
        ({"x": -math.inf}, 'value["x"]', "-inf is not a JSON number"),
        ({"x": datetime(2020, 1, 1)}, 'value["x"]', "a datetime cannot be stored"),
        ({"x": "\udc00"}, 'value["x"]', "lone surrogate"),
        ({"\udc00": 1}, 'value["\\udc00"]', "lone surrogate"),
        ({"big": 10**126}, 'value["big"]', "outside the range"),
        ({"big": 1e126}, 'value["big"]', "outside the range"),
        ({"tiny": 1e-131}, 'value["tiny"]', "outside the range"),
        ({"digits": 10**38 + 1}, 'value["digits"]', "more than 38 significant digits"),
    ],
)
def test_check_value_names_the_path(value, path, problem):
    with pytest.raises(ValidationError) as raised:
        check_value(value)
    message = str(raised.value)
    assert message.startswith(f"Invalid value at {path}: ")
    assert problem in message


def test_check_value_root_name():
    with pytest.raises(ValidationError, match=r"^Invalid value at default\[0\]"):
        check_value([b""], "default")


def test_nesting_limit():
    value: list = []
    for _ in range(31):
        value = [value]
    check_value(value)  # 32 levels of lists
    with pytest.raises(ValidationError, match="nested more than 32 levels"):
        check_value([value])


def test_cyclic_value_is_rejected():
    value: list = []
    value.append(value)
    with pytest.raises(ValidationError, match="nested more than 32 levels"):
        check_value(value)


def test_int_with_trailing_zeros_is_accepted():
    assert check_value(10**100) == 10**100


# Sizes, as DynamoDB counts them


@pytest.mark.parametrize(
    ("number", "size"),
    [(0, 2), (7, 2), (12, 2), (123, 3), (1000, 2), (-12345, 4), (1.5, 2), (0.001, 2), (123.456, 4), (1e100, 2)],
)
def test_number_size(number, size):
    assert number_size(number) == size


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (None, 1),
        (True, 1),
        ("abc", 3),
        ("é", 2),
        ("🙂", 4),
        ([], 3),
        ({}, 3),
        ([1, "ab"], 3 + (2 + 1) + (2 + 1)),
        ({"ab": "cde"}, 3 + 2 + 3 + 1),
        ({"a": {"b": None}}, 3 + 1 + (3 + 1 + 1 + 1) + 1),
    ],
)
def test_attribute_size(value, size):
    assert attribute_size(value) == size


def test_item_size_counts_names_and_values():
    attributes = {"key": "ns:a", "value": "xyz", "label1": "l:1", "ttl": 1_700_000_000}
    # 1_700_000_000 has two significant digits: one byte for them, plus one.
    assert item_size(attributes) == (3 + 4) + (5 + 3) + (6 + 3) + (3 + 2)


def test_item_size_boundary():
    overhead = item_size({"key": "k", "value": ""})
    check_item_size({"key": "k", "value": "x" * (MAX_ITEM_BYTES - overhead)}, "k")
    with pytest.raises(ValidationError) as raised:
        check_item_size({"key": "k", "value": "x" * (MAX_ITEM_BYTES - overhead + 1)}, "k")
    assert str(raised.value) == (
        'Item size of 400.00 KB is greater than the maximum size of 400 KB. (key "k")'
    )


def test_item_size_message_has_two_decimals():
    with pytest.raises(ValidationError, match=r"^Item size of 500\.01 KB is greater"):
        check_item_size({"key": "k", "value": "x" * (500 * 1024 + 5)}, "k")


# TTL


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [
        (60, NOW_MS + 60_000),
        (1.5, NOW_MS + 1_500),
        (0, NOW_MS),
        (-10, NOW_MS - 10_000),
        (315_359_999, NOW_MS + 315_359_999_000),
        (315_360_000, 315_360_000_000),
        (1_900_000_000, 1_900_000_000_000),
        ("2030-01-01T00:00:00Z", 1_893_456_000_000),
        ("2030-01-01T00:00:00", 1_893_456_000_000),
        ("2030-01-01T02:00:00+02:00", 1_893_456_000_000),
        ("2030-01-01", 1_893_456_000_000),
        ("2030-01-01T00:00:00.250Z", 1_893_456_000_250),
        (None, None),
    ],
)
def test_resolve_ttl(ttl, expected):
    assert resolve_ttl(ttl, NOW_MS, "k") == expected


@pytest.mark.parametrize(
    "ttl",
    [True, False, "tomorrow", "", math.nan, math.inf, [60], {"s": 1}, 253_402_300_800, datetime(2030, 1, 1, tzinfo=timezone.utc)],
)
def test_resolve_ttl_invalid(ttl):
    with pytest.raises(ValidationError) as raised:
        resolve_ttl(ttl, NOW_MS, "ns:a")
    assert str(raised.value).startswith("Invalid ttl value.")
    assert str(raised.value).endswith('(key "ns:a")')
