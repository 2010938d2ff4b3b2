"""The orphan sweep in a real Airflow: jobs left behind in each way the sweep handles, next to jobs it must leave.

DAG polysync_e2e_sweep (tests/e2e/dags/polysync_e2e_sweep.py), every job gated so nothing ends by itself:

- stopped: a deferred task marked failed before the triggerer picked its trigger up (AWS and Azure), a task whose
  DAG run is deleted while deferred, a ``deferrable=False`` task whose task process got SIGKILL (no retries), and
  a deferred task marked failed while its trigger polls (stopped by the trigger's on_kill on Airflow 3.3, by the
  sweep on 3.1 and 3.2, which have no trigger on_kill);
- left: a deferred task's job, a ``cancel_on_kill=False`` job marked failed, the job of a killed
  ``deferrable=False`` task that is up for retry, and the job of a task still waiting to be queued.

A killed ``deferrable=False`` task retried at once shows the sync-mode rule on the way: its try 2 stops try 1's
job (recorded as watched: in the task_state_store on 3.3, by the tag on 3.1/3.2) before it submits its own.

``polysync-airflow sweep --dry-run`` (Airflow's REST API) stops nothing; then one run of the example maintenance
DAG (the operator, Task SDK) stops exactly the orphans.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from airflow.triggers.base import BaseTrigger

from polysync_airflow.ownership import TaskInstanceKey
from polysync_airflow.requests.aws_batch import job_name_for
from polysync_airflow.testing.connections import aws_connection_env, azure_connection_env

pytestmark = pytest.mark.e2e
TRIGGERS_HAVE_ON_KILL = hasattr(BaseTrigger, "on_kill")  # Airflow 3.3
SWEEP_DAG, DELETED_DAG = "polysync_e2e_sweep", "polysync_e2e_sweep_deleted"
ACTIVE = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "active")  # AWS statuses, Azure job state
ORPHANS = {"aws_unpicked", "azure_unpicked", "aws_sync_killed", "aws_in_deleted_run"}
OWNED = {"aws_deferred", "aws_keep", "aws_sync_retry", "aws_sync_retried", "aws_waiting"}


def jobs_of(e2e, task_id: str) -> list[str]:
    """The run ids of the jobs a task submitted (AWS job ids; Azure ``{jobId}/polysync``), oldest first."""
    if task_id.startswith("aws_"):
        return [job.job_id for job in list(e2e.aws.jobs.values()) if job.parameters.get("e2e_task") == task_id]
    return [
        f"{job.id}/polysync"
        for job in sorted(list(e2e.azure.jobs.values()), key=lambda job: job.created)
        if job.body.get("displayName") == f"{SWEEP_DAG}.{task_id}"
    ]


def job_status(e2e, run_id: str) -> tuple[str, str]:
    """(status, reason) of a job: AWS's status and statusReason, Azure's job state and terminate reason."""
    if "/" not in run_id:
        job = e2e.aws.jobs[run_id]
        return job.status, job.status_reason or ""
    job = e2e.azure.job(run_id.split("/")[0])
    return job.state, job.terminate_reason or ""


def terminates(e2e) -> list[str]:
    azure = [r for r in e2e.azure.requests if r.startswith("POST /jobs/") and r.endswith("/terminate")]
    return [r for r in e2e.aws.requests if r == "terminatejob"] + azure


def wait_for(what: str, check, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(0.3)
    return result


def running_job(e2e, task_id: str) -> str:
    def running() -> str | None:
        jobs = jobs_of(e2e, task_id)
        return jobs[-1] if jobs and job_status(e2e, jobs[-1])[0] in ("RUNNING", "active") else None

    return wait_for(f"a running job of {task_id}", running)


def task_process(ti_id: str) -> int | None:
    """The pid of a task's process (Airflow titles it ``airflow worker -- <task instance id>``)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if f"airflow worker -- {ti_id}" in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    return int(entry.name)
    return None


