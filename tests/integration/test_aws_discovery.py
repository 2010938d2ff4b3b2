"""Discovery: DescribeJobDefinitions across pages, and the `polysync-airflow discover aws-batch` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from polysync_airflow.cli import main
from polysync_airflow.hooks.aws_batch import AwsBatchHook
from polysync_airflow.testing.connections import aws_connection
from polysync_airflow.testing.dags import load_dag


@pytest.fixture
def many_definitions(local_aws_batch):
    """120 definitions (so DescribeJobDefinitions needs several pages), some with several revisions,
    one whose newest revision is INACTIVE and one that is INACTIVE altogether."""
    client = boto3.client(
        "batch",
        endpoint_url=local_aws_batch.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    )
    for i in range(120):
        client.register_job_definition(
            jobDefinitionName=f"def-{i:03d}",
            type="container",
            parameters={"n": str(i)},
            containerProperties={"image": "busybox", "command": ["true"]},
        )
    for revision in (2, 3):
        client.register_job_definition(
            jobDefinitionName="def-000",
            type="container",
            parameters={"n": "0", "rev": str(revision)},
            containerProperties={"image": "busybox", "command": ["true"]},
        )
    client.deregister_job_definition(jobDefinition="def-000:3")  # newest revision INACTIVE -> revision 2
    client.deregister_job_definition(jobDefinition="def-119:1")  # gone altogether
    local_aws_batch.requests.clear()
    return local_aws_batch


def test_lists_the_highest_active_revision_of_each_definition(many_definitions, polysync_aws_conn):
    definitions = AwsBatchHook(polysync_aws_conn).list_job_definitions()
    by_name = {d.name: d for d in definitions}
    # 119 of ours plus the seeded polysync-etl (revision 2) and polysync-job
    assert len(definitions) == 121
    assert "def-119" not in by_name
    assert (by_name["def-000"].revision, by_name["def-000"].parameters) == (2, {"n": "0", "rev": "2"})
    assert by_name["def-000"].arn.endswith(":job-definition/def-000:2")
    assert by_name["def-042"].parameters == {"n": "42"}
    assert by_name["polysync-etl"].revision == 2
    assert many_definitions.requests.count("describejobdefinitions") >= 2  # it followed nextToken


def test_cli_prints_json(many_definitions, polysync_aws_conn, capsys):
    assert main(["discover", "aws-batch", "--conn-id", polysync_aws_conn, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert len(printed) == 121
    assert {"name": "def-007", "revision": 1, "arn": printed[7]["arn"], "parameters": {"n": "7"}} in printed
    assert set(printed[0]) == {"name", "revision", "arn", "parameters"}


def test_cli_writes_a_dag_with_one_task_per_definition(local_aws_batch, polysync_aws_conn, tmp_path, capsys):
    dag_file = tmp_path / "imported_batch_jobs.py"
    assert main(["discover", "aws-batch", "--conn-id", polysync_aws_conn, "--dag-file", str(dag_file)]) == 0
    assert "polysync-etl:2" in capsys.readouterr().out

    dag = load_dag(dag_file, "imported_batch_jobs")
    tasks = {task.task_id: task for task in dag.tasks}
    assert set(tasks) == {"polysync_etl", "polysync_job"}
    assert tasks["polysync_etl"].job_definition == "polysync-etl"
    assert tasks["polysync_etl"].parameters == {
        "run_date": "1970-01-01",
        "rows": "10",
        "seconds": "1",
        "mode": "full",
    }
    assert tasks["polysync_job"].aws_conn_id == polysync_aws_conn


def test_the_installed_command_runs(local_aws_batch, polysync_aws_conn):
    command = Path(sys.executable).parent / "polysync-airflow"
    result = subprocess.run(
        [str(command), "discover", "aws-batch", "--conn-id", polysync_aws_conn],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        check=True,
    )
    assert "polysync-job:1\tarn:aws:batch:us-east-1:123456789012:job-definition/polysync-job:1" in result.stdout
    assert "2 job definition(s)" in result.stderr


def test_cli_without_a_region_says_where_to_set_it(local_aws_batch, monkeypatch, capsys):
    no_region = aws_connection(local_aws_batch)
    del no_region["extra"]["region_name"]
    monkeypatch.setenv("AIRFLOW_CONN_AWS_NO_REGION", json.dumps(no_region))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)  # no region from a profile of this machine either
    assert main(["discover", "aws-batch", "--conn-id", "aws_no_region"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: no AWS region for connection 'aws_no_region': pass --region or set region_name in the "
        "connection's extra (or AWS_DEFAULT_REGION)"
    )

    assert main(["discover", "aws-batch", "--conn-id", "aws_no_region", "--region", "us-east-1", "--json"]) == 0
    assert "polysync-job" in {item["name"] for item in json.loads(capsys.readouterr().out)}


def test_the_installed_command_reports_a_missing_connection_in_one_line():
    command = Path(sys.executable).parent / "polysync-airflow"
    result = subprocess.run(
        [str(command), "discover", "azure-batch", "--conn-id", "nope"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: connection 'nope' is not defined: add it (airflow connections add nope ...) or set AIRFLOW_CONN_NOPE"
    ]
