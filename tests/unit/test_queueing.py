"""Timing and the diagnosis of a waiting job, from answers as the services give them (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from polysync_airflow.queueing.aws_batch import WaitFacts, job_vcpus, read_problem, waiting_cause
from polysync_airflow.queueing.azure_batch import WaitFacts as AzureWaitFacts
from polysync_airflow.queueing.azure_batch import waiting_cause as azure_waiting_cause
from polysync_airflow.run_watch import not_started_message, waiting_message
from polysync_airflow.status import RunTiming, format_duration
from polysync_airflow.statuses.aws_batch import job_timing
from polysync_airflow.statuses.azure_batch import task_timing

T0 = 1_795_000_000_000  # ms


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (0.4, "0s"), (42, "42s"), (252, "4m12s"), (723, "12m03s"), (3723, "1h02m03s")]
)
def test_durations(seconds, text):
    assert format_duration(seconds) == text


def test_aws_timing_of_a_job_that_ran_twice():
    job = {
        "createdAt": T0,
        "startedAt": T0 + 252_000,
        "stoppedAt": T0 + 252_000 + 723_000,
        "attempts": [{"container": {}}, {"container": {}}],
    }
    timing = job_timing(job)
    assert timing.to_dict() == {
        "submitted_at": "2026-11-18T11:06:40.000Z",
        "started_at": "2026-11-18T11:10:52.000Z",
        "ended_at": "2026-11-18T11:22:55.000Z",
        "queued_seconds": 252.0,
        "running_seconds": 723.0,
        "attempts": 2,
    }
    assert timing.summary("abc") == "Run abc queued 4m12s, ran 12m03s (2 attempts)"


def test_a_job_cancelled_while_queued_queued_until_it_ended_and_never_ran():
    timing = job_timing({"createdAt": T0, "stoppedAt": T0 + 90_000, "attempts": []})
    assert (timing.queued_seconds, timing.running_seconds, timing.attempts) == (90.0, None, 0)
    assert timing.summary("abc") == "Run abc queued 1m30s, never ran (0 attempts)"
    assert RunTiming().summary("x") == "Run x queued for an unknown time, never ran (0 attempts)"
    assert RunTiming().to_dict()["submitted_at"] is None


def test_azure_timing_counts_retries_as_attempts():
    task = {
        "creationTime": "2026-11-29T10:00:00Z",
        "executionInfo": {"startTime": "2026-11-29T10:00:05.5Z", "endTime": "2026-11-29T10:01:05.5Z", "retryCount": 1},
    }
    timing = task_timing(task)
    assert timing.submitted_at == datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    assert (timing.queued_seconds, timing.running_seconds, timing.attempts) == (5.5, 60.0, 2)
    assert timing.summary("j/t") == "Run j/t queued 6s, ran 1m00s (2 attempts)"
    assert task_timing({"creationTime": "2026-11-29T10:00:00Z", "state": "active"}).attempts == 0


def test_messages():
    assert (
        waiting_message("abc", 612, "RUNNABLE", "statusReason 'x'")
        == "Run abc has not started after 10m12s (still RUNNABLE): statusReason 'x'"
    )
    assert not_started_message("abc", 900, "cause") == "Run abc did not start within 900 s: cause"
    assert not_started_message("abc", 1.5, "cause") == "Run abc did not start within 1.5 s: cause"


def test_vcpus_of_each_job_type():
    vcpu = {"resourceRequirements": [{"type": "VCPU", "value": "4"}]}
    assert job_vcpus({"container": vcpu}) == 4
    assert job_vcpus({"container": {"vcpus": 2}}) == 2
    ecs = {"taskProperties": [{"containers": [vcpu, {"resourceRequirements": [{"type": "VCPU", "value": "0.5"}]}]}]}
    assert job_vcpus({"ecsProperties": ecs}) == 4.5
    nodes = {
        "numNodes": 4,
        "mainNode": 2,
        "nodeRangeProperties": [
            {"targetNodes": "0:1", "container": {"vcpus": 1}},
            {"targetNodes": "2:", "container": vcpu},
        ],
    }
    assert job_vcpus({"nodeProperties": nodes}) == 4
    assert job_vcpus({}) == 0


def test_the_aws_cause_for_an_invalid_environment_without_a_status_reason():
    job = {"status": "RUNNABLE", "container": {"vcpus": 1}}
    queue = {
        "jobQueueName": "q",
        "state": "ENABLED",
        "status": "VALID",
        "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "arn:ce"}],
    }
    environment = {
        "computeEnvironmentName": "ce",
        "state": "ENABLED",
        "status": "INVALID",
        "statusReason": "CLIENT_ERROR - bad subnet",
        "computeResources": {"maxvCpus": 16},
    }
    cause = waiting_cause(job, WaitFacts(queue, [environment]))
    assert cause.startswith(
        "AWS Batch gives no statusReason; job queue q: ENABLED, VALID; compute environment ce: ENABLED, INVALID "
        "(CLIENT_ERROR - bad subnet), maxvCpus 16 for the job's 1 vCPU; hint: "
    )


def test_a_denied_read_names_the_permission_and_another_error_is_described():
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "DescribeJobQueues")
    assert read_problem(denied, "DescribeJobQueues") == (
        "could not call DescribeJobQueues: access denied (grant batch:DescribeJobQueues to see why the job waits)"
    )
    assert (
        read_problem(TimeoutError("slow"), "DescribeJobQueues")
        == "could not call DescribeJobQueues: TimeoutError: slow"
    )


def test_the_azure_cause_with_autoscale_and_no_pool_read():
    pool = {
        "id": "p",
        "allocationState": "resizing",
        "currentDedicatedNodes": 0,
        "targetDedicatedNodes": 0,
        "currentLowPriorityNodes": 0,
        "targetLowPriorityNodes": 3,
        "enableAutoScale": True,
    }
    cause = azure_waiting_cause({"state": "preparing"}, AzureWaitFacts(pool=pool))
    assert cause.startswith(
        "task state preparing; pool p: allocationState resizing, dedicated nodes 0/0, low-priority nodes 0/3 "
        "(current/target), autoscale on; hint: "
    )
    assert "could not read pool p" in azure_waiting_cause(
        {"state": "active"}, AzureWaitFacts(problems=["could not read pool p"])
    )


def test_the_queue_watch_warns_once_then_times_out_measured_from_the_jobs_creation():
    from datetime import timedelta

    from polysync_airflow.run_watch import QueueCheck, QueueWatch

    created = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    timing = RunTiming(submitted_at=created)
    watch = QueueWatch("r", None, warning_after=600, timeout=900)
    at = [created + timedelta(seconds=s) for s in (599, 600, 700, 900)]
    assert [watch.check(timing, True, moment)[0] for moment in at] == [
        QueueCheck.NOTHING,
        QueueCheck.WARN,
        QueueCheck.NOTHING,
        QueueCheck.TIME_OUT,
    ]
    # a watch built later (a triggerer restart) sees the time the job already waited
    assert QueueWatch("r", None, 600, None).check(timing, True, at[2]) == (QueueCheck.WARN, 700.0)
    # a job that started is never stopped, nor one whose creation time is unknown
    assert QueueWatch("r", None, 600, 900).check(timing, False, at[3])[0] is QueueCheck.NOTHING
    assert QueueWatch("r", None, 600, 900).check(RunTiming(), True, at[3])[0] is QueueCheck.NOTHING
    assert QueueWatch("r", None, None, None).check(timing, True, at[3])[0] is QueueCheck.NOTHING
