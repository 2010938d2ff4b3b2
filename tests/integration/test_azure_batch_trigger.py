"""The Azure Batch trigger on its own, with the SDK's real aio client against the local Azure Batch service."""

from __future__ import annotations

import asyncio
import json

import pytest

from polysync_airflow import AzureBatchJobOperator
from polysync_airflow.hooks.azure_batch import CANCEL_REASON, AzureBatchHook
from polysync_airflow.statuses.azure_batch import decode_task
from polysync_airflow.triggers.azure_batch import AzureBatchJobTrigger
from tests.integration.helpers import task_context

pytestmark = pytest.mark.usefixtures("airflow_db")


def writes(endpoint):
    return [r for r in endpoint.requests if not r.startswith("GET")]


def test_serializes_only_ids_names_and_numbers(polysync_azure_conn):
    trigger = AzureBatchJobTrigger(
        run_id="job-1/polysync", job_name="job-1", azure_batch_conn_id=polysync_azure_conn, poll_interval=0.5
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "polysync_airflow.triggers.azure_batch.AzureBatchJobTrigger"
    assert kwargs == {
        "run_id": "job-1/polysync",
        "azure_batch_conn_id": polysync_azure_conn,
        "job_name": "job-1",
        "poll_interval": 0.5,
        "unknown_grace_period": 120.0,
        "deadline": None,
        "cancel_on_kill": True,
        "outage_window": 600.0,
    }
    assert AzureBatchJobTrigger(**json.loads(json.dumps(kwargs))).serialize() == (classpath, kwargs)


def submit(conn_id: str, **parameters) -> str:
    operator = AzureBatchJobOperator(
        task_id="t", template_job_id="polysync-template", azure_batch_conn_id=conn_id, parameters=parameters
    )
    return operator.start_run(task_context()).run_id  # type: ignore[arg-type]


async def first_event(trigger, timeout=30):
    async def run():
        async for event in trigger.run():
            return event.payload

    return await asyncio.wait_for(run(), timeout)


def test_on_kill_terminates_the_task_then_the_job(local_azure_batch, polysync_azure_conn):
    run_id = submit(polysync_azure_conn, SECONDS_TO_RUN=60)
    job_id = run_id.split("/")[0]
    trigger = AzureBatchJobTrigger(run_id=run_id, azure_batch_conn_id=polysync_azure_conn, poll_interval=0.05)

    async def user_marks_failed():
        task = asyncio.ensure_future(first_event(trigger))
        while local_azure_batch.job(job_id).tasks["polysync"].state != "running":
            await asyncio.sleep(0.02)
        task.cancel()
        await trigger.on_kill()

    asyncio.run(user_marks_failed())
    job = local_azure_batch.wait_for_job(job_id)
    cancels = [r for r in local_azure_batch.requests if r.endswith("/terminate")]
    assert cancels == [f"POST /jobs/{job_id}/tasks/polysync/terminate", f"POST /jobs/{job_id}/terminate"]
    assert job.tasks["polysync"].state == "completed"
    state = decode_task(run_id, *AzureBatchHook(polysync_azure_conn).read_run(run_id))
    assert state.status.value == "Cancelled"
    # terminating the task ended the job (its only task): the job terminate then got JobCompleted, a success
    assert job.terminate_reason in ("AllTasksComplete", CANCEL_REASON)


def test_a_recreated_trigger_resumes_without_submitting_or_terminating(local_azure_batch, polysync_azure_conn):
    run_id = submit(polysync_azure_conn, SECONDS_TO_RUN=1)
    trigger = AzureBatchJobTrigger(run_id=run_id, azure_batch_conn_id=polysync_azure_conn, poll_interval=0.05)

    async def interrupted():
        task = asyncio.ensure_future(first_event(trigger))
        await asyncio.sleep(0.5)
        task.cancel()

    asyncio.run(interrupted())
    _classpath, kwargs = trigger.serialize()
    event = asyncio.run(first_event(AzureBatchJobTrigger(**kwargs)))
    assert event["status"] == "Success"
    assert [r for r in writes(local_azure_batch) if "terminate" in r or r == "POST /jobs"] == ["POST /jobs"]
