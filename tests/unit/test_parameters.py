"""Parameter values become strings (shared by both platforms)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from polysync_airflow.validation import PolysyncValidationError, stringify_parameters


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", "text"),
        ("", ""),
        (True, "true"),
        (False, "false"),
        (7, "7"),
        (-3, "-3"),
        (1.5, "1.5"),
        (Decimal("2.50"), "2.50"),
        (date(2026, 11, 22), "2026-11-22"),
        (datetime(2026, 11, 22, 1, 2, 3, tzinfo=UTC), "2026-11-22T01:02:03+00:00"),
        ({"b": 1, "a": [1, "x"]}, '{"b":1,"a":[1,"x"]}'),
        ([1, 2, {"k": None}], '[1,2,{"k":null}]'),
    ],
)
def test_values_become_strings(value, expected):
    assert stringify_parameters({"p": value}) == {"p": expected}


def test_pendulum_datetime_is_iso_8601():
    import pendulum

    value = pendulum.datetime(2026, 11, 22, 6, 0, tz="UTC")
    assert stringify_parameters({"when": value})["when"].startswith("2026-11-22T06:00:00")


def test_json_text_and_none_and_empty_are_accepted_for_the_whole_map():
    assert stringify_parameters('{"a": 1, "b": true}') == {"a": "1", "b": "true"}
    assert stringify_parameters(None) == {}
    assert stringify_parameters("") == {}


@pytest.mark.parametrize(
    ("parameters", "names"),
    [
        ({"missing": None}, ["missing", "None"]),
        ({"obj": object()}, ["obj", "object"]),
        ({"bytes": b"x"}, ["bytes", "bytes"]),
        ({"": "x"}, ["keys must be non-empty"]),
        ({"  ": "x"}, ["keys must be non-empty"]),
        ({1: "x"}, ["parameters[1]"]),
        ({"nan": float("nan")}, ["nan", "finite"]),
        ({"nested": {"d": object()}}, ["nested", "JSON"]),
        ("[1, 2]", ["parameters", "JSON object"]),
        ("{not json", ["parameters", "not JSON"]),
        (["a"], ["parameters", "dict"]),
    ],
)
def test_bad_parameters_name_the_key(parameters, names):
    with pytest.raises(PolysyncValidationError) as err:
        stringify_parameters(parameters)
    for name in names:
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("value", "expected"), [(600, 600.0), ("600", 600.0), ("1.5", 1.5), (0.25, 0.25), (None, None), ("", None)]
)
def test_optional_seconds(value, expected):
    from polysync_airflow.validation import as_optional_seconds

    assert as_optional_seconds("queued_timeout", value) == expected


@pytest.mark.parametrize("value", [0, -1, "-5", "abc", True, float("nan"), float("inf"), [1]])
def test_bad_optional_seconds_name_the_field_the_value_and_the_rule(value):
    from polysync_airflow.validation import PolysyncValidationError, as_optional_seconds

    with pytest.raises(PolysyncValidationError) as err:
        as_optional_seconds("queued_timeout", value)
    assert str(err.value) == (
        f"queued_timeout={value!r} is invalid: must be a positive number of seconds, or None to turn it off"
    )
