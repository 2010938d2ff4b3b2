"""Airflow looks every extra link up at the end of each worker run and logs an ERROR for a link never
stored: a task that succeeded must have no ERROR line in its log, whichever links it stored.

``dag.test()`` logs through structlog to the process's stdout, so ``capfd`` (not ``caplog``) sees the log."""

from __future__ import annotations

import re

import pytest

from polysync_airflow import AwsBatchJobOperator, AzureBatchJobOperator
from tests.integration.helpers import run_single_task

pytestmark = pytest.mark.usefixtures("airflow_db")

FAST = {"poll_interval": 0.1}
ERROR_LINE = re.compile(r"^\S+ \[(error|critical)\s*\]", re.MULTILINE)


def error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if ERROR_LINE.match(line) or "XCom not found" in line]


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_a_successful_aws_task_logs_no_error(deferrable, local_aws_batch, polysync_aws_conn, capfd):
    dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 0.3},
        deferrable=deferrable,
        **FAST,
    )

    log = capfd.readouterr().out
    assert dag_run.state == "success"
    assert "Run " in log and " succeeded: " in log  # the task log is really in what was captured
    assert error_lines(log) == []
    (job,) = local_aws_batch.jobs.values()
    assert ti.xcom_pull(task_ids="job", key="_link_AwsBatchJobLink").endswith(f"#jobs/detail/{job.job_id}")
    assert ti.xcom_pull(task_ids="job", key="_link_AwsBatchJobLogsLink") == ""  # no logs wanted, no link


def test_a_successful_mapped_aws_task_logs_no_error(local_aws_batch, polysync_aws_conn, capfd):
    from datetime import datetime

    from airflow.sdk import DAG

    from polysync_airflow.testing.dags import run_dag

    with DAG(dag_id="mapped_links", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        AwsBatchJobOperator.partial(
            task_id="job", job_definition="polysync-job", aws_conn_id=polysync_aws_conn, **FAST
        ).expand(parameters=[{"message": "a", "seconds": 0.2}, {"message": "b", "seconds": 0.2}])

    dag_run = run_dag(dag)

    log = capfd.readouterr().out
    assert dag_run.state == "success"
    assert error_lines(log) == []
    assert len(local_aws_batch.jobs) == 2
    # each map index keeps its own job's link, and returns it (not the links of every map index)
    for ti in dag_run.get_task_instances():
        link = ti.xcom_pull(task_ids="job", key="_link_AwsBatchJobLink", map_indexes=ti.map_index)
        result = ti.xcom_pull(task_ids="job", map_indexes=ti.map_index)
        assert isinstance(link, str) and link.endswith(f"#jobs/detail/{result['run_id']}"), link
        assert result["monitor_url"] == link


def test_an_aws_task_with_its_logs_stores_both_links_and_logs_no_error(local_aws_batch, polysync_aws_conn, capfd):
    dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=polysync_aws_conn,
        parameters={"seconds": 0.3, "message": "with logs"},
        fetch_logs=True,
        **FAST,
    )

    log = capfd.readouterr().out
    assert dag_run.state == "success"
    assert error_lines(log) == []
    assert "/cloudwatch/home?" in ti.xcom_pull(task_ids="job", key="_link_AwsBatchJobLogsLink")


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_a_successful_azure_task_logs_no_error(deferrable, local_azure_batch, polysync_azure_conn, capfd):
    dag_run, ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id=polysync_azure_conn,
        parameters={"RUN_DATE": "2026-01-01", "ROWS": 3, "SECONDS_TO_RUN": 0.2},
        deferrable=deferrable,
        **FAST,
    )

    log = capfd.readouterr().out
    assert dag_run.state == "success"
    assert error_lines(log) == []
    assert ti.xcom_pull(task_ids="job", key="_link_AzureBatchTaskLink").endswith("/tasks/polysync")


def test_a_task_failing_before_it_submits_logs_no_link_lookup_error(local_aws_batch, polysync_aws_conn, capfd):
    dag_run, _ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        job_queue="no such queue!",
        aws_conn_id=polysync_aws_conn,
        **FAST,
    )

    log = capfd.readouterr().out
    assert dag_run.state == "failed"
    assert "XCom not found" not in log
