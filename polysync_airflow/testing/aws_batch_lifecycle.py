"""How a job of the local AWS Batch service runs, in local processes and AWS's words.

A job walks SUBMITTED -> PENDING (waiting for its ``dependsOn`` jobs) -> RUNNABLE -> STARTING -> RUNNING ->
SUCCEEDED/FAILED, staying ``step_seconds`` in each waiting state; each attempt (``retryStrategy``) runs the
definition's command with ``Ref::`` placeholders substituted, under ``attemptDurationSeconds``, and its
output becomes the job's log stream. An array job fans out to its children (four at a time) and ends when
they all have. Terminating or cancelling stops a job on its way (see :func:`stop_job`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from polysync_airflow.testing.aws_batch_resources import FINISHED_STATES, Job, now_ms, substitute

if TYPE_CHECKING:  # the model starts and stops jobs through this module
    from polysync_airflow.testing.aws_batch_model import AwsBatchModel

REASON_EXITED = "Essential container in task exited"
REASON_TIMEOUT = "Job attempt duration exceeded timeout"
REASON_DEPENDENCY = "Dependent Job failed"
ARRAY_WORKERS = 4
"""How many children of an array job run at once."""


def start_job(model: AwsBatchModel, job: Job) -> None:
    """Run a submitted job's life cycle in the background."""
    model.runner.spawn(lambda: _run(model, job), name=f"aws-job-{job.job_id}")


def set_status(model: AwsBatchModel, job: Job, status: str, reason: str | None = None) -> None:
    """Move a job on; SUCCEEDED and FAILED are final. RUNNING stamps ``startedAt``, the end ``stoppedAt``."""
    with model.lock:
        if job.status in FINISHED_STATES:
            return
        job.status = status
        if reason is not None:
            job.status_reason = reason
        if status == "RUNNING" and job.started_at is None:
            job.started_at = now_ms()
        if status in FINISHED_STATES:
            job.stopped_at = now_ms()


def stop_job(model: AwsBatchModel, job: Job, reason: str, include_running: bool) -> None:
    """TerminateJob (``include_running``) or CancelJob: a running process is killed (the attempt then ends
    FAILED with ``reason``); a job still waiting fails at once. CancelJob leaves STARTING and RUNNING jobs be."""
    for target in (job, *job.children):
        with model.lock:
            if target.status in FINISHED_STATES:
                continue
            if not include_running and target.status in ("STARTING", "RUNNING"):
                continue
            target.cancel.set()
            target.status_reason = reason
        if not model.runner.kill(target.job_id):
            set_status(model, target, "FAILED", reason)


def _run(model: AwsBatchModel, job: Job) -> None:
    if model.pause(job.cancel):
        return set_status(model, job, "FAILED")
    set_status(model, job, "PENDING")
    if not _dependencies_done(model, job):
        return set_status(model, job, "FAILED", REASON_DEPENDENCY)
    if model.pause(job.cancel):
        return set_status(model, job, "FAILED")
    if job.children:
        return _run_array(model, job)
    _run_attempts(model, job)


def _dependencies_done(model: AwsBatchModel, job: Job) -> bool:
    """Wait for the ``dependsOn`` jobs; False if one of them failed (True, too, if this job was cancelled)."""
    for dependency in job.request.get("dependsOn", []):
        other = model.find_job(dependency["jobId"])
        while other is not None and other.status not in FINISHED_STATES:
            if model.pause(job.cancel):
                return True
        if other is not None and other.status == "FAILED":
            return False
    return True


def _run_array(model: AwsBatchModel, parent: Job) -> None:
    for child in parent.children:  # a child is created as it enters PENDING (its createdAt)
        with model.lock:
            child.created_at = now_ms()
        set_status(model, child, "PENDING")
    set_status(model, parent, "RUNNABLE")
    indexes = iter(range(len(parent.children)))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                index = next(indexes, None)
            if index is None:
                return
            child = parent.children[index]
            if parent.cancel.is_set():
                set_status(model, child, "FAILED", parent.status_reason)
                continue
            set_status(model, child, "RUNNABLE")
            _run_attempts(model, child, on_running=lambda: set_status(model, parent, "RUNNING"))

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(min(ARRAY_WORKERS, len(parent.children)))]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    failed = [child for child in parent.children if child.status == "FAILED"]
    if failed:
        set_status(
            model,
            parent,
            "FAILED",
            parent.status_reason
            if parent.cancel.is_set()
            else f"Array Child Job failed: {len(failed)} of {len(parent.children)} children failed",
        )
    else:
        set_status(model, parent, "SUCCEEDED", REASON_EXITED)


def _wait_for_capacity(model: AwsBatchModel, job: Job) -> bool:
    """Stay RUNNABLE while the job's queue cannot run it (held, no usable compute environment, none large
    enough), with AWS's ``statusReason`` for it; False if the job was stopped meanwhile."""
    held = False
    while (reason := job.queue.blocked_reason(job.vcpus)) is not None:
        with model.lock:
            if job.cancel.is_set():  # a terminate's reason stands
                return False
            job.status_reason, held = reason or None, True
        if model.pause(job.cancel):
            return False
    if held:
        with model.lock:
            job.status_reason = None  # AWS drops the reason once the job is placed
    return True


def _run_attempts(model: AwsBatchModel, job: Job, on_running: Callable[[], None] | None = None) -> None:
    retry = job.request.get("retryStrategy") or job.definition.retry_strategy or {}
    timeout = (job.request.get("timeout") or job.definition.timeout or {}).get("attemptDurationSeconds")
    env = {item["name"]: item["value"] for item in job.environment_list()}
    env.update(AWS_BATCH_JOB_ID=job.job_id, AWS_BATCH_JQ_NAME=job.queue.name)
    if job.array_index is not None:
        env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(job.array_index)
    command = substitute(job.definition.command, job.parameters)
    for attempt in range(1, int(retry.get("attempts", 1)) + 1):
        set_status(model, job, "RUNNABLE")
        # A queue that cannot run the job says why from the job's first RUNNABLE answer on, as AWS does.
        if not _wait_for_capacity(model, job) or model.pause(job.cancel):
            return set_status(model, job, "FAILED")
        set_status(model, job, "STARTING")
        if model.pause(job.cancel):
            return set_status(model, job, "FAILED")
        set_status(model, job, "RUNNING")
        model.open_log_stream(job)
        if on_running:
            on_running()
        started = now_ms()
        env["AWS_BATCH_JOB_ATTEMPT"] = str(attempt)
        outcome = model.runner.run_process(job.job_id, command, env, timeout=timeout)
        model.append_output(job, outcome.stdout_path, outcome.stderr_path)
        with model.lock:
            job.exit_code = outcome.exit_code
            reason = job.status_reason if outcome.killed else (REASON_TIMEOUT if outcome.timed_out else REASON_EXITED)
            job.attempts.append(
                {
                    **job.attempt_detail(outcome.exit_code),
                    "startedAt": started,
                    "stoppedAt": now_ms(),
                    "statusReason": reason,
                }
            )
        if outcome.exit_code == 0 and not outcome.killed:
            return set_status(model, job, "SUCCEEDED", REASON_EXITED)
        if outcome.killed or outcome.timed_out:
            return set_status(model, job, "FAILED", reason)
    set_status(model, job, "FAILED", REASON_EXITED)
