"""The Azure Batch operator through ``dag.test()`` against the local Azure Batch service, with the real
azure-batch clients (sync in the operator, aio in the trigger). The trigger on its own: test_azure_batch_trigger.py."""

from __future__ import annotations

import importlib.util
from datetime import timedelta

import pytest

from polysync_airflow import AzureBatchJobOperator
from polysync_airflow.testing._http import Response
from polysync_airflow.testing.connections import azure_connection_env
from tests.integration.helpers import run_example_dag, run_single_task, task_context

pytestmark = pytest.mark.usefixtures("airflow_db")

FAST = {"poll_interval": 0.1}
TEMPLATE_JOBS = {"polysync-template", "polysync-template-no-command", "polysync-template-lost-pool"}


def created_jobs(endpoint):
    return [job for job in endpoint.jobs.values() if job.id not in TEMPLATE_JOBS]


HAS_TASK_STATE_STORE = importlib.util.find_spec("airflow.models.task_state_store") is not None  # Airflow 3.3


def writes(endpoint):
    return [r for r in endpoint.requests if not r.startswith("GET")]


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_success(deferrable, local_azure_batch, polysync_azure_conn, capsys):
    dag_run, ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id=polysync_azure_conn,
        parameters={"RUN_DATE": "{{ ds }}", "ROWS": 12, "SECONDS_TO_RUN": 0.2},
        deferrable=deferrable,
        **FAST,
    )
    assert dag_run.state == "success"
    (job,) = created_jobs(local_azure_batch)
    info = ti.xcom_pull(task_ids="job")
    timing = info.pop("timing")  # issue 15: how long the job queued and ran, besides the keys below
    assert timing["attempts"] == 1 and timing["submitted_at"] and timing["ended_at"]
    url = (
        "https://portal.azure.com/#resource/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/"
        f"polysync-local/providers/Microsoft.Batch/batchAccounts/polysyncdev/jobs/{job.id}"
    )
    assert info == {
        "run_id": f"{job.id}/polysync",
        "status": "Success",
        "message": "Task exit code: 0",
        "exit_code": 0,
        "monitor_url": url,
        "job_name": job.id,
    }
    assert ti.xcom_pull(task_ids="job", key="_link_AzureBatchJobLink") == url
    stdout, _ = local_azure_batch.task_output(job.id, "polysync")
    assert stdout == f"processing {dag_run.logical_date.date()} with 12 rows\n"
    # the clone: the template's pool and constraints, a display name from the DAG and task
    assert job.body["poolInfo"] == {"poolId": "polysync-pool"}
    assert job.body["constraints"]["maxWallClockTime"] == "PT1H"
    assert ti.dag_id in job.body["displayName"] and "job" in job.body["displayName"]
    # created with noaction, task added, then switched to terminatejob: the job ended with its task; then, on
    # Airflow 3.1 and 3.2, marked watched by whatever polled it, if a poll saw it running (a loaded machine may see
    # it ended first). On 3.3 the task_state_store records it: no write.
    metadata = job.body.get("metadata") or []
    marked = {"name": "polysync:watched", "value": "triggerer" if deferrable else "worker"} in metadata
    assert not (marked and HAS_TASK_STATE_STORE)
    assert writes(local_azure_batch) == [
        "POST /jobs",
        f"POST /jobs/{job.id}/tasks",
        f"PATCH /jobs/{job.id}",
        *([f"PATCH /jobs/{job.id}"] if marked else []),
    ]
    identity = {"polysync:dag": ti.dag_id, "polysync:run": ti.run_id, "polysync:task": "job", "polysync:try": "1"}
    assert identity.items() <= {item["name"]: item["value"] for item in metadata}.items()
    assert (job.state, job.terminate_reason) == ("completed", "AllTasksComplete")
    task = job.tasks["polysync"]
    assert task.body["containerSettings"] == {"imageName": "polysync.azurecr.io/etl:1.4", "containerRunOptions": "--rm"}
    assert {"name": "ROWS", "value": "12"} in task.body["environmentSettings"]
    log = capsys.readouterr().out
    # One line per change: "is running" when a poll saw the task running (a loaded machine may first see it ended).
    assert log.count("is running (Running)") <= 1 and "is completed (Success)" in log


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_non_zero_exit_fails_with_the_message_and_the_stderr_tail(
    deferrable, local_azure_batch, polysync_azure_conn, capsys
):
    _dag_run, ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id=polysync_azure_conn,
        parameters={"EXIT_CODE": 7, "SECONDS_TO_RUN": 0},
        deferrable=deferrable,
        **FAST,
    )
    assert ti.state == "failed"
    (job,) = created_jobs(local_azure_batch)
    log = capsys.readouterr().out
    assert (
        f"Run {job.id}/polysync failed: The task exited with an exit code representing a failure (exit code 7)" in log
    )
    assert "Last 1 line(s) of stderr.txt" in log and "failing with exit code 7" in log


