"""DAGs for the orphan sweep's end-to-end test (tests/e2e/test_orphan_sweep.py): jobs that run until the test
opens their gate, left behind in every way the sweep must handle, and jobs it must leave alone."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, BaseOperator

from polysync_airflow import AwsBatchJobOperator, AzureBatchJobOperator

GATE = os.environ.get("POLYSYNC_E2E_GATES", "/tmp/polysync-e2e-gates") + "/{{ ti.task_id }}-{{ ti.try_number }}"
CLOSED_POOL = "polysync_e2e_closed"  # no slots (the test creates it): a task there stays scheduled


def aws_gated(task_id: str, **kwargs) -> AwsBatchJobOperator:
    return AwsBatchJobOperator(
        task_id=task_id,
        job_definition="polysync-gated",
        parameters={"gate": GATE, "e2e_task": task_id},
        poll_interval=1,
        **kwargs,
    )


class Waits(BaseOperator):
    """A task that never gets to run (its pool has no slots); the test gives it a job of its own."""

    def execute(self, context):
        return None


with DAG(dag_id="polysync_e2e_sweep", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    aws_gated("aws_unpicked")  # marked failed while no triggerer runs: no on_kill, its job runs on
    AzureBatchJobOperator(
        task_id="azure_unpicked",
        template_job_id="polysync-template",
        command_line="/bin/sh -c 'while [ ! -e \"$GATE\" ]; do sleep 0.2; done'",
        parameters={"GATE": GATE},
        poll_interval=1,
    )
    aws_gated("aws_keep", cancel_on_kill=False)  # marked failed too, but its job is to be kept
    aws_gated("aws_deferred")  # stays deferred: its job is owned
    # marked failed while its trigger polls: Airflow 3.3's trigger on_kill stops the job, on 3.1/3.2 the sweep
    aws_gated("aws_watched_failed")
    aws_gated("aws_sync_killed", deferrable=False)  # its task process gets SIGKILL, no retries: failed
    # SIGKILL too, but it will be retried (in an hour): up for retry, its next try decides about the job
    aws_gated("aws_sync_retry", deferrable=False, retries=1, retry_delay=timedelta(hours=1))
    # SIGKILL, retried at once: try 2 stops try 1's job (the task_state_store on 3.3, the tag on 3.1/3.2 say try 1
    # watched it) and submits its own
    aws_gated("aws_sync_retried", deferrable=False, retries=1, retry_delay=timedelta(0))
    Waits(task_id="aws_waiting", pool=CLOSED_POOL)

with DAG(dag_id="polysync_e2e_sweep_deleted", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    aws_gated("aws_in_deleted_run")  # its DAG run is deleted while it is deferred
