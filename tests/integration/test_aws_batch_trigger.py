"""The AWS Batch trigger on its own, with a real aiobotocore client against the local endpoint."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from polysync_airflow.hooks.aws_batch import CANCEL_REASON, AwsBatchHook
from polysync_airflow.status import RunStatus
from polysync_airflow.statuses.aws_batch import decode_job
from polysync_airflow.triggers.aws_batch import AwsBatchJobTrigger


def submit(conn_id: str, seconds: float, exit_code: int = 0) -> str:
    hook = AwsBatchHook(conn_id)
    return hook.submit_job(
        {
            "jobName": "Polysync-test",
            "jobDefinition": "polysync-job",
            "jobQueue": "polysync-default",
            "parameters": {"seconds": str(seconds), "exit_code": str(exit_code)},
        }
    )["jobId"]


async def first_event(trigger: AwsBatchJobTrigger, timeout: float = 30) -> dict:
    async def run() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return await asyncio.wait_for(run(), timeout)


def recreate(trigger: AwsBatchJobTrigger) -> AwsBatchJobTrigger:
    """What a triggerer does after a restart: import the class path and call it with the kwargs."""
    from airflow.sdk.module_loading import import_string

    classpath, kwargs = trigger.serialize()
    return import_string(classpath)(**json.loads(json.dumps(kwargs)))


def test_serializes_only_ids_names_and_numbers(polysync_aws_conn):
    trigger = AwsBatchJobTrigger(
        job_id="job-1",
        job_name="Polysync-x",
        aws_conn_id=polysync_aws_conn,
        region_name="us-east-1",
        poll_interval=0.5,
        unknown_grace_period=60,
        deadline=1_800_000_000.0,
        cancel_on_kill=False,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "polysync_airflow.triggers.aws_batch.AwsBatchJobTrigger"
    assert kwargs == {
        "job_id": "job-1",
        "job_name": "Polysync-x",
        "aws_conn_id": polysync_aws_conn,
        "region_name": "us-east-1",
        "poll_interval": 0.5,
        "unknown_grace_period": 60.0,
        "deadline": 1_800_000_000.0,
        "cancel_on_kill": False,
        "outage_window": 600.0,
    }
    text = json.dumps(kwargs)
    assert "local-secret-key" not in text and "local-access-key" not in text
    assert recreate(trigger).serialize() == (classpath, kwargs)


def test_success_and_failure_events(local_aws_batch, polysync_aws_conn):
    ok = submit(polysync_aws_conn, 0.2)
    bad = submit(polysync_aws_conn, 0.2, exit_code=5)

    async def both():
        return await asyncio.gather(
            first_event(AwsBatchJobTrigger(job_id=ok, aws_conn_id=polysync_aws_conn, poll_interval=0.05)),
            first_event(AwsBatchJobTrigger(job_id=bad, aws_conn_id=polysync_aws_conn, poll_interval=0.05)),
        )

    success, failure = asyncio.run(both())
    assert success["status"] == "Success" and success["exit_code"] == 0 and success["run_id"] == ok
    # the events' timing and queue outcome (issue 15), besides the keys they always had
    assert failure.pop("queue_timed_out") is False
    timing = failure.pop("timing")
    assert timing["attempts"] == 1 and timing["ended_at"] and timing["running_seconds"] is not None
    assert failure == {
        "status": "Failed",
        "run_id": bad,
        "message": "Essential container in task exited",
        "exit_code": 5,
        "native_status": "FAILED",
        "progress": "",
        "job_name": "",
        "timed_out": False,
    }


def test_each_status_change_is_logged_once(local_aws_batch, polysync_aws_conn, caplog, capsys):
    local_aws_batch.step_seconds = 0.2
    job_id = submit(polysync_aws_conn, 0.5)
    with caplog.at_level("INFO"):
        asyncio.run(first_event(AwsBatchJobTrigger(job_id=job_id, aws_conn_id=polysync_aws_conn, poll_interval=0.02)))
    lines = [r.getMessage() for r in caplog.records] + capsys.readouterr().out.splitlines()
    timeline = [line for line in lines if f"Run {job_id} is" in line]
    statuses = [line.split(f"Run {job_id} is ")[1].split(" ")[0] for line in timeline]
    assert len(local_aws_batch.requests) > len(statuses) + 3  # many polls, far fewer lines
    assert statuses == sorted(set(statuses), key=statuses.index)  # no status logged twice
    assert {"RUNNING", "SUCCEEDED"} <= set(statuses)
    assert statuses[-1] == "SUCCEEDED"


def test_a_recreated_trigger_resumes_without_submitting_or_terminating(local_aws_batch, polysync_aws_conn):
    """A triggerer restart: the running trigger is dropped (no on_kill) and re-created from its kwargs."""
    job_id = submit(polysync_aws_conn, 1.0)
    trigger = AwsBatchJobTrigger(job_id=job_id, aws_conn_id=polysync_aws_conn, poll_interval=0.05)

    async def interrupted():
        task = asyncio.ensure_future(first_event(trigger))
        await asyncio.sleep(0.7)
        assert not task.done()
        task.cancel()  # the event loop goes away with the old triggerer

    asyncio.run(interrupted())
    event = asyncio.run(first_event(recreate(trigger)))
    assert event["status"] == "Success"
    assert local_aws_batch.requests.count("submitjob") == 1
    assert "terminatejob" not in local_aws_batch.requests


def test_on_kill_terminates_the_running_job(local_aws_batch, polysync_aws_conn):
    job_id = submit(polysync_aws_conn, 60)
    trigger = AwsBatchJobTrigger(job_id=job_id, aws_conn_id=polysync_aws_conn, poll_interval=0.05)

    async def user_marks_failed():
        task = asyncio.ensure_future(first_event(trigger))
        while local_aws_batch.jobs[job_id].status != "RUNNING":
            await asyncio.sleep(0.02)
        task.cancel()
        await trigger.on_kill()

    asyncio.run(user_marks_failed())
    job = local_aws_batch.wait_for_job(job_id)
    assert (job.status, job.status_reason) == ("FAILED", CANCEL_REASON)
    assert local_aws_batch.requests.count("terminatejob") == 1
    assert decode_job(job_id, AwsBatchHook(polysync_aws_conn).read_run(job_id)).status is RunStatus.CANCELLED


def test_on_kill_terminates_a_queued_job(local_aws_batch, polysync_aws_conn):
    local_aws_batch.step_seconds = 5  # stays SUBMITTED
    job_id = submit(polysync_aws_conn, 1)
    asyncio.run(AwsBatchJobTrigger(job_id=job_id, aws_conn_id=polysync_aws_conn).on_kill())
    job = local_aws_batch.wait_for_job(job_id)
    assert (job.status, job.status_reason, job.attempts) == ("FAILED", CANCEL_REASON, [])


def test_on_kill_does_nothing_once_the_trigger_has_reported(local_aws_batch, polysync_aws_conn):
    job_id = submit(polysync_aws_conn, 0)
    trigger = AwsBatchJobTrigger(job_id=job_id, aws_conn_id=polysync_aws_conn, poll_interval=0.05)
    asyncio.run(first_event(trigger))
    asyncio.run(trigger.on_kill())
    assert "terminatejob" not in local_aws_batch.requests


def test_on_kill_respects_cancel_on_kill_false(local_aws_batch, polysync_aws_conn):
    job_id = submit(polysync_aws_conn, 0.5)
    asyncio.run(AwsBatchJobTrigger(job_id=job_id, aws_conn_id=polysync_aws_conn, cancel_on_kill=False).on_kill())
    assert "terminatejob" not in local_aws_batch.requests
    assert local_aws_batch.wait_for_job(job_id).status == "SUCCEEDED"


def test_on_kill_never_raises_when_the_service_is_unreachable(local_aws_batch, polysync_aws_conn):
    job_id = submit(polysync_aws_conn, 0)
    local_aws_batch.stop()
    started = time.monotonic()
    asyncio.run(AwsBatchJobTrigger(job_id=job_id, aws_conn_id=polysync_aws_conn).on_kill())
    assert time.monotonic() - started < 25


def test_a_job_that_stays_unknown_ends_after_the_grace_period(local_aws_batch, polysync_aws_conn):
    trigger = AwsBatchJobTrigger(
        job_id="no-such-job", aws_conn_id=polysync_aws_conn, poll_interval=0.05, unknown_grace_period=0.3
    )
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "Unknown"
    assert "stayed unknown for 0.3 s" in event["message"] and "was not found" in event["message"]


def test_the_deadline_terminates_the_job_and_reports_a_timeout(local_aws_batch, polysync_aws_conn):
    job_id = submit(polysync_aws_conn, 60)
    trigger = AwsBatchJobTrigger(
        job_id=job_id, aws_conn_id=polysync_aws_conn, poll_interval=0.05, deadline=time.time() + 1
    )
    event = asyncio.run(first_event(trigger))
    assert event["timed_out"] is True and event["status"] == "Failed"
    assert "did not finish before its deadline" in event["message"]
    assert local_aws_batch.wait_for_job(job_id).status_reason == CANCEL_REASON


def test_the_deadline_without_cancel_on_kill_leaves_the_job(local_aws_batch, polysync_aws_conn):
    job_id = submit(polysync_aws_conn, 2)
    trigger = AwsBatchJobTrigger(
        job_id=job_id,
        aws_conn_id=polysync_aws_conn,
        poll_interval=0.05,
        deadline=time.time() + 0.5,
        cancel_on_kill=False,
    )
    assert asyncio.run(first_event(trigger))["timed_out"] is True
    assert "terminatejob" not in local_aws_batch.requests


def _fault(status: int, code: str):
    from polysync_airflow.testing._http import Response

    return Response.json(status, {"__type": code, "message": f"injected {code}"}, **{"x-amzn-ErrorType": code})


def test_transient_faults_while_polling_are_ridden_out(local_aws_batch, monkeypatch):
    """botocore's own retries off: every injected fault reaches the trigger, which backs off and goes on."""
    from polysync_airflow.testing.connections import aws_connection_env

    env = aws_connection_env("aws_no_retry", local_aws_batch, config_kwargs={"retries": {"total_max_attempts": 1}})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    job_id = submit("aws_no_retry", 0.5)
    for status, code in [
        (429, "TooManyRequestsException"),
        (400, "ThrottlingException"),
        (503, "ServiceUnavailable"),
        (500, "InternalServerError"),
        (429, "TooManyRequestsException"),
    ]:
        local_aws_batch.fail_next("POST", "/v1/describejobs", _fault(status, code))
    event = asyncio.run(first_event(AwsBatchJobTrigger(job_id=job_id, aws_conn_id="aws_no_retry", poll_interval=0.05)))
    assert event["status"] == "Success"
    assert sum("(injected" in r for r in local_aws_batch.requests) == 5


