"""How a task of the local Azure Batch service runs, and how its job completes, in Azure's words.

A task stays ``active`` while its job's pool does not exist (the job then shows a ``PoolNotFound``
scheduling error) or has no compute node, then walks ``preparing`` -> ``running`` -> ``completed``, staying
``step_seconds`` in each waiting state; its command line runs in a local process with the job's and its own
environment settings, under the job's ``maxWallClockTime``. A job completes when it is terminated, when its
wall clock runs out, or (``onAllTasksComplete: terminatejob``) when all its tasks have completed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import isodate

from polysync_airflow.testing.azure_batch_resources import Job, Task, now, pool_has_nodes

if TYPE_CHECKING:  # the model starts and ends tasks through this module
    from polysync_airflow.testing.azure_batch_model import AzureBatchModel


def run_key(job_id: str, task_id: str) -> str:
    """A task's key in the job runner (its process and its output files)."""
    return f"{job_id}/{task_id}"


def task_ended() -> dict[str, Any]:
    """The failure of a task ended by a request."""
    return {"category": "usererror", "code": "TaskEnded", "message": "The task was terminated"}


def complete_job(job: Job, reason: str) -> None:
    """The job is completed with ``terminateReason`` ``reason`` (the caller holds the model's lock)."""
    job.previous_state, job.state = job.state, "completed"
    job.terminate_reason = reason
    job.ended = job.transition = now()


def check_job_completion(job: Job) -> None:
    """``onAllTasksComplete: terminatejob``: an active job whose tasks have all completed (none counts) completes."""
    if (
        job.state == "active"
        and job.on_all_tasks_complete == "terminatejob"
        and all(t.state == "completed" for t in job.tasks.values())
    ):
        complete_job(job, "AllTasksComplete")


def start_task(model: AzureBatchModel, job: Job, task: Task) -> None:
    """Run a new task's life cycle in the background."""
    model.runner.spawn(lambda: _run(model, job, task), name=f"azure-task-{job.id}-{task.id}")


def end_task(model: AzureBatchModel, job: Job, task: Task) -> None:
    """Terminate a task: it is completed at once (TaskEnded); its process is killed."""
    task.terminated.set()
    with model.lock:
        if task.state != "completed":
            task.previous_state, task.state = task.state, "completed"
            task.ended = task.transition = now()
            task.failure_info = task_ended()
            check_job_completion(job)
    model.runner.kill(run_key(job.id, task.id))


def _set_state(model: AzureBatchModel, task: Task, state: str) -> None:
    with model.lock:
        if task.state == "completed":
            return
        task.previous_state, task.state = task.state, state
        task.transition = now()
        if state == "running":
            task.started = task.transition


def _run(model: AzureBatchModel, job: Job, task: Task) -> None:
    # A pool that does not exist: Azure keeps the task active and reports a scheduling error on the job.
    while True:
        if model.pause(task.terminated):
            return
        with model.lock:
            if job.state != "active":
                return
            pool = model.pools.get(job.pool_id.lower()) if job.pool_id is not None else None
            if pool is None and job.scheduling_error is None:
                job.scheduling_error = {
                    "category": "usererror",
                    "code": "PoolNotFound",
                    "message": f"The pool {job.pool_id} specified for the job does not exist.",
                }
            # A pool without nodes (scaled to zero, a failed resize): the task waits active for one.
            ready = pool is not None and pool_has_nodes(pool)
        if ready:
            break
    _set_state(model, task, "preparing")
    if task.terminated.wait(model.step_seconds):
        return
    _set_state(model, task, "running")
    env = {s["name"]: s["value"] for s in job.body.get("commonEnvironmentSettings", [])}
    env.update({s["name"]: s["value"] for s in task.body.get("environmentSettings", [])})
    env.update(AZ_BATCH_JOB_ID=job.id, AZ_BATCH_TASK_ID=task.id, AZ_BATCH_POOL_ID=job.pool_id or "")
    outcome = model.runner.run_process(run_key(job.id, task.id), task.body["commandLine"], env, timeout=_time_left(job))
    with model.lock:
        if task.state == "completed":
            return
        task.exit_code = outcome.exit_code
        if outcome.killed:
            task.failure_info = task_ended()
        elif outcome.exit_code != 0:
            task.failure_info = {
                "category": "usererror",
                "code": "FailureExitCode",
                "message": "The task exited with an exit code representing a failure",
                "details": [{"name": "Message", "value": f"The task exited with exit code {outcome.exit_code}"}],
            }
        task.previous_state, task.state = task.state, "completed"
        task.ended = task.transition = now()
        if outcome.timed_out and job.state == "active":
            complete_job(job, "MaxWallClockTimeExpiry")
        check_job_completion(job)


def _time_left(job: Job) -> float | None:
    """Seconds left of the job's ``maxWallClockTime`` (None: no limit, or Azure's "unlimited" default)."""
    wall_clock = (job.body.get("constraints") or {}).get("maxWallClockTime")
    if not wall_clock:
        return None
    limit = isodate.parse_duration(wall_clock)
    if isinstance(limit, timedelta) and limit < timedelta(days=3650):
        return max(0.0, (job.created + limit - now()).total_seconds())
    return None
