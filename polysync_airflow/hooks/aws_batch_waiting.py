"""AWS Batch: the hook's reads for a run that waits to start (why it waits), as a mixin
:class:`~polysync_airflow.hooks.aws_batch.AwsBatchHook` inherits. What the answers mean is in
``queueing/aws_batch.py`` (pure); the calls are here. Mirrors ``hooks/azure_batch_waiting.py``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from polysync_airflow.queueing.aws_batch import (
    WaitFacts,
    environment_names,
    read_problem,
    waiting_cause,
)


class AwsBatchWaitReads:
    """Why a run waits, for the queue watch (``QueueWatch`` in ``run_watch.py``). An answer is the job's
    DescribeJobs entry, None when not found."""

    if TYPE_CHECKING:

        @property
        def conn(self) -> Any: ...

        @property
        def async_client(self) -> Any: ...

    def read_wait_cause(self, run_id: str, answer: Mapping[str, Any]) -> str:
        """Why the described job has not started (DescribeJobQueues, DescribeComputeEnvironments), in one line."""
        return waiting_cause(answer, self.read_wait_facts(answer))

    async def aread_wait_cause(self, run_id: str, answer: Mapping[str, Any]) -> str:
        return waiting_cause(answer, await self.aread_wait_facts(answer))

    def read_wait_facts(self, job: Mapping[str, Any]) -> WaitFacts:
        """Why a described job may be waiting: its queue (DescribeJobQueues) and the queue's compute environments
        (DescribeComputeEnvironments). A read that fails is reported in the facts, never raised."""
        problems: list[str] = []
        queue, environments = None, []
        try:
            queues = self.conn.describe_job_queues(jobQueues=[job["jobQueue"]]).get("jobQueues", [])
            queue = queues[0] if queues else None
        except Exception as err:
            problems.append(read_problem(err, "DescribeJobQueues"))
        names = environment_names(queue) if queue else []
        if names:
            try:
                environments = self.conn.describe_compute_environments(computeEnvironments=names).get(
                    "computeEnvironments", []
                )
            except Exception as err:
                problems.append(read_problem(err, "DescribeComputeEnvironments"))
        return WaitFacts(queue, environments, problems)

    async def aread_wait_facts(self, job: Mapping[str, Any]) -> WaitFacts:
        """:meth:`read_wait_facts` with the async client."""
        problems: list[str] = []
        queue, environments = None, []
        try:
            answer = await self.async_client.describe_job_queues(jobQueues=[job["jobQueue"]])
            queue = (answer.get("jobQueues") or [None])[0]
        except Exception as err:
            problems.append(read_problem(err, "DescribeJobQueues"))
        names = environment_names(queue) if queue else []
        if names:
            try:
                answer = await self.async_client.describe_compute_environments(computeEnvironments=names)
                environments = answer.get("computeEnvironments", [])
            except Exception as err:
                problems.append(read_problem(err, "DescribeComputeEnvironments"))
        return WaitFacts(queue, environments, problems)
