"""moto as an independent oracle: the same boto3 calls against moto and against our local endpoint must
give the same response shapes and error codes, wherever moto implements the operation."""

from __future__ import annotations

import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
COMMAND = ["/bin/sh", "-c", "echo Ref::message"]


@pytest.fixture(scope="module")
def moto_batch() -> Iterator:
    from moto.core.config import default_user_config
    from moto.server import ThreadedMotoServer

    default_user_config["batch"] = {"use_docker": False}
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    iam = boto3.client("iam", endpoint_url=url, **CREDENTIALS)
    batch = boto3.client("batch", endpoint_url=url, **CREDENTIALS)
    role = iam.create_role(RoleName="batch-service", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch.create_compute_environment(
        computeEnvironmentName="local", type="UNMANAGED", state="ENABLED", serviceRole=role
    )
    batch.create_job_queue(
        jobQueueName="polysync-default",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "local"}],
    )
    batch.register_job_definition(
        jobDefinitionName="polysync-job",
        type="container",
        parameters={"message": "hello"},
        containerProperties={"image": "busybox", "command": COMMAND, "vcpus": 1, "memory": 512},
    )
    yield batch
    server.stop()


@pytest.fixture
def ours(local_aws_batch):
    return boto3.client("batch", endpoint_url=local_aws_batch.url, **CREDENTIALS)


def shape(response: dict) -> set[str]:
    return set(response) - {"ResponseMetadata"}


def error_of(call) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as err:
        call()
    error = err.value.response["Error"]
    return error["Code"], error["Message"], err.value.response["ResponseMetadata"]["HTTPStatusCode"]


def submit(client, **extra):
    return client.submit_job(
        jobName="Polysync-oracle",
        jobDefinition="polysync-job",
        jobQueue="polysync-default",
        parameters={"message": "hi"},
        **extra,
    )


def finished(client, job_id: str) -> dict:
    for _ in range(200):
        job = client.describe_jobs(jobs=[job_id])["jobs"][0]
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"{job_id} did not finish")


def test_submit_job_response(moto_batch, ours):
    assert shape(submit(moto_batch)) == shape(submit(ours)) == {"jobArn", "jobName", "jobId"}


def test_describe_jobs_detail_has_every_field_moto_returns(moto_batch, ours):
    theirs = finished(moto_batch, submit(moto_batch, tags={"a": "b"}, dependsOn=[])["jobId"])
    mine = finished(ours, submit(ours, tags={"a": "b"}, dependsOn=[])["jobId"])
    assert theirs["status"] == mine["status"] == "SUCCEEDED"
    assert set(theirs) - set(mine) == set(), set(theirs) - set(mine)
    for key in ("jobQueue", "jobDefinition", "jobArn"):
        assert mine[key].split(":")[:3] == theirs[key].split(":")[:3]  # ARNs, as moto returns them
    assert set(theirs["container"]) & {"command", "logStreamName"} <= set(mine["container"])
    assert mine["parameters"]["message"] == theirs["parameters"]["message"] == "hi"  # merged over defaults


def test_describe_jobs_unknown_ids_are_left_out(moto_batch, ours):
    assert moto_batch.describe_jobs(jobs=["nope"])["jobs"] == ours.describe_jobs(jobs=["nope"])["jobs"] == []


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"jobQueue": "no-such-queue"}, "ClientException"),
        ({"jobDefinition": "no-such-definition"}, "ClientException"),
        ({"jobDefinition": "polysync-job:99"}, "ClientException"),
    ],
)
def test_submit_errors_match(moto_batch, ours, kwargs, code):
    request = {
        "jobName": "Polysync-x",
        "jobDefinition": "polysync-job",
        "jobQueue": "polysync-default",
        **kwargs,
    }
    theirs = error_of(lambda: moto_batch.submit_job(**request))
    mine = error_of(lambda: ours.submit_job(**request))
    assert theirs == mine
    assert mine[0] == code


