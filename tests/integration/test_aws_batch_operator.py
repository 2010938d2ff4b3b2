"""The AWS Batch operator through ``dag.test()`` against the local endpoint, with real boto3/aiobotocore."""

from __future__ import annotations

import pytest

from polysync_airflow import AwsBatchJobOperator
from polysync_airflow.hooks.aws_batch import CANCEL_REASON
from tests.integration.helpers import run_example_dag, run_single_task, task_context, terminate_when_running

pytestmark = pytest.mark.usefixtures("airflow_db")

FAST = {"poll_interval": 0.1}


def submitted_jobs(endpoint):
    return list(endpoint.jobs.values())


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_success_returns_the_run_info_and_persists_the_link(deferrable, local_aws_batch, polysync_aws_conn, capsys):
    dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"message": "hi there", "seconds": 1.5},
        deferrable=deferrable,
        **FAST,
    )
    assert dag_run.state == "success"
    (job,) = submitted_jobs(local_aws_batch)
    info = ti.xcom_pull(task_ids="job")
    timing = info.pop("timing")  # issue 15: how long the job queued and ran, besides the keys below
    assert timing["attempts"] == 1 and timing["submitted_at"] and timing["ended_at"]
    url = f"https://us-east-1.console.aws.amazon.com/batch/home?region=us-east-1#jobs/detail/{job.job_id}"
    assert info == {
        "run_id": job.job_id,
        "status": "Success",
        "message": "Essential container in task exited",
        "exit_code": 0,
        "monitor_url": url,
        "job_name": job.name,
    }
    assert ti.xcom_pull(task_ids="job", key="_link_AwsBatchJobLink") == url
    assert job.name.startswith("Polysync-") and job.queue.name == "polysync-default"
    assert local_aws_batch.job_output(job.job_id)[0] == "hi there\n"
    log = capsys.readouterr().out
    assert "is RUNNING (Running)" in log and "is SUCCEEDED (Success)" in log
    assert ("Pausing task as DEFERRED" in log) is deferrable


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_a_failed_job_fails_the_task_with_the_batch_message(deferrable, local_aws_batch, polysync_aws_conn, capsys):
    dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"exit_code": 3, "seconds": 0},
        deferrable=deferrable,
        **FAST,
    )
    assert dag_run.state == "failed"
    assert ti.state == "failed"
    (job,) = submitted_jobs(local_aws_batch)
    assert (job.status, job.exit_code) == ("FAILED", 3)
    log = capsys.readouterr().out
    assert f"Run {job.job_id} failed: Essential container in task exited (exit code 3; see https://" in log


def test_a_failed_job_is_retried_with_a_fresh_submission(local_aws_batch, polysync_aws_conn):
    from datetime import timedelta

    _dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"exit_code": 1, "seconds": 0},
        retries=1,
        retry_delay=timedelta(0),
        **FAST,
    )
    assert ti.try_number == 2 and ti.state == "failed"
    assert local_aws_batch.requests.count("submitjob") == 2


