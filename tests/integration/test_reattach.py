"""Idempotent submission: a try that dies part-way leaves a job the next try adopts; nothing runs twice.

Kill points are made real at the endpoints: an answer lost after the service carried the request out
(``LOST_ANSWER``), a refused lookup or repeated server errors that end the try before it defers, or a
try that simply stops after its submit returned (what is left when a worker dies: a job nobody watches).
The retries are Airflow's own (``retries=1``): ``dag.test()`` runs try 2 of the same task instance.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

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


# -- a worker killed with SIGKILL while it polls (deferrable=False) -------------------------------------------


class FileStateStore:
    """Airflow 3.3's ``task_state_store`` as a task sees it (``get``/``set`` of JSON values, shared by the task
    instance's tries), kept in a file so that a killed worker process and the next try share it. ``None``
    instead: Airflow 3.1 and 3.2, which have no store (the job carries the watched mark)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.path.read_text()).get(key, default) if self.path.exists() else default

    def set(self, key: str, value: Any) -> None:
        data = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.path.write_text(json.dumps({**data, key: value}))


def worker_context(try_number: int, run_id: str, store: FileStateStore | None) -> dict[str, Any]:
    context = task_context(try_number=try_number, run_id=run_id)
    context["ti"].xcom_push = lambda **_: None  # the links' XCom (no metadata DB row for this bare try)
    if store is not None:
        context["task_state_store"] = store
    return context


def poll_in_a_worker(make_operator, context: dict[str, Any]) -> multiprocessing.Process:
    """Try 1 in a process of its own: it submits, then polls in the worker (``deferrable=False``)."""
    worker = multiprocessing.get_context("fork").Process(target=lambda: make_operator().execute(context), daemon=True)
    worker.start()
    return worker


def wait_until(what: str, check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(0.05)


@pytest.mark.parametrize("airflow", ["3.3-store", "3.1-3.2-mark"])
def test_aws_worker_killed_while_polling_the_retry_stops_its_job_and_runs_one(
    airflow, local_aws_batch, polysync_aws_conn, tmp_path, capsys
):
    store = FileStateStore(tmp_path / "store.json") if airflow == "3.3-store" else None

    def operator() -> AwsBatchJobOperator:
        return AwsBatchJobOperator(
            task_id="job",
            job_definition="polysync-job",
            aws_conn_id=polysync_aws_conn,
            parameters={"seconds": 60},
            deferrable=False,
            poll_interval=0.1,
        )

    first = worker_context(1, f"manual__{uuid.uuid4()}", store)
    worker = poll_in_a_worker(operator, first)
    (first_job,) = wait_for_jobs(local_aws_batch, 1)

    def polled() -> bool:  # it polls the running job: watched, in the store (3.3) or by the tag (3.1, 3.2)
        running = local_aws_batch.jobs[first_job].status == "RUNNING"
        return running and (WATCHED_MARK in local_aws_batch.jobs[first_job].tags if store is None else True)

    wait_until("try 1 polling its running job", lambda: polled() and local_aws_batch.describe_counts[first_job] > 1)
    os.kill(worker.pid, signal.SIGKILL)  # no on_kill, no cancel: the job runs on
    worker.join()
    assert local_aws_batch.jobs[first_job].status == "RUNNING"

    retry = operator()
    run = retry.start_run(worker_context(2, first["ti"].run_id, store))
    assert run.run_id != first_job  # a polled job is never adopted...
    wait_until("the first job to end", lambda: local_aws_batch.jobs[first_job].status == "FAILED")
    reason = local_aws_batch.jobs[first_job].status_reason
    assert reason.startswith("Cancelled by Polysync: try 2 of tests.job in manual__"), reason  # ...but stopped
    running = [job for job in local_aws_batch.jobs.values() if job.status not in ("SUCCEEDED", "FAILED")]
    assert [job.job_id for job in running] == [run.run_id]  # never two jobs of the task instance at once
    assert local_aws_batch.jobs[run.run_id].tags[TRY_MARK] == "2"
    log = capsys.readouterr().out
    assert f"Stopping job {first_job} (submitted by try 1): it still runs and try 2 does not adopt it" in log
    if store is not None:  # Airflow 3.3: the store holds the ownership, the job carries no mark (no write)
        assert WATCHED_MARK not in local_aws_batch.jobs[first_job].tags
        assert "tagresource" not in local_aws_batch.requests
        assert store.get("polysync_ownership")["watched"][first_job] == {"by": "worker", "try": 1}


@pytest.mark.parametrize("airflow", ["3.3-store", "3.1-3.2-mark"])
def test_azure_worker_killed_while_polling_the_retry_stops_its_job_and_runs_one(
    airflow, local_azure_batch, polysync_azure_conn, tmp_path
):
    store = FileStateStore(tmp_path / "store.json") if airflow == "3.3-store" else None

    def operator() -> AzureBatchJobOperator:
        return AzureBatchJobOperator(
            task_id="job",
            template_job_id="polysync-template",
            azure_batch_conn_id=polysync_azure_conn,
            parameters={"SECONDS_TO_RUN": 60},
            deferrable=False,
            poll_interval=0.1,
        )

    first = worker_context(1, f"manual__{uuid.uuid4()}", store)
    worker = poll_in_a_worker(operator, first)
    wait_until("try 1's job", lambda: len(azure_jobs(local_azure_batch)) == 1)
    (job,) = azure_jobs(local_azure_batch)
    task_reads = f"GET /jobs/{job.id}/tasks/polysync"
    wait_until("try 1 polling its running task", lambda: local_azure_batch.requests.count(task_reads) > 1)
    if store is None:
        wait_until("the watched mark", lambda: "polysync:watched" in str(job.body.get("metadata")))
    os.kill(worker.pid, signal.SIGKILL)
    worker.join()
    assert job.state == "active"

    run = operator().start_run(worker_context(2, first["ti"].run_id, store))
    assert run.run_id.split("/")[0] != job.id and run.run_id.split("/")[0].endswith("-2")
    assert f"POST /jobs/{job.id}/tasks/polysync/terminate" in local_azure_batch.requests
    wait_until("the first job to end", lambda: job.state == "completed")
    assert [j.id for j in azure_jobs(local_azure_batch) if j.state == "active"] == [run.run_id.split("/")[0]]
    if store is not None:
        assert [r for r in local_azure_batch.requests if r == f"PATCH /jobs/{job.id}"] == [f"PATCH /jobs/{job.id}"]


def wait_for_jobs(endpoint, count: int) -> list[str]:
    wait_until(f"{count} job(s)", lambda: len(endpoint.jobs) >= count)
    return list(endpoint.jobs)
