"""The real-Airflow harness: local endpoints plus the four Airflow components, started once per session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from polysync_airflow.testing import LocalAwsBatch, LocalAzureBatch
from polysync_airflow.testing.connections import aws_connection_env, azure_connection_env
from tests.e2e.cluster import COMPONENTS, AirflowCluster

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts"
_cluster: AirflowCluster | None = None


class E2E:
    def __init__(self, cluster: AirflowCluster, aws: LocalAwsBatch, azure: LocalAzureBatch, gates: Path) -> None:
        self.cluster, self.aws, self.azure, self.gates = cluster, aws, azure, gates

    def open_gate(self, task_id: str, try_number: int) -> None:
        """Let the job that try ``try_number`` of ``task_id`` submitted end (exit code 0)."""
        (self.gates / f"{task_id}-{try_number}").touch()


@pytest.fixture(scope="session")
def e2e() -> Iterator[E2E]:
    global _cluster
    home = Path(tempfile.mkdtemp(prefix="polysync-e2e-"))
    dags = home / "dags"
    dags.mkdir()
    for dag_file in [*(ROOT / "example_dags").glob("*.py"), *(ROOT / "tests" / "e2e" / "dags").glob("*.py")]:
        shutil.copy(dag_file, dags / dag_file.name)
    # Jobs take a few seconds to start, as real ones do: a trigger that fires within a second of the
    # deferral races the scheduler (see the README, "Known Airflow limits").
    with LocalAwsBatch(step_seconds=2.5) as aws, LocalAzureBatch(step_seconds=2.5) as azure:
        # Jobs that run until the test creates their gate file (tests/e2e/dags/polysync_e2e.py).
        gates = home / "gates"
        gates.mkdir()
        aws.register_job_definition(
            {
                "jobDefinitionName": "polysync-gated",
                "containerProperties": {"command": ["/bin/sh", "-c", "while [ ! -e Ref::gate ]; do sleep 0.2; done"]},
            }
        )
        env = {
            **aws_connection_env("aws_default", aws),
            **azure_connection_env("azure_batch_default", azure),
            "POLYSYNC_EXAMPLE_POLL_INTERVAL": "1",
            "POLYSYNC_E2E_GATES": str(gates),
        }
        cluster = _cluster = AirflowCluster(home / "airflow", dags, env)
        try:
            cluster.start()
            yield E2E(cluster, aws, azure, gates)
        finally:
            cluster.stop()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for component in COMPONENTS:
                if cluster.log_path(component).exists():
                    shutil.copy(cluster.log_path(component), ARTIFACTS / f"{component}.log")
            _cluster = None
            shutil.rmtree(home, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, put the end of each Airflow component's log into the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _cluster is not None:
        for component in COMPONENTS:
            path = _cluster.log_path(component)
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-40:]
                report.sections.append((f"airflow {component} log (last 40 lines)", "\n".join(tail)))
