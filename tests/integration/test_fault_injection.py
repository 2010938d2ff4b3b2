"""200 runs (AWS and Azure mixed) watched through a proxy that faults 30 % of the requests.

The jobs are submitted (and a third of them cancelled) directly on the local endpoints; only the
triggers' polling goes through :class:`~polysync_airflow.testing.fault_proxy.FaultProxy`, which answers a
seeded 30 % of the requests with throttling, 500, 503, connection resets or delays. All 200 triggers run
concurrently in one event loop, as in the triggerer, with the SDKs' own retries off, so the faults reach
the product's retry logic. Each trigger must fire exactly one event whose status is the one the endpoint
recorded: no false failure, no hang. ``POLYSYNC_FAULT_SEED=<int>`` runs it with another seed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import azure.batch.aio
import boto3
import pytest
from azure.batch import BatchClient, models
from azure.core.credentials import AzureNamedKeyCredential

from polysync_airflow.testing import FaultProxy, LocalAwsBatch, LocalAzureBatch, LocalJobRunner
from polysync_airflow.testing.connections import aws_connection_env, azure_connection_env
from polysync_airflow.testing.fault_proxy import FAULT_KINDS
from polysync_airflow.triggers.aws_batch import AwsBatchJobTrigger
from polysync_airflow.triggers.azure_batch import AzureBatchJobTrigger

SEED = int(os.environ.get("POLYSYNC_FAULT_SEED", "20260512"))
RUNS_PER_PLATFORM = 100
FAULT_RATE = 0.3
POLL_INTERVAL = 0.05  # also the base of the product's backoff after a failed poll
# A trigger still polling after this hangs. A healthy one can take long only through a streak of failed
# polls (backoff 0.05 s doubling to 60 s): 13 in a row, about 3 minutes, is a one-in-thousands event.
HANG_TIMEOUT = 300.0
USER_REASON = "Cancelled by the fault-injection test"
OUTCOMES = ("Success", "Failed", "Cancelled")


class GatedRunner(LocalJobRunner):
    """Jobs show RUNNING at once but start their process only once ``gate`` is set.

    Opening 200 clients takes the triggers several seconds; the gate opens once every trigger has polled
    its run, so that the runs end (and are cancelled) while they are being watched.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def run_process(self, key: str, *args: Any, **kwargs: Any) -> Any:
        self.gate.wait()  # set at the latest when the test ends
        return super().run_process(key, *args, **kwargs)


