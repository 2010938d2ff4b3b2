"""The shared status poller: many triggers of one connection in one event loop, a few calls per interval."""

from __future__ import annotations

import asyncio
import math

import pytest

from polysync_airflow.hooks.aws_batch import AwsBatchHook
from polysync_airflow.operators.azure_batch import AzureBatchJobOperator
from polysync_airflow.shared_poller import SharedPoller
from polysync_airflow.testing._http import Response
from polysync_airflow.triggers.aws_batch import AwsBatchJobTrigger
from polysync_airflow.triggers.azure_batch import AzureBatchJobTrigger
from tests.integration.helpers import task_context

POLL = 0.3


def submit_aws(conn_id: str, count: int, seconds: float = 1.0, exit_code=lambda i: 0) -> list[str]:
    hook = AwsBatchHook(conn_id)
    return [
        hook.submit_job(
            {
                "jobName": f"Polysync-poller-{i}",
                "jobDefinition": "polysync-job",
                "jobQueue": "polysync-default",
                "parameters": {"seconds": str(seconds), "exit_code": str(exit_code(i))},
            }
        )["jobId"]
        for i in range(count)
    ]


def submit_azure(conn_id: str, count: int, seconds: float = 1.0, exit_code=None) -> list[str]:
    """``count`` runs started as the Azure operator starts them (a job and its task each); their run ids."""
    return [
        AzureBatchJobOperator(
            task_id=f"t{i}",
            template_job_id="polysync-template",
            azure_batch_conn_id=conn_id,
            parameters={"SECONDS_TO_RUN": seconds, **({"EXIT_CODE": exit_code(i)} if exit_code else {})},
        )
        .start_run(task_context(task_id=f"t{i}"))
        .run_id
        for i in range(count)
    ]


def aws_trigger(conn_id: str, job_id: str, poll: float = POLL) -> AwsBatchJobTrigger:
    return AwsBatchJobTrigger(job_id=job_id, aws_conn_id=conn_id, poll_interval=poll, unknown_grace_period=5)


async def first_event(trigger) -> dict:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("no event")


async def run_all(triggers, timeout: float = 60) -> list[dict]:
    return await asyncio.wait_for(asyncio.gather(*(first_event(t) for t in triggers)), timeout)


def test_runs_with_different_ends_each_get_their_own_outcome(local_aws_batch, polysync_aws_conn):
    fast = submit_aws(polysync_aws_conn, 4, seconds=0.2, exit_code=lambda i: i)  # exit codes 0..3
    slow = submit_aws(polysync_aws_conn, 4, seconds=2.0, exit_code=lambda i: 10 + i)
    events = asyncio.run(run_all([aws_trigger(polysync_aws_conn, job) for job in fast + slow]))
    assert [(e["run_id"], e["exit_code"]) for e in events] == [
        *zip(fast, range(4), strict=True),
        *zip(slow, range(10, 14), strict=True),
    ]
    assert [e["status"] for e in events] == ["Success"] + ["Failed"] * 7
    assert not SharedPoller._shared  # the last trigger closed the poller and its client


@pytest.mark.parametrize("runs", [99, 100, 101])
def test_describe_jobs_takes_up_to_100_ids_per_call(runs, local_aws_batch, polysync_aws_conn):
    jobs = submit_aws(polysync_aws_conn, runs, seconds=2.0)
    local_aws_batch.requests.clear()
    events = asyncio.run(run_all([aws_trigger(polysync_aws_conn, job, poll=0.5) for job in jobs], timeout=120))
    assert {e["status"] for e in events} == {"Success"}
    reads_per_run = max(local_aws_batch.describe_counts[job] for job in jobs)
    calls = local_aws_batch.requests.count("describejobs")
    # ceil(runs / 100) calls per cycle; one spare cycle for runs that started a moment apart
    assert calls <= math.ceil(runs / 100) * (reads_per_run + 1), (calls, reads_per_run)
    assert calls < runs  # what one call per run per poll would have cost for the first poll alone


