"""DAGs for the end-to-end suite: failing jobs and long jobs (to be cancelled), on both platforms."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from polysync_airflow import AwsBatchJobOperator, AzureBatchJobOperator

with DAG(dag_id="polysync_e2e_failure", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    AwsBatchJobOperator(
        task_id="aws_fails", job_definition="polysync-job", parameters={"exit_code": 3, "seconds": 0}, poll_interval=1
    )
    AzureBatchJobOperator(
        task_id="azure_fails",
        template_job_id="polysync-template",
        parameters={"EXIT_CODE": 5, "SECONDS_TO_RUN": 0},
        poll_interval=1,
    )

with DAG(dag_id="polysync_e2e_long", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    AwsBatchJobOperator(task_id="aws_long", job_definition="polysync-job", parameters={"seconds": 600}, poll_interval=1)
    AzureBatchJobOperator(
        task_id="azure_long", template_job_id="polysync-template", parameters={"SECONDS_TO_RUN": 600}, poll_interval=1
    )
