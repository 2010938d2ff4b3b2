"""Azure Batch: the hook's discovery read (which jobs can serve as templates, for ``polysync-airflow
discover``), as a mixin :class:`~polysync_airflow.hooks.azure_batch.AzureBatchHook` inherits. Mirrors
``hooks/aws_batch_discovery.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polysync_airflow.statuses.azure_batch import read_field


@dataclass(frozen=True)
class JobTemplateInfo:
    """One Batch job that can serve as a template (discovery)."""

    id: str
    display_name: str | None
    state: str | None


class AzureBatchDiscovery:
    """``polysync-airflow discover azure``'s read."""

    if TYPE_CHECKING:

        @property
        def client(self) -> Any: ...

    def list_job_templates(self) -> list[JobTemplateInfo]:
        """Every job of the account (``$select=id,displayName,state``, all pages)."""
        return [
            JobTemplateInfo(job.id, job.display_name, read_field(job, "state"))
            for job in self.client.list_jobs(select=["id", "displayName", "state"])
        ]
