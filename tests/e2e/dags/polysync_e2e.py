"""DAGs for the end-to-end suite: failing jobs, long jobs (to be cancelled) and jobs that end when the
test says so, on both platforms."""

from __future__ import annotations

import os
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

# Jobs that run until the test creates their gate file, one per try: ``<gates>/<task_id>-<try_number>``
# (see tests/e2e/conftest.py). Used to act on a deferred task at a chosen moment: mark it success, clear
# it, restart the triggerer.
GATE = os.environ.get("POLYSYNC_E2E_GATES", "/tmp/polysync-e2e-gates") + "/{{ ti.task_id }}-{{ ti.try_number }}"

with DAG(dag_id="polysync_e2e_actions", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    for action in ("mark_success", "clear", "restart"):
        AwsBatchJobOperator(
            task_id=f"aws_{action}",
            job_definition="polysync-gated",
            parameters={"gate": GATE, "e2e_task": f"aws_{action}"},
            poll_interval=1,
        )
        AzureBatchJobOperator(
            task_id=f"azure_{action}",
            template_job_id="polysync-template",
            command_line="/bin/sh -c 'while [ ! -e \"$GATE\" ]; do sleep 0.2; done'",
            parameters={"GATE": GATE},
            poll_interval=1,
        )
