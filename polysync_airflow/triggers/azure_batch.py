"""The trigger that waits for an Azure Batch task in the triggerer, with the SDK's own async client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from asgiref.sync import sync_to_async

from polysync_airflow.hooks.azure_batch import AzureBatchHook, AzureRunReader, decode_task
from polysync_airflow.poller import StatusPoller
from polysync_airflow.status import RunState
from polysync_airflow.triggers.base import PolysyncJobTrigger


class AzureBatchJobTrigger(PolysyncJobTrigger):
    """Waits for one task with ``azure.batch.aio.BatchClient``. All triggers of a connection share one
    poller: one job listing per interval, and a task read only where the listing shows a change.

    Serializes only the run id (``{jobId}/{taskId}``), the connection id and numbers.
    """

    def __init__(
        self,
        run_id: str,
        job_name: str = "",
        azure_batch_conn_id: str = "azure_batch_default",
        **polling: Any,
    ) -> None:
        """``polling``: poll_interval, unknown_grace_period, deadline, cancel_on_kill, outage_window."""
        super().__init__(run_id=run_id, job_name=job_name, **polling)
        self.azure_batch_conn_id = azure_batch_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"run_id": self.run_id, "azure_batch_conn_id": self.azure_batch_conn_id, **self._common_kwargs()},
        )

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Any]:
        hook = AzureBatchHook(self.azure_batch_conn_id)
        # The connection lookup is a blocking call into the triggerer's supervisor.
        await sync_to_async(hook.validate)()
        async with hook.async_client() as client:
            yield client

    def poller(self) -> StatusPoller[tuple[Any, Any]]:
        return StatusPoller.shared(("azure_batch", self.azure_batch_conn_id), self.client, AzureRunReader)

    def decode(self, answer: tuple[Any, Any] | None) -> RunState:
        task, job = answer or (None, None)
        return decode_task(self.run_id, task, job)

    async def cancel(self, client: Any) -> None:
        await AzureBatchHook.aterminate_run(client, self.run_id)

    async def mark_watched(self, client: Any, answer: tuple[Any, Any] | None) -> None:
        await AzureBatchHook.amark_watched(client, answer[1] if answer else None, "triggerer")
