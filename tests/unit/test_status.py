"""The platform-neutral status model (pure logic)."""

from __future__ import annotations

from polysync_airflow.status import RunStatus


def test_run_status_values_are_the_contract():
    assert [s.value for s in RunStatus] == [
        "Starting",
        "Running",
        "Success",
        "Failed",
        "Cancelled",
        "Unknown",
    ]
