"""The orphan sweep in a real DAG run (``dag.test()``), against the local endpoints with the real SDK clients.

Task instance states are real rows read through the Task SDK: a DAG run whose tasks succeeded and failed, the
sweeping DAG's own running task and not-yet-run task, and a DAG run that does not exist. The jobs are started
with the identity marks an operator gives them (the same request builders), each running long enough to be
active while the sweep looks.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import pytest
from airflow.sdk import DAG, task

from polysync_airflow import PolysyncOrphanSweepOperator
from polysync_airflow.hooks.aws_batch import AwsBatchHook
from polysync_airflow.hooks.azure_batch import AzureBatchHook
from polysync_airflow.ownership import TaskInstanceKey
from polysync_airflow.requests.aws_batch import job_name_for
from polysync_airflow.requests.azure_batch import build_job_plan, build_run_request, job_id_for
from polysync_airflow.testing.dags import run_dag

pytestmark = pytest.mark.usefixtures("airflow_db")
_ids = itertools.count()


def ended_run() -> tuple[str, str]:
    """A DAG run whose task ``ok`` succeeded and whose task ``bad`` failed: (dag id, run id)."""
    dag_id = f"sweep_owners_{next(_ids)}"
    with DAG(dag_id=dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:

        @task
        def ok() -> None:
            return None

        @task
        def bad() -> None:
            raise RuntimeError("this task fails")

        ok()
        bad()
    dag_run = run_dag(dag)
    return dag_id, dag_run.run_id


def start_aws_job(conn_id: str, key: TaskInstanceKey | None, cancel_on_kill: bool = True) -> str:
    hook = AwsBatchHook(aws_conn_id=conn_id)
    name = job_name_for(key or TaskInstanceKey("x", "y", "z", -1, 1))
    tags = key.identity_marks(cancel_on_kill) if key else {}
    request = {"jobName": name, "jobDefinition": "polysync-job", "jobQueue": "polysync-default", "tags": tags}
    return hook.submit_job({**request, "parameters": {"seconds": "60"}})["jobId"]


def start_azure_job(conn_id: str, key: TaskInstanceKey | None, cancel_on_kill: bool = True) -> str:
    hook = AzureBatchHook(conn_id)
    owner = key or TaskInstanceKey("x", "y", "z", -1, 1)
    job_id = job_id_for(owner, owner.try_number)
    request = build_run_request(template_job_id="polysync-template", parameters={"SECONDS_TO_RUN": 60})
    marks = key.identity_marks(cancel_on_kill) if key else None
    template = hook.find_job("polysync-template", select=None)
    plan = build_job_plan(request, job_id=job_id, display_name="sweep test", template=template, marks=marks)
    hook.create_job(plan.job)
    hook.add_task(job_id, plan.task)
    hook.end_job_with_its_tasks(job_id)
    return f"{job_id}/polysync"


PLATFORMS: dict[str, Any] = {
    "aws": (start_aws_job, "aws_conn_id"),
    "azure": (start_azure_job, "azure_batch_conn_id"),
}


def run_sweep(platform: str, conn_id: str, ended: tuple[str, str], dry_run: bool):
    """A DAG ``submit >> sweep >> after``: ``submit`` starts the jobs (some owned by this very run's ``sweep`` and
    ``after``), ``sweep`` sweeps. Returns (dag run, the jobs by what they stand for)."""
    start, conn_arg = PLATFORMS[platform]
    owners_dag, owners_run = ended
    dag_id = f"sweep_{platform}_{next(_ids)}"
    jobs: dict[str, str] = {}

    with DAG(dag_id=dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:

        @task
        def submit(**context: Any) -> None:
            run_id = context["ti"].run_id

            def key(dag: str, run: str, task_id: str, try_number: int = 1) -> TaskInstanceKey:
                return TaskInstanceKey(dag, run, task_id, -1, try_number)

            jobs["failed"] = start(conn_id, key(owners_dag, owners_run, "bad"))
            jobs["succeeded"] = start(conn_id, key(owners_dag, owners_run, "ok"))
            jobs["run gone"] = start(conn_id, key(owners_dag, "manual__deleted", "ok"))
            jobs["kept"] = start(conn_id, key(owners_dag, owners_run, "bad", 2), cancel_on_kill=False)
            jobs["no identity"] = start(conn_id, None)
            jobs["running"] = start(conn_id, key(dag_id, run_id, "sweep"))
            jobs["earlier try"] = start(conn_id, key(dag_id, run_id, "after", 1))
            jobs["not run yet"] = start(conn_id, key(dag_id, run_id, "after", 2))

        sweep = PolysyncOrphanSweepOperator(task_id="sweep", report_only=dry_run, **{conn_arg: conn_id})

        @task
        def after() -> None:
            return None

        submit() >> sweep >> after()
    dag_run = run_dag(dag)
    return dag_run, jobs


STOPPED = {"failed", "succeeded", "run gone", "earlier try"}


def aws_stopped(endpoint, job_id: str) -> str | None:
    job = endpoint.jobs[job_id]
    return job.status_reason if "terminatejob" in endpoint.requests and job.status_reason else None


@pytest.mark.parametrize("dry_run", [False, True], ids=["sweep", "dry-run"])
def test_aws_the_sweep_stops_exactly_the_orphans(dry_run, local_aws_batch, polysync_aws_conn, capsys):
    dag_run, jobs = run_sweep("aws", polysync_aws_conn, ended_run(), dry_run)
    assert dag_run.state == "success"
    result = dag_run.get_task_instance("sweep").xcom_pull(task_ids="sweep")
    stopped_ids = result["would_stop" if dry_run else "stopped"]
    assert sorted(stopped_ids) == sorted(jobs[what] for what in STOPPED)
    assert sorted(result["left"]) == sorted(job for what, job in jobs.items() if what not in STOPPED)
    log = capsys.readouterr().out
    if dry_run:
        assert local_aws_batch.requests.count("terminatejob") == 0
        assert f"Would stop aws-batch job {jobs['failed']}" in log
    else:
        assert local_aws_batch.requests.count("terminatejob") == len(STOPPED)
        reason = local_aws_batch.jobs[jobs["failed"]].status_reason
        assert reason.startswith("Cancelled by Polysync sweep: ") and "its task instance ended (failed)" in reason
        assert ".bad in " in reason
        for what, job_id in jobs.items():
            assert (local_aws_batch.jobs[job_id].status_reason or "").startswith("Cancelled by Polysync") is (
                what in STOPPED
            ), what
    for what, job_id in jobs.items():  # one line per job
        assert sum(f" aws-batch job {job_id} (" in line for line in log.splitlines()) == 1, what
    assert "its DAG run manual__deleted is gone" in log
    assert "it was submitted with cancel_on_kill=False" in log
    assert "its task instance is running" in log


@pytest.mark.parametrize("dry_run", [False, True], ids=["sweep", "dry-run"])
def test_azure_the_sweep_stops_exactly_the_orphans(dry_run, local_azure_batch, polysync_azure_conn, capsys):
    dag_run, jobs = run_sweep("azure", polysync_azure_conn, ended_run(), dry_run)
    assert dag_run.state == "success"
    result = dag_run.get_task_instance("sweep").xcom_pull(task_ids="sweep")
    assert sorted(result["would_stop" if dry_run else "stopped"]) == sorted(jobs[what] for what in STOPPED)
    terminated = [r for r in local_azure_batch.requests if r.endswith("/terminate")]
    if dry_run:
        assert terminated == []
    else:
        for what, run_id in jobs.items():
            job_id = run_id.split("/")[0]
            stopped = f"POST /jobs/{job_id}/tasks/polysync/terminate" in terminated
            assert stopped is (what in STOPPED), what
            if stopped:  # the task first, then the job, with the reason
                assert f"POST /jobs/{job_id}/terminate" in terminated
    log = capsys.readouterr().out
    for what, run_id in jobs.items():
        assert sum(f" azure-batch job {run_id} (" in line for line in log.splitlines()) == 1, what
