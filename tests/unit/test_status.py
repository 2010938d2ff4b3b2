"""The platform-neutral status model and the shape of the platforms' status tables (pure logic)."""

from __future__ import annotations

import logging

import pytest

from polysync_airflow.run_watch import PollingSettings, RunWatch, quietly
from polysync_airflow.status import ANY_OTHER_STATE, RunState, RunStatus, StatusRow, always, look_up


def test_run_status_values_are_the_contract():
    assert [s.value for s in RunStatus] == [
        "Starting",
        "Running",
        "Success",
        "Failed",
        "Cancelled",
        "Unknown",
    ]


def has_reason(facts: dict) -> bool:
    return bool(facts.get("reason"))


def reason(facts: dict) -> str:
    return facts.get("reason", "")


TABLE = (
    StatusRow("queued / running", always, RunStatus.RUNNING, reason),
    StatusRow("done", has_reason, RunStatus.FAILED, reason),
    StatusRow("done", always, RunStatus.SUCCESS, reason),
    StatusRow(ANY_OTHER_STATE, always, RunStatus.UNKNOWN, reason),
)


@pytest.mark.parametrize(
    ("state", "facts", "expected"),
    [
        ("queued", {}, (RunStatus.RUNNING, "")),
        ("running", {"reason": "busy"}, (RunStatus.RUNNING, "busy")),
        ("done", {"reason": "boom"}, (RunStatus.FAILED, "boom")),
        ("done", {}, (RunStatus.SUCCESS, "")),
        ("new", {}, (RunStatus.UNKNOWN, "")),
        (None, {}, (RunStatus.UNKNOWN, "")),
    ],
)
def test_the_first_matching_row_wins(state, facts, expected):
    assert look_up(TABLE, state, facts) == expected


def test_a_table_without_a_last_row_for_any_other_state_says_so():
    with pytest.raises(LookupError, match="needs an ANY_OTHER_STATE row"):
        look_up(TABLE[:3], "new", {})


def test_settings_from_serialized_kwargs_are_floats():
    settings = PollingSettings(poll_interval=5, unknown_grace_period="60", outage_window=600)
    assert (settings.poll_interval, settings.unknown_grace_period, settings.outage_window) == (5.0, 60.0, 600.0)
    assert settings.deadline is None and settings.cancel_on_kill is True


def test_the_first_running_observation_is_marked_once():
    watch = RunWatch("r", logging.getLogger("test.status"), PollingSettings())
    seen = [RunStatus.STARTING, RunStatus.RUNNING, RunStatus.RUNNING, RunStatus.SUCCESS]
    marks = [watch.first_seen_running(RunState("r", status, "")) for status in seen]
    assert marks == [False, True, False, False]


def test_quietly_turns_a_failure_into_a_warning(caplog):
    log = logging.getLogger("test.quietly")
    with caplog.at_level("WARNING", logger="test.quietly"), quietly(log, "cancel run r"):
        raise ConnectionResetError("reset by peer")
    assert caplog.messages == ["Could not cancel run r: ConnectionResetError: reset by peer"]