def test_an_inactive_revision_is_refused_in_the_shape_moto_refuses_a_missing_one(moto_batch, ours):
    """AWS runs only ACTIVE revisions (a plain name means the latest ACTIVE one). moto 5 still runs a
    deregistered revision, so it serves as the oracle for the error's form, not for the refusal itself:
    same code and HTTP status as its "does not exist", the message naming the reference the same way."""
    for client in (moto_batch, ours):
        revision = client.register_job_definition(
            jobDefinitionName="retired",
            type="container",
            containerProperties={"image": "busybox", "command": ["true"], "vcpus": 1, "memory": 128},
        )["revision"]
        client.deregister_job_definition(jobDefinition=f"retired:{revision}")
    request = {"jobName": "Polysync-x", "jobQueue": "polysync-default", "jobDefinition": "retired:1"}

    code, message, status = error_of(lambda: ours.submit_job(**request))
    missing_code, missing_message, missing_status = error_of(
        lambda: moto_batch.submit_job(**{**request, "jobDefinition": "retired:99"})
    )

    assert (code, status) == (missing_code, missing_status) == ("ClientException", 400)
    assert missing_message == "Job definition retired:99 does not exist"
    assert message == "Job definition retired:1 is INACTIVE: submit an ACTIVE revision"
    assert moto_batch.describe_job_definitions(jobDefinitionName="retired")["jobDefinitions"][0]["status"] == "INACTIVE"
    assert ours.describe_job_definitions(jobDefinitionName="retired")["jobDefinitions"][0]["status"] == "INACTIVE"
    # moto's gap, kept visible: when moto starts refusing too, compare its message with ours here.
    assert "jobId" in moto_batch.submit_job(**request)


def test_terminate_job_errors_and_shapes_match(moto_batch, ours):
    assert error_of(lambda: moto_batch.terminate_job(jobId="x", reason=""))[0] == "ClientException"
    assert error_of(lambda: ours.terminate_job(jobId="x", reason=""))[0] == "ClientException"
    assert shape(moto_batch.terminate_job(jobId="unknown", reason="r")) == shape(
        ours.terminate_job(jobId="unknown", reason="r")
    )


def test_list_jobs_by_name_shapes_match(moto_batch, ours):
    finished(moto_batch, submit(moto_batch)["jobId"])
    finished(ours, submit(ours)["jobId"])
    request = {
        "jobQueue": "polysync-default",
        "filters": [{"name": "JOB_NAME", "values": ["polysync-ORACLE"]}],
    }
    theirs = moto_batch.list_jobs(**request)["jobSummaryList"]
    mine = ours.list_jobs(**request)["jobSummaryList"]
    assert theirs and mine  # exact, case-insensitive name match on both
    assert set(theirs[0]) - set(mine[0]) == set()
    assert error_of(lambda: moto_batch.list_jobs(jobQueue="nope")) == error_of(lambda: ours.list_jobs(jobQueue="nope"))


def test_describe_job_definitions_shapes_match(moto_batch, ours):
    theirs = moto_batch.describe_job_definitions(status="ACTIVE", jobDefinitionName="polysync-job")
    mine = ours.describe_job_definitions(status="ACTIVE", jobDefinitionName="polysync-job")
    assert shape(theirs) == shape(mine) == {"jobDefinitions"}
    missing = set(theirs["jobDefinitions"][0]) - set(mine["jobDefinitions"][0])
    assert missing == set(), missing
    assert {"command", "image"} <= set(mine["jobDefinitions"][0]["containerProperties"])


def test_register_job_definition_shapes_match(moto_batch, ours):
    request = {
        "jobDefinitionName": "oracle-def",
        "type": "container",
        "containerProperties": {"image": "busybox", "command": ["true"], "vcpus": 1, "memory": 128},
    }
    theirs, mine = moto_batch.register_job_definition(**request), ours.register_job_definition(**request)
    assert shape(theirs) == shape(mine) == {"jobDefinitionName", "jobDefinitionArn", "revision"}
    assert theirs["revision"] == mine["revision"] == 1


def test_describe_job_queues_shapes_match(moto_batch, ours):
    theirs = moto_batch.describe_job_queues(jobQueues=["polysync-default"])["jobQueues"][0]
    mine = ours.describe_job_queues(jobQueues=["polysync-default"])["jobQueues"][0]
    assert set(theirs) - set(mine) == set(), set(theirs) - set(mine)


