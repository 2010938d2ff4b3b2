"""The Azure Batch status table and messages (pure logic), on wire JSON and on SDK models alike."""

from __future__ import annotations

import pytest
from azure.batch import models

from polysync_airflow.status import CANCEL_REASON, RunStatus
from polysync_airflow.statuses.azure_batch import STATUS_TABLE, decode_task

RUN = "job-1/polysync"


def task(state, exit_code=None, failure=None):
    body = {"id": "polysync", "state": state}
    if exit_code is not None or failure is not None:
        body["executionInfo"] = {"exitCode": exit_code, **({"failureInfo": failure} if failure else {})}
    return body


def job(**execution_info):
    return {"id": "job-1", "state": "active", "executionInfo": execution_info}


FAILURE = {
    "category": "usererror",
    "code": "FailureExitCode",
    "message": "The task exited with an exit code representing a failure",
}


@pytest.mark.parametrize("as_model", [False, True], ids=["wire-json", "sdk-model"])
@pytest.mark.parametrize(
    ("task_body", "expected", "message"),
    [
        (task("active"), RunStatus.STARTING, ""),
        (task("preparing"), RunStatus.STARTING, ""),
        (task("running"), RunStatus.RUNNING, ""),
        (task("completed", 0), RunStatus.SUCCESS, "Task exit code: 0"),
        (task("completed", 3, FAILURE), RunStatus.FAILED, FAILURE["message"] + " (exit code 3)"),
        (task("completed", 2), RunStatus.FAILED, "Task exit code: 2"),
        (task("somethingnew"), RunStatus.UNKNOWN, ""),
    ],
)
def test_every_row_of_the_status_table(task_body, expected, message, as_model):
    body = models.BatchTask(task_body) if as_model else task_body
    state = decode_task(RUN, body, models.BatchJob(job()) if as_model else job())
    assert (state.status, state.message) == (expected, message)
    assert state.native_status == task_body["state"]


def test_no_task_is_unknown():
    state = decode_task(RUN, None)
    assert state.status is RunStatus.UNKNOWN and "was not found" in state.message


def test_a_failure_without_exit_code():
    failure = {"category": "usererror", "code": "ResourceFileDownloadFailed", "message": "could not download"}
    state = decode_task(RUN, task("completed", None, failure), job())
    assert (state.status, state.message) == (RunStatus.FAILED, "could not download")


def test_a_scheduling_error_ends_a_waiting_run():
    error = {"category": "usererror", "code": "PoolNotFound", "message": "The pool p does not exist."}
    state = decode_task(RUN, task("active"), job(schedulingError=error))
    assert state.status is RunStatus.FAILED
    assert state.message == "job scheduling error PoolNotFound: The pool p does not exist."


@pytest.mark.parametrize("task_state", ["active", "completed"])
def test_our_terminate_reason_means_cancelled(task_state):
    body = (
        task("completed", 143, {"code": "TaskEnded", "message": "terminated"})
        if task_state == "completed"
        else task("active")
    )
    state = decode_task(RUN, body, job(terminateReason=CANCEL_REASON))
    assert (state.status, state.message) == (RunStatus.CANCELLED, CANCEL_REASON)


def test_a_terminated_task_is_cancelled():
    state = decode_task(RUN, task("completed", 143, {"code": "TaskEnded", "message": "The task was terminated"}), job())
    assert (state.status, state.message) == (RunStatus.CANCELLED, "The task was terminated")


def test_all_tasks_complete_is_not_a_cancel():
    assert decode_task(RUN, task("completed", 0), job(terminateReason="AllTasksComplete")).status is RunStatus.SUCCESS


def test_wall_clock_expiry_is_a_failure_that_says_so():
    state = decode_task(RUN, task("completed", 143, FAILURE), job(terminateReason="MaxWallClockTimeExpiry"))
    assert state.status is RunStatus.FAILED and "maxWallClockTime" in state.message


def test_the_table_reads_like_the_seeds():
    """The seed's rows, and the two it leaves out (a user's cancel, a job that cannot be scheduled)."""
    rows = [(row.states, row.condition.__name__, row.status.value) for row in STATUS_TABLE]
    assert rows == [
        ("active / preparing", "job_terminated_by_a_user", "Cancelled"),
        ("active / preparing", "job_cannot_be_scheduled", "Failed"),
        ("active / preparing", "always", "Starting"),
        ("running", "always", "Running"),
        ("completed", "task_terminated", "Cancelled"),
        ("completed", "exit_code_0_without_failure", "Success"),
        ("completed", "always", "Failed"),
        ("(any other)", "always", "Unknown"),
    ]


@pytest.mark.parametrize(("state", "waiting"), [("active", True), ("preparing", True), ("running", False)])
def test_the_state_says_whether_the_task_waits_to_start_and_its_timing(state, waiting):
    body = {**task(state), "creationTime": "2026-11-29T10:00:00Z"}
    if not waiting:
        body["executionInfo"] = {"startTime": "2026-11-29T10:01:00Z", "retryCount": 0}
    decoded = decode_task(RUN, body, job())
    assert decoded.waiting is waiting
    assert decoded.timing.queued_seconds == (None if waiting else 60.0)
    assert decoded.timing.attempts == (0 if waiting else 1)


def test_a_task_not_found_has_no_timing():
    decoded = decode_task(RUN, None)
    assert not decoded.waiting and decoded.timing.submitted_at is None
