"""Building one-task DAGs for ``dag.test()`` in tests."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from airflow.sdk import DAG

from polysync_airflow.testing.dags import load_dag, run_dag

_ids = itertools.count()


def run_single_task(operator_class: type, **kwargs: Any):
    """Run a DAG holding one ``operator_class(task_id="job", **kwargs)``; returns (dag_run, task_instance)."""
    dag_id = f"test_{operator_class.__name__.lower()}_{next(_ids)}"
    with DAG(dag_id=dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        operator_class(task_id="job", **kwargs)
    dag_run = run_dag(dag)
    return dag_run, dag_run.get_task_instance("job")


def run_example_dag(file_name: str, dag_id: str, connection_env: dict[str, str], monkeypatch: Any):
    """Run one of ``example_dags/`` with fast polling and the given connections; returns the DagRun."""
    from pathlib import Path

    monkeypatch.setenv("POLYSYNC_EXAMPLE_POLL_INTERVAL", "0.2")
    for name, value in connection_env.items():
        monkeypatch.setenv(name, value)
    return run_dag(load_dag(Path(__file__).parents[2] / "example_dags" / file_name, dag_id))


def task_context(task_id: str = "job", try_number: int = 1, run_id: str | None = None) -> dict[str, Any]:
    """The part of a task's context that ``start_run`` reads, for driving an operator outside a DAG run."""
    ti = SimpleNamespace(
        dag_id="tests", run_id=run_id or f"manual__{uuid.uuid4()}", task_id=task_id, map_index=-1, try_number=try_number
    )
    return {"ti": ti}


def terminate_when_running(endpoint: Any, reason: str = "Terminated by an operator") -> threading.Thread:
    """A started thread that terminates the local AWS endpoint's first job seen RUNNING (within 20 s), as someone
    outside Airflow would; join it after the task ran."""

    def terminate() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for job in list(endpoint.jobs.values()):
                if job.status == "RUNNING":
                    endpoint.terminate_job({"jobId": job.job_id, "reason": reason})
                    return
            time.sleep(0.02)

    helper = threading.Thread(target=terminate)
    helper.start()
    return helper
