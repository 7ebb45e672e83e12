"""How set and add combine new values with stored ones (no files)."""

from __future__ import annotations

import pytest

from ampt_sandbox.errors import DataError, ValidationError
from ampt_sandbox.store.merge import MISSING, merge_value

RESERVED = "'$add' is a reserved keyword and must be in an object with a single key of $add"


# Merge mode


def test_new_item_takes_value():
    assert merge_value(MISSING, {"a": 1}) == {"a": 1}
    assert merge_value(MISSING, [1, 2]) == [1, 2]
    assert merge_value(MISSING, "x") == "x"


def test_dicts_merge_top_level_fields():
    stored = {"a": 1, "b": {"x": 1, "y": 2}, "c": 3}
    assert merge_value(stored, {"b": {"x": 5}, "d": 4}) == {"a": 1, "b": {"x": 5}, "c": 3, "d": 4}


def test_merge_does_not_change_stored_dict():
    stored = {"a": 1}
    merge_value(stored, {"b": 2, "a": None})
    assert stored == {"a": 1}


def test_none_field_removes_it():
    assert merge_value({"a": 1, "b": 2}, {"a": None}) == {"b": 2}
    assert merge_value(MISSING, {"a": None, "b": 1}) == {"b": 1}


def test_remove_nulls_stores_none_fields():
    assert merge_value({"a": 1}, {"a": None}, remove_nulls=True) == {"a": None}
    assert merge_value(MISSING, {"a": None}, remove_nulls=True) == {"a": None}


def test_nested_none_is_kept():
    assert merge_value(MISSING, {"a": {"b": None}}) == {"a": {"b": None}}


def test_dict_over_scalar_replaces_it():
    assert merge_value(5, {"a": 1}) == {"a": 1}


@pytest.mark.parametrize("new", [5, "x", [1], True])
def test_scalar_over_dict_is_rejected(new):
    with pytest.raises(ValidationError, match=r"^Cannot convert an existing object to a simple value\.$"):
        merge_value({"a": 1}, new)


def test_scalar_over_scalar_replaces_it():
    assert merge_value("old", [1]) == [1]


def test_none_without_default_is_rejected():
    with pytest.raises(ValidationError, match="None"):
        merge_value(MISSING, None)


# $add


def test_add_to_whole_value():
    assert merge_value(5, {"$add": 2}) == 7
    assert merge_value(MISSING, {"$add": 2}) == 2
    assert merge_value(1.5, {"$add": -0.5}) == 1.0


def test_add_to_non_number_value():
    for stored in ("x", {"a": 1}, [1], True):
        with pytest.raises(DataError, match="^Values must be numeric$") as raised:
            merge_value(stored, {"$add": 1})
        assert type(raised.value) is DataError


@pytest.mark.parametrize("amount", ["1", None, True, [1], {"n": 1}])
def test_whole_add_needs_number(amount):
    with pytest.raises(ValidationError, match=r"^'value' must be a number when using \$add$"):
        merge_value(5, {"$add": amount})


def test_add_to_fields():
    stored = {"count": 1, "name": "x"}
    assert merge_value(stored, {"count": {"$add": 2}, "other": {"$add": 5}}) == {
        "count": 3,
        "name": "x",
        "other": 5,
    }


def test_field_add_on_non_number_field():
    with pytest.raises(DataError, match="^Values must be numeric$"):
        merge_value({"name": "x"}, {"name": {"$add": 1}})


def test_field_add_needs_number():
    with pytest.raises(DataError, match="^Values must be numeric$") as raised:
        merge_value({"n": 1}, {"n": {"$add": "2"}})
    assert type(raised.value) is DataError


def test_add_beside_other_keys_is_reserved():
    with pytest.raises(ValidationError, match=f"^{RESERVED.replace('$', '[$]')}$"):
        merge_value(5, {"$add": 1, "x": 2})
    with pytest.raises(ValidationError, match="reserved keyword"):
        merge_value({}, {"n": {"$add": 1, "x": 2}})
    with pytest.raises(ValidationError, match="reserved keyword"):
        merge_value({}, {"n": {"deep": {"$add": 1, "x": 2}}})


def test_add_below_top_level_fields_is_rejected():
    with pytest.raises(ValidationError, match=r'not at value\["a"\]\["b"\]'):
        merge_value({}, {"a": {"b": {"$add": 1}}})
    with pytest.raises(ValidationError, match=r"not at value\[0\]"):
        merge_value(MISSING, [{"$add": 1}])


def test_add_result_out_of_range():
    with pytest.raises(ValidationError, match="outside the range"):
        merge_value(9e125, {"$add": 9e125})


# default


def test_default_for_missing_item():
    assert merge_value(MISSING, None, default={"count": 0, "gone": None}) == {"count": 0}
    assert merge_value(MISSING, None, default=5) == 5


def test_default_keeps_existing_value():
    assert merge_value(7, None, default=5) == 7
    assert merge_value({"count": 3}, None, default={"count": 0, "new": 1}) == {"count": 3, "new": 1}


def test_default_fields_only_fill_missing_fields():
    stored = {"a": 1}
    assert merge_value(stored, {"b": 2}, default={"a": 0, "b": 0, "c": 0}) == {"a": 1, "b": 2, "c": 0}


def test_default_is_start_of_add():
    assert merge_value(MISSING, {"$add": 1}, default=10) == 11
    assert merge_value(MISSING, {"n": {"$add": 1}}, default={"n": 10}) == {"n": 11}
    assert merge_value({"n": 2}, {"n": {"$add": 1}}, default={"n": 10}) == {"n": 3}


@pytest.mark.parametrize(
    ("value", "default"),
    [({"a": 1}, 5), (5, {"a": 1}), ("x", 1), ([1], {}), (True, 1), ({"$add": 1}, {"a": 1})],
)
def test_default_must_match_type(value, default):
    with pytest.raises(ValidationError, match="^'default' must be of the same type as the value$"):
        merge_value(MISSING, value, default=default)


def test_default_int_and_float_are_both_numbers():
    assert merge_value(MISSING, 1.5, default=1) == 1.5


def test_default_cannot_use_add():
    with pytest.raises(ValidationError, match=r"^'default' cannot use the \$add keyword$"):
        merge_value(MISSING, {"a": 1}, default={"a": {"$add": 1}})
