"""The end of an Azure Batch task's output in the task log, and the task's portal link, through
``dag.test()`` against the local Azure Batch service (real azure-batch clients, real task processes)."""

from __future__ import annotations

import pytest

from polysync_airflow import AzureBatchJobOperator
from polysync_airflow.testing.connections import azure_connection_env
from tests.integration.helpers import run_single_task

pytestmark = pytest.mark.usefixtures("airflow_db")

FAST = {"poll_interval": 0.1}
TEMPLATE_JOBS = {"polysync-template", "polysync-template-no-command", "polysync-template-lost-pool"}
PORTAL_ACCOUNT = (
    "https://portal.azure.com/#resource/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/"
    "polysync-local/providers/Microsoft.Batch/batchAccounts/polysyncdev"
)
# 25 numbered lines on stdout, then an optional line on stderr and an exit code
PRINTS_25_LINES = (
    '/bin/sh -c \'for i in $(seq 1 25); do printf "out line %02d\\n" $i; done; '
    'if [ -n "$ERR" ]; then echo "$ERR" >&2; fi; exit ${EXIT_CODE:-0}\''
)


def the_job(endpoint):
    (job,) = [job for job in endpoint.jobs.values() if job.id not in TEMPLATE_JOBS]
    return job


def file_reads(endpoint):
    return [r for r in endpoint.requests if "/files/" in r]


def run(endpoint, conn_id, parameters=None, command_line=PRINTS_25_LINES, **kwargs):
    return run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id=conn_id,
        command_line=command_line,
        parameters=parameters or {},
        **FAST,
        **kwargs,
    )


def extra_link(ti, name: str) -> str | None:
    """The link as the API server gives it: from the serialized DAG, reading the link's XCom row."""
    from airflow.models.serialized_dag import SerializedDagModel

    task = SerializedDagModel.get_dag(ti.dag_id).get_task(ti.task_id)
    assert {"Azure Batch Job", "Azure Batch Task"} <= set(task.extra_links)
    return task.get_extra_links(ti, name)


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_success_with_fetch_logs_shows_the_last_lines_of_stdout_and_the_task_link(
    deferrable, local_azure_batch, polysync_azure_conn, capsys
):
    dag_run, ti = run(local_azure_batch, polysync_azure_conn, fetch_logs=True, deferrable=deferrable)
    assert dag_run.state == "success"
    job = the_job(local_azure_batch)
    task_url = f"{PORTAL_ACCOUNT}/jobs/{job.id}/tasks/polysync"
    log = capsys.readouterr().out
    assert f"Last 20 line(s) of stdout.txt of run {job.id}/polysync (task page: {task_url}):" in log
    assert "out line 06" in log and "out line 25" in log
    assert "out line 05" not in log  # only the last 20 lines
    info = ti.xcom_pull(task_ids="job")
    assert (info["status"], info["message"], info["exit_code"]) == ("Success", "Task exit code: 0", 0)
    assert info["monitor_url"] == f"{PORTAL_ACCOUNT}/jobs/{job.id}"
    assert ti.xcom_pull(task_ids="job", key="_link_AzureBatchTaskLink") == task_url
    assert extra_link(ti, "Azure Batch Task") == task_url
    assert extra_link(ti, "Azure Batch Job") == f"{PORTAL_ACCOUNT}/jobs/{job.id}"


def test_success_without_fetch_logs_reads_no_file(local_azure_batch, polysync_azure_conn, capsys):
    dag_run, ti = run(local_azure_batch, polysync_azure_conn)
    assert dag_run.state == "success"
    job = the_job(local_azure_batch)
    log = capsys.readouterr().out
    assert "out line" not in log and "stdout.txt" not in log
    assert file_reads(local_azure_batch) == []
    # the task link is there all the same
    assert (
        ti.xcom_pull(task_ids="job", key="_link_AzureBatchTaskLink") == f"{PORTAL_ACCOUNT}/jobs/{job.id}/tasks/polysync"
    )


def test_failure_shows_the_last_lines_of_stderr(local_azure_batch, polysync_azure_conn, capsys):
    _dag_run, ti = run(local_azure_batch, polysync_azure_conn, {"EXIT_CODE": 3, "ERR": "boom: disk full"})
    assert ti.state == "failed"
    job = the_job(local_azure_batch)
    task_url = f"{PORTAL_ACCOUNT}/jobs/{job.id}/tasks/polysync"
    log = capsys.readouterr().out
    assert f"Last 1 line(s) of stderr.txt of run {job.id}/polysync (task page: {task_url}):\nboom: disk full" in log
    assert "out line" not in log  # stderr had something to say: stdout is not read
    assert f"Run {job.id}/polysync failed: The task exited with an exit code representing a failure" in log


