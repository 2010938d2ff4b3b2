"""AWS array jobs through ``dag.test()`` against the local endpoint: the children's progress in the task
log, the final counts in the run info, and the failed children named in the failure message."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from polysync_airflow import AwsBatchJobOperator
from polysync_airflow.hooks.aws_batch import AwsBatchHook
from polysync_airflow.testing import LocalAwsBatch, LocalJobRunner
from polysync_airflow.testing._http import Response
from tests.integration.helpers import run_single_task

pytestmark = pytest.mark.usefixtures("airflow_db")

FAST = {"poll_interval": 0.1}
DEFINITION = "polysync-array-test"
# Each child sleeps, then fails with ``exit_code`` when its index is one of ``fail_indexes``.
SCRIPT = (
    "sleep Ref::seconds; "
    'for i in Ref::fail_indexes; do if [ "$i" = "$AWS_BATCH_JOB_ARRAY_INDEX" ]; then '
    'echo "child $i fails" >&2; exit Ref::exit_code; fi; done; '
    'echo "child $AWS_BATCH_JOB_ARRAY_INDEX done"'
)
PROGRESS_LINE = re.compile(r"Run \S+ is [^\n]*\[children: [^\]]*\]")


class GatedRunner(LocalJobRunner):
    """Children show RUNNING but start their process only once ``gate`` is set (open unless a test closes it)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()

    def run_process(self, key: str, *args: Any, **kwargs: Any) -> Any:
        self.gate.wait(60)
        return super().run_process(key, *args, **kwargs)


@pytest.fixture
def local_aws_batch() -> Iterator[LocalAwsBatch]:
    runner = GatedRunner()
    try:
        with LocalAwsBatch(runner=runner) as endpoint:
            yield endpoint
    finally:
        runner.gate.set()
        runner.shutdown()


@pytest.fixture
def children_wait_until_watched(local_aws_batch) -> None:
    """The children start once the job's status was read: the task log then shows them on their way, however
    long the task takes to defer (starting a task under ``dag.test()`` can take seconds on a busy machine)."""
    gate = local_aws_batch.runner.gate
    gate.clear()

    def open_when_watched() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(local_aws_batch.describe_counts[i] for i in local_aws_batch.jobs):
            time.sleep(0.01)
        gate.set()

    threading.Thread(target=open_when_watched, daemon=True).start()


@pytest.fixture
def batch(local_aws_batch):
    client = boto3.client(
        "batch",
        endpoint_url=local_aws_batch.url,
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
    )
    client.register_job_definition(
        jobDefinitionName=DEFINITION,
        type="container",
        parameters={"seconds": "0.2", "fail_indexes": "none", "exit_code": "1"},
        containerProperties={"image": "busybox", "command": ["/bin/sh", "-c", SCRIPT]},
    )
    return client


def the_job(endpoint):
    (job,) = endpoint.jobs.values()
    return job


def progress_lines(log: str) -> list[str]:
    return PROGRESS_LINE.findall(log)


@pytest.mark.usefixtures("children_wait_until_watched")
@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_a_succeeding_array_logs_its_progress_once_per_change_and_returns_the_counts(
    deferrable, batch, local_aws_batch, polysync_aws_conn, capsys
):
    dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition=DEFINITION,
        array_size=6,
        aws_conn_id=polysync_aws_conn,
        deferrable=deferrable,
        **FAST,
    )
    assert dag_run.state == "success"
    job = the_job(local_aws_batch)
    info = ti.xcom_pull(task_ids="job")
    assert info["run_id"] == job.job_id
    assert info["array"] == {"size": 6, "succeeded": 6, "failed": 0}
    log = capsys.readouterr().out
    lines = progress_lines(log)
    # Every line is a change: no line twice, the children were seen on their way, and the end once.
    assert lines and all(count == 1 for count in Counter(lines).values()), lines
    assert len(lines) >= 3, lines
    assert lines[-1] == f"Run {job.job_id} is SUCCEEDED (Success): Essential container in task exited " + (
        "[children: 6/6 succeeded, 0 failed, 0 running]"
    )
    assert any(" running" in line and "0 running]" not in line for line in lines), lines
    assert ("Pausing task as DEFERRED" in log) is deferrable


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_a_failing_array_names_its_failed_children_and_the_first_reason(
    deferrable, batch, local_aws_batch, polysync_aws_conn, capsys
):
    dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition=DEFINITION,
        array_size=10,
        parameters={"seconds": "0", "fail_indexes": "7 3", "exit_code": "4"},
        aws_conn_id=polysync_aws_conn,
        deferrable=deferrable,
        **FAST,
    )
    assert dag_run.state == "failed" and ti.state == "failed"
    job = the_job(local_aws_batch)
    assert job.status == "FAILED"
    assert [c.array_index for c in job.children if c.status == "FAILED"] == [3, 7]
    assert local_aws_batch.job_output(f"{job.job_id}:3")[1] == "child 3 fails\n"
    log = capsys.readouterr().out
    assert (
        f"Run {job.job_id} failed: Array Child Job failed: 2 of 10 children failed; "
        "children 3, 7 failed (2 of 10); child 3: Essential container in task exited (exit code 4) (see https://"
    ) in log
    assert "[children: 8/10 succeeded, 2 failed, 0 running]" in progress_lines(log)[-1]