def test_runs_join_late_and_leave_early_without_disturbing_the_others(local_aws_batch, polysync_aws_conn):
    first, late = submit_aws(polysync_aws_conn, 3, seconds=2.0), submit_aws(polysync_aws_conn, 3, seconds=1.0)

    async def scenario():
        early = [asyncio.ensure_future(first_event(aws_trigger(polysync_aws_conn, j))) for j in first]
        await asyncio.sleep(1.0)  # a few polls in
        early[0].cancel()  # a trigger cancelled while it waits for the poller
        joined = [asyncio.ensure_future(first_event(aws_trigger(polysync_aws_conn, j))) for j in late]
        done = await asyncio.wait_for(asyncio.gather(*early[1:], *joined), 30)
        with pytest.raises(asyncio.CancelledError):
            await early[0]
        return done

    events = asyncio.run(scenario())
    assert [e["run_id"] for e in events] == first[1:] + late
    assert {e["status"] for e in events} == {"Success"}
    assert not SharedPoller._shared


def test_a_failed_poll_reaches_every_waiting_trigger(local_aws_batch, polysync_aws_conn):
    jobs = submit_aws(polysync_aws_conn, 3, seconds=5.0)
    denied = {"__type": "AccessDeniedException", "message": "injected AccessDeniedException"}
    local_aws_batch.fail_next(
        "POST", "/v1/describejobs", Response.json(403, denied, **{"x-amzn-ErrorType": "AccessDeniedException"})
    )
    events = asyncio.run(run_all([aws_trigger(polysync_aws_conn, job) for job in jobs]))
    assert [e["status"] for e in events] == ["Failed"] * 3
    assert all("AccessDeniedException" in e["message"] for e in events)
    assert local_aws_batch.requests.count("describejobs") == 0  # one call, the injected fault, for all three


def test_a_failed_describe_jobs_call_fails_only_the_runs_it_covered(local_aws_batch, polysync_aws_conn):
    jobs = submit_aws(polysync_aws_conn, 101, seconds=1.0)  # two DescribeJobs calls per read: 100 ids and 1
    denied = {"__type": "AccessDeniedException", "message": "injected AccessDeniedException"}
    local_aws_batch.fail_next(
        "POST", "/v1/describejobs", Response.json(403, denied, **{"x-amzn-ErrorType": "AccessDeniedException"})
    )
    events = asyncio.run(run_all([aws_trigger(polysync_aws_conn, job) for job in jobs], timeout=120))
    failed = [e for e in events if e["status"] == "Failed"]
    assert failed and all("AccessDeniedException" in e["message"] for e in failed)
    assert len(failed) <= 100 and {e["status"] for e in events if e not in failed} == {"Success"}


def test_one_runs_failed_task_read_fails_only_that_run(local_azure_batch, polysync_azure_conn):
    runs = submit_azure(polysync_azure_conn, 3)
    denied = {"code": "AuthorizationFailure", "message": {"lang": "en-US", "value": "injected AuthorizationFailure"}}
    job_id = runs[0].split("/")[0]
    local_azure_batch.fail_next("GET", rf"^/jobs/{job_id}/tasks/polysync$", Response.json(403, denied))
    triggers = [
        AzureBatchJobTrigger(run_id=run_id, azure_batch_conn_id=polysync_azure_conn, poll_interval=POLL)
        for run_id in runs
    ]
    events = asyncio.run(run_all(triggers))
    assert [e["status"] for e in events] == ["Failed", "Success", "Success"]
    assert "AuthorizationFailure" in events[0]["message"]


