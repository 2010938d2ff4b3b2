from __future__ import annotations

from polysync_airflow.links.base import PolysyncRunLink


class AwsBatchJobLink(PolysyncRunLink):
    """The AWS Batch console page of the submitted job."""

    name = "AWS Batch Job"