def test_many_failed_children_are_capped_in_the_message(batch, local_aws_batch, polysync_aws_conn, capsys):
    dag_run, _ti = run_single_task(
        AwsBatchJobOperator,
        job_definition=DEFINITION,
        array_size=24,
        parameters={"seconds": "0", "fail_indexes": " ".join(str(i) for i in range(1, 24))},
        aws_conn_id=polysync_aws_conn,
        **FAST,
    )
    assert dag_run.state == "failed"
    shown = ", ".join(str(i) for i in range(1, 21))
    log = capsys.readouterr().out
    assert f"; children {shown} and 3 more failed (23 of 24); child 1: Essential container" in log


def test_children_that_cannot_be_listed_leave_a_warning_not_a_different_outcome(
    batch, local_aws_batch, polysync_aws_conn, capsys
):
    denied = Response.json(
        400,
        {"__type": "AccessDeniedException", "message": "not authorized to perform: batch:ListJobs"},
        **{"x-amzn-ErrorType": "AccessDeniedException"},
    )

    def deny_listing_once_submitted() -> None:  # the operator's own ListJobs before submitting must pass
        deadline = time.monotonic() + 30
        while not local_aws_batch.jobs and time.monotonic() < deadline:
            time.sleep(0.01)
        local_aws_batch.fail_next("POST", r"/v1/listjobs", denied)

    threading.Thread(target=deny_listing_once_submitted, daemon=True).start()
    dag_run, _ti = run_single_task(
        AwsBatchJobOperator,
        job_definition=DEFINITION,
        array_size=3,
        parameters={"seconds": "0.3", "fail_indexes": "1"},
        aws_conn_id=polysync_aws_conn,
        deferrable=False,
        **FAST,
    )
    assert dag_run.state == "failed"
    job = the_job(local_aws_batch)
    log = capsys.readouterr().out
    assert f"Could not list the failed children of array job {job.job_id}: " in log
    assert "AccessDeniedException" in log
    assert f"Run {job.job_id} failed: Array Child Job failed: 1 of 3 children failed; 1 of 3 children failed" in log


def test_the_hook_lists_the_children_in_one_status_over_every_page(batch, local_aws_batch, polysync_aws_conn):
    job_id = batch.submit_job(
        jobName="Polysync-pages",
        jobQueue="polysync-default",
        jobDefinition=DEFINITION,
        parameters={"seconds": "0", "fail_indexes": "0 2 3 4"},
        arrayProperties={"size": 5},
    )["jobId"]
    local_aws_batch.wait_for_job(job_id)
    hook = AwsBatchHook(polysync_aws_conn)
    failed = hook.list_array_children(job_id, "FAILED", page_size=2)
    assert sorted(child["jobId"] for child in failed) == [f"{job_id}:{i}" for i in (0, 2, 3, 4)]
    assert local_aws_batch.requests.count("listjobs") == 2  # two full pages, no empty third one
    assert all(child["status"] == "FAILED" for child in failed)
    assert [child["jobId"] for child in hook.list_array_children(job_id, "SUCCEEDED")] == [f"{job_id}:1"]
    assert hook.list_array_children(job_id, "RUNNING") == []
