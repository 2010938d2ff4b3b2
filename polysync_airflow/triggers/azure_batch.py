"""The trigger that waits for an Azure Batch task in the triggerer, and how its shared poller reads many runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from polysync_airflow.hooks.azure_batch import AzureBatchHook, split_run_id
from polysync_airflow.status import RunState
from polysync_airflow.statuses.azure_batch import decode_task, ended_cleanly, is_transient, read_field
from polysync_airflow.triggers.base import PolysyncJobTrigger

TASK_READS_IN_FLIGHT = 16
FULL_READ_SECONDS = 300.0  # a run's task is read at least this often, whatever its job shows


class AzureRunReader:
    """Reads many runs for the shared poller in few calls: ``{run_id: (task, job)}`` (absent: not found).

    Each run is its own job, which Batch terminates when its task completes. One listing of our active
    jobs (``$filter`` on the id prefix and state, ``$select`` of the fields the status needs) tells
    which runs changed; a task is read only for a run whose job changed or left the listing, whose task
    has not started running yet (so ``Running`` is seen), or that was last read long ago. So, unlike AWS's
    reader, it remembers what it saw: one reader per poller.
    """

    def __init__(self, job_prefix: str = "polysync-") -> None:
        self._job_prefix = job_prefix
        self._seen: dict[str, tuple[float, Any, Any]] = {}  # run id -> (when, task, job)

    async def __call__(self, hook: AzureBatchHook, run_ids: Sequence[str]) -> dict[str, tuple[Any, Any]]:
        now = time.monotonic()
        active = await hook.alist_active_jobs(self._job_prefix)
        answers: dict[str, tuple[Any, Any]] = {}
        stale = []
        for run_id in run_ids:
            job = active.get(split_run_id(run_id)[0])
            seen = self._seen.get(run_id)
            if (
                seen is not None
                and job is not None
                and now - seen[0] < FULL_READ_SECONDS
                and read_field(seen[1], "state") == "running"
                and read_field(job, "lastModified") == read_field(seen[2], "lastModified")
            ):
                answers[run_id] = (seen[1], job)
            else:
                stale.append((run_id, job))
        gate = asyncio.Semaphore(TASK_READS_IN_FLIGHT)

        async def read(run_id: str, job: Any) -> None:
            async with gate:
                task = await hook.aread_task(run_id)
                if task is not None and job is None and not ended_cleanly(task):
                    job = await hook.aread_job(split_run_id(run_id)[0])  # it tells a cancel or scheduling error
                    if job is None:  # gone with its task
                        task = None
            if task is None:
                self._seen.pop(run_id, None)
                return
            self._seen[run_id] = (now, task, job)
            answers[run_id] = (task, job)

        await asyncio.gather(*(read(run_id, job) for run_id, job in stale))
        for run_id in [r for r, (when, _, _) in self._seen.items() if now - when > 2 * FULL_READ_SECONDS]:
            del self._seen[run_id]  # runs that left
        return answers


class AzureBatchJobTrigger(PolysyncJobTrigger):
    """Waits for one task (run id ``{jobId}/{taskId}``) with ``azure.batch.aio.BatchClient``. All triggers of a
    connection share one poller. Serializes only the run id, the connection id and numbers."""

    is_transient = staticmethod(is_transient)

    def __init__(
        self,
        run_id: str,
        job_name: str = "",
        azure_batch_conn_id: str = "azure_batch_default",
        **settings: Any,
    ) -> None:
        """``settings``: the fields of :class:`~polysync_airflow.run_watch.PollingSettings`."""
        super().__init__(run_id=run_id, job_name=job_name, **settings)
        self.azure_batch_conn_id = azure_batch_conn_id

    def platform_kwargs(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "azure_batch_conn_id": self.azure_batch_conn_id}

    def make_reader(self) -> AzureRunReader:
        return AzureRunReader()

    @property
    def poller_key(self) -> tuple[Any, ...]:
        """The same connection."""
        return ("azure_batch", self.azure_batch_conn_id)

    @asynccontextmanager
    async def open_hook(self) -> AsyncIterator[AzureBatchHook]:
        hook = AzureBatchHook(self.azure_batch_conn_id)
        async with hook.async_connection():
            yield hook

    def decode(self, answer: tuple[Any, Any] | None) -> RunState:
        return decode_task(self.run_id, *(answer or (None, None)))

    async def cancel(self, hook: AzureBatchHook) -> None:
        await hook.aterminate_run(self.run_id)

    async def mark_watched(self, hook: AzureBatchHook, answer: tuple[Any, Any] | None) -> None:
        await hook.amark_watched(answer[1] if answer else None, "triggerer")
