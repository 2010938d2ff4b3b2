"""The records of the local AWS Batch service (job queue, job definition, job) and how AWS describes each.

A record's ``describe()`` is its item in the Describe* answers (``JobQueueDetail``, ``JobDefinition``,
``JobDetail``) and ``Job.summary()`` its ``JobSummary`` in ListJobs, as moto's models describe theirs: the
model (``aws_batch_model.py``) keeps the records, the protocol (``aws_batch.py``) puts these items in its
answers.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

ACTIVE_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
FINISHED_STATES = ("SUCCEEDED", "FAILED")
JOB_STATUSES = (*ACTIVE_STATES, *FINISHED_STATES)
DEFAULT_LOG_GROUP = "/aws/batch/job"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class JobQueue:
    """A job queue; with a scheduling policy (fair share) its jobs need a ``shareIdentifier``."""

    name: str
    arn: str
    priority: int = 1
    scheduling_policy_arn: str | None = None
    state: str = "ENABLED"

    def describe(self) -> dict[str, Any]:
        result = {
            "jobQueueName": self.name,
            "jobQueueArn": self.arn,
            "state": self.state,
            "status": "VALID",
            "priority": self.priority,
            "computeEnvironmentOrder": [],
            "tags": {},
        }
        if self.scheduling_policy_arn:
            result["schedulingPolicyArn"] = self.scheduling_policy_arn
        return result


@dataclass
class JobDefinition:
    """One revision of a container job definition (``ACTIVE``, or ``INACTIVE`` once deregistered)."""

    name: str
    revision: int
    arn: str
    command: list[str]
    parameters: dict[str, str] = field(default_factory=dict)
    environment: list[dict[str, str]] = field(default_factory=list)
    status: str = "ACTIVE"
    timeout: dict[str, int] | None = None
    retry_strategy: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    propagate_tags: bool = False
    image: str = "busybox"
    log_configuration: dict[str, Any] | None = None

    @property
    def log_group(self) -> str:
        """Where the jobs' output goes: the ``awslogs-group`` option, else AWS Batch's default group."""
        options = (self.log_configuration or {}).get("options") or {}
        return options.get("awslogs-group") or DEFAULT_LOG_GROUP

    def describe(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "jobDefinitionName": self.name,
            "jobDefinitionArn": self.arn,
            "revision": self.revision,
            "status": self.status,
            "type": "container",
            "parameters": dict(self.parameters),
            "containerProperties": {
                "image": self.image,
                "command": list(self.command),
                "environment": list(self.environment),
                "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
            },
            "tags": dict(self.tags),
            "propagateTags": self.propagate_tags,
            "platformCapabilities": ["EC2"],
            "containerOrchestrationType": "ECS",
        }
        if self.log_configuration:
            result["containerProperties"]["logConfiguration"] = self.log_configuration
        if self.timeout:
            result["timeout"] = self.timeout
        if self.retry_strategy:
            result["retryStrategy"] = self.retry_strategy
        return result


@dataclass
class Job:
    """A submitted job: ``request`` is its SubmitJob body, ``cancel`` is set when it is terminated or cancelled.
    An array job's ``children`` are jobs too (id ``<parent id>:<index>``, with their ``array_index``)."""

    job_id: str
    name: str
    arn: str
    queue: JobQueue
    definition: JobDefinition
    parameters: dict[str, str]
    request: dict[str, Any]
    created_at: int = field(default_factory=now_ms)
    status: str = "SUBMITTED"
    status_reason: str | None = None
    started_at: int | None = None
    stopped_at: int | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    array_index: int | None = None
    children: list[Job] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def log_stream_name(self) -> str:
        return f"{self.definition.name}/default/{self.job_id.replace(':', '-')}"

    def status_summary(self) -> dict[str, int]:
        summary = dict.fromkeys(JOB_STATUSES, 0)
        for child in self.children:
            summary[child.status] += 1
        return summary

    def container(self) -> dict[str, Any]:
        container: dict[str, Any] = {
            "image": self.definition.image,
            "command": substitute(self.definition.command, self.parameters),
            "environment": self.environment_list(),
        }
        if self.started_at is not None:  # AWS names the stream once the container has started
            container["logStreamName"] = self.log_stream_name
        if self.definition.log_configuration:
            container["logConfiguration"] = self.definition.log_configuration
        if self.exit_code is not None:
            container["exitCode"] = self.exit_code
        return container

    def environment_list(self) -> list[dict[str, str]]:
        return [
            {"name": item["name"], "value": substitute([item["value"]], self.parameters)[0]}
            for item in self.definition.environment
        ]

    def describe(self) -> dict[str, Any]:
        req = self.request
        detail: dict[str, Any] = {
            "jobArn": self.arn,
            "jobName": self.name,
            "jobId": self.job_id,
            "jobQueue": self.queue.arn,
            "status": self.status,
            "attempts": list(self.attempts),
            "createdAt": self.created_at,
            "dependsOn": list(req.get("dependsOn", [])),
            "jobDefinition": self.definition.arn,
            "parameters": dict(self.parameters),
            "tags": dict(self.tags),
            "propagateTags": bool(req.get("propagateTags", self.definition.propagate_tags)),
            "platformCapabilities": ["EC2"],
        }
        if not self.children:
            detail["container"] = self.container()
        for key, value in (
            ("statusReason", self.status_reason),
            ("startedAt", self.started_at),
            ("stoppedAt", self.stopped_at),
            ("shareIdentifier", req.get("shareIdentifier")),
            ("schedulingPriority", req.get("schedulingPriorityOverride")),
            ("timeout", req.get("timeout") or self.definition.timeout),
            ("retryStrategy", req.get("retryStrategy") or self.definition.retry_strategy),
        ):
            if value is not None:
                detail[key] = value
        if self.children:
            detail["arrayProperties"] = {"size": len(self.children), "statusSummary": self.status_summary()}
        elif self.array_index is not None:
            detail["arrayProperties"] = {"index": self.array_index}
        return detail

    def summary(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "jobArn": self.arn,
            "jobId": self.job_id,
            "jobName": self.name,
            "createdAt": self.created_at,
            "status": self.status,
            "jobDefinition": self.definition.arn,
        }
        for key, value in (
            ("statusReason", self.status_reason),
            ("startedAt", self.started_at),
            ("stoppedAt", self.stopped_at),
        ):
            if value is not None:
                item[key] = value
        if self.exit_code is not None:
            item["container"] = {"exitCode": self.exit_code}
        if self.children:
            item["arrayProperties"] = {"size": len(self.children)}
        elif self.array_index is not None:
            item["arrayProperties"] = {"index": self.array_index}
        return item


_REF = re.compile(r"Ref::([A-Za-z0-9_]+)")


def substitute(command: list[str], parameters: dict[str, str]) -> list[str]:
    """Replace ``Ref::name`` with the parameter's value, leaving unknown placeholders as AWS does."""
    return [_REF.sub(lambda m: parameters.get(m.group(1), m.group(0)), part) for part in command]
