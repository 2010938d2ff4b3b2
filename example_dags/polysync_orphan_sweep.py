"""Maintenance: every 10 minutes, stop the Polysync jobs no task instance owns any more.

A job outlives its task when the task is marked failed before the triggerer picked its trigger up, when its
DAG run is deleted, or when a worker polling it (``deferrable=False``) is killed; on Airflow 3.1 and 3.2 also
when a deferred task is marked failed or success (triggers have no ``on_kill`` there). The sweep stops those
jobs (AWS TerminateJob, Azure terminate task then job, with a reason naming the task instance) and leaves the
jobs of task instances that still run, wait or will retry, and jobs submitted with ``cancel_on_kill=False``.

Connections: ``aws_default`` (the AWS Batch jobs of every queue of its region) and ``azure_batch_default``.
Drop the platform you do not use; set ``report_only=True`` to only log what would be stopped.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from polysync_airflow import PolysyncOrphanSweepOperator

with DAG(
    dag_id="polysync_orphan_sweep",
    schedule=timedelta(minutes=10),
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=1,  # one sweep at a time: a slow one is not overtaken by the next
    dagrun_timeout=timedelta(minutes=9),
    tags=["polysync", "maintenance"],
):
    PolysyncOrphanSweepOperator(
        task_id="stop_orphaned_jobs",
        aws_conn_id="aws_default",
        azure_batch_conn_id="azure_batch_default",
        retries=0,  # the next run sweeps again in 10 minutes
    )