class _NoRetryBatchClient(azure.batch.aio.BatchClient):
    """The aio client the Azure hook builds, with azure-core's retries off (the hook has no setting for it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, retry_total=0, **kwargs)


def plan_runs(rng: random.Random) -> list[dict[str, Any]]:
    """Per platform, a third each of jobs that succeed, fail (exit 1-9) and are cancelled while they run."""
    return [
        {
            "platform": platform,
            "planned": OUTCOMES[i % 3],
            "seconds": 30 if OUTCOMES[i % 3] == "Cancelled" else round(rng.uniform(0.3, 3.0), 2),
            "exit_code": rng.randint(1, 9) if OUTCOMES[i % 3] == "Failed" else 0,
            "cancel_after": round(rng.uniform(0.3, 3.0), 2),  # seconds after the jobs start
            "cancel_job": rng.random() < 0.5,  # Azure: terminate the job rather than the task
        }
        for platform in ("aws", "azure")
        for i in range(RUNS_PER_PLATFORM)
    ]


class Direct:
    """Submits, cancels and inspects runs on the endpoints themselves, never through the proxy."""

    def __init__(self, aws: LocalAwsBatch, azure_batch: LocalAzureBatch) -> None:
        self.aws_endpoint, self.azure_endpoint = aws, azure_batch
        self.aws = boto3.client(
            "batch",
            endpoint_url=aws.url,
            region_name=aws.region,
            aws_access_key_id="local-access-key",
            aws_secret_access_key="local-secret-key",
        )
        credential = AzureNamedKeyCredential(azure_batch.account, azure_batch.key)
        self.azure = BatchClient(azure_batch.url, credential, retry_total=0)

    def submit(self, run: dict[str, Any], index: int) -> None:
        if run["platform"] == "aws":
            parameters = {"seconds": str(run["seconds"]), "exit_code": str(run["exit_code"])}
            run["run_id"] = self.aws.submit_job(
                jobName=f"polysync-fault-{index}",
                jobQueue="polysync-default",
                jobDefinition="polysync-job",
                parameters=parameters,
            )["jobId"]
            return
        # As the operator does: a noaction job, its one task, then terminatejob.
        job_id = f"polysync-fault-{SEED}-{index}"
        self.azure.create_job(models.BatchJobCreateOptions({"id": job_id, "poolInfo": {"poolId": "polysync-pool"}}))
        command = f"/bin/sh -c 'sleep {run['seconds']}; exit {run['exit_code']}'"
        self.azure.create_task(job_id, models.BatchTaskCreateOptions({"id": "polysync", "commandLine": command}))
        self.azure.update_job(job_id, models.BatchJobUpdateOptions({"onAllTasksComplete": "terminatejob"}))
        run["run_id"] = f"{job_id}/polysync"

    def cancel(self, run: dict[str, Any]) -> None:
        job_id = run["run_id"].split("/")[0]
        if run["platform"] == "aws":
            self.aws.terminate_job(jobId=job_id, reason=USER_REASON)
        elif run["cancel_job"]:
            self.azure.begin_terminate_job(job_id, {"terminateReason": USER_REASON}, polling_interval=0).wait()
        else:
            self.azure.terminate_task(job_id, "polysync")

    def all_polled(self, runs: list[dict[str, Any]]) -> bool:
        """Has every run's status been read at least once (through the proxy)?"""
        azure_reads = set(self.azure_endpoint.requests)
        return all(
            self.aws_endpoint.describe_counts[run["run_id"]] > 0
            if run["platform"] == "aws"
            else f"GET /jobs/{run['run_id'].replace('/', '/tasks/')}" in azure_reads
            for run in runs
        )

    def real_status(self, run: dict[str, Any]) -> tuple[str, int | None]:
        """The run's outcome and exit code as the endpoint recorded them."""
        if run["platform"] == "aws":
            job = self.aws_endpoint.wait_for_job(run["run_id"], timeout=10)
            if job.status == "SUCCEEDED":
                return "Success", job.exit_code
            return ("Cancelled" if job.status_reason == USER_REASON else "Failed"), job.exit_code
        job_id, task_id = run["run_id"].split("/")
        job = self.azure_endpoint.wait_for_job(job_id, timeout=10)
        task = job.tasks[task_id]
        if (task.failure_info or {}).get("code") == "TaskEnded" or job.terminate_reason == USER_REASON:
            return "Cancelled", task.exit_code
        return ("Success" if task.exit_code == 0 else "Failed"), task.exit_code


def make_trigger(run: dict[str, Any]) -> AwsBatchJobTrigger | AzureBatchJobTrigger:
    if run["platform"] == "aws":
        return AwsBatchJobTrigger(job_id=run["run_id"], aws_conn_id="aws_faulty", poll_interval=POLL_INTERVAL)
    return AzureBatchJobTrigger(run_id=run["run_id"], azure_batch_conn_id="azure_faulty", poll_interval=POLL_INTERVAL)


