"""Idempotent submission: a try that dies part-way leaves a job the next try adopts; nothing runs twice.

Kill points are made real at the endpoints: an answer lost after the service carried the request out
(``LOST_ANSWER``), a refused lookup or repeated server errors that end the try before it defers, or a
try that simply stops after its submit returned (what is left when a worker dies: a job nobody watches).
The retries are Airflow's own (``retries=1``): ``dag.test()`` runs try 2 of the same task instance.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from polysync_airflow.operators.aws_batch import AwsBatchJobOperator
from polysync_airflow.operators.azure_batch import AzureBatchJobOperator
from polysync_airflow.ownership import TRY_MARK, WATCHED_MARK
from polysync_airflow.testing._http import LOST_ANSWER, Response
from tests.integration.helpers import run_single_task, task_context

pytestmark = pytest.mark.usefixtures("airflow_db")
RETRY_ONCE = {"retries": 1, "retry_delay": timedelta(0), "poll_interval": 0.1}
AZURE_TEMPLATES = {"polysync-template", "polysync-template-no-command", "polysync-template-lost-pool"}


def aws_fault(status: int, code: str) -> Response:
    return Response.json(status, {"__type": code, "message": f"injected {code}"}, **{"x-amzn-ErrorType": code})


def azure_fault(status: int, code: str) -> Response:
    return Response.json(status, {"code": code, "message": {"lang": "en-US", "value": f"injected {code}"}})


def azure_jobs(endpoint):
    return [job for job in endpoint.jobs.values() if job.id not in AZURE_TEMPLATES]


async def final_event(trigger, timeout: float = 30) -> dict:
    async def run() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return await asyncio.wait_for(run(), timeout)


# -- AWS -------------------------------------------------------------------------------------------------


def test_aws_answer_lost_and_try_died_the_retry_adopts_the_job(local_aws_batch, polysync_aws_conn, capsys):
    """Try 1: SubmitJob is carried out but its answer is lost, and its look-up is refused, so it fails."""

    def refuse_the_next_lookup(operation: str) -> None:
        if operation == "submitjob":
            local_aws_batch.on_request = None
            local_aws_batch.fail_next("POST", "/v1/listjobs", aws_fault(403, "AccessDeniedException"))

    local_aws_batch.fail_next("POST", "/v1/submitjob", LOST_ANSWER)
    local_aws_batch.on_request = refuse_the_next_lookup
    dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 15},  # still running when try 2 looks (a finished job is never adopted)
        **RETRY_ONCE,
    )
    assert (dag_run.state, ti.try_number) == ("success", 2)
    (job,) = local_aws_batch.jobs.values()  # exactly one job for the task instance
    assert ti.xcom_pull(task_ids="job")["run_id"] == job.job_id
    assert job.tags[TRY_MARK] == "1" and job.status == "SUCCEEDED"
    assert "Reattached to run" in capsys.readouterr().out


def test_aws_answer_lost_the_same_try_finds_the_job(local_aws_batch, polysync_aws_conn, capsys):
    """The submit call failed after the service accepted it: the try looks before submitting again."""
    local_aws_batch.fail_next("POST", "/v1/submitjob", LOST_ANSWER)
    dag_run, ti = run_single_task(
        AwsBatchJobOperator, job_definition="polysync-job", aws_conn_id=polysync_aws_conn, **RETRY_ONCE
    )
    assert (dag_run.state, ti.try_number) == ("success", 1)
    assert len(local_aws_batch.jobs) == 1
    assert local_aws_batch.requests.count("submitjob") == 1
    assert "the service had accepted the failed-looking submission" in capsys.readouterr().out


def test_aws_try_died_after_the_response_the_retry_adopts_the_job(local_aws_batch, polysync_aws_conn):
    def operator():
        return AwsBatchJobOperator(
            task_id="job",
            job_definition="polysync-job",
            aws_conn_id=polysync_aws_conn,
            parameters={"seconds": 3},
            poll_interval=0.1,
        )

    first = task_context(try_number=1)
    died = operator().start_run(first)  # answered; then the worker is gone before it deferred
    second = task_context(try_number=2, run_id=first["ti"].run_id)
    retry = operator()
    run = retry.start_run(second)
    assert run.run_id == died.run_id and len(local_aws_batch.jobs) == 1
    event = asyncio.run(final_event(retry.make_trigger(run, None)))
    assert event["status"] == "Success"
    assert local_aws_batch.requests.count("submitjob") == 1


def test_aws_a_watched_job_is_never_adopted(local_aws_batch, polysync_aws_conn, capsys):
    """Try 1 deferred and its trigger polls the job; a cleared task's try 2 submits its own job."""
    first = task_context(try_number=1)
    operator = AwsBatchJobOperator(
        task_id="job", job_definition="polysync-job", aws_conn_id=polysync_aws_conn, parameters={"seconds": 30}
    )
    watched = operator.start_run(first)
    trigger = operator.make_trigger(watched, None)

    async def poll_a_little() -> None:
        agen = trigger.run()
        task = asyncio.ensure_future(agen.__anext__())
        while WATCHED_MARK not in local_aws_batch.jobs[watched.run_id].tags:
            await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(asyncio.wait_for(poll_a_little(), 20))
    assert local_aws_batch.jobs[watched.run_id].tags[WATCHED_MARK] == "triggerer"
    retry = AwsBatchJobOperator(task_id="job", job_definition="polysync-job", aws_conn_id=polysync_aws_conn)
    fresh = retry.start_run(task_context(try_number=2, run_id=first["ti"].run_id))
    assert fresh.run_id != watched.run_id and fresh.job_name == watched.job_name
    assert local_aws_batch.jobs[fresh.run_id].tags[TRY_MARK] == "2"
    assert "watches it" in capsys.readouterr().out