def test_template_defaults_are_overridden_by_operator_arguments(local_azure_batch, polysync_azure_conn):
    dag_run, _ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id=polysync_azure_conn,
        command_line="/bin/sh -c 'echo override $GREETING'",
        container_image="reg.example/other:9",
        container_run_options="--network host",
        parameters={"GREETING": "hello"},
        **FAST,
    )
    assert dag_run.state == "success"
    (job,) = created_jobs(local_azure_batch)
    task = job.tasks["polysync"]
    assert task.body["commandLine"] == "/bin/sh -c 'echo override $GREETING'"
    assert task.body["containerSettings"] == {
        "imageName": "reg.example/other:9",
        "containerRunOptions": "--network host",
    }
    assert local_azure_batch.task_output(job.id, "polysync")[0] == "override hello\n"


def test_a_template_without_a_command_line_needs_one(local_azure_batch, polysync_azure_conn, capsys):
    _, ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template-no-command",
        azure_batch_conn_id=polysync_azure_conn,
    )
    assert ti.state == "failed"
    assert "no command line: template job 'polysync-template-no-command'" in capsys.readouterr().out
    assert created_jobs(local_azure_batch) == [] and writes(local_azure_batch) == []
    _, ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template-no-command",
        azure_batch_conn_id=polysync_azure_conn,
        command_line="/bin/sh -c 'echo ok'",
        **FAST,
    )
    assert ti.state == "success"


def test_the_templates_pool_is_missing(local_azure_batch, polysync_azure_conn, capsys):
    _, ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template-lost-pool",
        azure_batch_conn_id=polysync_azure_conn,
        retries=2,
        retry_delay=timedelta(0),
    )
    assert ti.state == "failed" and ti.try_number == 1
    assert (
        "PoolNotFound: pool 'deleted-pool' of template job 'polysync-template-lost-pool' does not exist"
        in capsys.readouterr().out
    )
    assert created_jobs(local_azure_batch) == [] and writes(local_azure_batch) == []


def test_the_template_job_does_not_exist(local_azure_batch, polysync_azure_conn, capsys):
    _, ti = run_single_task(AzureBatchJobOperator, template_job_id="nope", azure_batch_conn_id=polysync_azure_conn)
    assert ti.state == "failed"
    assert "Template job 'nope' does not exist in Batch account 'polysyncdev'" in capsys.readouterr().out


def test_a_pool_deleted_after_submission_surfaces_as_a_scheduling_error(local_azure_batch, polysync_azure_conn, capsys):
    def delete_pool_once_the_job_exists(request: str) -> None:
        if request.startswith("PATCH /jobs/"):
            local_azure_batch.delete_pool("polysync-pool")

    local_azure_batch.on_request = delete_pool_once_the_job_exists
    _, ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id=polysync_azure_conn,
        **FAST,
    )
    assert ti.state == "failed"
    assert "job scheduling error PoolNotFound: The pool polysync-pool specified for the job does not exist" in (
        capsys.readouterr().out
    )