def test_every_optional_field_reaches_batch(local_aws_batch, polysync_aws_conn):
    first = local_aws_batch.submit_job(
        {
            "jobName": "upstream",
            "jobDefinition": "polysync-job",
            "jobQueue": "polysync-default",
            "parameters": {"seconds": "0"},
        }
    )["jobId"]
    dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job:1",
        job_queue="polysync-fairshare",
        share_identifier="analytics",
        scheduling_priority_override="{{ 40 + 2 }}",  # strings from templating are accepted
        attempt_duration_seconds="120",
        retry_attempts=3,
        array_size="{{ 3 }}",
        tags='{"team": "data", "dag": "{{ dag.dag_id }}"}',
        propagate_tags="true",
        depends_on=[{"jobId": first, "type": "SEQUENTIAL"}],
        parameters={"seconds": 0, "run_date": "{{ ds }}"},
        aws_conn_id=polysync_aws_conn,
        **FAST,
    )
    assert dag_run.state == "success", ti.state
    job = local_aws_batch.jobs[ti.xcom_pull(task_ids="job")["run_id"]]
    detail = job.describe()
    assert detail["shareIdentifier"] == "analytics"
    assert detail["schedulingPriority"] == 42
    assert detail["timeout"] == {"attemptDurationSeconds": 120}
    assert detail["retryStrategy"] == {"attempts": 3}
    assert detail["arrayProperties"]["size"] == 3
    assert detail["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 3
    # No watched mark on Airflow 3.3 (the task_state_store records it); on 3.1 and 3.2 it comes with the first poll
    # that sees the job running, and a fast job may end before it.
    tags = {k: v for k, v in detail["tags"].items() if k != "polysync:watched"}
    identity = {
        "polysync:dag": ti.dag_id,
        "polysync:run": ti.run_id,
        "polysync:task": "job",
        "polysync:map-index": "-1",
        "polysync:cancel-on-kill": "true",
    }
    assert tags == {"team": "data", "dag": ti.dag_id, "polysync:try": "1", **identity}
    assert detail["propagateTags"] is True
    assert detail["dependsOn"] == [{"jobId": first, "type": "SEQUENTIAL"}]
    assert detail["jobDefinition"].endswith("job-definition/polysync-job:1")
    assert detail["parameters"]["run_date"] == str(dag_run.logical_date.date())


def test_queue_defaults_to_the_connection_setting(local_aws_batch, monkeypatch):
    from polysync_airflow.testing.connections import aws_connection_env

    monkeypatch.setenv(
        **dict(
            zip(
                ("name", "value"),
                next(
                    iter(
                        aws_connection_env(
                            "aws_other_queue", local_aws_batch, default_job_queue="polysync-fairshare"
                        ).items()
                    )
                ),
                strict=False,
            )
        )
    )
    dag_run, _ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id="aws_other_queue",
        share_identifier="x",
        parameters={"seconds": 0},
        **FAST,
    )
    assert dag_run.state == "success"
    assert [job.queue.name for job in submitted_jobs(local_aws_batch)] == ["polysync-fairshare"]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"scheduling_priority_override": "{{ '1.5' }}"}, "scheduling_priority_override='1.5' is invalid"),
        (
            {"attempt_duration_seconds": "{{ 30 }}"},
            "attempt_duration_seconds='30' is invalid: must be an integer >= 60",
        ),
        ({"tags": "{{ 'not json' }}"}, "tags='not json' is invalid: must be a JSON object"),
        ({"job_definition": "{{ 'etl:latest' }}"}, "job_definition='etl:latest' is invalid"),
        ({"parameters": {"when": None}}, "parameters['when']=None is invalid"),
        ({"array_size": 1}, "array_size=1 is invalid: must be an integer from 2 to 10000"),
    ],
)
def test_bad_input_fails_the_task_before_any_request(arguments, expected, local_aws_batch, polysync_aws_conn, capsys):
    from datetime import timedelta

    kwargs = {"job_definition": "polysync-job", "aws_conn_id": polysync_aws_conn, **arguments}
    _dag_run, ti = run_single_task(AwsBatchJobOperator, retries=3, retry_delay=timedelta(0), **kwargs)
    assert ti.state == "failed" and ti.try_number == 1  # no retry: the same input would fail again
    assert expected in capsys.readouterr().out
    assert local_aws_batch.requests == []


def test_no_queue_anywhere_is_an_error_before_any_request(local_aws_batch, monkeypatch, capsys):
    from polysync_airflow.testing.connections import aws_connection_env

    for name, value in aws_connection_env("aws_no_queue", local_aws_batch, default_job_queue=None).items():
        monkeypatch.setenv(name, value)
    _dag_run, ti = run_single_task(AwsBatchJobOperator, job_definition="polysync-job", aws_conn_id="aws_no_queue")
    assert ti.state == "failed"
    assert "set default_job_queue in the connection's extra" in capsys.readouterr().out
    assert local_aws_batch.requests == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"job_definition": "no-such-definition"}, "Job definition no-such-definition does not exist"),
        ({"job_queue": "no-such-queue"}, "Job queue no-such-queue does not exist"),
    ],
)
def test_batch_client_errors_reach_the_task_log(arguments, message, local_aws_batch, polysync_aws_conn, capsys):
    kwargs = {"job_definition": "polysync-job", "aws_conn_id": polysync_aws_conn, **arguments}
    _dag_run, ti = run_single_task(AwsBatchJobOperator, **kwargs)
    assert ti.state == "failed"
    assert message in capsys.readouterr().out