def test_azure_runs_ending_in_the_same_interval_cost_a_listing_not_a_read_each(local_azure_batch, polysync_azure_conn):
    runs = submit_azure(polysync_azure_conn, 6, seconds=2, exit_code=lambda i: i % 2)
    local_azure_batch.requests.clear()
    triggers = [
        AzureBatchJobTrigger(run_id=run_id, azure_batch_conn_id=polysync_azure_conn, poll_interval=POLL)
        for run_id in runs
    ]
    events = asyncio.run(run_all(triggers))
    assert [(e["status"], e["exit_code"]) for e in events] == [("Success", 0), ("Failed", 1)] * 3
    listings = local_azure_batch.requests.count("GET /jobs")
    task_reads = sum(r.endswith("/tasks/polysync") and r.startswith("GET") for r in local_azure_batch.requests)
    # each run's task is read while it starts and once when its job completes, not at every poll
    assert listings >= 4 and task_reads <= 6 * 4 < 6 * listings, (listings, task_reads)


def test_runs_that_join_apart_are_read_together_from_their_second_read(local_aws_batch, polysync_aws_conn):
    """Tasks defer one after another on a busy deployment: their runs join the poller seconds apart, yet
    cost one DescribeJobs call per interval once each has had its first read."""
    jobs = submit_aws(polysync_aws_conn, 12, seconds=8.0)
    interval = 1.0

    async def scenario():
        triggers = []
        for group in range(4):  # four groups 0.4 s apart: further apart than the slack (0.25 s)
            for job in jobs[3 * group : 3 * group + 3]:
                triggers.append(asyncio.ensure_future(first_event(aws_trigger(polysync_aws_conn, job, interval))))
            await asyncio.sleep(0.4)
        await asyncio.sleep(interval)  # every run has been read twice: the second time on the beat
        before = local_aws_batch.requests.count("describejobs")
        await asyncio.sleep(3 * interval)
        steady = local_aws_batch.requests.count("describejobs") - before
        return steady, await asyncio.wait_for(asyncio.gather(*triggers), 60)

    steady, events = asyncio.run(scenario())
    assert {e["status"] for e in events} == {"Success"}
    assert steady <= 3 + 1, steady  # one call per interval (three intervals can hold four beats)


@pytest.mark.parametrize("airflow", ["3.3", "3.1-3.2"])
def test_watching_costs_no_write_per_run_where_airflow_records_the_ownership(
    airflow, local_aws_batch, polysync_aws_conn, local_azure_batch, polysync_azure_conn
):
    """On Airflow 3.3 the operator records which try watches a job in the task_state_store and defers with
    ``mark_watched=False``: no TagResource (AWS) or job update (Azure) per run. On 3.1 and 3.2, one per run."""
    on_33 = airflow == "3.3"
    runs = 8
    aws_jobs = submit_aws(polysync_aws_conn, runs, seconds=1.5)
    azure_runs = submit_azure(polysync_azure_conn, runs, seconds=1.5)
    local_aws_batch.requests.clear()
    local_azure_batch.requests.clear()
    settings = {"poll_interval": POLL, "unknown_grace_period": 5, "mark_watched": not on_33}
    triggers = [
        *(AwsBatchJobTrigger(job_id=job, aws_conn_id=polysync_aws_conn, **settings) for job in aws_jobs),
        *(
            AzureBatchJobTrigger(run_id=run_id, azure_batch_conn_id=polysync_azure_conn, **settings)
            for run_id in azure_runs
        ),
    ]
    events = asyncio.run(run_all(triggers))
    assert {e["status"] for e in events} == {"Success"}
    tag_writes = local_aws_batch.requests.count("tagresource")
    metadata_writes = sum(r.startswith("PATCH /jobs/") for r in local_azure_batch.requests)
    if on_33:
        assert (tag_writes, metadata_writes) == (0, 0)
    else:  # one mark per run that a poll saw running (a loaded machine may see a short job ended first)
        assert 0 < tag_writes <= runs and 0 < metadata_writes <= runs, (tag_writes, metadata_writes)
    # stored only when off, so that a trigger row written before the setting existed loads as it was
    assert triggers[0].serialize()[1].get("mark_watched", True) is not on_33
