"""The records of the local AWS Batch service (job queue, job definition, job) and how AWS describes each.

A record's ``describe()`` is its item in the Describe* answers (``JobQueueDetail``, ``JobDefinition``,
``JobDetail``) and ``Job.summary()`` its ``JobSummary`` in ListJobs, as moto's models describe theirs: the
model (``aws_batch_model.py``) keeps the records, the protocol (``aws_batch.py``) puts these items in its
answers.
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ACTIVE_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
FINISHED_STATES = ("SUCCEEDED", "FAILED")
JOB_STATUSES = (*ACTIVE_STATES, *FINISHED_STATES)
DEFAULT_LOG_GROUP = "/aws/batch/job"
JOB_RESOURCE_REQUIREMENT = (
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement (vCPU/memory/GPU) is higher than that "
    "can be met by the CE(s) attached to the job queue."
)
"""AWS's ``statusReason`` for a RUNNABLE job no compute environment of its queue is large enough for."""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class ComputeEnvironment:
    """A compute environment: where a queue's jobs run. One that is not ENABLED and VALID runs nothing, and a
    job needing more vCPUs than its ``max_vcpus`` never starts (AWS keeps such jobs RUNNABLE)."""

    name: str
    arn: str
    state: str = "ENABLED"
    status: str = "VALID"
    status_reason: str = "ComputeEnvironment Healthy"
    max_vcpus: int = 256
    kind: str = "MANAGED"
    resource_type: str = "EC2"
    service_role: str = ""

    @property
    def usable(self) -> bool:
        return self.state == "ENABLED" and self.status == "VALID"

    def describe(self) -> dict[str, Any]:
        account_region = self.arn.split(":")[3:5]
        result: dict[str, Any] = {
            "computeEnvironmentName": self.name,
            "computeEnvironmentArn": self.arn,
            "ecsClusterArn": f"arn:aws:ecs:{account_region[0]}:{account_region[1]}:cluster/{self.name}_Batch",
            "serviceRole": self.service_role,
            "state": self.state,
            "type": self.kind,
            "status": self.status,
            "statusReason": self.status_reason,
            "tags": {},
            "containerOrchestrationType": "ECS",
        }
        if self.kind == "MANAGED":
            result["computeResources"] = {
                "type": self.resource_type,
                "minvCpus": 0,
                "maxvCpus": self.max_vcpus,
                "desiredvCpus": 0,
                "instanceTypes": ["optimal"],
                "subnets": [],
                "securityGroupIds": [],
            }
        return result


@dataclass
class JobQueue:
    """A job queue; with a scheduling policy (fair share) its jobs need a ``shareIdentifier``.

    ``hold_reason`` (tests): jobs reaching RUNNABLE stay there with that ``statusReason`` until it is cleared,
    as when AWS cannot find capacity (``CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - ...``)."""

    name: str
    arn: str
    priority: int = 1
    scheduling_policy_arn: str | None = None
    state: str = "ENABLED"
    compute_environments: list[ComputeEnvironment] = field(default_factory=list)
    hold_reason: str | None = None

    def describe(self) -> dict[str, Any]:
        result = {
            "jobQueueName": self.name,
            "jobQueueArn": self.arn,
            "state": self.state,
            "status": "VALID",
            "statusReason": "JobQueue Healthy",
            "priority": self.priority,
            "computeEnvironmentOrder": [
                {"order": order, "computeEnvironment": environment.arn}
                for order, environment in enumerate(self.compute_environments, start=1)
            ],
            "tags": {},
        }
        if self.scheduling_policy_arn:
            result["schedulingPolicyArn"] = self.scheduling_policy_arn
        return result

    def blocked_reason(self, vcpus: int) -> str | None:
        """Why a job needing ``vcpus`` cannot start here ("" when AWS gives no reason), None when it can."""
        if self.hold_reason is not None:
            return self.hold_reason
        if not self.compute_environments:  # a queue seeded without environments runs everything
            return None
        usable = [environment for environment in self.compute_environments if environment.usable]
        if not usable or self.state != "ENABLED":
            return ""  # AWS leaves the job RUNNABLE without a reason; the environment's status tells why
        if vcpus > max(environment.max_vcpus for environment in usable):
            return JOB_RESOURCE_REQUIREMENT
        return None


