"""The local AWS Batch endpoint itself, driven by boto3 as users' tests would."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.exceptions import ClientError

from polysync_airflow.testing import LocalAwsBatch


@pytest.fixture
def batch(local_aws_batch):
    return boto3.client(
        "batch",
        endpoint_url=local_aws_batch.url,
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
    )


def submit(batch, queue="polysync-default", **kwargs):
    params = kwargs.pop("parameters", {})
    return batch.submit_job(
        jobName="Polysync-t",
        jobDefinition=kwargs.pop("jobDefinition", "polysync-job"),
        jobQueue=queue,
        parameters=params,
        **kwargs,
    )["jobId"]


def watch_statuses(batch, job_id, timeout=20.0):
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = batch.describe_jobs(jobs=[job_id])["jobs"][0]
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return seen, job
        time.sleep(0.005)
    raise AssertionError(f"{job_id} did not finish: {seen}")


def test_a_job_walks_the_aws_status_sequence(batch, local_aws_batch):
    local_aws_batch.step_seconds = 0.1
    seen, job = watch_statuses(batch, submit(batch, parameters={"seconds": "0.3"}))
    assert seen == ["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]
    assert job["statusReason"] == "Essential container in task exited"
    assert job["container"]["exitCode"] == 0
    assert job["startedAt"] <= job["stoppedAt"]


def test_real_exit_code_and_ref_substitution(batch, local_aws_batch):
    job_id = submit(batch, parameters={"exit_code": "4", "message": "from Ref", "seconds": "0"})
    _, job = watch_statuses(batch, job_id)
    assert (job["status"], job["container"]["exitCode"], job["attempts"][-1]["container"]["exitCode"]) == (
        "FAILED",
        4,
        4,
    )
    assert local_aws_batch.job_output(job_id) == ("from Ref\n", "failing with exit code 4\n")
    assert job["container"]["command"][-1].startswith('echo "from Ref"')


def test_terminate_kills_the_running_process(batch, local_aws_batch):
    job_id = submit(batch, parameters={"seconds": "60"})
    while batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"] != "RUNNING":
        time.sleep(0.01)
    started = time.monotonic()
    batch.terminate_job(jobId=job_id, reason="Cancelled by Polysync")
    _, job = watch_statuses(batch, job_id)
    assert time.monotonic() - started < 5
    assert (job["status"], job["statusReason"], job["container"]["exitCode"]) == (
        "FAILED",
        "Cancelled by Polysync",
        143,
    )


def test_terminate_of_a_finished_job_changes_nothing(batch):
    job_id = submit(batch, parameters={"seconds": "0"})
    _, before = watch_statuses(batch, job_id)
    batch.terminate_job(jobId=job_id, reason="late")
    after = batch.describe_jobs(jobs=[job_id])["jobs"][0]
    assert (after["status"], after["statusReason"]) == (before["status"], before["statusReason"])


def test_array_jobs_run_children_and_report_the_status_summary(batch, local_aws_batch):
    job_id = submit(batch, parameters={"seconds": "0"}, arrayProperties={"size": 5})
    _, parent = watch_statuses(batch, job_id)
    assert parent["status"] == "SUCCEEDED"
    assert parent["arrayProperties"]["size"] == 5
    assert parent["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 5
    child = batch.describe_jobs(jobs=[f"{job_id}:3"])["jobs"][0]
    assert child["arrayProperties"] == {"index": 3} and child["status"] == "SUCCEEDED"
    children = batch.list_jobs(arrayJobId=job_id, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert sorted(c["arrayProperties"]["index"] for c in children) == [0, 1, 2, 3, 4]


def test_an_array_job_with_a_failing_child_fails(batch):
    job_id = submit(batch, parameters={"seconds": "0", "exit_code": "2"}, arrayProperties={"size": 2})
    _, parent = watch_statuses(batch, job_id)
    assert parent["status"] == "FAILED"
    assert parent["arrayProperties"]["statusSummary"]["FAILED"] == 2


def test_list_jobs_of_an_array_by_status_as_aws_answers(batch):
    job_id = submit(batch, parameters={"seconds": "0"}, arrayProperties={"size": 3})
    watch_statuses(batch, job_id)
    listed = batch.list_jobs(arrayJobId=job_id, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert sorted(c["jobId"] for c in listed) == [f"{job_id}:{i}" for i in range(3)]
    assert {c["status"] for c in listed} == {"SUCCEEDED"} and all("container" in c for c in listed)
    assert batch.list_jobs(arrayJobId=job_id, jobStatus="FAILED")["jobSummaryList"] == []
    assert batch.list_jobs(arrayJobId=job_id)["jobSummaryList"] == []  # no status: only RUNNING children
    # Filters don't apply to the children of an array job: the status still does.
    no_match = [{"name": "JOB_NAME", "values": ["no-such-name"]}]
    filtered = batch.list_jobs(arrayJobId=job_id, jobStatus="SUCCEEDED", filters=no_match)["jobSummaryList"]
    assert len(filtered) == 3
    pages = list(
        batch.get_paginator("list_jobs").paginate(
            arrayJobId=job_id, jobStatus="SUCCEEDED", PaginationConfig={"PageSize": 2}
        )
    )
    assert [len(p["jobSummaryList"]) for p in pages] == [2, 1]
    with pytest.raises(ClientError) as err:
        batch.list_jobs(arrayJobId=job_id, jobStatus="DONE")
    assert err.value.response["Error"]["Code"] == "ClientException"
    with pytest.raises(ClientError) as err:
        batch.list_jobs(arrayJobId=job_id, jobQueue="polysync-default", jobStatus="SUCCEEDED")
    assert err.value.response["Error"]["Code"] == "ClientException"


def test_attempt_duration_timeout_and_retry_attempts(batch):
    # the endpoint enforces the timeout (AWS's minimum of 60 s is the operator's rule, not the endpoint's)
    _, job = watch_statuses(batch, submit(batch, parameters={"seconds": "30"}, timeout={"attemptDurationSeconds": 1}))
    assert (job["status"], job["statusReason"]) == ("FAILED", "Job attempt duration exceeded timeout")
    _, job = watch_statuses(
        batch, submit(batch, parameters={"seconds": "0", "exit_code": "1"}, retryStrategy={"attempts": 3})
    )
    assert job["status"] == "FAILED" and len(job["attempts"]) == 3


def test_depends_on_waits_and_propagates_failure(batch):
    failing = submit(batch, parameters={"seconds": "0.2", "exit_code": "1"})
    dependent = submit(batch, parameters={"seconds": "0"}, dependsOn=[{"jobId": failing}])
    _, job = watch_statuses(batch, dependent)
    assert (job["status"], job["statusReason"]) == ("FAILED", "Dependent Job failed")
    assert job["attempts"] == []


def test_fair_share_queues_require_a_share_identifier(batch):
    with pytest.raises(ClientError) as err:
        submit(batch, queue="polysync-fairshare")
    assert err.value.response["Error"]["Code"] == "ClientException"
    assert "Share identifier is required" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError, match="not allowed"):
        submit(batch, shareIdentifier="teamA")
    assert submit(batch, queue="polysync-fairshare", shareIdentifier="teamA")


def test_every_submit_field_is_stored(batch):
    job_id = submit(
        batch,
        queue="polysync-fairshare",
        shareIdentifier="teamA",
        schedulingPriorityOverride=7,
        timeout={"attemptDurationSeconds": 90},
        retryStrategy={"attempts": 2},
        tags={"k": "v"},
        propagateTags=True,
        dependsOn=[{"jobId": "other", "type": "N_TO_N"}],
        parameters={"seconds": "0"},
    )
    job = batch.describe_jobs(jobs=[job_id])["jobs"][0]
    assert (job["shareIdentifier"], job["schedulingPriority"], job["timeout"], job["retryStrategy"]) == (
        "teamA",
        7,
        {"attemptDurationSeconds": 90},
        {"attempts": 2},
    )
    assert (job["tags"], job["propagateTags"], job["dependsOn"]) == (
        {"k": "v"},
        True,
        [{"jobId": "other", "type": "N_TO_N"}],
    )


def test_list_jobs_paginates_and_filters_by_name(batch, local_aws_batch):
    ids = [submit(batch, parameters={"seconds": "0"}) for _ in range(5)]
    for job_id in ids:
        local_aws_batch.wait_for_job(job_id)
    pages = list(
        batch.get_paginator("list_jobs").paginate(
            jobQueue="polysync-default", jobStatus="SUCCEEDED", PaginationConfig={"PageSize": 2}
        )
    )
    assert [len(p["jobSummaryList"]) for p in pages] == [2, 2, 1]
    by_name = batch.list_jobs(jobQueue="polysync-default", filters=[{"name": "JOB_NAME", "values": ["POLYSYNC-T"]}])
    assert len(by_name["jobSummaryList"]) == 5


def test_describe_job_definitions_paginates(batch):
    pages = list(batch.get_paginator("describe_job_definitions").paginate(PaginationConfig={"PageSize": 1}))
    assert [len(p["jobDefinitions"]) for p in pages] == [1, 1, 1]
    active = batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]
    assert sorted((d["jobDefinitionName"], d["revision"]) for d in active) == [
        ("polysync-etl", 2),
        ("polysync-job", 1),
    ]


def test_a_bare_name_resolves_to_the_latest_active_revision(batch):
    job_id = submit(batch, jobDefinition="polysync-etl", parameters={"seconds": "0"})
    assert batch.describe_jobs(jobs=[job_id])["jobs"][0]["jobDefinition"].endswith("polysync-etl:2")


@pytest.mark.parametrize(
    "reference",
    ["polysync-etl:1", "arn:aws:batch:us-east-1:123456789012:job-definition/polysync-etl:1"],
    ids=["name-revision", "arn"],
)
def test_an_inactive_revision_is_refused_as_aws_refuses_it(batch, local_aws_batch, reference):
    with pytest.raises(ClientError) as refused:
        submit(batch, jobDefinition=reference)

    error = refused.value.response["Error"]
    assert (error["Code"], refused.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("ClientException", 400)
    assert error["Message"] == f"Job definition {reference} is INACTIVE: submit an ACTIVE revision"
    assert local_aws_batch.jobs == {}
    revision_1 = batch.describe_job_definitions(jobDefinitionName="polysync-etl", status="INACTIVE")["jobDefinitions"]
    assert [d["revision"] for d in revision_1] == [1]  # still there to read, only not to run


def test_seed_from_a_file(tmp_path):
    seed = tmp_path / "seed.json"
    seed.write_text('{"job_queues": [{"name": "q"}], "job_definitions": [{"name": "d", "command": ["true"]}]}')
    with LocalAwsBatch(seed) as endpoint:
        assert list(endpoint.queues) == ["q"]
        assert [d.name for d in endpoint.definitions] == ["d"]


def test_job_output_is_a_cloudwatch_stream_in_the_definitions_log_group(batch, local_aws_batch):
    batch.register_job_definition(
        jobDefinitionName="logged",
        type="container",
        containerProperties={
            "image": "busybox",
            "command": ["/bin/sh", "-c", "echo out-1; echo err-1 >&2; sleep 0.5; echo out-2; exit 5"],
            "vcpus": 1,
            "memory": 128,
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/polysync/logged"}},
        },
    )
    definition = batch.describe_job_definitions(jobDefinitionName="logged")["jobDefinitions"][0]
    assert definition["containerProperties"]["logConfiguration"]["options"] == {"awslogs-group": "/polysync/logged"}
    job_id = submit(batch, jobDefinition="logged")
    assert "logStreamName" not in batch.describe_jobs(jobs=[job_id])["jobs"][0]["container"]  # not started yet
    local_aws_batch.wait_for_job(job_id)
    container = batch.describe_jobs(jobs=[job_id])["jobs"][0]["container"]
    assert container["logStreamName"] == f"logged/default/{job_id}"
    assert container["logConfiguration"]["options"]["awslogs-group"] == "/polysync/logged"
    logs = boto3.client(
        "logs",
        endpoint_url=local_aws_batch.url,
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
    )
    events = logs.get_log_events(logGroupName="/polysync/logged", logStreamName=container["logStreamName"])["events"]
    assert [e["message"] for e in events] == ["out-1", "out-2", "err-1"]  # stdout, then stderr
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=container["logStreamName"])
    local_aws_batch.deny_log_reads = True
    with pytest.raises(ClientError) as err:
        logs.get_log_events(logGroupName="/polysync/logged", logStreamName=container["logStreamName"])
    assert err.value.response["Error"]["Code"] == "AccessDeniedException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert local_aws_batch.requests.count("logs:GetLogEvents") == 3
