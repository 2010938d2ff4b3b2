"""The orphan sweep as a task: schedule it in a small maintenance DAG (``example_dags/polysync_orphan_sweep.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from polysync_airflow.sweep import AwsBatchJobs, AzureBatchJobs, JobSource, sweep, task_sdk_states
from polysync_airflow.validation import PolysyncValidationError, as_bool

if TYPE_CHECKING:
    from airflow.sdk import Context


class PolysyncOrphanSweepOperator(BaseOperator):
    """Stop the Polysync jobs no task instance owns any more: their task instance ended (success, failed,
    skipped, removed), their DAG run is gone, or a later try of it has a job of its own. Jobs of task instances
    still scheduled, queued, running, deferred or up for retry, and jobs submitted with ``cancel_on_kill=False``,
    are left alone. Task instance states are read through the Task SDK (never the metadata database), so it works
    on every Airflow 3 the package supports. Each job gets one line in the task log.

    :param aws_conn_id: sweep the AWS Batch jobs this connection reaches (None: not AWS).
    :param job_queues: the AWS job queues to look in (default: every queue of the region).
    :param region_name: overrides the AWS connection's region.
    :param azure_batch_conn_id: sweep the jobs of this Azure Batch account (None: not Azure).
    :param report_only: only log what would be stopped, and why (the command's ``--dry-run``).

    Returns (XCom) ``{"stopped": [...], "left": [...]}``: the run ids (``"would_stop"`` instead of
    ``"stopped"`` with ``report_only``).
    """

    template_fields: Sequence[str] = ("aws_conn_id", "job_queues", "region_name", "azure_batch_conn_id", "report_only")
    ui_color = "#c0c0c0"

    def __init__(
        self,
        *,
        aws_conn_id: str | None = None,
        job_queues: Sequence[str] | None = None,
        region_name: str | None = None,
        azure_batch_conn_id: str | None = None,
        report_only: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.job_queues = job_queues
        self.region_name = region_name
        self.azure_batch_conn_id = azure_batch_conn_id
        self.report_only = report_only

    def sources(self) -> list[JobSource]:
        sources: list[JobSource] = []
        if self.aws_conn_id:
            from polysync_airflow.hooks.aws_batch import AwsBatchHook

            hook = AwsBatchHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name or None)
            sources.append(AwsBatchJobs(hook, list(self.job_queues or [])))
        if self.azure_batch_conn_id:
            from polysync_airflow.hooks.azure_batch import AzureBatchHook

            sources.append(AzureBatchJobs(AzureBatchHook(self.azure_batch_conn_id)))
        if not sources:
            raise PolysyncValidationError(
                "aws_conn_id",
                self.aws_conn_id,
                "nothing to sweep: pass aws_conn_id and/or azure_batch_conn_id",
            )
        return sources

    def execute(self, context: Context) -> dict[str, list[str]]:
        dry_run = as_bool("report_only", self.report_only)
        verdicts = sweep(self.sources(), task_sdk_states, dry_run=dry_run, log=self.log)
        stopped = [v.job.run_id for v in verdicts if v.stop]
        self.log.info(
            "Sweep done: %d job(s) %s, %d left alone",
            len(stopped),
            "would be stopped" if dry_run else "stopped",
            len(verdicts) - len(stopped),
        )
        return {"would_stop" if dry_run else "stopped": stopped, "left": [v.job.run_id for v in verdicts if not v.stop]}
