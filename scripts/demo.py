"""The demo: run the example DAGs against the local endpoints and print each task's result.

Everything is local: a throw-away AIRFLOW_HOME under .demo/, a local AWS Batch endpoint and a local
Azure Batch service on 127.0.0.1 that really run each job's command, and ``dag.test()`` (operator,
trigger and resume in one process).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".demo" / "airflow-home"
LOG = ROOT / ".demo" / "airflow.log"
DAG_IDS = ["polysync_aws_batch_job", "polysync_azure_batch_job"]
LINK_KEYS = {"polysync_aws_batch_job": "_link_AwsBatchJobLink", "polysync_azure_batch_job": "_link_AzureBatchJobLink"}


def _prepare_airflow_home() -> None:
    shutil.rmtree(HOME.parent, ignore_errors=True)
    HOME.mkdir(parents=True)
    os.environ.update(
        AIRFLOW_HOME=str(HOME),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "example_dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        POLYSYNC_EXAMPLE_POLL_INTERVAL="0.5",
    )


@contextlib.contextmanager
def _output_to(path: Path):
    """Send everything written to stdout/stderr (Airflow's task and trigger logs) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)


def main() -> int:
    _prepare_airflow_home()
    import airflow
    from airflow import settings
    from airflow.utils import db

    from polysync_airflow.compat import dag_bag
    from polysync_airflow.testing import LocalAwsBatch, LocalAzureBatch
    from polysync_airflow.testing.connections import aws_connection_env, azure_connection_env

    print(f"Airflow {airflow.__version__}, AIRFLOW_HOME={HOME}; task and trigger logs go to {LOG}")
    with _output_to(LOG):
        settings.configure_orm()
        db.resetdb()

    with _output_to(LOG):
        dagbag = dag_bag(str(ROOT / "example_dags"))
    if dagbag.import_errors:
        print(f"example DAGs failed to import: {dagbag.import_errors}")
        return 1
    failures = 0
    with LocalAwsBatch() as aws, LocalAzureBatch() as azure:
        os.environ.update(aws_connection_env("aws_default", aws))
        os.environ.update(azure_connection_env("azure_batch_default", azure))
        for dag_id in DAG_IDS:
            dag = dagbag.get_dag(dag_id)
            with _output_to(LOG):
                run = dag.test()
            print(f"\nDAG {dag_id}: {run.state}")
            for ti in sorted(run.get_task_instances(), key=lambda t: t.start_date or t.end_date):
                info = ti.xcom_pull(task_ids=ti.task_id) or {}
                link = ti.xcom_pull(task_ids=ti.task_id, key=LINK_KEYS[dag_id])
                print(f"  task {ti.task_id}: {ti.state}")
                print(f"    run id:       {info.get('run_id', '-')}")
                print(f"    status:       {info.get('status', '-')}")
                print(f"    message:      {info.get('message', '-')}")
                print(f"    exit code:    {info.get('exit_code', '-')}")
                print(f"    monitor link: {link or '-'}")
                if info.get("run_id"):
                    if dag_id == "polysync_aws_batch_job":
                        stdout, _ = aws.job_output(info["run_id"])
                    else:
                        stdout, _ = azure.task_output(*info["run_id"].split("/"))
                    print(f"    job output:   {json.dumps(stdout.strip())}")
            failures += run.state != "success"
    print("\ndemo:", "all DAG runs succeeded" if not failures else f"{failures} DAG run(s) failed; see {LOG}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
