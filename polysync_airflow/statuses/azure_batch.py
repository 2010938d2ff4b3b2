"""What Azure Batch's answers mean: the seed's status table and its decoder, a task's timing, the faults that
heal, how its errors read, and how a job found for a task instance is judged before reattaching. Pure functions,
no calls.

Answers are wire JSON or SDK models alike: azure-batch models are mappings of their wire (camelCase) JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from polysync_airflow.ownership import CANCEL_ON_KILL_MARK, WATCHED_MARK, ExistingJob, cancel_on_kill_of
from polysync_airflow.run_watch import describe_error, is_connection_fault
from polysync_airflow.status import (
    ANY_OTHER_STATE,
    RunState,
    RunStatus,
    RunTiming,
    StatusRow,
    always,
    from_iso,
    look_up,
)

# Reasons the service itself gives for ending a job; any other terminate reason is a user's cancel.
SERVICE_TERMINATE_REASONS = ("AllTasksComplete", "JMComplete", "MaxWallClockTimeExpiry", "TaskFailed")


def read_field(obj: Any, *path: str) -> Any:
    """Follow wire (camelCase) keys through an answer; None where one is missing."""
    for name in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(name)
    return obj


@dataclass(frozen=True)
class TaskFacts:
    """What the status table reads from a task and its job (the job tells cancels and scheduling errors)."""

    exit_code: int | None
    failure: Any  # the task's executionInfo.failureInfo
    job_terminate_reason: str | None
    scheduling_error: Any  # the job's executionInfo.schedulingError

    @classmethod
    def of(cls, task: Any, job: Any) -> TaskFacts:
        return cls(
            read_field(task, "executionInfo", "exitCode"),
            read_field(task, "executionInfo", "failureInfo"),
            read_field(job, "executionInfo", "terminateReason"),
            read_field(job, "executionInfo", "schedulingError"),
        )

    @property
    def user_terminate_reason(self) -> str | None:
        reason = self.job_terminate_reason
        return reason if reason and reason not in SERVICE_TERMINATE_REASONS else None


def job_terminated_by_a_user(task: TaskFacts) -> bool:
    return task.user_terminate_reason is not None


def job_cannot_be_scheduled(task: TaskFacts) -> bool:
    return task.scheduling_error is not None


def task_terminated(task: TaskFacts) -> bool:
    """Terminated itself, or ended by a user's job terminate (a task killed that way has a non-zero exit code)."""
    return read_field(task.failure, "code") == "TaskEnded" or (job_terminated_by_a_user(task) and task.exit_code != 0)


def exit_code_0_without_failure(task: TaskFacts) -> bool:
    return task.exit_code == 0 and task.failure is None


def terminate_reason(task: TaskFacts) -> str:
    return task.user_terminate_reason or ""


def cancel_reason(task: TaskFacts) -> str:
    return task.user_terminate_reason or failure_message(task) or "task terminated"


def scheduling_error(task: TaskFacts) -> str:
    error = task.scheduling_error
    return f"job scheduling error {read_field(error, 'code')}: {read_field(error, 'message')}"


def failure_message(task: TaskFacts) -> str:
    return read_field(task.failure, "message") or ""


def exit_code_text(task: TaskFacts) -> str:
    return f"Task exit code: {task.exit_code}"


def failure_text(task: TaskFacts) -> str:
    """The failure info (or the job's wall clock limit), with the exit code; else the exit code alone."""
    message = failure_message(task)
    if task.job_terminate_reason == "MaxWallClockTimeExpiry":
        message = "the job exceeded its maxWallClockTime constraint (MaxWallClockTimeExpiry)"
    if not message:
        return exit_code_text(task)
    return f"{message} (exit code {task.exit_code})" if task.exit_code is not None else message


# The seed's table (status polled by reading the task), with the two rows it leaves out: a user's cancel, and a
# job that cannot be scheduled (its task would wait forever). The first row that matches wins.
STATUS_TABLE: tuple[StatusRow[TaskFacts], ...] = (
    # Batch task state, condition, run status, message
    StatusRow("active / preparing", job_terminated_by_a_user, RunStatus.CANCELLED, terminate_reason),
    StatusRow("active / preparing", job_cannot_be_scheduled, RunStatus.FAILED, scheduling_error),
    StatusRow("active / preparing", always, RunStatus.STARTING, failure_message),
    StatusRow("running", always, RunStatus.RUNNING, failure_message),
    StatusRow("completed", task_terminated, RunStatus.CANCELLED, cancel_reason),
    StatusRow("completed", exit_code_0_without_failure, RunStatus.SUCCESS, exit_code_text),
    StatusRow("completed", always, RunStatus.FAILED, failure_text),
    StatusRow(ANY_OTHER_STATE, always, RunStatus.UNKNOWN, failure_message),
)


def decode_task(run_id: str, task: Any | None, job: Any | None = None) -> RunState:
    """One task and its job (None: the task was not found) as a :class:`RunState`."""
    if task is None:
        return RunState(run_id, RunStatus.UNKNOWN, f"Azure Batch task {run_id} was not found")
    native = read_field(task, "state")
    facts = TaskFacts.of(task, job)
    status, message = look_up(STATUS_TABLE, native, facts)
    return RunState(
        run_id, status, message, facts.exit_code, native, waiting=native in WAITING_STATES, timing=task_timing(task)
    )


