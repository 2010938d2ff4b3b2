"""The trigger that waits for an Azure Batch task in the triggerer, with the SDK's own async client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from asgiref.sync import sync_to_async

from polysync_airflow.hooks.azure_batch import AzureBatchHook
from polysync_airflow.status import RunState
from polysync_airflow.triggers.base import PolysyncJobTrigger


class AzureBatchJobTrigger(PolysyncJobTrigger):
    """Polls one task (and its job) with ``azure.batch.aio.BatchClient``.

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

    async def read_state(self, client: Any) -> RunState:
        return await AzureBatchHook.aget_run_state(client, self.run_id)

    async def cancel(self, client: Any) -> None:
        await AzureBatchHook.aterminate_run(client, self.run_id)

    async def mark_watched(self, client: Any) -> None:
        await AzureBatchHook.amark_watched(client, self.run_id, "triggerer")
