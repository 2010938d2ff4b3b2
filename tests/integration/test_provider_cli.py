"""Airflow's own CLI (a real `airflow` process) reads the provider: listed hooks, links and triggers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

AIRFLOW = str(Path(sys.executable).parent / "airflow")


def run_airflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AIRFLOW, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=180
    )


@pytest.fixture(scope="module")
def airflow_cli() -> Callable[..., str]:
    def run(*args: str) -> str:
        result = run_airflow(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run


def test_airflow_providers_list_shows_the_package(airflow_cli):
    assert "polysync-airflow" in airflow_cli("providers", "list")


def test_airflow_providers_hooks_and_links(airflow_cli):
    hooks, links = airflow_cli("providers", "hooks"), airflow_cli("providers", "links")
    assert "polysync_airflow.hooks.aws_batch.AwsBatchHook" in hooks
    assert "polysync_airflow.hooks.azure_batch.AzureBatchHook" in hooks
    assert "polysync_airflow.links.aws_batch.AwsBatchJobLink" in links
    assert "polysync_airflow.links.azure_batch.AzureBatchJobLink" in links
    assert "polysync_airflow.links.azure_batch.AzureBatchTaskLink" in links


def test_airflow_providers_triggers_lists_both_platforms(airflow_cli):
    triggers = airflow_cli("providers", "triggers")
    assert "polysync_airflow.triggers.aws_batch" in triggers
    assert "polysync_airflow.triggers.azure_batch" in triggers
