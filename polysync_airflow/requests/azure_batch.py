"""The Azure Batch job and task, validated and built from the operator's arguments and the template job.

:func:`build_run_request` checks the arguments before any request (pure); :func:`build_job_plan` then clones the
template job, once it has been read, into the bodies of the new job and its task. Every rule names the argument,
the value and the rule (:class:`~polysync_airflow.validation.PolysyncValidationError`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from polysync_airflow.ownership import TaskInstanceKey
from polysync_airflow.validation import PolysyncValidationError, as_optional_str, stringify_parameters

BATCH_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TASK_ID = "polysync"


def job_id_for(key: TaskInstanceKey, try_number: int) -> str:
    """The job of one try of the task instance: ``polysync-<guid of the task instance>-<try>``."""
    return f"polysync-{key.uuid.hex}-{try_number}"


def environment_settings(parameters: Any) -> list[dict[str, str]]:
    """Parameters as the task's ``environmentSettings`` (same stringification as AWS)."""
    settings = []
    for name, value in stringify_parameters(parameters).items():
        if not ENV_NAME_RE.fullmatch(name):
            raise PolysyncValidationError(
                f"parameters[{name!r}]",
                value,
                "parameter names become environment variables: letters, digits and underscores, not starting "
                "with a digit",
            )
        settings.append({"name": name, "value": value})
    return settings


@dataclass(frozen=True)
class AzureRunRequest:
    """The operator's arguments, checked: which template job, and what the task takes instead of its defaults."""

    template_job_id: str
    environment: list[dict[str, str]]
    command_line: str | None
    container_image: str | None
    container_run_options: str | None


def build_run_request(
    *,
    template_job_id: Any,
    parameters: Any = None,
    command_line: Any = None,
    container_image: Any = None,
    container_run_options: Any = None,
) -> AzureRunRequest:
    """Validate the arguments (no request is made); an empty string from templating counts as not set, except
    for ``container_run_options``, where it clears the template's."""
    if not isinstance(template_job_id, str) or not BATCH_ID_RE.fullmatch(template_job_id):
        raise PolysyncValidationError(
            "template_job_id",
            template_job_id,
            "must be a Batch job id: 1-64 letters, digits, hyphens and underscores",
        )
    command = as_optional_str("command_line", command_line, max_length=8192)
    image = as_optional_str("container_image", container_image, max_length=1024)
    if container_run_options not in (None, "") and not isinstance(container_run_options, str):
        raise PolysyncValidationError("container_run_options", container_run_options, "must be a string")
    return AzureRunRequest(template_job_id, environment_settings(parameters), command, image, container_run_options)


@dataclass(frozen=True)
class AzureJobPlan:
    """What will be created: the job's and the task's wire JSON (built and checked before any write)."""

    job: dict[str, Any]
    task: dict[str, Any]


def build_job_plan(
    request: AzureRunRequest,
    *,
    job_id: str,
    display_name: str,
    template: Any,
    marks: Mapping[str, str] | None = None,
) -> AzureJobPlan:
    """Clone the template's pool and constraints; the request's arguments override its task defaults. ``marks``
    (the task instance's identity, see ownership.py) become the job's metadata."""
    command_line, container_image = request.command_line, request.container_image
    container_run_options = request.container_run_options
    manager = template.get("jobManagerTask") or {}
    container = manager.get("containerSettings") or {}
    command = command_line or manager.get("commandLine")
    if not command:
        raise PolysyncValidationError(
            "command_line",
            command_line,
            f"no command line: template job {template.get('id')!r} has no job manager task command line, so "
            "pass command_line=",
        )
    job: dict[str, Any] = {
        "id": job_id,
        "displayName": display_name[:1024],
        "poolInfo": {"poolId": (template.get("poolInfo") or {}).get("poolId")},
        "onAllTasksComplete": "noaction",  # set to terminatejob once the task is in (see submit)
    }
    if template.get("constraints"):
        job["constraints"] = dict(template["constraints"])
    if marks:
        job["metadata"] = [{"name": name, "value": value} for name, value in marks.items()]
    task: dict[str, Any] = {"id": TASK_ID, "commandLine": command, "environmentSettings": request.environment}
    image = container_image or container.get("imageName")
    if image:
        settings = {"imageName": image}
        options = container_run_options if container_run_options is not None else container.get("containerRunOptions")
        if options:
            settings["containerRunOptions"] = options
        task["containerSettings"] = settings
    return AzureJobPlan(job, task)
