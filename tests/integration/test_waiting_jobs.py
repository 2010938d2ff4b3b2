"""Jobs that wait to start, and job types beyond a single container, on the local endpoints: a job held in
RUNNABLE, a queue whose compute environment is INVALID or too small, an Azure pool without nodes; the hooks'
diagnosis reads (sync and async, denied reads included); multi-node and ECS-properties jobs and their streams."""

from __future__ import annotations

import asyncio
import time

import boto3
import pytest
from botocore.exceptions import ClientError

from polysync_airflow.hooks.aws_batch import AwsBatchHook
from polysync_airflow.hooks.azure_batch import AzureBatchHook
from polysync_airflow.queueing.aws_batch import WaitFacts, waiting_cause
from polysync_airflow.queueing.azure_batch import waiting_cause as azure_waiting_cause
from polysync_airflow.statuses.aws_batch import job_timing
from polysync_airflow.statuses.azure_batch import task_timing
from polysync_airflow.testing.aws_batch_resources import JOB_RESOURCE_REQUIREMENT

CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
CAPACITY = (
    "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - There is not enough capacity to fulfill your request. Please try "
    "another instance type."
)
CONTAINER = {
    "image": "busybox",
    "command": ["/bin/sh", "-c", "echo Ref::message"],
    "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
}
MULTINODE = {"numNodes": 2, "mainNode": 0, "nodeRangeProperties": [{"targetNodes": "0:", "container": CONTAINER}]}
ECS = {"taskProperties": [{"containers": [{"name": "main", "essential": True, **CONTAINER}]}]}


def batch_client(endpoint):
    return boto3.client("batch", endpoint_url=endpoint.url, **CREDENTIALS)


def submit(endpoint, queue: str = "polysync-default", definition: str = "polysync-job", **extra) -> str:
    body = {"jobName": "Polysync-wait", "jobQueue": queue, "jobDefinition": definition, **extra}
    body.setdefault("parameters", {"seconds": "0", "message": "hi"})
    return endpoint.submit_job(body)["jobId"]


