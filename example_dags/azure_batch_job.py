"""A daily scoring run on Azure Batch: one task in a new job cloned from the template job
``polysync-template`` (its pool, wall-clock limit, command line and container image).

Connection ``azure_batch_default`` (type ``azure_batch`` or ``polysync_azure_batch``): login = Batch
account name, password = account key (or Entra ID), extra ``account_url``, plus ``subscription_id`` and
``resource_group`` for the portal link.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from polysync_airflow import AzureBatchJobOperator

# 30 s suits real jobs; the demo and tests poll faster.
POLL_INTERVAL = float(os.environ.get("POLYSYNC_EXAMPLE_POLL_INTERVAL", "30"))

with DAG(
    dag_id="polysync_azure_batch_job",
    schedule="@daily",
    start_date=datetime(2026, 11, 1),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["polysync", "azure-batch"],
):
    score = AzureBatchJobOperator(
        task_id="score_customers",
        template_job_id="polysync-template",
        parameters={"RUN_DATE": "{{ ds }}", "ROWS": 2500, "SECONDS_TO_RUN": 1},
        execution_timeout=timedelta(hours=1),
        poll_interval=POLL_INTERVAL,
    )

    publish = AzureBatchJobOperator(
        task_id="publish_scores",
        template_job_id="polysync-template",
        command_line="/bin/sh -c 'echo \"publishing scores of $UPSTREAM_RUN\"'",
        container_image="polysync.azurecr.io/publish:2.0",
        parameters={"UPSTREAM_RUN": "{{ ti.xcom_pull(task_ids='score_customers')['run_id'] }}"},
        poll_interval=POLL_INTERVAL,
    )

    score >> publish
