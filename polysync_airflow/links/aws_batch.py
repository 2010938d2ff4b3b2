from __future__ import annotations

from polysync_airflow.links.base import PolysyncRunLink


class AwsBatchJobLink(PolysyncRunLink):
    """The AWS Batch console page of the submitted job."""

    name = "AWS Batch Job"


class AwsBatchJobLogsLink(PolysyncRunLink):
    """The CloudWatch console page of the job's log stream, stored once the run has ended and the stream is known."""

    name = "AWS Batch Job Logs"