def wait_until(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def described(endpoint, job_id: str) -> dict:
    return batch_client(endpoint).describe_jobs(jobs=[job_id])["jobs"][0]


def runnable(endpoint, job_id: str) -> dict:
    return wait_until(lambda: (job := described(endpoint, job_id))["status"] == "RUNNABLE" and job)


# -- AWS: jobs that wait -----------------------------------------------------------------------------------


def test_a_held_queue_keeps_its_job_runnable_with_the_reason_until_released(local_aws_batch):
    local_aws_batch.hold_queue("polysync-default", CAPACITY)
    job_id = submit(local_aws_batch)
    job = wait_until(lambda: (j := described(local_aws_batch, job_id)).get("statusReason") and j)
    assert (job["status"], job["statusReason"]) == ("RUNNABLE", CAPACITY)
    assert "startedAt" not in job and job["createdAt"] > 0
    local_aws_batch.hold_queue("polysync-default", None)
    finished = local_aws_batch.wait_for_job(job_id)
    assert finished.status == "SUCCEEDED" and finished.started_at is not None


def test_a_job_larger_than_every_compute_environment_stays_runnable_with_awss_reason(local_aws_batch):
    local_aws_batch.add_compute_environment("small-ce", max_vcpus=2)
    local_aws_batch.add_job_queue("small", compute_environments=["small-ce"])
    overrides = {"resourceRequirements": [{"type": "VCPU", "value": "4"}, {"type": "MEMORY", "value": "512"}]}
    job_id = submit(local_aws_batch, queue="small", containerOverrides=overrides)
    job = wait_until(lambda: (j := described(local_aws_batch, job_id)).get("statusReason") and j)
    assert (job["status"], job["statusReason"]) == ("RUNNABLE", JOB_RESOURCE_REQUIREMENT)
    assert submit(local_aws_batch, queue="small") and True  # a 1-vCPU job fits and runs
    batch_client(local_aws_batch).terminate_job(jobId=job_id, reason="giving up")
    assert local_aws_batch.wait_for_job(job_id).status_reason == "giving up"


def test_an_invalid_compute_environment_keeps_jobs_runnable_without_a_reason(local_aws_batch):
    local_aws_batch.add_compute_environment(
        "broken-ce", status="INVALID", status_reason="CLIENT_ERROR - The security group sg-1 does not exist"
    )
    local_aws_batch.add_job_queue("broken", compute_environments=["broken-ce"])
    job_id = submit(local_aws_batch, queue="broken")
    job = runnable(local_aws_batch, job_id)
    time.sleep(0.3)  # several steps later, still waiting
    job = described(local_aws_batch, job_id)
    assert job["status"] == "RUNNABLE" and "statusReason" not in job
    client = batch_client(local_aws_batch)
    (environment,) = client.describe_compute_environments(computeEnvironments=["broken-ce"])["computeEnvironments"]
    assert (environment["status"], environment["statusReason"]) == (
        "INVALID",
        "CLIENT_ERROR - The security group sg-1 does not exist",
    )
    (queue,) = client.describe_job_queues(jobQueues=["broken"])["jobQueues"]
    assert queue["computeEnvironmentOrder"] == [
        {"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}
    ]


def test_denied_operations_answer_access_denied(local_aws_batch):
    local_aws_batch.denied_operations = {"DescribeComputeEnvironments"}
    with pytest.raises(ClientError) as err:
        batch_client(local_aws_batch).describe_compute_environments()
    error = err.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert "batch:DescribeComputeEnvironments" in error["Message"]
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


# -- AWS: the hook's diagnosis reads -----------------------------------------------------------------------


def small_queue_job(endpoint) -> str:
    endpoint.add_compute_environment("small-ce", max_vcpus=2)
    endpoint.add_job_queue("small", compute_environments=["small-ce"])
    overrides = {"resourceRequirements": [{"type": "VCPU", "value": "4"}, {"type": "MEMORY", "value": "512"}]}
    job_id = submit(endpoint, queue="small", containerOverrides=overrides)
    wait_until(lambda: described(endpoint, job_id).get("statusReason"))
    return job_id


def test_the_aws_diagnosis_names_the_reason_the_queue_and_the_environment_too_small(local_aws_batch, polysync_aws_conn):
    job_id = small_queue_job(local_aws_batch)
    hook = AwsBatchHook(polysync_aws_conn)
    job = hook.describe_job(job_id)
    facts = hook.read_wait_facts(job)

    async def read_async() -> WaitFacts:
        async with hook.async_connection():
            return await hook.aread_wait_facts(job)

    assert asyncio.run(read_async()) == facts
    cause = waiting_cause(job, facts)
    assert cause.startswith(f"statusReason {JOB_RESOURCE_REQUIREMENT!r}; job queue small: ENABLED, VALID; ")
    assert "compute environment small-ce: ENABLED, VALID, maxvCpus 2, less than the job's 4 vCPUs" in cause
    assert cause.endswith("check vCPU quotas (EC2 / Fargate) and the environment's instance types")
    assert job_timing(job).started_at is None and job_timing(job).submitted_at is not None


@pytest.mark.parametrize("operation", ["DescribeJobQueues", "DescribeComputeEnvironments"])
def test_a_denied_aws_diagnosis_read_names_the_permission(operation, local_aws_batch, polysync_aws_conn):
    job_id = small_queue_job(local_aws_batch)
    local_aws_batch.denied_operations = {operation}
    hook = AwsBatchHook(polysync_aws_conn)
    job = hook.describe_job(job_id)
    facts = hook.read_wait_facts(job)
    expected = f"could not call {operation}: access denied (grant batch:{operation} to see why the job waits)"
    assert list(facts.problems) == [expected]

    async def read_async() -> WaitFacts:
        async with hook.async_connection():
            return await hook.aread_wait_facts(job)

    assert list(asyncio.run(read_async()).problems) == [expected]
    assert expected in waiting_cause(job, facts)


# -- AWS: multi-node and ECS-properties jobs ---------------------------------------------------------------------


def test_a_multi_node_job_runs_its_main_node_and_names_its_stream_on_the_attempt(local_aws_batch, polysync_aws_conn):
    client = batch_client(local_aws_batch)
    client.register_job_definition(jobDefinitionName="mnp", type="multinode", nodeProperties=MULTINODE)
    job_id = submit(local_aws_batch, definition="mnp", parameters={"message": "main node here"})
    assert local_aws_batch.wait_for_job(job_id).status == "SUCCEEDED"
    job = described(local_aws_batch, job_id)
    assert "container" not in job and job["nodeProperties"]["mainNode"] == 0
    stream = job["attempts"][-1]["container"]["logStreamName"]
    assert stream.startswith("mnp/default/") and len(stream.rsplit("/", 1)[1]) == 32  # an ECS task id
    hook = AwsBatchHook(polysync_aws_conn)
    log = hook.job_log_stream(job)
    assert (log.group, log.stream) == ("/aws/batch/job", stream)
    assert hook.tail_log(log) == ["main node here"]


def test_an_ecs_properties_job_names_its_containers_stream(local_aws_batch, polysync_aws_conn):
    client = batch_client(local_aws_batch)
    logging = {"logDriver": "awslogs", "options": {"awslogs-group": "/polysync/ecs"}}
    ecs = {"taskProperties": [{"containers": [{"name": "main", "logConfiguration": logging, **CONTAINER}]}]}
    client.register_job_definition(jobDefinitionName="ecs-job", type="container", ecsProperties=ecs)
    job_id = submit(local_aws_batch, definition="ecs-job", parameters={"message": "from ecs"})
    assert local_aws_batch.wait_for_job(job_id).status == "SUCCEEDED"
    job = described(local_aws_batch, job_id)
    (container,) = job["ecsProperties"]["taskProperties"][0]["containers"]
    assert "container" not in job
    assert container["logStreamName"].startswith("ecs-job/main/")
    assert job["attempts"][-1]["taskProperties"][0]["containers"][0]["logStreamName"] == container["logStreamName"]
    hook = AwsBatchHook(polysync_aws_conn)
    log = hook.job_log_stream(job)
    assert (log.group, log.stream) == ("/polysync/ecs", container["logStreamName"])
    assert hook.tail_log(log) == ["from ecs"]
    assert job_timing(job).attempts == 1 and job_timing(job).running_seconds is not None


# -- Azure: a pool without nodes ----------------------------------------------------------------------------


def azure_task(endpoint, pool: str = "polysync-pool") -> tuple[str, str]:
    endpoint.add_job({"id": "polysync-waiting", "poolInfo": {"poolId": pool}})
    endpoint.model.create_task(endpoint.job("polysync-waiting"), {"id": "run", "commandLine": "/bin/sh -c 'echo hi'"})
    return "polysync-waiting", "run"


RESIZE_ERROR = {
    "code": "AccountCoreQuotaReached",
    "message": "The specified account has reached its core quota.",
    "values": [{"name": "Quota", "value": "0"}],
}


def test_a_pool_without_nodes_keeps_the_task_active_until_it_gets_one(local_azure_batch, polysync_azure_conn):
    local_azure_batch.set_pool(
        "polysync-pool", currentDedicatedNodes=0, targetDedicatedNodes=2, resizeErrors=[RESIZE_ERROR]
    )
    job_id, task_id = azure_task(local_azure_batch)
    time.sleep(0.3)
    task = local_azure_batch.job(job_id).tasks[task_id]
    assert task.state == "active"
    hook = AzureBatchHook(polysync_azure_conn)
    facts = hook.read_wait_facts(f"{job_id}/{task_id}")

    async def read_async():
        async with hook.async_connection():
            return await hook.aread_wait_facts(f"{job_id}/{task_id}")

    async_facts = asyncio.run(read_async())
    assert not facts.problems and not async_facts.problems
    assert azure_waiting_cause(task.describe(job_id), async_facts) == azure_waiting_cause(task.describe(job_id), facts)
    cause = azure_waiting_cause(task.describe(job_id), facts)
    assert cause.startswith(
        "task state active; pool polysync-pool: allocationState steady, dedicated nodes 0/2, low-priority nodes 0/0 "
        "(current/target); resize error AccountCoreQuotaReached: The specified account has reached its core quota. "
        "(Quota=0); hint: "
    )
    local_azure_batch.set_pool("polysync-pool", currentLowPriorityNodes=1)
    wait_until(lambda: task.state == "completed")
    timing = task_timing(task.describe(job_id))
    assert timing.attempts == 1 and timing.queued_seconds is not None and timing.running_seconds is not None


def test_a_denied_pool_read_names_the_permission(local_azure_batch, polysync_azure_conn):
    local_azure_batch.set_pool("polysync-pool", currentDedicatedNodes=0)
    local_azure_batch.denied_reads = {"pools"}
    job_id, task_id = azure_task(local_azure_batch)
    facts = AzureBatchHook(polysync_azure_conn).read_wait_facts(f"{job_id}/{task_id}")
    assert list(facts.problems) == [
        "could not read pool polysync-pool: access denied (403 InsufficientPermissions; grant "
        "Microsoft.Batch/batchAccounts/pools/read to see why the task waits)"
    ]


def test_a_job_whose_pool_is_gone_reports_its_scheduling_error_and_the_missing_pool(
    local_azure_batch, polysync_azure_conn
):
    job_id, task_id = azure_task(local_azure_batch, pool="deleted-pool")
    wait_until(lambda: local_azure_batch.job(job_id).scheduling_error)
    hook = AzureBatchHook(polysync_azure_conn)
    facts = hook.read_wait_facts(f"{job_id}/{task_id}")
    assert list(facts.problems) == ["pool deleted-pool does not exist"]
    task = local_azure_batch.job(job_id).tasks[task_id].describe(job_id)
    assert "job scheduling error PoolNotFound: The pool deleted-pool specified for the job does not exist." in (
        azure_waiting_cause(task, facts)
    )
