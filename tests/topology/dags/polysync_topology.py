"""DAGs for the production-topology scenarios (tests/topology): mapped AWS and Azure jobs that run until the
test opens their gate, then end with the exit code their map index gives them (every fifth fails).

A run's gate is ``<POLYSYNC_TOPOLOGY_GATES>/<conf gate>``: trigger with ``conf={"gate": "..."}``.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from polysync_airflow import AwsBatchJobOperator, AzureBatchJobOperator

GATES = os.environ.get("POLYSYNC_TOPOLOGY_GATES", "/tmp/polysync-topology-gates")
GATE = GATES + "/{{ dag_run.conf.get('gate', 'none') }}"
POLL_INTERVAL = float(os.environ.get("POLYSYNC_TOPOLOGY_POLL_INTERVAL", "5"))
AWS_TASKS = int(os.environ.get("POLYSYNC_TOPOLOGY_AWS_TASKS", "20"))
AZURE_TASKS = int(os.environ.get("POLYSYNC_TOPOLOGY_AZURE_TASKS", "10"))
ACTION_AWS_TASKS, ACTION_AZURE_TASKS = 6, 4
AZURE_GATED_COMMAND = "/bin/sh -c 'while [ ! -e \"$GATE\" ]; do sleep 2; done; exit ${EXIT_CODE:-0}'"


def exit_code(map_index: int) -> int:
    """The outcome a mapped job is given: every fifth fails (exit code 3)."""
    return 3 if map_index % 5 == 4 else 0


def mapped_dag(dag_id: str, aws_tasks: int, azure_tasks: int) -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_tasks=512,
        default_args={"retries": 0},
    ) as dag:
        AwsBatchJobOperator.partial(
            task_id="aws", job_definition="polysync-topology-gated", poll_interval=POLL_INTERVAL
        ).expand(parameters=[{"gate": GATE, "exit_code": exit_code(i), "index": i} for i in range(aws_tasks)])
        AzureBatchJobOperator.partial(
            task_id="azure",
            template_job_id="polysync-template",
            command_line=AZURE_GATED_COMMAND,
            poll_interval=POLL_INTERVAL,
        ).expand(parameters=[{"GATE": GATE, "EXIT_CODE": exit_code(i)} for i in range(azure_tasks)])
    return dag


# Mapped load (scenarios 2 and 3): 200 + 100 in the long variant, 20 + 10 in the short one.
mapped_dag("polysync_topology_load", AWS_TASKS, AZURE_TASKS)
# User actions, a scheduler restart, a database outage (scenarios 5-7): one small run each.
mapped_dag("polysync_topology_actions", ACTION_AWS_TASKS, ACTION_AZURE_TASKS)


class _HeldAfterSubmit:
    """Test only: try 1 stops between the submit and the deferral (after the links are stored) and waits
    there, so the test can kill its Celery worker at that moment. It writes ``held-<task_id>`` to tell."""

    def persist_links(self, context: Any, run: Any) -> None:
        super().persist_links(context, run)  # type: ignore[misc]
        if context["ti"].try_number == 1:
            (Path(GATES) / f"held-{context['ti'].task_id}").write_text(run.run_id)
            time.sleep(900)


class HeldAwsBatchJobOperator(_HeldAfterSubmit, AwsBatchJobOperator):
    pass


class HeldAzureBatchJobOperator(_HeldAfterSubmit, AzureBatchJobOperator):
    pass


# A Celery worker killed while it submits (scenario 4): one task per platform, one after the other.
with DAG(
    dag_id="polysync_topology_worker_kill",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=1)},
):
    aws_held = HeldAwsBatchJobOperator(
        task_id="aws_held",
        job_definition="polysync-topology-gated",
        parameters={"gate": GATE + "-aws", "exit_code": 0},
        poll_interval=POLL_INTERVAL,
    )
    azure_held = HeldAzureBatchJobOperator(
        task_id="azure_held",
        template_job_id="polysync-template",
        command_line=AZURE_GATED_COMMAND,
        parameters={"GATE": GATE + "-azure", "EXIT_CODE": 0},
        poll_interval=POLL_INTERVAL,
    )
    aws_held >> azure_held
