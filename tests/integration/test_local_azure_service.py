"""The local Azure Batch service itself, driven by the real azure-batch SDK (sync and aio)."""

from __future__ import annotations

import asyncio
import time

import pytest
from azure.batch import BatchClient, models
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from polysync_airflow.testing.azure_batch import DEFAULT_KEY, shared_key_signature, string_to_sign


@pytest.fixture
def client(local_azure_batch):
    return BatchClient(
        local_azure_batch.url, AzureNamedKeyCredential(local_azure_batch.account, local_azure_batch.key), retry_total=0
    )


def new_job(client, job_id, mode="noaction", pool="polysync-pool"):
    client.create_job(
        models.BatchJobCreateOptions({"id": job_id, "poolInfo": {"poolId": pool}, "onAllTasksComplete": mode})
    )


def add_task(client, job_id, command="/bin/sh -c 'echo out; echo err >&2; exit 0'", **env):
    settings = [{"name": k, "value": v} for k, v in env.items()]
    client.create_task(
        job_id, models.BatchTaskCreateOptions({"id": "t", "commandLine": command, "environmentSettings": settings})
    )


def wait_task(client, job_id, state="completed", timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.get_task(job_id, "t")
        if task.state == state:
            return task
        time.sleep(0.02)
    raise AssertionError(f"task of {job_id} never reached {state}")


def test_the_string_to_sign_matches_the_documented_example():
    headers = {"ocp-date": "Sun, 22 Nov 2026 02:54:38 GMT"}
    assert string_to_sign(
        "GET", "/jobs?api-version=2025-06-01&maxresults=3&$select=id,displayName,state", headers, "devacct"
    ) == (
        "GET\n\n\n\n\n\n\n\n\n\n\n\nocp-date:Sun, 22 Nov 2026 02:54:38 GMT\n/devacct/jobs"
        "\n$select:id,displayName,state\napi-version:2025-06-01\nmaxresults:3"
    )


def test_signatures_are_the_sdks(local_azure_batch):
    """Sign a request with the SDK's own policy and verify it with ours."""
    from azure.batch._patch import BatchSharedKeyAuthPolicy
    from azure.core.pipeline import PipelineRequest
    from azure.core.pipeline.transport import HttpRequest

    request = HttpRequest(
        "POST",
        f"{local_azure_batch.url}/jobs/j/terminate?api-version=2025-06-01&force=true",
        headers={"Content-Type": "application/json; odata=minimalmetadata", "Content-Length": "2"},
    )
    policy = BatchSharedKeyAuthPolicy(AzureNamedKeyCredential("polysyncdev", DEFAULT_KEY))
    pipeline_request = PipelineRequest(request, None)  # type: ignore[arg-type]
    policy.on_request(pipeline_request)
    expected = shared_key_signature(
        DEFAULT_KEY,
        string_to_sign(
            "POST", "/jobs/j/terminate?api-version=2025-06-01&force=true", dict(request.headers), "polysyncdev"
        ),
    )
    assert request.headers["Authorization"] == f"SharedKey polysyncdev:{expected}"


def test_a_wrong_key_gets_403_authentication_failed(local_azure_batch):
    bad = BatchClient(
        local_azure_batch.url, AzureNamedKeyCredential(local_azure_batch.account, "d3Jvbmc="), retry_total=0
    )
    with pytest.raises(HttpResponseError) as err:
        bad.get_job("polysync-template")
    assert (err.value.status_code, err.value.error.code) == (403, "AuthenticationFailed")


def test_errors_use_azures_top_level_body(client):
    with pytest.raises(ResourceNotFoundError) as err:
        client.get_job("nope")
    assert err.value.error.code == "JobNotFound"
    assert str(err.value).startswith("(JobNotFound) The specified job does not exist.")
    with pytest.raises(ResourceNotFoundError) as err:
        client.get_pool("nope")
    assert err.value.error.code == "PoolNotFound"
    new_job(client, "dup")
    with pytest.raises(ResourceExistsError) as err:
        new_job(client, "DUP")  # ids are case-insensitive
    assert err.value.error.code == "JobExists"
    with pytest.raises(HttpResponseError) as err:
        new_job(client, "bad id")
    assert err.value.error.code == "InvalidPropertyValue"


def test_a_job_created_with_terminatejob_and_no_tasks_completes_at_once(client):
    new_job(client, "early", mode="terminatejob")
    job = client.get_job("early")
    assert (job.state, job.execution_info.termination_reason) == ("completed", "AllTasksComplete")
    with pytest.raises(ResourceExistsError) as err:
        add_task(client, "early")
    assert err.value.error.code == "JobCompleted"


def test_noaction_then_terminatejob_ends_the_job_with_its_task(client, local_azure_batch):
    new_job(client, "flow")
    add_task(client, "flow", command="/bin/sh -c 'echo $GREETING; echo oops >&2; exit 4'", GREETING="hi")
    client.update_job("flow", models.BatchJobUpdateOptions({"onAllTasksComplete": "terminatejob"}))
    task = wait_task(client, "flow")
    assert (task.execution_info.exit_code, task.execution_info.result) == (4, "failure")
    assert task.execution_info.failure_info.code == "FailureExitCode"
    job = local_azure_batch.wait_for_job("flow")
    assert job.terminate_reason == "AllTasksComplete"
    with pytest.raises(HttpResponseError) as err:  # terminatejob -> noaction is not allowed
        client.update_job("flow", models.BatchJobUpdateOptions({"onAllTasksComplete": "noaction"}))
    assert err.value.error.code in ("JobCompleted", "InvalidPropertyValue")
    assert b"".join(client.download_task_file("flow", "t", "stdout.txt")) == b"hi\n"
    assert b"".join(client.download_task_file("flow", "t", "stderr.txt", ocp_range="bytes=1-2")) == b"op"
    assert client.get_task_file_properties("flow", "t", "stderr.txt").content_length == 5


def test_task_files_can_be_denied_or_missing(client, local_azure_batch):
    new_job(client, "files")
    add_task(client, "files")
    wait_task(client, "files")
    local_azure_batch.denied_files.add("stdout.txt")
    local_azure_batch.missing_files.add("stderr.txt")
    for read in (client.get_task_file_properties, lambda *a: b"".join(client.download_task_file(*a))):
        with pytest.raises(HttpResponseError) as denied:
            read("files", "t", "stdout.txt")
        assert denied.value.status_code == 403 and not isinstance(denied.value, ResourceNotFoundError)
        with pytest.raises(ResourceNotFoundError):
            read("files", "t", "stderr.txt")
    local_azure_batch.denied_files.clear()
    local_azure_batch.missing_files.clear()
    assert b"".join(client.download_task_file("files", "t", "stdout.txt")) == b"out\n"
    assert b"".join(client.download_task_file("files", "t", "stderr.txt")) == b"err\n"


def test_a_missing_pool_keeps_the_task_active_with_a_scheduling_error(client):
    new_job(client, "orphan", pool="no-such-pool")  # accepted, as Azure accepts it
    add_task(client, "orphan")
    time.sleep(0.3)
    assert client.get_task("orphan", "t").state == "active"
    error = client.get_job("orphan").execution_info.scheduling_error
    assert error.code == "PoolNotFound" and "no-such-pool" in error.message


def test_terminate_kills_the_process_and_ends_the_job(client, local_azure_batch):
    new_job(client, "long")
    add_task(client, "long", command="/bin/sh -c 'sleep 60'")
    wait_task(client, "long", state="running")
    client.terminate_task("long", "t")
    assert client.get_task("long", "t").execution_info.failure_info.code == "TaskEnded"
    client.begin_terminate_job("long", {"terminateReason": "Cancelled by Polysync"}, polling_interval=0).result()
    job = client.get_job("long")
    assert (job.state, job.execution_info.termination_reason) == ("completed", "Cancelled by Polysync")
    with pytest.raises(ResourceExistsError):
        client.begin_terminate_job("long", {"terminateReason": "again"}, polling_interval=0)


def test_the_aio_client_works_too(local_azure_batch):
    from azure.batch.aio import BatchClient as AsyncBatchClient

    async def go():
        credential = AzureNamedKeyCredential(local_azure_batch.account, local_azure_batch.key)
        async with AsyncBatchClient(local_azure_batch.url, credential) as aio:
            await aio.create_job(models.BatchJobCreateOptions({"id": "aio", "poolInfo": {"poolId": "polysync-pool"}}))
            await aio.create_task(
                "aio", models.BatchTaskCreateOptions({"id": "t", "commandLine": "/bin/sh -c 'exit 0'"})
            )
            ids = [job.id async for job in aio.list_jobs(select=["id"], max_results=2)]
            while (await aio.get_task("aio", "t")).state != "completed":
                await asyncio.sleep(0.02)
            return ids

    assert "aio" in asyncio.run(go())
