"""Trigger rows written by an earlier release still run: a deferred task survives an upgrade of the package.

Each row below is what 0.1.0 (before the code was reorganized) stored for a deferred task: its classpath and
``serialize()`` kwargs, every key included (AWS with the optional ``verify`` and ``botocore_config``). The
triggerer re-creates the trigger as Airflow's ``TriggerRunner.create_triggers`` does (the ``Trigger`` model's
encrypted kwargs, decoded with Airflow's own functions, then the classpath called with them), and the trigger
must run the job to its real outcome against the local endpoints.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from polysync_airflow import AzureBatchJobOperator
from polysync_airflow.hooks.aws_batch import AwsBatchHook
from tests.integration.helpers import task_context


def stored_row(classpath: str, kwargs: dict[str, Any]) -> Any:
    """The ``trigger`` table row of a deferred task (kwargs encrypted as Airflow stores them)."""
    from airflow.models.trigger import Trigger

    return Trigger(classpath=classpath, kwargs=kwargs)


def stored_kwargs(row: Any) -> dict[str, Any]:
    from airflow.models.trigger import Trigger

    try:
        from airflow.serialization.decoders import smart_decode_trigger_kwargs
    except ImportError:  # Airflow 3.1 keeps it with the serialized objects
        from airflow.serialization.serialized_objects import smart_decode_trigger_kwargs

    return {k: smart_decode_trigger_kwargs(v) for k, v in Trigger._decrypt_kwargs(row.encrypted_kwargs).items()}


def inflate(row: Any) -> Any:
    """``TriggerRunner.create_triggers`` for one row."""
    from airflow.jobs.triggerer_job_runner import TriggerRunner

    return TriggerRunner().get_trigger_by_classpath(row.classpath)(**stored_kwargs(row))


async def first_event(trigger: Any, timeout: float = 30) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return await asyncio.wait_for(run(), timeout)


def test_an_aws_trigger_row_of_0_1_0_runs_to_the_jobs_outcome(local_aws_batch, polysync_aws_conn):
    job_id = AwsBatchHook(polysync_aws_conn).submit_job(
        {
            "jobName": "Polysync-stored",
            "jobDefinition": "polysync-job",
            "jobQueue": "polysync-default",
            "parameters": {"seconds": "0.3", "exit_code": "3"},
        }
    )["jobId"]
    row = stored_row(
        "polysync_airflow.triggers.aws_batch.AwsBatchJobTrigger",
        {
            "job_id": job_id,
            "aws_conn_id": polysync_aws_conn,
            "region_name": "us-east-1",
            "verify": False,
            "botocore_config": {"read_timeout": 7},
            "job_name": "Polysync-stored",
            "poll_interval": 0.05,
            "unknown_grace_period": 60.0,
            "deadline": time.time() + 600,
            "cancel_on_kill": True,
            "outage_window": 600.0,
        },
    )
    trigger = inflate(row)
    assert trigger.serialize() == (row.classpath, stored_kwargs(row))  # and the new code writes the same row
    event = asyncio.run(first_event(trigger))
    assert (event["status"], event["run_id"], event["exit_code"]) == ("Failed", job_id, 3)
    assert (event["job_name"], event["timed_out"]) == ("Polysync-stored", False)
    assert "terminatejob" not in local_aws_batch.requests


def test_an_azure_trigger_row_of_0_1_0_runs_to_the_tasks_outcome(local_azure_batch, polysync_azure_conn, airflow_db):
    operator = AzureBatchJobOperator(
        task_id="t",
        template_job_id="polysync-template",
        azure_batch_conn_id=polysync_azure_conn,
        parameters={"SECONDS_TO_RUN": 0.3},
    )
    run = operator.start_run(task_context())  # type: ignore[arg-type]
    row = stored_row(
        "polysync_airflow.triggers.azure_batch.AzureBatchJobTrigger",
        {
            "run_id": run.run_id,
            "azure_batch_conn_id": polysync_azure_conn,
            "job_name": run.job_name,
            "poll_interval": 0.05,
            "unknown_grace_period": 120.0,
            "deadline": None,
            "cancel_on_kill": True,
            "outage_window": 600.0,
        },
    )
    trigger = inflate(row)
    assert trigger.serialize() == (row.classpath, stored_kwargs(row))
    event = asyncio.run(first_event(trigger))
    assert (event["status"], event["run_id"], event["exit_code"]) == ("Success", run.run_id, 0)
    assert (event["job_name"], event["timed_out"]) == (run.job_name, False)
    assert not [r for r in local_azure_batch.requests if r.endswith("/terminate")]
