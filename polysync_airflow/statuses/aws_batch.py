"""What AWS Batch's answers mean: the seed's status table and its decoder, an array job's progress, a job's
timing, the faults that heal, how its errors read, and how a job found for a task instance is judged before
reattaching. Pure functions, no calls."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from polysync_airflow.ownership import CANCEL_ON_KILL_MARK, TRY_MARK, WATCHED_MARK, ExistingJob, cancel_on_kill_of
from polysync_airflow.run_watch import describe_error, is_connection_fault
from polysync_airflow.status import (
    ANY_OTHER_STATE,
    CANCEL_REASON,
    RunState,
    RunStatus,
    RunTiming,
    StatusRow,
    always,
    from_epoch_ms,
    look_up,
)

# A FAILED job whose statusReason contains one of these (case-insensitive) was cancelled.
CANCELLATION_PHRASES = ("cancelled", "canceled", "terminated", "job terminated", CANCEL_REASON.lower())


@dataclass(frozen=True)
class JobFacts:
    """What the status table reads from one DescribeJobs entry."""

    status_reason: str
    exit_code: int | None


def is_cancel_reason(reason: str | None) -> bool:
    return any(phrase in (reason or "").lower() for phrase in CANCELLATION_PHRASES)


def has_a_cancellation_reason(job: JobFacts) -> bool:
    return is_cancel_reason(job.status_reason)


def reason_or_exit_code(job: JobFacts) -> str:
    if job.status_reason:
        return job.status_reason
    return f"Container exit code: {job.exit_code}" if job.exit_code is not None else ""


# The seed's table (status polled with DescribeJobs); the first row that matches wins.
STATUS_TABLE: tuple[StatusRow[JobFacts], ...] = (
    # Batch job status, condition, run status, message
    StatusRow("SUBMITTED / PENDING / RUNNABLE / STARTING / RUNNING", always, RunStatus.RUNNING, reason_or_exit_code),
    StatusRow("SUCCEEDED", always, RunStatus.SUCCESS, reason_or_exit_code),
    StatusRow("FAILED", has_a_cancellation_reason, RunStatus.CANCELLED, reason_or_exit_code),
    StatusRow("FAILED", always, RunStatus.FAILED, reason_or_exit_code),
    StatusRow(ANY_OTHER_STATE, always, RunStatus.UNKNOWN, reason_or_exit_code),
)


def decode_job(job_id: str, job: Mapping[str, Any] | None) -> RunState:
    """One DescribeJobs entry (or None: not found) as a :class:`RunState`."""
    if job is None:
        return RunState(job_id, RunStatus.UNKNOWN, f"AWS Batch job {job_id} was not found")
    native = job.get("status")
    exit_code = job_exit_code(job)
    status, message = look_up(STATUS_TABLE, native, JobFacts(job.get("statusReason") or "", exit_code))
    counts = array_counts(job)
    progress = format_array_progress(counts) if counts else ""
    return RunState(
        job_id,
        status,
        message,
        exit_code,
        native,
        progress,
        "children" if progress else "",
        waiting=native in WAITING_STATUSES,
        timing=job_timing(job),
    )


decode_run = decode_job
"""The decoder by the name the shared operator and trigger know it (a run's answer is its job)."""

WAITING_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING")
"""The statuses of a job that has not started running."""


def job_timing(job: Mapping[str, Any]) -> RunTiming:
    """``createdAt``, ``startedAt``, ``stoppedAt`` and the number of ``attempts`` of a DescribeJobs entry. A job
    that started counts at least one attempt: AWS lists an attempt once it ended, and none for an array parent."""
    attempts = job.get("attempts")
    started = from_epoch_ms(job.get("startedAt"))
    return RunTiming(
        submitted_at=from_epoch_ms(job.get("createdAt")),
        started_at=started,
        ended_at=from_epoch_ms(job.get("stoppedAt")),
        attempts=max(len(attempts) if isinstance(attempts, list) else 0, 1 if started else 0),
    )


def job_exit_code(job: Mapping[str, Any]) -> int | None:
    """The container exit code, from the job or, where DescribeJobs leaves it out, its last attempt."""
    code = (job.get("container") or {}).get("exitCode")
    if code is None and job.get("attempts"):
        code = (job["attempts"][-1].get("container") or {}).get("exitCode")
    return code


# -- an array job's progress ------------------------------------------------------------------------------------


def _count(value: Any) -> int:
    """A non-negative count from an answer, 0 for anything else (a missing or malformed field)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def array_size(job: Mapping[str, Any]) -> int:
    """The number of children of an array parent (DescribeJobs ``arrayProperties.size``); 0 for other jobs."""
    props = job.get("arrayProperties")
    return _count(props.get("size")) if isinstance(props, Mapping) else 0


def array_counts(job: Mapping[str, Any]) -> dict[str, int] | None:
    """An array parent's children by state, from ``arrayProperties.statusSummary``: size, succeeded, failed,
    running and waiting (every other child: submitted, pending, runnable, starting or not created yet).
    None for a job that is no array parent, or whose summary is not there yet."""
    size = array_size(job)
    summary = job["arrayProperties"].get("statusSummary") if size else None
    if not isinstance(summary, Mapping) or not summary:
        return None
    succeeded, failed, running = (_count(summary.get(name)) for name in ("SUCCEEDED", "FAILED", "RUNNING"))
    waiting = max(size - succeeded - failed - running, 0)
    return {"size": size, "succeeded": succeeded, "failed": failed, "running": running, "waiting": waiting}


def format_array_progress(counts: Mapping[str, int]) -> str:
    """``37/100 succeeded, 2 failed, 10 running`` (and ``, 51 waiting`` while some children wait)."""
    text = f"{counts['succeeded']}/{counts['size']} succeeded, {counts['failed']} failed, {counts['running']} running"
    return f"{text}, {counts['waiting']} waiting" if counts.get("waiting") else text


# -- faults that heal -------------------------------------------------------------------------------------------

# Error codes AWS answers for "try again later" (throttling comes with HTTP 400, so the status alone does not tell).
TRANSIENT_ERROR_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "RequestTimeout",
    }
)
# botocore's exceptions for dropped connections and timeouts.
CONNECTION_FAULTS = frozenset(
    {
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "ResponseStreamingError",
        "IncompleteReadError",
    }
)


def is_transient(err: BaseException) -> bool:
    """True for faults that heal by themselves: throttling, 5xx, resets, timeouts."""
    if is_connection_fault(err, CONNECTION_FAULTS):
        return True
    if isinstance(err, ClientError):
        code = (err.response.get("Error") or {}).get("Code")
        status = (err.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
        return code in TRANSIENT_ERROR_CODES or status == 429 or status >= 500
    return False


# -- how errors read ----------------------------------------------------------------------------------------------

_MISSING_WORDING = re.compile(r"does not exist|not found|inactive|not in active status", re.IGNORECASE)
_RESOURCE_NAMES = (
    ("job_definition", re.compile(r"job\s?definition", re.IGNORECASE)),
    ("job_queue", re.compile(r"job\s?queue", re.IGNORECASE)),
)


def missing_resource(err: BaseException) -> str | None:
    """``"job_definition"`` or ``"job_queue"`` when AWS Batch refused a request because that resource does not
    exist (or, for a definition, is not ACTIVE), else None.

    AWS answers a ClientException (HTTP 400) worded, depending on the API and the resource, "JobDefinition name
    x does not exist or is not in ACTIVE status", "JobQueue x not found." or (moto, the local endpoint)
    "Job queue x does not exist"; the resource named first in the message is the one that is missing."""
    if not isinstance(err, ClientError):
        return None
    error = err.response.get("Error") or {}
    message = str(error.get("Message") or "")
    if error.get("Code") != "ClientException" or not _MISSING_WORDING.search(message):
        return None
    found = [(match.start(), name) for name, pattern in _RESOURCE_NAMES if (match := pattern.search(message))]
    return min(found)[1] if found else None


def log_read_problem(err: Exception) -> str:
    """Why a job's log stream could not be read, for a warning."""
    code = err.response.get("Error", {}).get("Code") if isinstance(err, ClientError) else None
    if isinstance(err, ClientError) and code == "AccessDeniedException":
        return f"no permission to call {err.operation_name}: {describe_error(err)}"
    if code == "ResourceNotFoundException":
        return f"the log stream does not exist (yet, or any more): {describe_error(err)}"
    return describe_error(err)


# -- a job found for the task instance (see ownership.py) ------------------------------------------------------


def existing_job(summary: Mapping[str, Any], detail: Mapping[str, Any] | None) -> ExistingJob:
    """A ListJobs entry (and, for a job still running, its DescribeJobs entry with the tags) as :class:`ExistingJob`."""
    status = summary.get("status") or ""
    reason = summary.get("statusReason") or (detail or {}).get("statusReason")
    tags = (detail or {}).get("tags") or {}
    submitted_by = tags.get(TRY_MARK, "")
    return ExistingJob(
        run_id=summary["jobId"],
        native_status=status,
        finished=look_up(STATUS_TABLE, status, JobFacts(reason or "", None))[0].is_terminal,
        # A terminated job can stay RUNNING until its container stops; its status reason says so at once.
        cancelling=is_cancel_reason(reason),
        watched=WATCHED_MARK in tags,
        try_number=int(submitted_by) if submitted_by.isdigit() else None,
        cancel_on_kill=cancel_on_kill_of(tags) if CANCEL_ON_KILL_MARK in tags else None,
    )
