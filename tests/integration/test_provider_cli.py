"""Airflow's own CLI (a real `airflow` process) reads the provider: hooks, links, triggers and `airflow polysync`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from airflow import __version__ as airflow_version
from packaging.version import Version

AIRFLOW = str(Path(sys.executable).parent / "airflow")
reads_provider_cli_key = pytest.mark.skipif(
    Version(airflow_version) < Version("3.2"), reason="Airflow 3.1 does not read the provider's cli key"
)


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


@reads_provider_cli_key
def test_airflow_polysync_help(airflow_cli):
    for args in (
        ("polysync", "--help"),
        ("polysync", "discover", "--help"),
        ("polysync", "discover", "aws-batch", "--help"),
    ):
        text = airflow_cli(*args)
        assert "`" not in text
    assert "--conn-id" in text and "--region" in text


@reads_provider_cli_key
def test_airflow_polysync_discover_aws_batch(local_aws_batch, polysync_aws_conn):
    result = run_airflow("polysync", "discover", "aws-batch", "--conn-id", polysync_aws_conn)
    assert result.returncode == 0, result.stderr
    assert "polysync-job:1\tarn:aws:batch:us-east-1:123456789012:job-definition/polysync-job:1" in result.stdout
    assert "2 job definition(s)" in result.stderr
    assert local_aws_batch.requests.count("describejobdefinitions") >= 1


@reads_provider_cli_key
def test_airflow_polysync_discover_missing_connection_is_one_line():
    result = run_airflow("polysync", "discover", "azure-batch", "--conn-id", "nope")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "error: connection 'nope' is not defined: add it (airflow connections add nope ...) or set AIRFLOW_CONN_NOPE"
    )
    assert "Traceback" not in result.stderr
