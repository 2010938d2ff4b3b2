"""The benchmark's DAGs (benchmarks/topology_bench.py): N mapped jobs of about a minute each, polled every 30 s,
by our operators and by the official ones, against the same local endpoints."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.amazon.aws.operators.batch import BatchOperator
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import DAG, BaseOperator, timezone

from polysync_airflow import AwsBatchJobOperator, AzureBatchJobOperator

AWS_TASKS = int(os.environ.get("POLYSYNC_BENCH_AWS_TASKS", "200"))
AZURE_TASKS = int(os.environ.get("POLYSYNC_BENCH_AZURE_TASKS", "100"))
JOB_SECONDS = os.environ.get("POLYSYNC_BENCH_JOB_SECONDS", "60")
POLL_INTERVAL = int(os.environ.get("POLYSYNC_BENCH_POLL_INTERVAL", "30"))
ARGS = {"schedule": None, "start_date": datetime(2026, 1, 1), "catchup": False, "max_active_tasks": 1024}

with DAG(dag_id="bench_polysync_aws", **ARGS):
    AwsBatchJobOperator.partial(task_id="job", job_definition="polysync-job", poll_interval=POLL_INTERVAL).expand(
        parameters=[{"seconds": JOB_SECONDS, "message": f"job {i}"} for i in range(AWS_TASKS)]
    )

with DAG(dag_id="bench_amazon_aws", **ARGS):
    # The official operator, deferrable, its waiter_delay (poll_interval) the same 30 s.
    BatchOperator.partial(
        task_id="job",
        job_definition="polysync-job",
        job_queue="polysync-default",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        aws_conn_id="aws_default",
    ).expand_kwargs(
        [
            {"job_name": f"bench-{i}", "parameters": {"seconds": JOB_SECONDS, "message": f"job {i}"}}
            for i in range(AWS_TASKS)
        ]
    )

with DAG(dag_id="bench_polysync_azure", **ARGS):
    AzureBatchJobOperator.partial(
        task_id="job", template_job_id="polysync-template", poll_interval=POLL_INTERVAL
    ).expand(parameters=[{"SECONDS_TO_RUN": JOB_SECONDS, "ROWS": i} for i in range(AZURE_TASKS)])


class WaitInTriggerer(BaseOperator):
    """Airflow's own cost of a deferred task, with no cloud at all: defer to the standard provider's
    DateTimeTrigger for as long as a job runs, then end. What a triggerer spends on it (creating, running,
    firing and ending the trigger) is the floor under any Batch operator's trigger."""

    def __init__(self, *, seconds: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds

    def execute(self, context: Any) -> None:
        moment = timezone.utcnow() + timedelta(seconds=self.seconds)
        self.defer(trigger=DateTimeTrigger(moment=moment), method_name="execute_complete")

    def execute_complete(self, context: Any, event: Any = None) -> None:
        return None


with DAG(dag_id="bench_airflow_floor", **ARGS):
    WaitInTriggerer.partial(task_id="job").expand(seconds=[int(JOB_SECONDS)] * AWS_TASKS)