def decode_run(run_id: str, answer: tuple[Any, Any] | None) -> RunState:
    """A run's answer, its task and its job (None: not found), as a :class:`RunState`."""
    return decode_task(run_id, *(answer or (None, None)))


WAITING_STATES = ("active", "preparing")
"""The states of a task that has not started running."""


def task_timing(task: Any) -> RunTiming:
    """The task's ``creationTime``, ``executionInfo`` ``startTime``/``endTime``, and attempts: ``retryCount`` + 1
    once it started (0 before)."""
    started = from_iso(read_field(task, "executionInfo", "startTime"))
    retries = read_field(task, "executionInfo", "retryCount")
    attempts = (retries if isinstance(retries, int) else 0) + 1 if started else 0
    return RunTiming(
        submitted_at=from_iso(read_field(task, "creationTime")),
        started_at=started,
        ended_at=from_iso(read_field(task, "executionInfo", "endTime")),
        attempts=attempts,
    )


def ended_cleanly(task: Any) -> bool:
    """Completed with exit code 0 and no failure: a success whatever its job says."""
    return read_field(task, "state") == "completed" and exit_code_0_without_failure(TaskFacts.of(task, None))


def still_running(task: Any, job_then: Any, job_now: Any) -> bool:
    """Whether a task read running with ``job_then`` still is, seeing its job now (a job changes with its task)."""
    same_job = read_field(job_now, "lastModified") == read_field(job_then, "lastModified")
    return read_field(task, "state") == "running" and same_job


# -- faults that heal -------------------------------------------------------------------------------------------

# Error codes Azure Batch answers for "try again later".
TRANSIENT_ERROR_CODES = frozenset(
    {"ServerBusy", "OperationTimedOut", "InternalError", "InternalServerError", "ServiceUnavailable", "RequestTimeout"}
)
# azure-core's exceptions for dropped connections, timeouts and cut answers.
CONNECTION_FAULTS = frozenset({"ServiceRequestError", "ServiceResponseError", "IncompleteReadError"})


def is_transient(err: BaseException) -> bool:
    """True for faults that heal by themselves: throttling, 5xx, resets, timeouts."""
    if is_connection_fault(err, CONNECTION_FAULTS):
        return True
    status = getattr(err, "status_code", None)
    # By class name, so that no Azure SDK is imported here (an AirflowException has a status_code too).
    if isinstance(status, int) and any(cls.__name__ == "HttpResponseError" for cls in type(err).__mro__):
        code = getattr(getattr(err, "error", None), "code", None)
        return code in TRANSIENT_ERROR_CODES or status == 429 or status >= 500
    return False


# -- how errors read ----------------------------------------------------------------------------------------------
def service_message(err: BaseException) -> str:
    """What Azure Batch said, as ``<code>: <message>`` and its details; any other error as its text."""
    error = getattr(err, "error", None)  # an HttpResponseError's parsed body
    if error is None or not getattr(error, "message", None):
        return str(err) or type(err).__name__
    details = [detail.message for detail in getattr(error, "details", None) or [] if detail.message]
    return "\n".join([f"{error.code}: {error.message}", *details])


def log_read_problem(err: BaseException) -> str:
    """Why a task's output file could not be read, for a warning (file operations carry no error body)."""
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    if isinstance(err, ResourceNotFoundError):
        return "the file does not exist (404 Not Found)"
    if isinstance(err, HttpResponseError) and err.status_code is not None:
        code = getattr(err.error, "code", None)
        reason = {401: "not authenticated", 403: "access denied"}.get(err.status_code, "the service refused the read")
        return f"{reason} ({err.status_code} {err.reason or code or ''})".replace(" )", ")")
    return describe_error(err)


# -- a job found for the task instance (see ownership.py) ------------------------------------------------------


def is_watched(job: Any) -> bool:
    return any(read_field(item, "name") == WATCHED_MARK for item in read_field(job, "metadata") or [])


def existing_job(job: Any, task_id: str, try_number: int) -> ExistingJob:
    """A Batch job (``id``, ``state``, ``metadata``) as :class:`ExistingJob`."""
    state = read_field(job, "state") or ""
    marks = {read_field(item, "name"): read_field(item, "value") for item in read_field(job, "metadata") or []}
    return ExistingJob(
        run_id=f"{read_field(job, 'id')}/{task_id}",
        native_status=state,
        finished=state == "completed",
        cancelling=state in ("terminating", "deleting"),
        watched=is_watched(job),
        try_number=try_number,
        cancel_on_kill=cancel_on_kill_of(marks) if CANCEL_ON_KILL_MARK in marks else None,
    )


def watched_metadata(job: Any, watcher: str) -> dict[str, Any] | None:
    """The job update that marks an active job watched, or None (marked already, or no longer active)."""
    if read_field(job, "state") != "active" or is_watched(job):
        return None
    metadata = read_field(job, "metadata") or []
    items = [{"name": read_field(item, "name"), "value": read_field(item, "value")} for item in metadata]
    return {"metadata": [*items, {"name": WATCHED_MARK, "value": watcher}]}
