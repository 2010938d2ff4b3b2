"""The local Azure Batch service without HTTP: its pools, jobs and tasks, and Azure's rules for the requests
that change or read them (with Azure's error codes and messages).

Operations take a request body as Azure documents it (``id``, ``poolInfo``, ``commandLine``, ...) and answer
with records (:mod:`~polysync_airflow.testing.azure_batch_resources`); a rule broken raises :class:`BatchError`.
How a task runs and a job completes is :mod:`~polysync_airflow.testing.azure_batch_lifecycle`; the REST
protocol in front is :mod:`~polysync_airflow.testing.azure_batch`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from polysync_airflow.testing._emulator import BatchModel
from polysync_airflow.testing.azure_batch_lifecycle import (
    check_job_completion,
    complete_job,
    end_task,
    run_key,
    start_task,
)
from polysync_airflow.testing.azure_batch_resources import Job, Task, now
from polysync_airflow.testing.runner import LocalJobRunner

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class BatchError(Exception):
    """An Azure Batch error: HTTP ``status``, ``code``, ``message`` and the ``values`` (details) Azure adds."""

    def __init__(self, status: int, code: str, message: str, values: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.values = status, code, message, values or {}


def job_completed() -> BatchError:
    return BatchError(409, "JobCompleted", "The specified job is already in a completed state.")


class AzureBatchModel(BatchModel[Job]):
    """The state of one local Azure Batch account, and its operations. Ids are case-insensitive, as on Azure."""

    finishes = "complete"

    def __init__(self, step_seconds: float = 0.05, runner: LocalJobRunner | None = None) -> None:
        super().__init__(step_seconds, runner)
        self.pools: dict[str, dict[str, Any]] = {}
        """Pools by lower-cased id: the seed's dicts (``id``, ``vmSize``)."""
        self.jobs: dict[str, Job] = {}
        """Jobs by lower-cased id."""

    def load_seed(self, data: dict[str, Any]) -> None:
        """Pools and (template) jobs in the shape of ``azure_batch_seed.json``."""
        self.pools.update({pool["id"].lower(): pool for pool in data.get("pools", [])})
        for job in data.get("jobs", []):
            self.add_job(job)

    # -- pools and jobs ---------------------------------------------------------------------------------

    def pool(self, pool_id: str) -> dict[str, Any]:
        with self.lock:
            pool = self.pools.get(pool_id.lower())
        if pool is None:
            raise BatchError(404, "PoolNotFound", "The specified pool does not exist.")
        return pool

    def delete_pool(self, pool_id: str) -> None:
        with self.lock:
            self.pools.pop(pool_id.lower(), None)

    def add_job(self, body: dict[str, Any]) -> Job:
        """Add a (template) job directly, without a request."""
        job = Job(body["id"], dict(body))
        with self.lock:
            self.jobs[job.id.lower()] = job
        return job

    def job(self, job_id: str) -> Job:
        with self.lock:
            job = self.jobs.get(job_id.lower())
        if job is None:
            raise BatchError(404, "JobNotFound", "The specified job does not exist.")
        return job

    def finished_job(self, job_id: str) -> Job | None:
        job = self.job(job_id)
        return job if job.state == "completed" else None

    def create_job(self, body: dict[str, Any]) -> None:
        job_id = _check_id(body.get("id"))
        _require(body, "poolInfo")
        with self.lock:
            if job_id.lower() in self.jobs:
                raise BatchError(409, "JobExists", "The specified job already exists.")
            job = Job(job_id, dict(body))
            self.jobs[job_id.lower()] = job
            # Azure: a job with no tasks has all its tasks complete.
            check_job_completion(job)

    def update_job(self, job: Job, body: dict[str, Any], replace: bool) -> None:
        """PATCH (merge ``body``) or PUT (``replace``); ``onAllTasksComplete`` may go noaction -> terminatejob only."""
        with self.lock:
            if job.state == "completed":
                raise job_completed()
            new_mode = body.get("onAllTasksComplete", "noaction" if replace else job.on_all_tasks_complete).lower()
            if job.on_all_tasks_complete == "terminatejob" and new_mode == "noaction":
                raise BatchError(
                    400,
                    "InvalidPropertyValue",
                    "The value provided for one of the properties in the request body is invalid.",
                    {"PropertyName": "onAllTasksComplete"},
                )
            job.body = {**job.body, **body} if not replace else {"id": job.id, **body}
            job.body["onAllTasksComplete"] = new_mode
            job.transition = now()
            check_job_completion(job)

    def terminate_job(self, job: Job, reason: str, deleting: bool = False) -> None:
        """Complete the job with ``reason``, ending its running tasks (``deleting``: then remove it)."""
        with self.lock:
            if job.state == "completed" and not deleting:
                raise job_completed()
            # Azure ends running tasks; active ones stay active and are never scheduled.
            running = [t for t in job.tasks.values() if t.state in ("preparing", "running")]
            if job.state != "completed":
                complete_job(job, reason)
        for task in running:
            end_task(self, job, task)
        if deleting:
            with self.lock:
                self.jobs.pop(job.id.lower(), None)

    # -- tasks -------------------------------------------------------------------------------------------

    def task(self, job: Job, task_id: str) -> Task:
        with self.lock:
            for task in job.tasks.values():
                if task.id.lower() == task_id.lower():
                    return task
        raise BatchError(404, "TaskNotFound", "The specified task does not exist.")

    def create_task(self, job: Job, body: dict[str, Any]) -> None:
        task_id = _check_id(body.get("id"))
        _require(body, "commandLine")
        with self.lock:
            if job.state == "completed":
                raise job_completed()
            if job.state != "active":
                raise BatchError(409, "JobNotActive", "The specified job is not in an active state.")
            if task_id.lower() in (t.lower() for t in job.tasks):
                raise BatchError(409, "TaskExists", "The specified task already exists.")
            task = Task(task_id, dict(body))
            job.tasks[task_id] = task
        start_task(self, job, task)

    def terminate_task(self, job: Job, task: Task) -> None:
        with self.lock:
            if task.state == "completed":
                raise BatchError(409, "TaskCompleted", "The specified task is already completed.")
        end_task(self, job, task)

    def task_file(self, job: Job, task: Task, name: str) -> Path:
        """Where a task's file (``stdout.txt``, ``stderr.txt``) is, written or not."""
        return self.runner.run_dir(run_key(job.id, task.id)) / name


def _check_id(value: Any, name: str = "id") -> str:
    if not isinstance(value, str) or not ID_RE.match(value):
        raise BatchError(
            400,
            "InvalidPropertyValue",
            "The value provided for one of the properties in the request body is invalid.",
            {"PropertyName": name, "PropertyValue": str(value)},
        )
    return value


def _require(body: dict[str, Any], name: str) -> None:
    if not body.get(name):
        raise BatchError(
            400,
            "MissingRequiredProperty",
            "A required property was not specified in the request body.",
            {"PropertyName": name},
        )
