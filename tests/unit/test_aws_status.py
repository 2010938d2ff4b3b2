"""The AWS Batch status table, cancellation phrases and message rules (pure logic)."""

from __future__ import annotations

import pytest

from polysync_airflow.status import CANCEL_REASON, RunStatus
from polysync_airflow.statuses.aws_batch import STATUS_TABLE, decode_job


@pytest.mark.parametrize(
    ("native", "expected"),
    [
        ("SUBMITTED", RunStatus.RUNNING),
        ("PENDING", RunStatus.RUNNING),
        ("RUNNABLE", RunStatus.RUNNING),
        ("STARTING", RunStatus.RUNNING),
        ("RUNNING", RunStatus.RUNNING),
        ("SUCCEEDED", RunStatus.SUCCESS),
        ("FAILED", RunStatus.FAILED),
        ("SOMETHING_NEW", RunStatus.UNKNOWN),
        (None, RunStatus.UNKNOWN),
    ],
)
def test_every_row_of_the_status_table(native, expected):
    state = decode_job("job-1", {"jobId": "job-1", "status": native})
    assert state.status is expected
    assert state.native_status == native


def test_no_job_is_unknown():
    state = decode_job("job-1", None)
    assert state.status is RunStatus.UNKNOWN
    assert "not found" in state.message


@pytest.mark.parametrize(
    "reason",
    [
        "Cancelled by user",
        "cancelled",
        "Job Canceled",
        "Terminated by operator",
        "Job terminated by user",
        "JOB TERMINATED",
        CANCEL_REASON,
        "Cancelled by Polysync".upper(),
    ],
)
def test_every_cancellation_phrase_makes_a_failed_job_cancelled(reason):
    state = decode_job("job-1", {"status": "FAILED", "statusReason": reason})
    assert state.status is RunStatus.CANCELLED
    assert state.message == reason


@pytest.mark.parametrize("reason", ["Essential container in task exited", "Dependent Job failed", ""])
def test_other_failures_stay_failed(reason):
    assert decode_job("job-1", {"status": "FAILED", "statusReason": reason}).status is RunStatus.FAILED


def test_cancellation_phrase_on_a_succeeded_job_does_not_cancel_it():
    assert decode_job("j", {"status": "SUCCEEDED", "statusReason": "Terminated"}).status is RunStatus.SUCCESS


def test_message_is_the_status_reason_when_present():
    state = decode_job("j", {"status": "FAILED", "statusReason": "boom", "container": {"exitCode": 3}})
    assert (state.message, state.exit_code) == ("boom", 3)


@pytest.mark.parametrize("status", ["FAILED", "SUCCEEDED"])
def test_message_falls_back_to_the_exit_code(status):
    state = decode_job("j", {"status": status, "container": {"exitCode": 0 if status == "SUCCEEDED" else 7}})
    assert state.message == f"Container exit code: {state.exit_code}"


def test_exit_code_from_the_last_attempt_when_the_container_has_none():
    job = {
        "status": "FAILED",
        "container": {},
        "attempts": [{"container": {"exitCode": 1}}, {"container": {"exitCode": 2}}],
    }
    state = decode_job("j", job)
    assert state.exit_code == 2
    assert state.message == "Container exit code: 2"


def test_no_reason_and_no_exit_code_gives_an_empty_message():
    assert decode_job("j", {"status": "RUNNING"}).message == ""


def test_the_table_reads_like_the_seeds():
    rows = [(row.states, row.condition.__name__, row.status.value) for row in STATUS_TABLE]
    assert rows == [
        ("SUBMITTED / PENDING / RUNNABLE / STARTING / RUNNING", "always", "Running"),
        ("SUCCEEDED", "always", "Success"),
        ("FAILED", "has_a_cancellation_reason", "Cancelled"),
        ("FAILED", "always", "Failed"),
        ("(any other)", "always", "Unknown"),
    ]


@pytest.mark.parametrize(
    ("native", "waiting"),
    [("SUBMITTED", True), ("PENDING", True), ("RUNNABLE", True), ("STARTING", True), ("RUNNING", False)],
)
def test_the_state_says_whether_the_job_waits_to_start_and_its_timing(native, waiting):
    started = {} if waiting else {"startedAt": 1_764_410_460_000}
    state = decode_job("job-1", {"jobId": "job-1", "status": native, "createdAt": 1_764_410_400_000, **started})
    assert state.waiting is waiting
    assert state.timing.submitted_at is not None and (state.timing.started_at is None) is waiting
    assert state.timing.queued_seconds == (None if waiting else 60.0)


def test_a_job_not_found_has_no_timing():
    state = decode_job("job-1", None)
    assert not state.waiting and state.timing.submitted_at is None and state.timing.attempts == 0