def test_failure_with_an_empty_stderr_shows_stdout(local_azure_batch, polysync_azure_conn, capsys):
    _dag_run, ti = run(local_azure_batch, polysync_azure_conn, {"EXIT_CODE": 4})
    assert ti.state == "failed"
    job = the_job(local_azure_batch)
    log = capsys.readouterr().out
    assert f"stderr.txt of run {job.id}/polysync is empty" in log
    assert f"Last 20 line(s) of stdout.txt of run {job.id}/polysync (task page: " in log and "out line 25" in log
    assert "(exit code 4)" in log


def test_a_denied_stdout_is_a_warning_and_the_run_still_succeeds(local_azure_batch, polysync_azure_conn, capsys):
    local_azure_batch.denied_files.add("stdout.txt")
    dag_run, ti = run(local_azure_batch, polysync_azure_conn, fetch_logs=True)
    assert dag_run.state == "success" and ti.state == "success"
    job = the_job(local_azure_batch)
    log = capsys.readouterr().out
    assert f"Could not read stdout.txt of run {job.id}/polysync: access denied (403" in log
    assert "out line" not in log
    assert f"HEAD /jobs/{job.id}/tasks/polysync/files/stdout.txt" in file_reads(local_azure_batch)
    assert ti.xcom_pull(task_ids="job")["status"] == "Success"


def test_a_denied_stderr_is_a_warning_and_the_failure_is_unchanged(local_azure_batch, polysync_azure_conn, capsys):
    local_azure_batch.denied_files.add("stderr.txt")
    _dag_run, ti = run(local_azure_batch, polysync_azure_conn, {"EXIT_CODE": 5, "ERR": "secret failure"})
    assert ti.state == "failed"
    job = the_job(local_azure_batch)
    log = capsys.readouterr().out
    assert f"Could not read stderr.txt of run {job.id}/polysync: access denied (403" in log
    assert "secret failure" not in log
    assert f"Last 20 line(s) of stdout.txt of run {job.id}/polysync" in log  # what can be read is shown
    assert (
        f"Run {job.id}/polysync failed: The task exited with an exit code representing a failure (exit code 5)" in log
    )


def test_a_missing_stdout_is_a_warning_and_the_run_still_succeeds(local_azure_batch, polysync_azure_conn, capsys):
    # the task removes its own stdout.txt: the service really has no such file
    dag_run, ti = run(
        local_azure_batch, polysync_azure_conn, command_line="/bin/sh -c 'echo gone; rm -f stdout.txt'", fetch_logs=True
    )
    assert dag_run.state == "success"
    job = the_job(local_azure_batch)
    log = capsys.readouterr().out
    assert f"Could not read stdout.txt of run {job.id}/polysync: the file does not exist (404 Not Found)" in log
    assert ti.xcom_pull(task_ids="job")["status"] == "Success"


def test_files_the_service_reports_missing_are_warnings_on_failure(local_azure_batch, polysync_azure_conn, capsys):
    local_azure_batch.missing_files.update({"stderr.txt", "stdout.txt"})
    _dag_run, ti = run(local_azure_batch, polysync_azure_conn, {"EXIT_CODE": 6, "ERR": "never seen"})
    assert ti.state == "failed"
    job = the_job(local_azure_batch)
    log = capsys.readouterr().out
    for name in ("stderr.txt", "stdout.txt"):
        assert f"Could not read {name} of run {job.id}/polysync: the file does not exist (404 Not Found)" in log
    assert (
        f"Run {job.id}/polysync failed: The task exited with an exit code representing a failure (exit code 6)" in log
    )


def test_without_link_settings_there_is_no_task_link_and_a_warning(local_azure_batch, monkeypatch, capsys):
    for name, value in azure_connection_env(
        "azure_no_links", local_azure_batch, subscription_id=None, resource_group=None
    ).items():
        monkeypatch.setenv(name, value)
    dag_run, ti = run(local_azure_batch, "azure_no_links", fetch_logs=True)
    assert dag_run.state == "success"
    job = the_job(local_azure_batch)
    log = capsys.readouterr().out
    assert f"No Azure portal link for task {job.id}/polysync: set 'subscription_id' and 'resource_group'" in log
    assert ti.xcom_pull(task_ids="job", key="_link_AzureBatchTaskLink") == ""
    assert f"Last 20 line(s) of stdout.txt of run {job.id}/polysync:\n" in log  # the heading without a link


def test_a_custom_task_link_template(local_azure_batch, monkeypatch):
    env = azure_connection_env(
        "azure_custom_links",
        local_azure_batch,
        monitor_link_template="https://batch.example/{account}/{job_id}",
        task_link_template="https://batch.example/{account}/{job_id}/task/{task_id}",
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    dag_run, ti = run(local_azure_batch, "azure_custom_links")
    assert dag_run.state == "success"
    job = the_job(local_azure_batch)
    assert ti.xcom_pull(task_ids="job", key="_link_AzureBatchTaskLink") == (
        f"https://batch.example/polysyncdev/{job.id}/task/polysync"
    )