def test_aws_after_a_real_failure_the_retry_submits_anew(local_aws_batch, polysync_aws_conn):
    dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"exit_code": 3},
        **RETRY_ONCE,
    )
    assert (dag_run.state, ti.try_number) == ("failed", 2)
    jobs = sorted(local_aws_batch.jobs.values(), key=lambda job: job.tags[TRY_MARK])
    assert [(job.tags[TRY_MARK], job.status) for job in jobs] == [("1", "FAILED"), ("2", "FAILED")]
    assert jobs[0].name == jobs[1].name  # one task instance, one name; the try tag tells them apart


# -- Azure -----------------------------------------------------------------------------------------------


def test_azure_try_died_before_adding_the_task_the_retry_finishes_the_job(
    local_azure_batch, polysync_azure_conn, capsys
):
    """Try 1 created the job, then the service failed every task add (the SDK's and our retries alike)."""
    for _ in range(8):  # 4 SDK attempts, for the first add and for the in-try re-check
        local_azure_batch.fail_next("POST", r"^/jobs/[^/]+/tasks$", azure_fault(503, "ServerBusy"))
    dag_run, ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id=polysync_azure_conn,
        parameters={"SECONDS_TO_RUN": 0.2},
        **RETRY_ONCE,
    )
    assert (dag_run.state, ti.try_number) == ("success", 2)
    (job,) = azure_jobs(local_azure_batch)
    assert job.id.endswith("-1") and list(job.tasks) == ["polysync"] and job.state == "completed"
    assert ti.xcom_pull(task_ids="job")["run_id"] == f"{job.id}/polysync"
    assert "Reattached to run" in capsys.readouterr().out


def test_azure_create_answer_lost_is_taken_as_created(local_azure_batch, polysync_azure_conn):
    """A create whose answer was lost: the try finds its own job (by its id) and finishes it."""
    local_azure_batch.fail_next("POST", "^/jobs$", LOST_ANSWER)
    dag_run, _ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id=polysync_azure_conn,
        **RETRY_ONCE,
    )
    assert dag_run.state == "success"
    (job,) = azure_jobs(local_azure_batch)
    assert list(job.tasks) == ["polysync"]


def test_azure_try_died_after_the_response_the_retry_adopts_the_job(local_azure_batch, polysync_azure_conn):
    def operator():
        return AzureBatchJobOperator(
            task_id="job",
            template_job_id="polysync-template",
            azure_batch_conn_id=polysync_azure_conn,
            parameters={"SECONDS_TO_RUN": 3},
            poll_interval=0.1,
        )

    first = task_context(try_number=1)
    died = operator().start_run(first)
    retry = operator()
    run = retry.start_run(task_context(try_number=2, run_id=first["ti"].run_id))
    assert run.run_id == died.run_id and len(azure_jobs(local_azure_batch)) == 1
    assert asyncio.run(final_event(retry.make_trigger(run, None)))["status"] == "Success"
    assert [r for r in local_azure_batch.requests if r == "POST /jobs"] == ["POST /jobs"]


def test_azure_after_a_real_failure_the_retry_submits_anew(local_azure_batch, polysync_azure_conn):
    dag_run, ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id=polysync_azure_conn,
        parameters={"EXIT_CODE": 4, "SECONDS_TO_RUN": 0},
        **RETRY_ONCE,
    )
    assert (dag_run.state, ti.try_number) == ("failed", 2)
    ids = sorted(job.id for job in azure_jobs(local_azure_batch))
    assert len(ids) == 2 and ids[0][:-2] == ids[1][:-2] and {ids[0][-2:], ids[1][-2:]} == {"-1", "-2"}
