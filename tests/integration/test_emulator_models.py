"""The emulators' models on their own, without HTTP: the state, rules and life cycles their endpoints serve."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from polysync_airflow.testing import LocalAwsBatch, LocalAzureBatch
from polysync_airflow.testing.aws_batch_model import AwsBatchModel, ClientException
from polysync_airflow.testing.azure_batch_model import AzureBatchModel, BatchError


@pytest.fixture
def aws() -> Iterator[AwsBatchModel]:
    model = AwsBatchModel(step_seconds=0.01)
    model.add_job_queue("q")
    model.register_job_definition(
        {"jobDefinitionName": "echo", "containerProperties": {"command": ["/bin/sh", "-c", "echo Ref::word"]}}
    )
    yield model
    model.shutdown()


@pytest.fixture
def azure() -> Iterator[AzureBatchModel]:
    model = AzureBatchModel(step_seconds=0.01)
    model.load_seed({"pools": [{"id": "pool"}]})
    yield model
    model.shutdown()


def test_an_aws_job_runs_to_its_end_and_its_output_is_a_log_stream(aws):
    job = aws.submit_job({"jobName": "j", "jobQueue": "q", "jobDefinition": "echo", "parameters": {"word": "hi"}})

    done = aws.wait_for_job(job.job_id)

    assert (done.status, done.exit_code, done.describe()["statusReason"]) == (
        "SUCCEEDED",
        0,
        "Essential container in task exited",
    )
    assert [event["message"] for event in aws.log_events("/aws/batch/job", job.log_stream_name)] == ["hi"]


def test_aws_rules_raise_with_aws_messages(aws):
    with pytest.raises(ClientException, match="Job name should be 1-128 characters long"):
        aws.submit_job({"jobName": "-no", "jobQueue": "q", "jobDefinition": "echo"})
    aws.deregister_job_definition({"jobDefinition": "echo:1"})
    with pytest.raises(ClientException, match="Job definition echo:1 is INACTIVE"):
        aws.submit_job({"jobName": "j", "jobQueue": "q", "jobDefinition": "echo:1"})
    assert aws.jobs == {}


def test_an_azure_task_runs_and_its_job_completes_when_all_tasks_have(azure):
    job = azure.add_job({"id": "j", "poolInfo": {"poolId": "pool"}})
    azure.create_task(job, {"id": "t", "commandLine": "/bin/sh -c 'exit 3'"})
    azure.update_job(job, {"onAllTasksComplete": "terminatejob"}, replace=False)

    done = azure.wait_for_job("J")  # ids are case-insensitive

    assert (done.state, done.terminate_reason) == ("completed", "AllTasksComplete")
    assert done.tasks["t"].describe("j")["executionInfo"]["failureInfo"]["code"] == "FailureExitCode"


def test_azure_rules_raise_with_azure_codes(azure):
    azure.create_job({"id": "j", "poolInfo": {"poolId": "pool"}})
    with pytest.raises(BatchError) as exists:
        azure.create_job({"id": "J", "poolInfo": {"poolId": "pool"}})
    with pytest.raises(BatchError) as missing:
        azure.create_task(azure.job("j"), {"id": "t"})
    assert [(e.value.status, e.value.code, e.value.values) for e in (exists, missing)] == [
        (409, "JobExists", {}),
        (400, "MissingRequiredProperty", {"PropertyName": "commandLine"}),
    ]


@pytest.mark.parametrize("endpoint_class", [LocalAwsBatch, LocalAzureBatch])
def test_the_endpoints_attributes_are_their_models(endpoint_class):
    endpoint = endpoint_class(step_seconds=0.5)
    try:
        endpoint.step_seconds = 0.01
        assert (endpoint.model.step_seconds, endpoint.jobs is endpoint.model.jobs) == (0.01, True)
    finally:
        endpoint.model.shutdown()