async def all_events(trigger: AwsBatchJobTrigger | AzureBatchJobTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


async def triggerer(runs: list[dict[str, Any]], direct: Direct, gate: threading.Event) -> dict[str, Any]:
    """Run every trigger in this one loop; start the jobs once all are watched, then cancel a third."""
    started = time.monotonic()
    tasks = [asyncio.create_task(all_events(make_trigger(run)), name=run["run_id"]) for run in runs]

    async def start_then_cancel() -> float:
        while not direct.all_polled(runs) and time.monotonic() - started < 60:
            await asyncio.sleep(0.1)
        gate.set()
        opened = time.monotonic()

        async def cancel_later(run: dict[str, Any]) -> None:
            await asyncio.sleep(run["cancel_after"])
            await asyncio.to_thread(direct.cancel, run)

        await asyncio.gather(*(cancel_later(run) for run in runs if run["planned"] == "Cancelled"))
        return opened

    driver = asyncio.create_task(start_then_cancel())
    done, pending = await asyncio.wait(tasks, timeout=HANG_TIMEOUT)
    opened = await driver
    return {
        "events": {
            task.get_name(): task.result() if task.exception() is None else [{"status": f"{task.exception()!r}"}]
            for task in done
        },
        "hung": sorted(task.get_name() for task in pending),
        "watched_after": opened - started,
        "ended_after": time.monotonic() - opened,
    }


@pytest.fixture
def gated_endpoints() -> Iterator[tuple[GatedRunner, LocalAwsBatch, LocalAzureBatch]]:
    runner = GatedRunner()
    try:
        with (
            LocalAwsBatch(step_seconds=0.05, runner=runner) as aws,
            LocalAzureBatch(step_seconds=0.05, runner=runner) as azure_batch,
        ):
            yield runner, aws, azure_batch
    finally:
        runner.gate.set()
        runner.shutdown()


def test_200_runs_through_a_faulty_network_end_with_their_real_status(gated_endpoints, monkeypatch, capsys, caplog):
    runner, aws, azure_batch = gated_endpoints
    caplog.set_level("WARNING", logger="azure")  # azure-core logs every request and answer at INFO
    runs = plan_runs(random.Random(SEED))
    direct = Direct(aws, azure_batch)
    for index, run in enumerate(runs):
        direct.submit(run, index)

    with (
        FaultProxy(aws.url, fault_rate=FAULT_RATE, seed=SEED, delay=0.3) as aws_proxy,
        FaultProxy(azure_batch.url, fault_rate=FAULT_RATE, seed=SEED + 1, delay=0.3) as azure_proxy,
    ):
        no_retries = {"retries": {"total_max_attempts": 1}}  # botocore: one attempt per call
        env = {
            **aws_connection_env("aws_faulty", aws, endpoint_url=aws_proxy.url, config_kwargs=no_retries),
            **azure_connection_env("azure_faulty", azure_batch, account_url=azure_proxy.url),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(azure.batch.aio, "BatchClient", _NoRetryBatchClient)
        result = asyncio.run(triggerer(runs, direct, runner.gate))
        counts = {"AWS": aws_proxy.counts.copy(), "Azure": azure_proxy.counts.copy()}

    outcomes: Counter[str] = Counter()
    mismatches = []
    for run in runs:
        got = result["events"].get(run["run_id"])
        if got is None:
            continue  # hung
        real, exit_code = direct.real_status(run)
        outcomes[f"{run['platform']} {real}"] += 1
        event = got[0]
        if (
            len(got) != 1
            or event["status"] != real
            or (real != "Cancelled" and event.get("exit_code") != exit_code)
            or real != run["planned"]
        ):
            mismatches.append({"run": run, "events": got, "real": real, "real_exit_code": exit_code})
    false_failures = [m for m in mismatches if any(e.get("status") == "Failed" for e in m["events"])]
    requests = sum(c["requests"] for c in counts.values())
    faults = requests - sum(c["passed"] for c in counts.values())

    capsys.readouterr()  # drop the 200 triggers' logs (status timelines, first failures)
    with capsys.disabled():
        print(
            f"\nfault injection, seed {SEED}: {len(runs)} runs; all watched after {result['watched_after']:.1f} s, "
            f"all ended {result['ended_after']:.1f} s after their jobs started\n"
            f"  requests: {requests}, faulted: {faults} ({faults / requests:.1%})\n"
            + "".join(f"  {name} proxy: {dict(sorted(c.items()))}\n" for name, c in counts.items())
            + f"  outcomes: {dict(sorted(outcomes.items()))}\n"
            f"  mismatches: {len(mismatches)}, false failures: {len(false_failures)}, hangs: {len(result['hung'])}"
        )
        for mismatch in mismatches[:5]:
            print(json.dumps(mismatch, default=str))

    assert result["hung"] == [], f"{len(result['hung'])} triggers never fired"
    assert false_failures == []
    assert mismatches == []
    assert sum(outcomes.values()) == len(runs)
    assert outcomes == {f"{p} {o}": 34 if o == "Success" else 33 for p in ("aws", "azure") for o in OUTCOMES}
    # the shared pollers read 100 AWS jobs per call, so most requests are Azure's; every kind still occurs
    assert requests > 500 and 0.25 <= faults / requests <= 0.35
    assert all(sum(c[kind] for c in counts.values()) > 0 for kind in FAULT_KINDS), counts


def test_the_proxy_is_reproducible_relays_faithfully_and_never_resends_a_submission(local_aws_batch):
    def fates(seed: int) -> list[str | None]:
        proxy = FaultProxy(local_aws_batch.url, seed=seed)
        return [proxy.decide("POST", "/v1/submitjob", {"X-Amz-Date": "20260101T000000Z"})[0] for _ in range(2000)]

    assert fates(1) == fates(1) != fates(2)
    assert "reset_after" not in fates(1)  # a submission is never forwarded and then dropped
    assert 0.27 < sum(fate is not None for fate in fates(1)) / 2000 < 0.33

    with FaultProxy(local_aws_batch.url, fault_rate=0.0) as proxy:
        client = boto3.client(
            "batch", endpoint_url=proxy.url, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
        )
        queues = client.describe_job_queues()["jobQueues"]
        with pytest.raises(client.exceptions.ClientException, match="Job queue nope does not exist"):
            client.submit_job(jobName="x", jobQueue="nope", jobDefinition="polysync-job")
    assert [queue["jobQueueName"] for queue in queues] == ["polysync-default", "polysync-fairshare"]
    assert proxy.counts == {"requests": 2, "passed": 2}