def test_a_fault_that_cannot_heal_fails_the_run_at_once(local_aws_batch, polysync_aws_conn):
    job_id = submit(polysync_aws_conn, 5)
    local_aws_batch.fail_next("POST", "/v1/describejobs", _fault(403, "AccessDeniedException"))
    event = asyncio.run(
        first_event(AwsBatchJobTrigger(job_id=job_id, aws_conn_id=polysync_aws_conn, poll_interval=0.05))
    )
    assert event["status"] == "Failed"
    assert "retrying cannot help" in event["message"] and "AccessDeniedException" in event["message"]
    assert local_aws_batch.requests.count("describejobs") == 0  # the one poll was the injected fault


def test_verify_and_botocore_config_are_serialized_and_reach_the_client(local_aws_batch, polysync_aws_conn):
    trigger = AwsBatchJobTrigger(
        job_id="job-1",
        aws_conn_id=polysync_aws_conn,
        region_name="us-east-1",
        verify=False,
        botocore_config={"read_timeout": 7, "retries": {"max_attempts": 2}},
    )
    classpath, kwargs = trigger.serialize()
    assert kwargs["verify"] is False and kwargs["botocore_config"] == {
        "read_timeout": 7,
        "retries": {"max_attempts": 2},
    }
    again = recreate(trigger)
    assert again.serialize() == (classpath, kwargs)

    async def client_settings():
        hook = again.make_hook()
        async with hook.async_connection():
            return hook.async_client.meta.config.read_timeout

    assert asyncio.run(client_settings()) == 7
    plain = AwsBatchJobTrigger(job_id="job-1", aws_conn_id=polysync_aws_conn, region_name="us-east-1")
    assert again.poller_key != plain.poller_key  # other client settings, another client