def test_wrong_account_key_is_a_clear_error_without_the_key(local_azure_batch, monkeypatch, capsys):
    wrong_key = "d3Jvbmcta2V5LW5ldmVyLXByaW50ZWQ="
    for name, value in azure_connection_env("azure_wrong_key", local_azure_batch, key=wrong_key).items():
        monkeypatch.setenv(name, value)
    _, ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id="azure_wrong_key",
        retries=2,
        retry_delay=timedelta(0),
    )
    assert ti.state == "failed" and ti.try_number == 1
    log = capsys.readouterr().out
    assert "Azure Batch did not accept the credentials of connection 'azure_wrong_key'" in log
    assert "(AuthenticationFailed)" in log
    assert wrong_key not in log
    assert created_jobs(local_azure_batch) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [({"account_url": ""}, "has no account_url"), ({"account_url": "batch.example.com"}, "malformed account_url")],
)
def test_account_url_problems_fail_before_any_request(local_azure_batch, monkeypatch, capsys, extra, message):
    for name, value in azure_connection_env("azure_bad_url", local_azure_batch, **extra).items():
        monkeypatch.setenv(name, value)
    _, ti = run_single_task(
        AzureBatchJobOperator, template_job_id="polysync-template", azure_batch_conn_id="azure_bad_url"
    )
    assert ti.state == "failed"
    assert message in capsys.readouterr().out
    assert local_azure_batch.requests == []


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"template_job_id": "bad id!"}, "template_job_id='bad id!' is invalid"),
        ({"template_job_id": "x" * 65}, "1-64 letters"),
        ({"parameters": {"NOT-VALID": 1}}, "parameters['NOT-VALID']='1' is invalid"),
        ({"parameters": "{{ 'not json' }}"}, "parameters='not json' is invalid"),
        ({"command_line": 42}, "command_line=42 is invalid: must be a string"),
    ],
)
def test_bad_input_fails_before_any_request(local_azure_batch, polysync_azure_conn, capsys, arguments, expected):
    kwargs = {"template_job_id": "polysync-template", "azure_batch_conn_id": polysync_azure_conn, **arguments}
    _, ti = run_single_task(AzureBatchJobOperator, **kwargs)
    assert ti.state == "failed"
    assert expected in capsys.readouterr().out
    assert local_azure_batch.requests == []


def test_a_refused_task_add_leaves_nothing_behind(local_azure_batch, polysync_azure_conn, capsys):
    error = {"code": "InvalidPropertyValue", "message": {"lang": "en-US", "value": "The value is invalid."}}
    local_azure_batch.fail_next("POST", r"^/jobs/[^/]+/tasks$", Response.json(400, error))
    _, ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id=polysync_azure_conn,
    )
    assert ti.state == "failed"
    assert created_jobs(local_azure_batch) == []  # the job it had created was deleted
    assert any(r.startswith("DELETE /jobs/polysync-") for r in local_azure_batch.requests)
    assert "InvalidPropertyValue" in capsys.readouterr().out


def test_a_task_add_lost_to_a_server_error_is_finished_by_the_retry(local_azure_batch, polysync_azure_conn, capsys):
    error = {"code": "InternalError", "message": {"lang": "en-US", "value": "Server encountered an internal error."}}
    for _ in range(4):  # more than the SDK's own retries
        local_azure_batch.fail_next("POST", r"^/jobs/[^/]+/tasks$", Response.json(500, error))
    _, ti = run_single_task(
        AzureBatchJobOperator, template_job_id="polysync-template", azure_batch_conn_id=polysync_azure_conn, **FAST
    )
    assert ti.state == "success"
    (job,) = created_jobs(local_azure_batch)  # kept, found again, and finished: not deleted, not created twice
    assert (job.state, list(job.tasks)) == ("completed", ["polysync"])
    assert "the service had accepted the failed-looking submission" in capsys.readouterr().out


def test_operator_on_kill_in_the_worker(local_azure_batch, polysync_azure_conn):
    operator = AzureBatchJobOperator(
        task_id="t",
        template_job_id="polysync-template",
        azure_batch_conn_id=polysync_azure_conn,
        parameters={"SECONDS_TO_RUN": 60},
        deferrable=False,
    )
    operator._submitted = operator.start_run(task_context())  # type: ignore[arg-type]
    operator.on_kill()
    job_id = operator._submitted.run_id.split("/")[0]
    local_azure_batch.wait_for_job(job_id)
    assert operator.read_state(operator._submitted.run_id).status.value == "Cancelled"


def test_the_example_dag_runs_to_success(local_azure_batch, monkeypatch):
    env = azure_connection_env("azure_batch_default", local_azure_batch)
    dag_run = run_example_dag("azure_batch_job.py", "polysync_azure_batch_job", env, monkeypatch)
    assert dag_run.state == "success"
    score = dag_run.get_task_instance("score_customers").xcom_pull(task_ids="score_customers")
    publish = dag_run.get_task_instance("publish_scores").xcom_pull(task_ids="publish_scores")
    assert (
        local_azure_batch.task_output(*publish["run_id"].split("/"))[0] == f"publishing scores of {score['run_id']}\n"
    )


def test_the_connection_id_is_templated(local_azure_batch, polysync_azure_conn):
    assert "azure_batch_conn_id" in AzureBatchJobOperator.template_fields
    dag_run, _ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id="{{ 'azure_batch_' ~ 'local' }}",
        parameters={"SECONDS_TO_RUN": 0},
        **FAST,
    )
    assert dag_run.state == "success"
    assert len(created_jobs(local_azure_batch)) == 1