def test_the_link_is_stored_before_the_trigger_polls(local_aws_batch, polysync_aws_conn):
    """When the trigger first polls (task deferred), the link's XCom row already holds the console URL.

    (``dag.test()`` shows the task as queued while it runs the trigger inline; the real-scheduler
    suite checks the link through the REST API while the task is ``deferred``.)
    """
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    links_seen_at_first_poll: list[str | None] = []

    def look(operation: str) -> None:
        if operation == "describejobs" and not links_seen_at_first_poll:
            with create_session() as session:
                row = (
                    session.query(XComModel)
                    .filter(XComModel.key == "_link_AwsBatchJobLink")
                    .order_by(XComModel.timestamp.desc())
                    .first()
                )
                links_seen_at_first_poll.append(row.value if row else None)

    local_aws_batch.on_request = look
    dag_run, _ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 0.2},
        **FAST,
    )
    assert dag_run.state == "success"
    (job,) = submitted_jobs(local_aws_batch)
    (link,) = links_seen_at_first_poll
    assert job.job_id in str(link)


def test_a_job_cancelled_outside_airflow_fails_without_retry(local_aws_batch, polysync_aws_conn, capsys):
    from datetime import timedelta

    helper = terminate_when_running(local_aws_batch)
    _dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 30},
        retries=2,
        retry_delay=timedelta(0),
        **FAST,
    )
    helper.join()
    assert ti.state == "failed" and ti.try_number == 1
    assert "was cancelled: Terminated by an operator" in capsys.readouterr().out
    assert local_aws_batch.requests.count("submitjob") == 1


def test_execution_timeout_terminates_a_deferred_run(local_aws_batch, polysync_aws_conn, capsys):
    from datetime import timedelta

    _dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 60},
        execution_timeout=timedelta(seconds=3),
        **FAST,
    )
    assert ti.state == "failed"
    (job,) = submitted_jobs(local_aws_batch)
    local_aws_batch.wait_for_job(job.job_id, timeout=10)
    assert (job.status, job.status_reason) == ("FAILED", CANCEL_REASON)
    assert "timed out" in capsys.readouterr().out


def test_on_kill_in_the_worker_terminates_the_job(local_aws_batch, polysync_aws_conn):
    operator = AwsBatchJobOperator(
        task_id="job",
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 60},
        deferrable=False,
    )
    operator._submitted = operator.start_run(task_context())  # type: ignore[arg-type]
    operator.on_kill()
    job = local_aws_batch.wait_for_job(operator._submitted.run_id)
    assert (job.status, job.status_reason) == ("FAILED", CANCEL_REASON)
    assert operator.read_state(job.job_id).status.value == "Cancelled"
    assert local_aws_batch.requests.count("terminatejob") == 1


def test_cancel_on_kill_false_leaves_the_job_running(local_aws_batch, polysync_aws_conn):
    operator = AwsBatchJobOperator(
        task_id="job",
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 1},
        deferrable=False,
        cancel_on_kill=False,
    )
    operator._submitted = operator.start_run(task_context())  # type: ignore[arg-type]
    operator.on_kill()
    assert local_aws_batch.wait_for_job(operator._submitted.run_id).status == "SUCCEEDED"
    assert "terminatejob" not in local_aws_batch.requests


def test_the_example_dag_runs_to_success(local_aws_batch, monkeypatch):
    from polysync_airflow.testing.connections import aws_connection_env

    env = aws_connection_env("aws_default", local_aws_batch)
    dag_run = run_example_dag("aws_batch_job.py", "polysync_aws_batch_job", env, monkeypatch)
    assert dag_run.state == "success"
    load = dag_run.get_task_instance("load_daily_orders").xcom_pull(task_ids="load_daily_orders")
    summary = dag_run.get_task_instance("summarize").xcom_pull(task_ids="summarize")
    assert local_aws_batch.jobs[load["run_id"]].request["shareIdentifier"] == "analytics"
    assert local_aws_batch.job_output(summary["run_id"])[0] == f"summary of {load['run_id']}\n"


