"""The pytest plugin as a user meets it: connection fixtures for the DAG's own connection ids, and the
opt-in throw-away Airflow home and metadata database (run in a fresh pytest process, in a user's project)."""

from __future__ import annotations

import textwrap
from datetime import datetime

import pytest
from airflow.models.trigger import Trigger
from airflow.sdk import DAG
from airflow.utils.session import create_session
from sqlalchemy import select

from polysync_airflow import AwsBatchJobOperator, AzureBatchJobOperator
from polysync_airflow.testing.dags import poll_fast, run_dag
from tests.integration.user_project import outcome, run_pytest, write_project

pytestmark = pytest.mark.usefixtures("airflow_db")


def test_the_dags_own_connection_ids_point_at_the_local_endpoints(
    polysync_connect_aws, polysync_connect_azure, local_aws_batch, local_azure_batch
):
    assert polysync_connect_aws() == "aws_default"
    polysync_connect_aws("aws_nightly", default_job_queue="polysync-fairshare")
    assert polysync_connect_azure() == "azure_batch_default"
    with DAG(dag_id="own_connection_ids", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        AwsBatchJobOperator(task_id="default_conn", job_definition="polysync-job", parameters={"seconds": 0})
        AwsBatchJobOperator(
            task_id="named_conn",
            job_definition="polysync-job",
            aws_conn_id="aws_nightly",
            share_identifier="teamA",
            parameters={"seconds": 0},
        )
        AzureBatchJobOperator(task_id="azure_default_conn", template_job_id="polysync-template")

    dag_run = run_dag(poll_fast(dag))

    assert dag_run.state == "success"
    assert sorted(job.queue.name for job in local_aws_batch.jobs.values()) == ["polysync-default", "polysync-fairshare"]
    assert len([job for job in local_azure_batch.jobs.values() if job.id.startswith("polysync-")]) >= 1


def test_poll_fast_reaches_mapped_tasks(polysync_aws_conn, local_aws_batch):
    with DAG(dag_id="mapped_poll_fast", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        plain = AwsBatchJobOperator(task_id="plain", job_definition="polysync-job", aws_conn_id=polysync_aws_conn)
        mapped = AwsBatchJobOperator.partial(
            task_id="mapped", job_definition="polysync-job", aws_conn_id=polysync_aws_conn
        ).expand(parameters=[{"message": "a", "seconds": 0}, {"message": "b", "seconds": 0}])

    poll_fast(dag, seconds=0.1)

    assert plain.poll_interval == 0.1 and mapped.partial_kwargs["poll_interval"] == 0.1
    dag_run = run_dag(dag)
    assert dag_run.state == "success"
    assert sorted(local_aws_batch.job_output(job_id)[0] for job_id in local_aws_batch.jobs) == ["a\n", "b\n", "hello\n"]
    with create_session() as session:  # dag.test() leaves the triggers it ran in the table
        triggers = [trigger.kwargs for trigger in session.scalars(select(Trigger))]
    intervals = [kwargs["poll_interval"] for kwargs in triggers if kwargs.get("job_id") in local_aws_batch.jobs]
    assert intervals == [0.1, 0.1, 0.1]


USER_TEST = """
import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG

from polysync_airflow import AwsBatchJobOperator
from polysync_airflow.testing.dags import poll_fast, run_dag


def test_the_home_is_a_throwaway_one(polysync_airflow_db):
    home = polysync_airflow_db
    assert os.environ["AIRFLOW_HOME"] == str(home.path) and home.dags_folder.is_dir()
    assert home.database.is_file()
    Path("home.txt").write_text(str(home.path))


def test_a_dag_runs_with_its_own_connection_id(polysync_airflow_db, polysync_connect_aws, local_aws_batch):
    polysync_connect_aws()  # aws_default
    with DAG(dag_id="user_dag", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        AwsBatchJobOperator(task_id="load", job_definition="polysync-job", parameters={"seconds": 0})
    assert run_dag(poll_fast(dag)).state == "success"
"""


def test_the_airflow_home_option_makes_and_removes_a_throwaway_home(tmp_path):
    project = write_project(
        tmp_path / "project",
        {"pytest.ini": "[pytest]\npolysync_airflow_home = true\n", "tests/test_user.py": USER_TEST},
    )
    own_database = tmp_path / "my-real-airflow.db"

    result = run_pytest(project, "-q", environment={"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{own_database}"})

    assert result.returncode == 0, outcome(result)
    assert "2 passed" in result.stdout
    home = (project / "home.txt").read_text()
    assert home.startswith("/") and not (tmp_path / home).exists()  # deleted when the session ended
    assert not own_database.exists()  # the database the environment named is never touched


def test_the_command_line_flag_works_even_when_the_conftest_imports_airflow(tmp_path):
    conftest = "import airflow.sdk  # imported at the top, after the plugin made the home\n"
    project = write_project(tmp_path / "project", {"conftest.py": conftest, "tests/test_user.py": USER_TEST})

    result = run_pytest(project, "-q", "--polysync-airflow-home")

    assert result.returncode == 0, outcome(result)
    assert "2 passed" in result.stdout


def test_without_the_option_the_db_fixture_says_how_to_turn_it_on(tmp_path):
    test = textwrap.dedent(
        """
        def test_needs_a_db(polysync_airflow_db):
            pass
        """
    )
    project = write_project(tmp_path / "project", {"test_user.py": test})

    result = run_pytest(project, "-q")

    assert result.returncode != 0
    assert "the throw-away Airflow home is off: set `polysync_airflow_home = true`" in result.stdout, outcome(result)
