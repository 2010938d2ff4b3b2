"""Input handling shared by every operator: parameter stringification and argument validation.

Templated arguments arrive as strings ("7", "true", JSON text); each helper accepts the native
value or its string form, and raises :class:`PolysyncValidationError` naming the argument, the value
and the rule. Nothing here talks to a service, so every check runs before any request is made.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from polysync_airflow.compat import AirflowFailException


class PolysyncValidationError(AirflowFailException, ValueError):
    """Bad operator input. Fails the task without retrying: the same input would fail again."""

    def __init__(self, field: str, value: Any, rule: str) -> None:
        self.field, self.value, self.rule = field, value, rule
        super().__init__(f"{field}={value!r} is invalid: {rule}")


_INT_RE = re.compile(r"^[+-]?\d+$")


def as_int(field: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer within bounds; accepts ints and the text of an integer (not "1.5", not True)."""
    if minimum is not None and maximum is not None:
        rule = f"must be an integer from {minimum} to {maximum}"
    elif minimum is not None:
        rule = f"must be an integer >= {minimum}"
    else:
        rule = "must be an integer"
    if isinstance(value, bool):
        raise PolysyncValidationError(field, value, rule)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INT_RE.match(value.strip()):
        number = int(value.strip())
    else:
        raise PolysyncValidationError(field, value, rule)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise PolysyncValidationError(field, value, rule)
    return number


def as_bool(field: str, value: Any) -> bool:
    """A bool; accepts True/False and the strings "true"/"false" in any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise PolysyncValidationError(field, value, 'must be a bool (true or false, or the text "true"/"false")')


def as_json(field: str, value: Any, kind: type[dict] | type[list]) -> Any:
    """A JSON object or array; accepts the native value or its JSON text."""
    label = "a JSON object" if kind is dict else "a JSON array"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as err:
            raise PolysyncValidationError(field, value, f"must be {label}; the text is not JSON ({err})") from None
    if not isinstance(value, kind):
        raise PolysyncValidationError(field, value, f"must be {label}")
    return value


def as_optional_seconds(field: str, value: Any) -> float | None:
    """A positive, finite number of seconds, or None (off; an empty string from templating counts as not set);
    accepts ints, floats and the text of a number ("600", "1.5")."""
    if value is None or value == "":
        return None
    rule = "must be a positive number of seconds, or None to turn it off"
    if isinstance(value, bool):
        raise PolysyncValidationError(field, value, rule)
    number: float
    if isinstance(value, (int, float, Decimal)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise PolysyncValidationError(field, value, rule) from None
    else:
        raise PolysyncValidationError(field, value, rule)
    if not math.isfinite(number) or number <= 0:
        raise PolysyncValidationError(field, value, rule)
    return number


def as_optional_str(field: str, value: Any, max_length: int | None = None) -> str | None:
    """A non-empty string or None (an empty string from templating counts as not set)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PolysyncValidationError(field, value, "must be a string")
    if max_length is not None and len(value) > max_length:
        raise PolysyncValidationError(field, value, f"must be at most {max_length} characters")
    return value


def stringify_value(key: str, value: Any) -> str:
    """One parameter value as the string Batch receives (raises naming the key)."""
    field = f"parameters[{key!r}]"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PolysyncValidationError(field, value, "must be a finite number")
        return repr(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise PolysyncValidationError(
                field, value, f"dict and list values must be JSON-serializable ({err})"
            ) from None
    if value is None:
        raise PolysyncValidationError(field, value, "must not be None (omit the key or pass a string)")
    raise PolysyncValidationError(
        field,
        value,
        f"type {type(value).__name__} is not supported: use str, bool, number, date, dict or list",
    )


def reject_non_finite_numbers(parameters: Any) -> Any:
    """At construction: Airflow stores the rendered fields as JSON before ``execute`` can name a NaN's key."""
    if isinstance(parameters, Mapping):
        for key, value in parameters.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise PolysyncValidationError(f"parameters[{key!r}]", value, "must be a finite number")
    return parameters


def stringify_parameters(parameters: Any) -> dict[str, str]:
    """The flat string map both platforms send: Batch parameters on AWS, environment settings on Azure."""
    if parameters is None or parameters == "":
        return {}
    if isinstance(parameters, str):
        parameters = as_json("parameters", parameters, dict)
    if not isinstance(parameters, Mapping):
        raise PolysyncValidationError("parameters", parameters, "must be a dict (or JSON object text)")
    result: dict[str, str] = {}
    for key, value in parameters.items():
        if not isinstance(key, str) or not key.strip():
            raise PolysyncValidationError(f"parameters[{key!r}]", value, "keys must be non-empty strings")
        result[key] = stringify_value(key, value)
    return result
