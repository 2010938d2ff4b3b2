"""The job's CloudWatch log in the task log, and the logs link: through ``dag.test()`` against the local
endpoint, whose jobs really run and whose logs a real boto3 ``logs`` client reads."""

from __future__ import annotations

from urllib.parse import quote_plus

import boto3
import pytest

from polysync_airflow import AwsBatchJobOperator
from polysync_airflow.hooks.aws_batch import AwsBatchHook, NoLogStream
from polysync_airflow.links.aws_batch import AwsBatchJobLogsLink
from tests.integration.helpers import run_single_task

pytestmark = pytest.mark.usefixtures("airflow_db")

FAST = {"poll_interval": 0.1}
LOGS_LINK_KEY = "_link_AwsBatchJobLogsLink"


def level_of(log: str, text: str) -> str:
    """The level of the task log line holding ``text`` (``2026-...Z [error    ] text``)."""
    line = log[: log.index(text)].rsplit("\n", 1)[-1]
    return line.partition("[")[2].partition("]")[0].strip()


def only_job(endpoint):
    (job,) = endpoint.jobs.values()
    return job


def console_url(group: str, stream: str, region: str = "us-east-1") -> str:
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/log-group/"
        f"{quote_plus(group)}/log-events/{quote_plus(stream)}"
    )


def register(endpoint, name: str, command: list[str], log_configuration: dict | None = None) -> None:
    """A job definition registered the way a user would, through boto3."""
    batch = boto3.client(
        "batch", endpoint_url=endpoint.url, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    properties: dict = {"image": "busybox", "command": command, "vcpus": 1, "memory": 128}
    if log_configuration:
        properties["logConfiguration"] = log_configuration
    batch.register_job_definition(jobDefinitionName=name, type="container", containerProperties=properties)


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_a_failed_job_puts_its_last_lines_in_the_task_log_and_sets_the_link(
    deferrable, local_aws_batch, polysync_aws_conn, capsys
):
    dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"exit_code": 3, "seconds": 0, "message": "loaded 7 rows"},
        deferrable=deferrable,
        **FAST,
    )
    assert dag_run.state == "failed" and ti.state == "failed"
    job = only_job(local_aws_batch)
    stream = job.log_stream_name
    assert [e["message"] for e in local_aws_batch.log_events("/aws/batch/job", stream)] == [
        "loaded 7 rows",
        "failing with exit code 3",
    ]
    log = capsys.readouterr().out
    heading = f"Last 2 lines of the output of job {job.job_id} (CloudWatch log group /aws/batch/job, stream {stream}):"
    assert heading in log
    after = log[log.index(heading) :]
    assert after.index("loaded 7 rows") < after.index("failing with exit code 3")
    assert level_of(log, heading) == "error"
    # the outcome and its message are unchanged
    assert f"Run {job.job_id} failed: Essential container in task exited (exit code 3; see https://" in log
    assert ti.xcom_pull(task_ids="job", key=LOGS_LINK_KEY) == console_url("/aws/batch/job", stream)
    assert local_aws_batch.requests.count("logs:GetLogEvents") == 1


def test_only_the_last_lines_of_a_long_log_from_the_definitions_log_group(local_aws_batch, polysync_aws_conn, capsys):
    register(
        local_aws_batch,
        "noisy",
        ["/bin/sh", "-c", "for i in $(seq 1 80); do echo line-$i; done; exit 1"],
        {"logDriver": "awslogs", "options": {"awslogs-group": "/polysync/noisy jobs"}},
    )
    _dag_run, ti = run_single_task(AwsBatchJobOperator, job_definition="noisy", aws_conn_id=polysync_aws_conn, **FAST)
    assert ti.state == "failed"
    job = only_job(local_aws_batch)
    assert len(local_aws_batch.log_events("/polysync/noisy jobs", job.log_stream_name)) == 80
    log = capsys.readouterr().out
    assert f"Last 50 lines of the output of job {job.job_id} (CloudWatch log group /polysync/noisy jobs" in log
    assert "line-31\n" in log and "line-80" in log and "line-30\n" not in log
    assert ti.xcom_pull(task_ids="job", key=LOGS_LINK_KEY) == console_url("/polysync/noisy jobs", job.log_stream_name)
    assert "%2Fpolysync%2Fnoisy+jobs" in ti.xcom_pull(task_ids="job", key=LOGS_LINK_KEY)


