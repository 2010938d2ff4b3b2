"""A daily load on AWS Batch: a fair-share ETL job, then a summary job that gets the first job's id.

Connection ``aws_default`` (type ``aws`` or ``polysync_aws_batch``) holds the credentials and region;
its extra may set ``default_job_queue`` and ``monitor_link_template``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from polysync_airflow import AwsBatchJobOperator

# 30 s suits real jobs; the demo and tests poll faster.
POLL_INTERVAL = float(os.environ.get("POLYSYNC_EXAMPLE_POLL_INTERVAL", "30"))

with DAG(
    dag_id="polysync_aws_batch_job",
    schedule="@daily",
    start_date=datetime(2026, 11, 1),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["polysync", "aws-batch"],
):
    load = AwsBatchJobOperator(
        task_id="load_daily_orders",
        job_definition="polysync-etl",  # latest ACTIVE revision; pin with "polysync-etl:2"
        job_queue="polysync-fairshare",
        share_identifier="analytics",
        scheduling_priority_override=50,
        parameters={"run_date": "{{ ds }}", "rows": 5000, "seconds": 1, "mode": "incremental"},
        attempt_duration_seconds=3600,
        retry_attempts=2,
        tags={"team": "analytics", "airflow-dag": "{{ dag.dag_id }}"},
        execution_timeout=timedelta(hours=2),
        queued_warning_after=600,  # one warning naming why, if the job has not started after 10 minutes
        queued_timeout=1800,  # stop it and fail the try if it has not started after 30 minutes
        poll_interval=POLL_INTERVAL,
    )

    summarize = AwsBatchJobOperator(
        task_id="summarize",
        job_definition="polysync-job",  # queue: the connection's default_job_queue
        parameters={
            "message": "summary of {{ ti.xcom_pull(task_ids='load_daily_orders')['run_id'] }}",
            "seconds": 0.5,
        },
        poll_interval=POLL_INTERVAL,
    )

    load >> summarize