def test_list_jobs_of_an_array_by_status_shapes_match(moto_batch, ours):
    ids = {}
    for name, client in (("moto", moto_batch), ("ours", ours)):
        ids[name] = submit(client, arrayProperties={"size": 3})["jobId"]
        assert finished(client, ids[name])["status"] == "SUCCEEDED"
    theirs = moto_batch.list_jobs(arrayJobId=ids["moto"], jobStatus="SUCCEEDED")["jobSummaryList"]
    mine = ours.list_jobs(arrayJobId=ids["ours"], jobStatus="SUCCEEDED")["jobSummaryList"]
    assert sorted(c["jobId"] for c in theirs) == [f"{ids['moto']}:{i}" for i in range(3)]
    assert sorted(c["jobId"] for c in mine) == [f"{ids['ours']}:{i}" for i in range(3)]
    assert set(theirs[0]) - set(mine[0]) == set(), set(theirs[0]) - set(mine[0])
    for name, client in (("moto", moto_batch), ("ours", ours)):
        assert client.list_jobs(arrayJobId=ids[name], jobStatus="FAILED")["jobSummaryList"] == []
    bad = {"jobStatus": "DONE"}
    theirs_error = error_of(lambda: moto_batch.list_jobs(arrayJobId=ids["moto"], **bad))
    mine_error = error_of(lambda: ours.list_jobs(arrayJobId=ids["ours"], **bad))
    assert theirs_error == mine_error, (theirs_error, mine_error)


# -- CloudWatch Logs GetLogEvents ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_logs(moto_batch):
    """moto's logs API (same server), with one stream holding the three lines our job below prints."""
    logs = boto3.client("logs", endpoint_url=moto_batch.meta.endpoint_url, **CREDENTIALS)
    logs.create_log_group(logGroupName="/aws/batch/job")
    logs.create_log_stream(logGroupName="/aws/batch/job", logStreamName="polysync-job/default/oracle")
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName="/aws/batch/job",
        logStreamName="polysync-job/default/oracle",
        logEvents=[{"timestamp": now + i, "message": f"line {i}"} for i in (1, 2, 3)],
    )
    return logs


@pytest.fixture
def our_logs(local_aws_batch, ours):
    """Our logs API, with the stream of a finished job that printed three lines."""
    ours.register_job_definition(
        jobDefinitionName="three-lines",
        type="container",
        containerProperties={
            "image": "busybox",
            "command": ["/bin/sh", "-c", "echo line 1; echo line 2; echo line 3"],
            "vcpus": 1,
            "memory": 128,
        },
    )
    job = finished(
        ours, ours.submit_job(jobName="x", jobDefinition="three-lines", jobQueue="polysync-default")["jobId"]
    )
    logs = boto3.client("logs", endpoint_url=local_aws_batch.url, **CREDENTIALS)
    return logs, job["container"]["logStreamName"]


@pytest.mark.parametrize(
    "request_kwargs",
    [{}, {"limit": 2}, {"limit": 2, "startFromHead": True}, {"startFromHead": True}],
    ids=["all", "last-2", "first-2", "from-head"],
)
def test_get_log_events_answers_alike(moto_logs, our_logs, request_kwargs):
    logs, stream = our_logs
    theirs = moto_logs.get_log_events(
        logGroupName="/aws/batch/job", logStreamName="polysync-job/default/oracle", **request_kwargs
    )
    mine = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream, **request_kwargs)
    assert shape(theirs) == shape(mine) == {"events", "nextForwardToken", "nextBackwardToken"}
    assert [e["message"] for e in theirs["events"]] == [e["message"] for e in mine["events"]]
    assert set(theirs["events"][0]) == set(mine["events"][0]) == {"timestamp", "message", "ingestionTime"}
    for key in ("nextForwardToken", "nextBackwardToken"):  # AWS's token form: direction, slash, 56 digits
        assert mine[key][:2] == theirs[key][:2] and len(mine[key]) == len(theirs[key]) == 58


def test_get_log_events_backward_paging_reads_the_whole_stream(our_logs):
    logs, stream = our_logs
    page = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream, limit=2)
    older = logs.get_log_events(
        logGroupName="/aws/batch/job", logStreamName=stream, limit=2, nextToken=page["nextBackwardToken"]
    )
    assert [e["message"] for e in older["events"] + page["events"]] == ["line 1", "line 2", "line 3"]