@dataclass
class JobDefinition:
    """One revision of a job definition (``ACTIVE``, or ``INACTIVE`` once deregistered): a container job, a
    multi-node parallel one (``node_properties``; its main node's container is the one that runs here) or an
    ECS-properties one (``ecs_properties``; its first essential container runs). ``command``, ``image`` and
    ``log_configuration`` are those of the container that runs."""

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
    vcpus: int = 1
    node_properties: dict[str, Any] | None = None
    ecs_properties: dict[str, Any] | None = None
    container_name: str = "default"
    """The running container's name (ECS properties), which AWS puts in its log stream's name."""

    @property
    def kind(self) -> str:
        return "multinode" if self.node_properties else "container"

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
            "type": self.kind,
            "parameters": dict(self.parameters),
            "tags": dict(self.tags),
            "propagateTags": self.propagate_tags,
            "platformCapabilities": ["EC2"],
            "containerOrchestrationType": "ECS",
        }
        if self.node_properties:
            result["nodeProperties"] = self.node_properties
        elif self.ecs_properties:
            result["ecsProperties"] = self.ecs_properties
        else:
            result["containerProperties"] = {
                "image": self.image,
                "command": list(self.command),
                "environment": list(self.environment),
                "resourceRequirements": [
                    {"type": "VCPU", "value": str(self.vcpus)},
                    {"type": "MEMORY", "value": "512"},
                ],
            }
            if self.log_configuration:
                result["containerProperties"]["logConfiguration"] = self.log_configuration
        if self.timeout:
            result["timeout"] = self.timeout
        if self.retry_strategy:
            result["retryStrategy"] = self.retry_strategy
        return result


def vcpus_of(container: Mapping[str, Any]) -> int:
    """A container's vCPUs: its ``resourceRequirements`` VCPU, else the older ``vcpus`` field, else 1."""
    for requirement in container.get("resourceRequirements") or []:
        if requirement.get("type") == "VCPU":
            return max(1, math.ceil(float(requirement["value"])))
    return int(container.get("vcpus") or 1)


def main_node_container(node_properties: Mapping[str, Any]) -> dict[str, Any]:
    """The container of a multi-node definition's main node (the node range whose ``targetNodes`` holds it)."""
    main, size = int(node_properties.get("mainNode", 0)), int(node_properties.get("numNodes", 1))
    for node_range in node_properties.get("nodeRangeProperties") or []:
        start, colon, end = str(node_range.get("targetNodes", "")).partition(":")
        first = int(start) if start else 0
        last = (int(end) if end else size - 1) if colon else first
        if first <= main <= last:
            return dict(node_range.get("container") or {})
    raise ValueError(f"nodeProperties: no nodeRangeProperties entry covers the main node {main}")


def essential_container(ecs_properties: Mapping[str, Any]) -> dict[str, Any]:
    """The container of an ECS-properties definition that runs here: its first essential one."""
    containers = [c for task in ecs_properties.get("taskProperties") or [] for c in task.get("containers") or []]
    if not containers:
        raise ValueError("ecsProperties: taskProperties must hold at least one container")
    return dict(next((c for c in containers if c.get("essential", True)), containers[0]))


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
    ecs_task_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def log_stream_name(self) -> str:
        """The stream AWS names: ``<definition>/default/<task>`` (container, multi-node: the main node's), or
        ``<definition>/<container name>/<ECS task id>`` for an ECS-properties job."""
        if self.definition.ecs_properties:
            return f"{self.definition.name}/{self.definition.container_name}/{self.ecs_task_id}"
        if self.definition.node_properties:
            return f"{self.definition.name}/default/{self.ecs_task_id}"
        return f"{self.definition.name}/default/{self.job_id.replace(':', '-')}"

    @property
    def vcpus(self) -> int:
        """The vCPUs the job asks for: its ``containerOverrides``, else its definition's."""
        overrides = self.request.get("containerOverrides") or {}
        overridden = overrides.get("resourceRequirements") or overrides.get("vcpus")
        return vcpus_of(overrides) if overridden else self.definition.vcpus

    def attempt_detail(self, exit_code: int | None) -> dict[str, Any]:
        """What an attempt says of its container(s): ``container`` or, for an ECS-properties job, ``taskProperties``."""
        container: dict[str, Any] = {
            "exitCode": exit_code,
            "logStreamName": self.log_stream_name,
            "networkInterfaces": [],
        }
        if self.definition.ecs_properties:
            return {"taskProperties": [{"containers": [{"name": self.definition.container_name, **container}]}]}
        return {"container": container}

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
            "resourceRequirements": [{"type": "VCPU", "value": str(self.vcpus)}, {"type": "MEMORY", "value": "512"}],
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
        if self.definition.node_properties:  # the nodes' containers are on the node jobs, not the parent
            detail["nodeProperties"] = self.definition.node_properties
        elif self.definition.ecs_properties:
            container = {"name": self.definition.container_name, **self.container()}
            detail["ecsProperties"] = {"taskProperties": [{"containers": [container]}]}
        elif not self.children:
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