def test_a_trigger_serialized_before_verify_and_botocore_config_still_loads(local_aws_batch, polysync_aws_conn):
    from airflow.sdk.module_loading import import_string

    old_kwargs = {
        "job_id": submit(polysync_aws_conn, 0.1),
        "job_name": "Polysync-test",
        "aws_conn_id": polysync_aws_conn,
        "region_name": "us-east-1",
        "poll_interval": 0.05,
        "unknown_grace_period": 60.0,
        "deadline": None,
        "cancel_on_kill": True,
        "outage_window": 600.0,
    }
    trigger = import_string("polysync_airflow.triggers.aws_batch.AwsBatchJobTrigger")(**old_kwargs)
    assert (trigger.verify, trigger.botocore_config) == (None, None)
    assert trigger.serialize()[1] == old_kwargs
    assert asyncio.run(first_event(trigger))["status"] == "Success"


def test_a_connection_that_is_not_defined_fails_the_trigger_with_the_same_message(local_aws_batch, monkeypatch):
    from polysync_airflow.hooks.aws_batch import AwsConnectionNotDefined

    monkeypatch.delenv("AIRFLOW_CONN_AWS_NIGHTLY", raising=False)
    trigger = AwsBatchJobTrigger(job_id="job-1", aws_conn_id="aws_nightly", poll_interval=0.05)
    with pytest.raises(AwsConnectionNotDefined, match=r"^connection 'aws_nightly' is not defined: add it"):
        asyncio.run(first_event(trigger))
    assert local_aws_batch.requests == []