def test_a_connection_that_is_not_defined_fails_before_any_request(local_aws_batch, monkeypatch, capsys):
    monkeypatch.delenv("AIRFLOW_CONN_AWS_NIGHTLY", raising=False)
    _dag_run, ti = run_single_task(
        AwsBatchJobOperator, job_definition="polysync-job", job_queue="polysync-default", aws_conn_id="aws_nightly"
    )
    assert ti.state == "failed"
    log = capsys.readouterr().out
    assert "connection 'aws_nightly' is not defined: add it" in log
    assert "NoCredentialsError" not in log and "switching to empty" not in log
    assert local_aws_batch.requests == []


@pytest.mark.parametrize(
    ("arguments", "requests", "message"),
    [
        (
            {"job_queue": "no-such-queue"},
            ["listjobs"],  # ListJobs on the queue finds it missing: nothing is submitted
            "Job queue no-such-queue does not exist in AWS Batch region us-east-1 (connection aws_local): "
            "check job_queue and the region",
        ),
        (
            {"job_definition": "no-such-definition"},
            ["listjobs", "submitjob"],
            "Job definition no-such-definition does not exist in AWS Batch region us-east-1 (connection aws_local) "
            "or has no ACTIVE revision: check job_definition (`polysync-airflow discover aws-batch --conn-id "
            "aws_local` lists the ACTIVE job definitions) "
            "(SubmitJob: Job definition no-such-definition does not exist)",
        ),
    ],
    ids=["queue", "definition"],
)
def test_a_missing_queue_or_definition_fails_at_once_without_retrying(
    arguments, requests, message, local_aws_batch, polysync_aws_conn, capsys
):
    from datetime import timedelta

    kwargs = {"job_definition": "polysync-job", "aws_conn_id": polysync_aws_conn, **arguments}
    _dag_run, ti = run_single_task(AwsBatchJobOperator, retries=1, retry_delay=timedelta(0), **kwargs)
    assert ti.state == "failed" and ti.try_number == 1  # it cannot heal: no second try
    assert local_aws_batch.requests == requests
    log = capsys.readouterr().out
    assert message in log
    assert "polysync-airflow discover aws-batch" in log
    assert "botocore.errorfactory.ClientException" not in log  # one line, not a botocore traceback


def test_a_missing_default_queue_names_the_connection_setting(local_aws_batch, monkeypatch, capsys):
    from polysync_airflow.testing.connections import aws_connection_env

    for name, value in aws_connection_env("aws_gone_queue", local_aws_batch, default_job_queue="gone").items():
        monkeypatch.setenv(name, value)
    _dag_run, ti = run_single_task(
        AwsBatchJobOperator, job_definition="polysync-job", aws_conn_id="aws_gone_queue", region_name="us-east-1"
    )
    assert ti.state == "failed"
    assert "Job queue gone does not exist" in (log := capsys.readouterr().out)
    assert "check default_job_queue in the connection's extra and the region" in log
    assert "`polysync-airflow discover aws-batch --conn-id aws_gone_queue --region us-east-1`" in log  # where it looked
    assert "submitjob" not in local_aws_batch.requests


def test_connection_id_verify_and_botocore_config(local_aws_batch, polysync_aws_conn):
    dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id="{{ 'aws_' ~ 'local' }}",  # templated, as the Amazon operators' aws_conn_id
        verify=False,
        botocore_config={"read_timeout": 7, "retries": {"max_attempts": 2}},
        parameters={"seconds": 0},
        **FAST,
    )
    assert dag_run.state == "success"
    assert ti.xcom_pull(task_ids="job")["run_id"] in local_aws_batch.jobs
    assert {"aws_conn_id", "region_name", "verify"} <= set(AwsBatchJobOperator.template_fields)


def test_verify_and_botocore_config_reach_the_hook_and_the_trigger(local_aws_batch, polysync_aws_conn):
    from polysync_airflow.operators.base import SubmittedRun

    operator = AwsBatchJobOperator(
        task_id="job",
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        verify="/etc/ssl/certs/ca-certificates.crt",
        botocore_config={"read_timeout": 7},
    )
    assert operator.hook.verify == "/etc/ssl/certs/ca-certificates.crt"
    assert operator.hook.conn.meta.config.read_timeout == 7
    trigger = operator.make_trigger(SubmittedRun("job-1", "Polysync-x", ""), None)
    _classpath, kwargs = trigger.serialize()
    assert kwargs["verify"] == "/etc/ssl/certs/ca-certificates.crt"
    assert kwargs["botocore_config"] == {"read_timeout": 7}