def cli_sweep(e2e, platform: str, *options: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        **aws_connection_env("aws_default", e2e.aws),
        **azure_connection_env("azure_batch_default", e2e.azure),
    }
    command = [sys.executable, "-m", "polysync_airflow.cli", "sweep", platform, "--api-url", e2e.cluster.url, *options]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def submit_owned_job(e2e, key: TaskInstanceKey) -> str:
    """A gated job carrying ``key``'s identity, as the try would have submitted it."""
    client = boto3.client(
        "batch",
        endpoint_url=e2e.aws.url,
        region_name=e2e.aws.region,
        aws_access_key_id="local-access-key",
        aws_secret_access_key="local-secret-key",
    )
    gate = str(e2e.gates / f"{key.task_id}-{key.try_number}")
    return client.submit_job(
        jobName=job_name_for(key),
        jobQueue="polysync-default",
        jobDefinition="polysync-gated",
        parameters={"gate": gate, "e2e_task": key.task_id},
        tags=key.identity_marks(cancel_on_kill=True),
    )["jobId"]


def test_one_sweep_stops_exactly_the_orphaned_jobs(e2e):
    cluster = e2e.cluster
    ti = cluster.task_instance
    cluster.api("POST", "/api/v2/pools", {"name": "polysync_e2e_closed", "slots": 0})
    run_id = cluster.trigger(SWEEP_DAG)
    deleted_run = cluster.trigger(DELETED_DAG)
    base = f"/api/v2/dags/{SWEEP_DAG}/dagRuns/{run_id}/taskInstances"

    # Marked failed while its trigger polls: Airflow 3.3 calls the trigger's on_kill; 3.1 and 3.2 do not.
    cluster.watch_task(SWEEP_DAG, run_id, "aws_watched_failed", until={"deferred"})
    watched_job = running_job(e2e, "aws_watched_failed")
    wait_for("a poll of the watched job", lambda: e2e.aws.describe_counts[watched_job] > 0)
    time.sleep(2)
    cluster.api("PATCH", f"{base}/aws_watched_failed", {"new_state": "failed"})
    if TRIGGERS_HAVE_ON_KILL:  # Airflow 3.3: the trigger's on_kill stops the job
        wait_for("on_kill to stop the watched job", lambda: job_status(e2e, watched_job)[0] == "FAILED", timeout=60)
    else:  # Airflow 3.1, 3.2: nothing stops it; the sweep will
        time.sleep(3)
        assert job_status(e2e, watched_job)[0] == "RUNNING"
    try:
        # The other deferring tasks defer with no triggerer to pick their triggers up.
        cluster.stop_component("triggerer")
        for task_id in ("aws_unpicked", "azure_unpicked", "aws_keep", "aws_deferred"):
            cluster.watch_task(SWEEP_DAG, run_id, task_id, until={"deferred"})
        cluster.watch_task(DELETED_DAG, deleted_run, "aws_in_deleted_run", until={"deferred"})
        jobs = {
            task_id: running_job(e2e, task_id) for task_id in (ORPHANS | OWNED) - {"aws_waiting", "aws_sync_retried"}
        }

        for task_id in ("aws_unpicked", "azure_unpicked", "aws_keep"):
            cluster.api("PATCH", f"{base}/{task_id}", {"new_state": "failed"})
        # Airflow deletes no running DAG run: it is marked failed first (no triggerer runs to call on_kill)
        cluster.api("PATCH", f"/api/v2/dags/{DELETED_DAG}/dagRuns/{deleted_run}", {"state": "failed"})
        cluster.api("DELETE", f"/api/v2/dags/{DELETED_DAG}/dagRuns/{deleted_run}")
        retried_first = running_job(e2e, "aws_sync_retried")
        for task_id, after in (("aws_sync_killed", "failed"), ("aws_sync_retry", "up_for_retry")):
            ti_id = ti(SWEEP_DAG, run_id, task_id)["id"]
            os.kill(wait_for(f"the task process of {task_id}", lambda i=ti_id: task_process(i)), signal.SIGKILL)
            cluster.watch_task(SWEEP_DAG, run_id, task_id, until={after})
        # Killed, then retried at once: try 2 stops try 1's job before it submits its own (never two at once).
        ti_id = ti(SWEEP_DAG, run_id, "aws_sync_retried")["id"]
        os.kill(wait_for("the task process of aws_sync_retried", lambda: task_process(ti_id)), signal.SIGKILL)
        wait_for("try 2 of aws_sync_retried", lambda: len(jobs_of(e2e, "aws_sync_retried")) == 2)
        wait_for("try 1's job to end", lambda: job_status(e2e, retried_first)[0] == "FAILED")
        status, reason = job_status(e2e, retried_first)
        assert reason.startswith("Cancelled by Polysync: try 2 of polysync_e2e_sweep.aws_sync_retried"), reason
        jobs["aws_sync_retried"] = running_job(e2e, "aws_sync_retried")
        assert ti(SWEEP_DAG, run_id, "aws_sync_retried")["try_number"] == 2
        assert ti(SWEEP_DAG, run_id, "aws_waiting")["state"] in ("scheduled", None)
        # A job of the waiting task (as a cleared task's earlier try leaves one): owned, its next try decides.
        jobs["aws_waiting"] = submit_owned_job(e2e, TaskInstanceKey(SWEEP_DAG, run_id, "aws_waiting", -1, 1))
        for task_id, job_id in jobs.items():
            assert job_status(e2e, job_id)[0] in ACTIVE, task_id

        before = terminates(e2e)
        for platform in ("aws-batch", "azure-batch"):
            dry = cli_sweep(e2e, platform, "--dry-run")
            assert dry.returncode == 0, dry.stderr
            print(dry.stdout)
            for task_id in ORPHANS:
                if task_id.startswith(platform.split("-")[0]):
                    assert f"Would stop {platform} job {jobs[task_id]} (" in dry.stdout, task_id
            for task_id in OWNED:
                if task_id.startswith(platform.split("-")[0]):
                    assert f"Leaving {platform} job {jobs[task_id]} (" in dry.stdout, task_id
        assert terminates(e2e) == before, "--dry-run stopped a job"

        sweep_run = cluster.trigger("polysync_orphan_sweep")
        assert cluster.wait_for_run("polysync_orphan_sweep", sweep_run, timeout=180) == "success"
        entry = f"/api/v2/dags/polysync_orphan_sweep/dagRuns/{sweep_run}/taskInstances/stop_orphaned_jobs"
        result = cluster.api("GET", f"{entry}/xcomEntries/return_value")["value"]
        result = json.loads(result) if isinstance(result, str) else result
        stopped = set(result["stopped"])
        orphans = {jobs[task_id] for task_id in ORPHANS}
        # the watched job too where no trigger on_kill stopped it (Airflow 3.1, 3.2); other tests' jobs (the whole
        # suite shares one Airflow) are not this test's business
        mine = {*jobs.values(), watched_job}
        expected = orphans if TRIGGERS_HAVE_ON_KILL else orphans | {watched_job}
        assert stopped & mine == expected, (stopped, jobs)
        for task_id in ORPHANS:
            wait_for(
                f"the end of the job of {task_id}",
                lambda t=task_id: job_status(e2e, jobs[t])[0] in ("FAILED", "completed"),
            )
            if task_id.startswith("aws_"):
                reason = e2e.aws.jobs[jobs[task_id]].status_reason
                assert reason.startswith("Cancelled by Polysync sweep: "), reason
        for task_id in OWNED:
            assert job_status(e2e, jobs[task_id])[0] in ACTIVE, task_id
        status, reason = job_status(e2e, watched_job)
        assert status == "FAILED" and reason.startswith("Cancelled by Polysync"), (status, reason)
    finally:
        cluster.start_component("triggerer")
        for task_id in ORPHANS | OWNED | {"aws_watched_failed"}:
            (e2e.gates / f"{task_id}-1").touch()
            (e2e.gates / f"{task_id}-2").touch()