def test_get_log_events_errors_match(moto_logs, our_logs):
    logs, _stream = our_logs
    for group, stream in (("/no/such/group", "s"), ("/aws/batch/job", "no-such-stream")):
        theirs = error_of(lambda g=group, s=stream: moto_logs.get_log_events(logGroupName=g, logStreamName=s))
        mine = error_of(lambda g=group, s=stream: logs.get_log_events(logGroupName=g, logStreamName=s))
        assert (theirs[0], theirs[2]) == (mine[0], mine[2]) == ("ResourceNotFoundException", 400)
    # AWS names what is missing (moto says "log group" for both)
    assert error_of(lambda: logs.get_log_events(logGroupName="/aws/batch/job", logStreamName="x"))[1] == (
        "The specified log stream does not exist."
    )


@pytest.mark.parametrize(
    ("call", "resource"),
    [
        (lambda c: c.submit_job(jobName="x", jobDefinition="polysync-job", jobQueue="no-such-queue"), "job_queue"),
        (lambda c: c.submit_job(jobName="x", jobDefinition="nope", jobQueue="polysync-default"), "job_definition"),
        (
            lambda c: c.submit_job(jobName="x", jobDefinition="polysync-job:99", jobQueue="polysync-default"),
            "job_definition",
        ),
        (lambda c: c.list_jobs(jobQueue="no-such-queue"), "job_queue"),
    ],
    ids=["submit-queue", "submit-definition", "submit-revision", "list-queue"],
)
def test_a_missing_queue_or_definition_is_recognised_in_both(moto_batch, ours, call, resource):
    """The operator fails without retrying on these; moto's refusal must read as the same missing resource."""
    from polysync_airflow.statuses.aws_batch import missing_resource

    for client in (moto_batch, ours):
        with pytest.raises(ClientError) as err:
            call(client)
        assert missing_resource(err.value) == resource, err.value


def test_describe_compute_environments_shapes_match(moto_batch, ours):
    theirs = moto_batch.describe_compute_environments(computeEnvironments=["local"])
    mine = ours.describe_compute_environments(computeEnvironments=["polysync-ce"])
    assert shape(theirs) == shape(mine) == {"computeEnvironments"}
    missing = set(theirs["computeEnvironments"][0]) - set(mine["computeEnvironments"][0])
    assert missing == set(), missing
    # moto's is UNMANAGED (it needs no EC2 objects); ours is MANAGED, which adds its computeResources
    assert mine["computeEnvironments"][0]["computeResources"]["maxvCpus"] == 256
    queue_theirs = moto_batch.describe_job_queues(jobQueues=["polysync-default"])["jobQueues"][0]
    queue_mine = ours.describe_job_queues(jobQueues=["polysync-default"])["jobQueues"][0]
    assert [set(entry) for entry in queue_theirs["computeEnvironmentOrder"]] == [
        set(entry) for entry in queue_mine["computeEnvironmentOrder"]
    ]


def test_describe_jobs_of_a_multi_node_job_shapes_match(moto_batch, ours):
    container = {"image": "busybox", "command": COMMAND, "vcpus": 1, "memory": 512}
    node_properties = {
        "numNodes": 2,
        "mainNode": 0,
        "nodeRangeProperties": [{"targetNodes": "0:", "container": container}],
    }
    ids = {}
    for client in (moto_batch, ours):
        client.register_job_definition(jobDefinitionName="oracle-mnp", type="multinode", nodeProperties=node_properties)
        ids[client] = client.submit_job(
            jobName="Polysync-mnp", jobQueue="polysync-default", jobDefinition="oracle-mnp"
        )["jobId"]
    theirs, mine = finished(moto_batch, ids[moto_batch]), finished(ours, ids[ours])
    assert theirs["status"] == mine["status"] == "SUCCEEDED"
    assert theirs["nodeProperties"]["nodeRangeProperties"][0]["targetNodes"] == "0:"
    assert mine["nodeProperties"]["nodeRangeProperties"][0]["targetNodes"] == "0:"
    # moto also puts a container (with the main node's stream) on the parent; AWS keeps the nodes' containers on
    # the node jobs (<id>#<index>), and the parent's attempts name the main node's stream, as both do here.
    assert set(theirs) - set(mine) == {"container"}
    assert theirs["attempts"][-1]["container"]["logStreamName"].startswith("oracle-mnp/default/")
    assert mine["attempts"][-1]["container"]["logStreamName"].startswith("oracle-mnp/default/")
