"""The trigger that waits for an Azure Batch task in the triggerer: what it is stored with, its hook and decoder."""

from __future__ import annotations

from typing import Any

from polysync_airflow.hooks.azure_batch import AzureBatchHook
from polysync_airflow.statuses.azure_batch import decode_run, is_transient
from polysync_airflow.triggers.base import PolysyncJobTrigger


class AzureBatchJobTrigger(PolysyncJobTrigger):
    """Waits for one task (run id ``{jobId}/{taskId}``) with ``azure.batch.aio.BatchClient``. All triggers of a
    connection share one poller. Serializes only the run id, the connection id and numbers."""

    run_id_kwarg = "run_id"
    decode = staticmethod(decode_run)
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

    def connection_kwargs(self) -> dict[str, Any]:
        return {"azure_batch_conn_id": self.azure_batch_conn_id}

    def make_hook(self) -> AzureBatchHook:
        return AzureBatchHook(self.azure_batch_conn_id)