@pytest.mark.parametrize("fetch_logs", [True, False])
def test_a_successful_job_shows_its_log_only_with_fetch_logs(fetch_logs, local_aws_batch, polysync_aws_conn, capsys):
    dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 0, "message": "all good here"},
        fetch_logs=fetch_logs,
        **FAST,
    )
    assert dag_run.state == "success"
    job = only_job(local_aws_batch)
    log = capsys.readouterr().out
    heading = f"Last 1 lines of the output of job {job.job_id} (CloudWatch log group /aws/batch/job"
    link = ti.xcom_pull(task_ids="job", key=LOGS_LINK_KEY)
    if fetch_logs:
        assert heading in log and "all good here" in log[log.index(heading) :]
        assert level_of(log, heading) == "info"
        assert link == console_url("/aws/batch/job", job.log_stream_name)
    else:
        assert heading not in log and not link
        assert not [r for r in local_aws_batch.requests if r.startswith("logs:")]
        assert "describejobdefinitions" not in local_aws_batch.requests
    assert ti.xcom_pull(task_ids="job")["status"] == "Success"


def test_a_job_that_never_started_has_no_stream_a_warning_and_the_same_outcome(
    local_aws_batch, polysync_aws_conn, capsys
):
    upstream = local_aws_batch.submit_job(
        {
            "jobName": "upstream",
            "jobDefinition": "polysync-job",
            "jobQueue": "polysync-default",
            "parameters": {"seconds": "0", "exit_code": "1"},
        }
    )["jobId"]
    _dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        depends_on=[{"jobId": upstream, "type": "SEQUENTIAL"}],
        **FAST,
    )
    assert ti.state == "failed"
    (job,) = [j for j in local_aws_batch.jobs.values() if j.job_id != upstream]
    assert (job.status, job.status_reason, job.started_at) == ("FAILED", "Dependent Job failed", None)
    log = capsys.readouterr().out
    assert f"No log output of job {job.job_id} to show: job {job.job_id} has no log stream" in log
    assert level_of(log, "No log output of job") == "warning"
    assert f"Run {job.job_id} failed: Dependent Job failed (see https://" in log
    assert not ti.xcom_pull(task_ids="job", key=LOGS_LINK_KEY)
    assert "logs:GetLogEvents" not in local_aws_batch.requests


def test_a_stream_that_is_gone_gives_a_warning_and_the_task_still_succeeds(local_aws_batch, polysync_aws_conn, capsys):
    def expire_the_stream(operation: str) -> None:  # as if its retention had run out just before the read
        if operation == "logs:GetLogEvents":
            job = only_job(local_aws_batch)
            local_aws_batch.delete_log_stream({"logGroupName": "/aws/batch/job", "logStreamName": job.log_stream_name})

    local_aws_batch.on_request = expire_the_stream
    dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 0},
        fetch_logs=True,
        **FAST,
    )
    assert dag_run.state == "success" and ti.state == "success"
    job = only_job(local_aws_batch)
    log = capsys.readouterr().out
    assert (
        f"Could not read the log output of job {job.job_id} (CloudWatch log group /aws/batch/job, stream "
        f"{job.log_stream_name}): the log stream does not exist (yet, or any more): ResourceNotFoundException: "
        "An error occurred (ResourceNotFoundException) when calling the GetLogEvents operation: "
        "The specified log stream does not exist."
    ) in log
    assert "Last " not in log


@pytest.mark.parametrize(
    ("parameters", "task_state"), [({"exit_code": 2}, "failed"), ({"exit_code": 0}, "success")], ids=["failed", "ok"]
)
def test_a_denied_log_read_gives_a_warning_and_the_same_outcome(
    parameters, task_state, local_aws_batch, polysync_aws_conn, capsys
):
    local_aws_batch.deny_log_reads = True
    _dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 0, **parameters},
        fetch_logs=True,
        **FAST,
    )
    assert ti.state == task_state
    job = only_job(local_aws_batch)
    log = capsys.readouterr().out
    assert f"Could not read the log output of job {job.job_id} (CloudWatch log group /aws/batch/job" in log
    assert "no permission to call GetLogEvents: AccessDeniedException: An error occurred (AccessDeniedException)" in log
    assert "Last " not in log
    if task_state == "failed":
        assert f"Run {job.job_id} failed: Essential container in task exited (exit code 2; see https://" in log
    # the link is still there: whoever opens it may have the permission the worker lacks
    assert ti.xcom_pull(task_ids="job", key=LOGS_LINK_KEY) == console_url("/aws/batch/job", job.log_stream_name)


