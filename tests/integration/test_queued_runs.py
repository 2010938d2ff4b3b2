"""A job that does not start is named, and stopped past ``queued_timeout``; every run reports how long it queued
and ran. Through ``dag.test()`` (deferred and ``deferrable=False``) and the triggers, against the local endpoints.

A job is held waiting by the endpoint (an AWS queue held with a ``statusReason``, an Azure pool without nodes)
and released by a helper thread once the endpoint has seen the diagnosis read, so no test depends on speed."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import boto3
import pytest

from polysync_airflow import AwsBatchJobOperator, AzureBatchJobOperator
from polysync_airflow.hooks.aws_batch import AwsBatchHook
from tests.integration.helpers import run_single_task, terminate_when_running

pytestmark = pytest.mark.usefixtures("airflow_db")

FAST = {"poll_interval": 0.1}
CAPACITY = (
    "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - There is not enough capacity to fulfill your request. Please try "
    "another instance type."
)
RESIZE_ERROR = {
    "code": "AccountCoreQuotaReached",
    "message": "The specified account has reached its core quota.",
    "values": [{"name": "Quota", "value": "0"}],
}
TIMING_KEYS = {"submitted_at", "started_at", "ended_at", "queued_seconds", "running_seconds", "attempts"}
CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
CONTAINER = {
    "image": "busybox",
    "command": ["/bin/sh", "-c", "echo Ref::message"],
    "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
}


def when_seen(
    endpoint, request: str, then: Callable[[], None], times: int = 1, timeout: float = 60
) -> threading.Thread:
    """Run ``then`` once ``endpoint`` has received ``request`` ``times`` times (a helper thread; join it after)."""

    def wait() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and endpoint.requests.count(request) < times:
            time.sleep(0.02)
        then()

    helper = threading.Thread(target=wait, daemon=True)
    helper.start()
    return helper


def hold_until_diagnosed(endpoint) -> threading.Thread:
    """Hold the default queue (``CAPACITY``) until the diagnosis has read the compute environments (join after)."""
    endpoint.hold_queue("polysync-default", CAPACITY)
    return when_seen(endpoint, "describecomputeenvironments", lambda: endpoint.hold_queue("polysync-default", None))


# Seconds an AWS job waits before the warning: the local endpoint walks a job to RUNNABLE in a few 0.05 s steps, which
# once took over a second on a loaded CI machine (the warning then named PENDING, before the queue's reason).
AWS_WARNING_AFTER = 2.0
AWS_TIMEOUT = 3


def only_job(endpoint):
    (job,) = endpoint.jobs.values()
    return job


def warnings_in(log: str) -> list[str]:
    return [line for line in log.splitlines() if "has not started after" in line]


def summary_line(log: str, run_id: str) -> str:
    (line,) = [line for line in log.splitlines() if f"Run {run_id} queued " in line]
    return line


# -- the warning ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_a_stuck_aws_job_is_named_once_with_its_cause_then_runs(deferrable, local_aws_batch, polysync_aws_conn, capsys):
    helper = hold_until_diagnosed(local_aws_batch)
    dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 0},
        queued_warning_after=AWS_WARNING_AFTER,
        deferrable=deferrable,
        **FAST,
    )
    helper.join()
    assert dag_run.state == "success"
    job = only_job(local_aws_batch)
    log = capsys.readouterr().out
    (warning,) = warnings_in(log)
    assert "[warning" in warning
    assert f"Run {job.job_id} has not started after " in warning
    assert (
        f"(still RUNNABLE): statusReason {CAPACITY!r}; job queue polysync-default: ENABLED, VALID; compute "
        "environment polysync-ce: ENABLED, VALID, maxvCpus 256 for the job's 1 vCPU; hint: a job stuck in RUNNABLE "
        "means the compute environment can't satisfy its resource requirements; check vCPU quotas (EC2 / Fargate) "
        "and the environment's instance types"
    ) in warning
    assert local_aws_batch.requests.count("describejobqueues") == 1
    assert local_aws_batch.requests.count("describecomputeenvironments") == 1
    info = ti.xcom_pull(task_ids="job")
    assert set(info["timing"]) == TIMING_KEYS
    assert info["timing"]["attempts"] == 1 and info["timing"]["queued_seconds"] is not None
    assert {"run_id", "status", "message", "exit_code", "monitor_url", "job_name"} <= set(info)
    assert " (1 attempt)" in summary_line(log, job.job_id)


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_a_task_waiting_for_pool_nodes_is_named_once_with_its_cause_then_runs(
    deferrable, local_azure_batch, polysync_azure_conn, capsys
):
    local_azure_batch.set_pool(
        "polysync-pool", currentDedicatedNodes=0, targetDedicatedNodes=2, resizeErrors=[RESIZE_ERROR]
    )
    # the operator reads the pool once when it submits (it must exist); the diagnosis is the second read
    helper = when_seen(
        local_azure_batch,
        "GET /pools/polysync-pool",
        lambda: local_azure_batch.set_pool("polysync-pool", currentDedicatedNodes=1),
        times=2,
    )
    dag_run, ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id=polysync_azure_conn,
        parameters={"SECONDS_TO_RUN": 0},
        queued_warning_after="{{ 0.2 }}",
        deferrable=deferrable,
        **FAST,
    )
    helper.join()
    assert dag_run.state == "success"
    run_id = ti.xcom_pull(task_ids="job")["run_id"]
    log = capsys.readouterr().out
    (warning,) = warnings_in(log)
    assert f"Run {run_id} has not started after " in warning
    assert (
        "(still active): task state active; pool polysync-pool: allocationState steady, dedicated nodes 0/2, "
        "low-priority nodes 0/0 (current/target); resize error AccountCoreQuotaReached: The specified account has "
        "reached its core quota. (Quota=0); hint: a task waiting in active or preparing means the pool has no "
        "available compute nodes; check its autoscale formula or the account's core quota, and inspect the pool in "
        "the Azure portal"
    ) in warning
    assert local_azure_batch.requests.count("GET /pools/polysync-pool") == 2  # the submit's, the diagnosis'
    timing = ti.xcom_pull(task_ids="job")["timing"]
    assert set(timing) == TIMING_KEYS and timing["attempts"] == 1 and timing["ended_at"] is not None
    assert " (1 attempt)" in summary_line(log, run_id)


def test_a_denied_diagnosis_read_names_the_permission_and_the_run_goes_on(local_aws_batch, polysync_aws_conn, capsys):
    local_aws_batch.denied_operations = {"DescribeComputeEnvironments"}
    helper = hold_until_diagnosed(local_aws_batch)
    dag_run, _ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 0},
        queued_warning_after=AWS_WARNING_AFTER,
        **FAST,
    )
    helper.join()
    assert dag_run.state == "success"
    (warning,) = warnings_in(capsys.readouterr().out)
    assert (
        "could not call DescribeComputeEnvironments: access denied (grant batch:DescribeComputeEnvironments to see "
        "why the job waits)"
    ) in warning
    assert "job queue polysync-default: ENABLED, VALID" in warning


def test_a_denied_pool_read_names_the_permission_and_the_run_goes_on(local_azure_batch, polysync_azure_conn, capsys):
    """Submitting reads the pool (it must exist), so the read is denied from then on: access taken away while the
    task waits."""
    local_azure_batch.set_pool("polysync-pool", currentDedicatedNodes=0)

    def deny_then_release() -> None:
        local_azure_batch.denied_reads = {"pools"}
        when_seen(
            local_azure_batch,
            "GET /pools/polysync-pool",
            lambda: local_azure_batch.set_pool("polysync-pool", currentDedicatedNodes=1),
            times=2,
        ).join()

    helper = when_seen(local_azure_batch, "GET /pools/polysync-pool", deny_then_release)
    dag_run, _ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id=polysync_azure_conn,
        parameters={"SECONDS_TO_RUN": 0},
        queued_warning_after=0.2,
        **FAST,
    )
    helper.join()
    assert dag_run.state == "success"
    (warning,) = warnings_in(capsys.readouterr().out)
    assert (
        "could not read pool polysync-pool: access denied (403 InsufficientPermissions; grant "
        "Microsoft.Batch/batchAccounts/pools/read to see why the task waits)"
    ) in warning


def test_no_warning_when_turned_off(local_aws_batch, polysync_aws_conn, capsys):
    local_aws_batch.hold_queue("polysync-default", CAPACITY)
    threading.Timer(1.0, lambda: local_aws_batch.hold_queue("polysync-default", None)).start()
    dag_run, _ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 0},
        queued_warning_after=None,
        **FAST,
    )
    assert dag_run.state == "success"
    assert not warnings_in(capsys.readouterr().out)
    assert "describecomputeenvironments" not in local_aws_batch.requests


# -- the timeout ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_a_job_past_its_queue_timeout_is_stopped_and_the_task_fails_with_retries(
    deferrable, local_aws_batch, polysync_aws_conn, capsys
):
    local_aws_batch.hold_queue("polysync-default", CAPACITY)
    dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 0},
        queued_timeout=f"{{{{ {AWS_TIMEOUT} }}}}",
        deferrable=deferrable,
        retries=1,
        retry_delay=timedelta(0),
        **FAST,
    )
    assert dag_run.state == "failed" and ti.state == "failed"
    assert ti.try_number == 2  # an ordinary failure: the retry ran, and timed out too
    jobs = list(local_aws_batch.jobs.values())
    assert len(jobs) == 2 and local_aws_batch.requests.count("terminatejob") == 2
    log = capsys.readouterr().out
    for job in jobs:
        assert local_aws_batch.wait_for_job(job.job_id).status == "FAILED" and job.started_at is None
        assert f"Run {job.job_id} did not start within {AWS_TIMEOUT} s: statusReason {CAPACITY!r}; job queue " in log
        assert f"Run {job.job_id} queued " in log and ", never ran (0 attempts)" in summary_line(log, job.job_id)
    assert not warnings_in(log)  # the default warning (600 s) never came


def test_a_task_past_its_queue_timeout_is_terminated_then_its_job(local_azure_batch, polysync_azure_conn, capsys):
    local_azure_batch.set_pool("polysync-pool", currentDedicatedNodes=0, resizeErrors=[RESIZE_ERROR])
    dag_run, ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id=polysync_azure_conn,
        queued_warning_after=0.2,
        queued_timeout=0.5,
        **FAST,
    )
    assert dag_run.state == "failed" and ti.try_number == 1
    (job,) = [job for job in local_azure_batch.jobs.values() if job.id.startswith("polysync-") and job.tasks]
    run_id = f"{job.id}/polysync"
    requests = local_azure_batch.requests
    terminate_task = requests.index(f"POST /jobs/{job.id}/tasks/polysync/terminate")
    assert requests.index(f"POST /jobs/{job.id}/terminate") > terminate_task
    assert job.state == "completed"
    log = capsys.readouterr().out
    assert f"Run {run_id} did not start within 0.5 s: task state active; pool polysync-pool: " in log
    assert "resize error AccountCoreQuotaReached" in log
    assert len(warnings_in(log)) <= 1
    assert ", never ran (0 attempts)" in summary_line(log, run_id)


def test_a_job_that_starts_before_its_queue_timeout_is_not_stopped(local_aws_batch, polysync_aws_conn, capsys):
    helper = hold_until_diagnosed(local_aws_batch)
    dag_run, _ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 0},
        queued_warning_after=AWS_WARNING_AFTER,
        queued_timeout=120,
        **FAST,
    )
    helper.join()
    assert dag_run.state == "success"
    assert "terminatejob" not in local_aws_batch.requests
    assert "did not start within" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"queued_timeout": "{{ '-1' }}"}, "queued_timeout='-1' is invalid: must be a positive number of seconds"),
        ({"queued_warning_after": 0}, "queued_warning_after=0 is invalid: must be a positive number of seconds"),
        ({"queued_warning_after": "soon"}, "queued_warning_after='soon' is invalid"),
    ],
)
def test_bad_queue_arguments_fail_before_any_request(arguments, expected, local_aws_batch, polysync_aws_conn, capsys):
    _dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        retries=2,
        retry_delay=timedelta(0),
        **arguments,
    )
    assert ti.state == "failed" and ti.try_number == 1
    assert expected in capsys.readouterr().out
    assert local_aws_batch.requests == []


# -- the trigger: a restart, and stored rows ----------------------------------------------------------------


async def first_event(trigger, timeout: float = 30) -> dict:
    async def run() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return await asyncio.wait_for(run(), timeout)


def recreate(trigger):
    """What a triggerer does after a restart: import the class path and call it with the stored kwargs."""
    from airflow.sdk.module_loading import import_string

    classpath, kwargs = trigger.serialize()
    return import_string(classpath)(**json.loads(json.dumps(kwargs)))


def test_the_threshold_counts_from_the_jobs_creation_across_a_triggerer_restart(
    local_aws_batch, polysync_aws_conn, caplog, capsys
):
    from polysync_airflow.triggers.aws_batch import AwsBatchJobTrigger

    local_aws_batch.hold_queue("polysync-default", CAPACITY)
    job_id = AwsBatchHook(polysync_aws_conn).submit_job(
        {"jobName": "Polysync-restart", "jobDefinition": "polysync-job", "jobQueue": "polysync-default"}
    )["jobId"]
    first = AwsBatchJobTrigger(
        job_id=job_id, aws_conn_id=polysync_aws_conn, poll_interval=0.05, queued_warning_after=600, queued_timeout=900
    )

    async def watch_a_while() -> None:
        task = asyncio.ensure_future(first_event(first))
        while local_aws_batch.describe_counts[job_id] < 3:
            await asyncio.sleep(0.02)
        task.cancel()  # the triggerer goes down

    asyncio.run(watch_a_while())
    assert "describejobqueues" not in local_aws_batch.requests  # no threshold passed yet
    # ... and stays down while the job waits on: 11 minutes pass (its creation time moves back)
    local_aws_batch.jobs[job_id].created_at -= 660_000
    helper = when_seen(
        local_aws_batch, "describecomputeenvironments", lambda: local_aws_batch.hold_queue("polysync-default", None)
    )
    with caplog.at_level("WARNING"):
        event = asyncio.run(first_event(recreate(first)))
    helper.join()
    assert event["status"] == "Success"
    lines = [r.getMessage() for r in caplog.records] + capsys.readouterr().out.splitlines()
    warnings = [line for line in lines if "has not started after" in line]
    assert len(warnings) == 1 and f"Run {job_id} has not started after 11m" in warnings[0]
    assert event["timing"]["queued_seconds"] >= 660


def test_a_trigger_with_queue_settings_round_trips_and_one_without_serializes_as_before(polysync_aws_conn):
    from polysync_airflow.triggers.aws_batch import AwsBatchJobTrigger

    plain = AwsBatchJobTrigger(job_id="j", aws_conn_id=polysync_aws_conn, region_name="us-east-1")
    assert "queued_warning_after" not in plain.serialize()[1] and "queued_timeout" not in plain.serialize()[1]
    assert plain.settings.queued_warning_after == 600 and plain.settings.queued_timeout is None
    custom = AwsBatchJobTrigger(job_id="j", aws_conn_id=polysync_aws_conn, queued_warning_after=None, queued_timeout=60)
    kwargs = recreate(custom).serialize()[1]
    assert (kwargs["queued_warning_after"], kwargs["queued_timeout"]) == (None, 60.0)


# -- timing on every outcome, and job types ---------------------------------------------------------------------


def test_timing_of_a_failed_job_is_the_last_line_about_the_run(local_aws_batch, polysync_aws_conn, capsys):
    _dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 0, "exit_code": 3},
        **FAST,
    )
    assert ti.state == "failed"
    job = only_job(local_aws_batch)
    log = capsys.readouterr().out
    line = summary_line(log, job.job_id)
    assert ", ran " in line and " (1 attempt)" in line
    assert log.index(line) > log.index(f"of the output of job {job.job_id}")


def test_timing_of_a_cancelled_job(local_aws_batch, polysync_aws_conn, capsys):
    helper = terminate_when_running(local_aws_batch)
    _dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 30},
        **FAST,
    )
    helper.join()
    assert ti.state == "failed"
    job = only_job(local_aws_batch)
    line = summary_line(capsys.readouterr().out, job.job_id)
    assert ", ran " in line and " (1 attempt)" in line


def test_timing_of_an_array_job(local_aws_batch, polysync_aws_conn, capsys):
    _dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 0},
        array_size=2,
        **FAST,
    )
    info = ti.xcom_pull(task_ids="job")
    timing = info["timing"]
    assert info["array"] and set(timing) == TIMING_KEYS
    assert timing["started_at"] and timing["ended_at"] and timing["attempts"] == 1
    assert summary_line(capsys.readouterr().out, info["run_id"])


def register(endpoint, name: str, **definition) -> None:
    boto3.client("batch", endpoint_url=endpoint.url, **CREDENTIALS).register_job_definition(
        jobDefinitionName=name, **definition
    )


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_a_multi_node_job_runs_end_to_end_with_its_main_nodes_log(
    deferrable, local_aws_batch, polysync_aws_conn, capsys
):
    node_properties = {
        "numNodes": 3,
        "mainNode": 0,
        "nodeRangeProperties": [{"targetNodes": "0:", "container": CONTAINER}],
    }
    register(local_aws_batch, "polysync-mnp", type="multinode", nodeProperties=node_properties)
    _dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-mnp",
        aws_conn_id=polysync_aws_conn,
        parameters={"message": "main node done"},
        fetch_logs=True,
        deferrable=deferrable,
        **FAST,
    )
    assert ti.state == "success"
    job = only_job(local_aws_batch)
    log = capsys.readouterr().out
    assert f"stream {job.log_stream_name}):" in log and "main node done" in log
    assert job.log_stream_name in ti.xcom_pull(task_ids="job", key="_link_AwsBatchJobLogsLink").replace("%2F", "/")
    assert ti.xcom_pull(task_ids="job")["timing"]["attempts"] == 1


def test_an_ecs_properties_job_runs_end_to_end_with_its_containers_log(local_aws_batch, polysync_aws_conn, capsys):
    logging = {"logDriver": "awslogs", "options": {"awslogs-group": "/polysync/ecs"}}
    ecs = {"taskProperties": [{"containers": [{"name": "app", "logConfiguration": logging, **CONTAINER}]}]}
    register(local_aws_batch, "polysync-ecs", type="container", ecsProperties=ecs)
    _dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-ecs",
        aws_conn_id=polysync_aws_conn,
        parameters={"message": "ecs task done"},
        fetch_logs=True,
        **FAST,
    )
    assert ti.state == "success"
    job = only_job(local_aws_batch)
    assert job.log_stream_name.startswith("polysync-ecs/app/")
    log = capsys.readouterr().out
    assert f"(CloudWatch log group /polysync/ecs, stream {job.log_stream_name}):" in log and "ecs task done" in log
