"""The Azure Batch job and task built from the arguments and the template, and the rules of the arguments
(pure logic)."""

from __future__ import annotations

import pytest

from polysync_airflow.ownership import TaskInstanceKey
from polysync_airflow.requests.azure_batch import (
    BATCH_ID_RE,
    AzureRunRequest,
    build_job_plan,
    build_run_request,
    environment_settings,
    job_id_for,
)
from polysync_airflow.validation import PolysyncValidationError

TEMPLATE = {
    "id": "tmpl",
    "poolInfo": {"poolId": "pool-1"},
    "constraints": {"maxWallClockTime": "PT1H", "maxTaskRetryCount": 1},
    "jobManagerTask": {
        "id": "jm",
        "commandLine": "run.sh",
        "containerSettings": {"imageName": "reg/img:1", "containerRunOptions": "--rm"},
    },
}


def plan(template=TEMPLATE, **overrides):
    kwargs = {"command_line": None, "container_image": None, "container_run_options": None, **overrides}
    request = AzureRunRequest(template_job_id="tmpl", environment=[{"name": "A", "value": "1"}], **kwargs)
    return build_job_plan(request, job_id="polysync-1", display_name="dag.task", template=template)


def test_clones_pool_constraints_and_task_defaults():
    result = plan()
    assert result.job == {
        "id": "polysync-1",
        "displayName": "dag.task",
        "poolInfo": {"poolId": "pool-1"},
        "onAllTasksComplete": "noaction",
        "constraints": {"maxWallClockTime": "PT1H", "maxTaskRetryCount": 1},
    }
    assert result.task == {
        "id": "polysync",
        "commandLine": "run.sh",
        "environmentSettings": [{"name": "A", "value": "1"}],
        "containerSettings": {"imageName": "reg/img:1", "containerRunOptions": "--rm"},
    }


def test_operator_arguments_override_the_template():
    result = plan(command_line="other.sh", container_image="reg/other:2", container_run_options="--network host")
    assert result.task["commandLine"] == "other.sh"
    assert result.task["containerSettings"] == {"imageName": "reg/other:2", "containerRunOptions": "--network host"}


def test_empty_run_options_override_the_templates():
    assert plan(container_run_options="").task["containerSettings"] == {"imageName": "reg/img:1"}


def test_no_container_settings_without_an_image():
    template = {"id": "t", "poolInfo": {"poolId": "p"}, "jobManagerTask": {"commandLine": "x"}}
    assert "containerSettings" not in plan(template).task
    assert "constraints" not in plan(template).job


def test_no_command_line_anywhere_is_an_error():
    with pytest.raises(
        PolysyncValidationError, match="command_line=None is invalid: no command line: template job 't'"
    ):
        plan({"id": "t", "poolInfo": {"poolId": "p"}})


def test_job_ids_are_one_per_try_of_a_task_instance_and_valid_batch_ids():
    key = TaskInstanceKey("a_dag_with_a_long_name" * 10, "manual__2026-11-22T10:00:00+00:00", "task", 3, 12)
    other = TaskInstanceKey(key.dag_id, key.run_id, key.task_id, 4, 12)
    ids = {job_id_for(key, 1), job_id_for(key, 12), job_id_for(other, 12), job_id_for(key, 999)}
    assert len(ids) == 4 and all(BATCH_ID_RE.match(i) and len(i) <= 64 for i in ids)
    assert job_id_for(key, 2) == job_id_for(TaskInstanceKey(key.dag_id, key.run_id, key.task_id, 3, 5), 2)


def test_parameters_become_environment_settings():
    assert environment_settings({"RUN_DATE": "2026-11-22", "rows": 5, "_flag": True}) == [
        {"name": "RUN_DATE", "value": "2026-11-22"},
        {"name": "rows", "value": "5"},
        {"name": "_flag", "value": "true"},
    ]


@pytest.mark.parametrize("name", ["1ST", "has-dash", "has space", "a.b", "é"])
def test_bad_environment_names_are_named(name):
    with pytest.raises(PolysyncValidationError) as err:
        environment_settings({name: "x"})
    assert str(err.value).startswith(f"parameters[{name!r}]") and "environment variables" in str(err.value)


def test_the_arguments_are_checked_and_kept_without_touching_the_operator():
    request = build_run_request(
        template_job_id="tmpl", parameters={"A": 1}, command_line="", container_image="img", container_run_options=""
    )
    assert request == AzureRunRequest("tmpl", [{"name": "A", "value": "1"}], None, "img", "")


@pytest.mark.parametrize(
    ("arguments", "field", "rule"),
    [
        ({"template_job_id": "bad id"}, "template_job_id", "must be a Batch job id"),
        ({"template_job_id": None}, "template_job_id", "must be a Batch job id"),
        ({"command_line": "x" * 8193}, "command_line", "at most 8192 characters"),
        ({"container_image": 7}, "container_image", "must be a string"),
        ({"container_run_options": ["--rm"]}, "container_run_options", "must be a string"),
        ({"parameters": {"1A": "x"}}, "parameters['1A']", "environment variables"),
    ],
)
def test_each_rule_names_the_argument_and_the_rule(arguments, field, rule):
    with pytest.raises(PolysyncValidationError, match=rule) as err:
        build_run_request(**{"template_job_id": "tmpl", **arguments})
    assert err.value.field == field