def test_an_array_parent_has_no_stream_of_its_own(local_aws_batch, polysync_aws_conn):
    dag_run, _ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 0},
        array_size=2,
        fetch_logs=True,
        **FAST,
    )
    assert dag_run.state == "success"
    assert "logs:GetLogEvents" not in local_aws_batch.requests


def test_the_link_follows_the_connections_logs_link_template(local_aws_batch, monkeypatch):
    from polysync_airflow.testing.connections import aws_connection_env

    template = "https://logs.example.invalid/{region}/{log_group}/{log_stream}"
    for name, value in aws_connection_env("aws_tpl", local_aws_batch, logs_link_template=template).items():
        monkeypatch.setenv(name, value)
    _dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id="aws_tpl",
        parameters={"seconds": 0, "exit_code": 1},
        **FAST,
    )
    job = only_job(local_aws_batch)
    assert ti.xcom_pull(task_ids="job", key=LOGS_LINK_KEY) == (
        f"https://logs.example.invalid/us-east-1/%2Faws%2Fbatch%2Fjob/{quote_plus(job.log_stream_name)}"
    )


# -- the hook alone -------------------------------------------------------------------------------------------


def finished_job(endpoint, hook: AwsBatchHook, definition: str) -> dict:
    job_id = endpoint.submit_job({"jobName": "j", "jobDefinition": definition, "jobQueue": "polysync-default"})["jobId"]
    endpoint.wait_for_job(job_id)
    return hook.describe_job(job_id)


def test_the_log_group_comes_from_the_job_definition_when_the_job_does_not_say(local_aws_batch, polysync_aws_conn):
    register(
        local_aws_batch,
        "grouped",
        ["/bin/sh", "-c", "echo one; echo two"],
        {"logDriver": "awslogs", "options": {"awslogs-group": "/polysync/grouped", "awslogs-region": "eu-west-1"}},
    )
    hook = AwsBatchHook(polysync_aws_conn)
    job = finished_job(local_aws_batch, hook, "grouped")
    from_job = hook.job_log_stream(job)
    assert "describejobdefinitions" not in local_aws_batch.requests
    job["container"].pop("logConfiguration")  # as moto answers, for example
    from_definition = hook.job_log_stream(job)
    assert local_aws_batch.requests.count("describejobdefinitions") == 1
    assert from_job == from_definition
    assert (from_job.group, from_job.region) == ("/polysync/grouped", "eu-west-1")
    assert hook.tail_log(from_job, 1) == ["two"]
    assert hook.tail_log(from_job) == ["one", "two"]
    assert AwsBatchJobLogsLink.url(hook, from_job).startswith(
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
    )


def test_no_log_configuration_means_the_default_group_in_the_connections_region(local_aws_batch, polysync_aws_conn):
    hook = AwsBatchHook(polysync_aws_conn)
    log = hook.job_log_stream(finished_job(local_aws_batch, hook, "polysync-job"))
    assert (log.group, log.region) == ("/aws/batch/job", "us-east-1")
    assert local_aws_batch.requests.count("describejobdefinitions") == 1
    assert hook.tail_log(log) == ["hello"]


def test_another_log_driver_has_no_cloudwatch_stream(local_aws_batch, polysync_aws_conn):
    register(local_aws_batch, "splunked", ["/bin/true"], {"logDriver": "splunk", "options": {}})
    hook = AwsBatchHook(polysync_aws_conn)
    with pytest.raises(NoLogStream, match="logs with the 'splunk' log driver, not to CloudWatch Logs"):
        hook.job_log_stream(finished_job(local_aws_batch, hook, "splunked"))
