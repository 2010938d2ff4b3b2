"""Provider registration: the metadata is valid and lists every operator, hook, trigger and link of the package.

Airflow's own CLI reading it is tested in tests/integration/test_provider_cli.py (unit tests spawn no Airflow)."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from importlib import resources
from types import ModuleType

import jsonschema
from airflow.sdk import BaseHook, BaseOperator
from airflow.triggers.base import BaseTrigger

import polysync_airflow.hooks
import polysync_airflow.operators
import polysync_airflow.triggers
from polysync_airflow.get_provider_info import get_provider_info


def concrete_classes(package: ModuleType, base: type) -> dict[str, list[type]]:
    """Module name -> the classes it defines (not merely imports) that subclass ``base`` and are not abstract.

    A module with none (``operators.base``: only the abstract ``PolysyncJobOperator``) is no entry point
    for users, so Airflow need not list it."""
    found: dict[str, list[type]] = {}
    for module_info in pkgutil.iter_modules(package.__path__, prefix=f"{package.__name__}."):
        module = importlib.import_module(module_info.name)
        classes = [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == module.__name__ and issubclass(cls, base) and not inspect.isabstract(cls)
        ]
        if classes:
            found[module.__name__] = classes
    return found


def registered_modules(section: str) -> list[str]:
    return sorted(module for item in get_provider_info()[section] for module in item["python-modules"])


def test_provider_info_is_valid_against_airflows_schema():
    schema = json.loads(resources.files("airflow").joinpath("provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_every_registered_class_and_module_imports():
    info = get_provider_info()
    for section in ("operators", "hooks", "triggers"):
        for item in info[section]:
            for module in item["python-modules"]:
                importlib.import_module(module)
    for path in [*info["extra-links"], *(c["hook-class-name"] for c in info["connection-types"])]:
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name)
    for path in info["cli"]:  # `airflow polysync ...`: a function returning Airflow CLI command groups
        module, _, name = path.rpartition(".")
        assert [command.name for command in getattr(importlib.import_module(module), name)()] == ["polysync"]


def test_every_operator_link_is_registered():
    from polysync_airflow import AwsBatchJobOperator, AzureBatchJobOperator

    registered = set(get_provider_info()["extra-links"])
    for operator in (AwsBatchJobOperator, AzureBatchJobOperator):
        for link in operator.operator_extra_links:
            assert f"{type(link).__module__}.{type(link).__name__}" in registered


def test_every_operator_hook_and_trigger_module_is_registered():
    """The lists follow from the package: a new module with an operator, hook or trigger must be registered."""
    for section, package, base in (
        ("operators", polysync_airflow.operators, BaseOperator),
        ("hooks", polysync_airflow.hooks, BaseHook),
        ("triggers", polysync_airflow.triggers, BaseTrigger),
    ):
        assert registered_modules(section) == sorted(concrete_classes(package, base)), section
    # the rule finds what it should: one class per platform, and the abstract bases are left out
    assert sorted(concrete_classes(polysync_airflow.triggers, BaseTrigger)) == [
        "polysync_airflow.triggers.aws_batch",
        "polysync_airflow.triggers.azure_batch",
    ]


def test_every_hook_is_a_connection_type():
    hooks = concrete_classes(polysync_airflow.hooks, BaseHook)
    expected = sorted(f"{cls.__module__}.{cls.__name__}" for classes in hooks.values() for cls in classes)
    assert sorted(c["hook-class-name"] for c in get_provider_info()["connection-types"]) == expected


def test_extra_links_are_exactly_the_operators_links():
    operators = concrete_classes(polysync_airflow.operators, BaseOperator)
    links = {
        f"{type(link).__module__}.{type(link).__name__}"
        for classes in operators.values()
        for operator in classes
        for link in operator.operator_extra_links
    }
    assert sorted(get_provider_info()["extra-links"]) == sorted(links)


def test_connection_forms_offer_the_polysync_settings():
    forms = {c["connection-type"]: set(c["conn-fields"]) for c in get_provider_info()["connection-types"]}
    assert {"default_job_queue", "monitor_link_template", "logs_link_template"} <= forms["polysync_aws_batch"]
    azure = {"account_url", "subscription_id", "resource_group", "monitor_link_template", "task_link_template"}
    assert azure <= forms["polysync_azure_batch"]
