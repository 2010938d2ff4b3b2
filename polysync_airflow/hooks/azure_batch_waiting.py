"""Azure Batch: the hook's reads for a run that waits to start (why it waits), as a mixin
:class:`~polysync_airflow.hooks.azure_batch.AzureBatchHook` inherits. What the answers mean is in
``queueing/azure_batch.py`` (pure); the calls are here. Mirrors ``hooks/aws_batch_waiting.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from polysync_airflow.queueing.azure_batch import (
    JOB_READ_PERMISSION,
    POOL_READ_PERMISSION,
    WaitFacts,
    pool_id_of,
    read_problem,
    waiting_cause,
)

_WAIT_JOB_FIELDS = ["id", "poolInfo", "executionInfo"]  # the pool, and the job's scheduling error
_WAIT_POOL_FIELDS = [
    "id",
    "state",
    "allocationState",
    "resizeErrors",
    "currentDedicatedNodes",
    "targetDedicatedNodes",
    "currentLowPriorityNodes",
    "targetLowPriorityNodes",
    "enableAutoScale",
]


def _pool_missing(pool_id: str) -> str:
    return f"pool {pool_id} does not exist"


def _job_id(run_id: str) -> str:
    # as hooks/azure_batch.py's split_run_id, which this module cannot import (the hook imports it)
    return run_id.partition("/")[0]


class AzureBatchWaitReads:
    """Why a run waits, for the queue watch (``QueueWatch`` in ``run_watch.py``). An answer is the task and
    its job, None when not found."""

    if TYPE_CHECKING:

        @property
        def client(self) -> Any: ...

        @property
        def async_client(self) -> Any: ...

    def read_wait_cause(self, run_id: str, answer: tuple[Any, Any]) -> str:
        """Why the run's task has not started (its job's scheduling error, its pool), in one line."""
        return waiting_cause(answer[0], self.read_wait_facts(run_id))

    async def aread_wait_cause(self, run_id: str, answer: tuple[Any, Any]) -> str:
        return waiting_cause(answer[0], await self.aread_wait_facts(run_id))

    def read_wait_facts(self, run_id: str) -> WaitFacts:
        """Why a run's task may be waiting: its job (the scheduling error) and the job's pool (allocation state,
        resize errors, nodes). A read that fails is reported in the facts, never raised."""
        from azure.core.exceptions import ResourceNotFoundError

        job_id = _job_id(run_id)
        problems: list[str] = []
        job = pool = None
        try:
            job = self.client.get_job(job_id, select=_WAIT_JOB_FIELDS)
        except Exception as err:
            problems.append(read_problem(err, f"job {job_id}", JOB_READ_PERMISSION))
        pool_id = pool_id_of(job)
        if pool_id:
            try:
                pool = self.client.get_pool(pool_id, select=_WAIT_POOL_FIELDS)
            except ResourceNotFoundError:
                problems.append(_pool_missing(pool_id))
            except Exception as err:
                problems.append(read_problem(err, f"pool {pool_id}", POOL_READ_PERMISSION))
        return WaitFacts(job, pool, problems)

    async def aread_wait_facts(self, run_id: str) -> WaitFacts:
        """:meth:`read_wait_facts` with the async client."""
        from azure.core.exceptions import ResourceNotFoundError

        job_id = _job_id(run_id)
        problems: list[str] = []
        job = pool = None
        try:
            job = await self.async_client.get_job(job_id, select=_WAIT_JOB_FIELDS)
        except Exception as err:
            problems.append(read_problem(err, f"job {job_id}", JOB_READ_PERMISSION))
        pool_id = pool_id_of(job)
        if pool_id:
            try:
                pool = await self.async_client.get_pool(pool_id, select=_WAIT_POOL_FIELDS)
            except ResourceNotFoundError:
                problems.append(_pool_missing(pool_id))
            except Exception as err:
                problems.append(read_problem(err, f"pool {pool_id}", POOL_READ_PERMISSION))
        return WaitFacts(job, pool, problems)
