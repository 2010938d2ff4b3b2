"""Provider registration: the metadata is valid and Airflow's CLI shows the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from polysync_airflow.get_provider_info import get_provider_info


def test_provider_info_is_valid_against_airflows_schema():
    schema = json.loads(resources.files("airflow").joinpath("provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_every_registered_class_and_module_imports():
    import importlib

    info = get_provider_info()
    for section in ("operators", "hooks", "triggers"):
        for item in info[section]:
            for module in item["python-modules"]:
                importlib.import_module(module)
    for path in [*info["extra-links"], *(c["hook-class-name"] for c in info["connection-types"])]:
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name)


def test_every_operator_link_is_registered():
    from polysync_airflow import AwsBatchJobOperator, AzureBatchJobOperator

    registered = set(get_provider_info()["extra-links"])
    for operator in (AwsBatchJobOperator, AzureBatchJobOperator):
        for link in operator.operator_extra_links:
            assert f"{type(link).__module__}.{type(link).__name__}" in registered


def test_connection_forms_offer_the_polysync_settings():
    forms = {c["connection-type"]: set(c["conn-fields"]) for c in get_provider_info()["connection-types"]}
    assert {"default_job_queue", "monitor_link_template", "logs_link_template"} <= forms["polysync_aws_batch"]
    azure = {"account_url", "subscription_id", "resource_group", "monitor_link_template", "task_link_template"}
    assert azure <= forms["polysync_azure_batch"]


@pytest.fixture(scope="module")
def airflow_cli():
    airflow = str(Path(sys.executable).parent / "airflow")

    def run(*args: str) -> str:
        result = subprocess.run([airflow, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=180)
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
