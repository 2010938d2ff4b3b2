from __future__ import annotations

from polysync_airflow.links.base import PolysyncRunLink


class AzureBatchJobLink(PolysyncRunLink):
    """The Azure portal page of the job created for the run."""

    name = "Azure Batch Job"


class AzureBatchTaskLink(PolysyncRunLink):
    """The Azure portal page of the run's task (its state, exit code and files)."""

    name = "Azure Batch Task"
