"""AWS Batch: why a job is not starting, from the job, its queue (DescribeJobQueues) and the queue's compute
environments (DescribeComputeEnvironments), as ``read_wait_cause`` (``hooks/aws_batch_waiting.py``) reads them.
Pure, no calls."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from polysync_airflow.run_watch import describe_error

HINT = (
    "hint: a job stuck in RUNNABLE means the compute environment can't satisfy its resource requirements; "
    "check vCPU quotas (EC2 / Fargate) and the environment's instance types"
)
"""The seed's troubleshooting advice for a job stuck in RUNNABLE."""


def _container_vcpus(container: Mapping[str, Any]) -> float:
    for requirement in container.get("resourceRequirements") or []:
        if requirement.get("type") == "VCPU":
            try:
                return float(requirement.get("value"))
            except (TypeError, ValueError):
                return 0.0
    vcpus = container.get("vcpus")
    return float(vcpus) if isinstance(vcpus, (int, float)) and not isinstance(vcpus, bool) else 0.0


def job_vcpus(job: Mapping[str, Any]) -> float:
    """The vCPUs a described job asks for (the main node's for a multi-node job, the sum of its containers' for
    an ECS-properties job); 0 when the answer does not say."""
    if job.get("container"):
        return _container_vcpus(job["container"])
    ecs = job.get("ecsProperties") or {}
    containers = [c for task in ecs.get("taskProperties") or [] for c in task.get("containers") or []]
    if containers:
        return sum(_container_vcpus(c) for c in containers)
    main = main_node_container(job.get("nodeProperties") or {})
    return _container_vcpus(main) if main is not None else 0.0


def main_node_container(node_properties: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The container of a multi-node job's main node: the ``nodeRangeProperties`` entry whose ``targetNodes``
    (``"0"``, ``"0:3"``, ``":"``, ``"2:"``) holds ``mainNode``; None when none does."""
    main, size = node_properties.get("mainNode", 0), node_properties.get("numNodes", 1)
    for node_range in node_properties.get("nodeRangeProperties") or []:
        start, colon, end = str(node_range.get("targetNodes", "")).partition(":")
        try:
            first = int(start) if start else 0
            last = (int(end) if end else size - 1) if colon else first
        except ValueError:
            continue
        if first <= main <= last:
            return node_range.get("container") or {}
    return None


def read_problem(err: BaseException, operation: str) -> str:
    """Why a diagnosis read failed, naming the IAM permission when the read was denied."""
    code = None
    response = getattr(err, "response", None)
    if isinstance(response, Mapping):
        code = (response.get("Error") or {}).get("Code")
    if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
        return f"could not call {operation}: access denied (grant batch:{operation} to see why the job waits)"
    return f"could not call {operation}: {describe_error(err)}"


@dataclass(frozen=True)
class WaitFacts:
    """What the diagnosis reads found: the job's queue (None: not read) and its compute environments in the
    queue's order, and the reads that failed (each as :func:`read_problem` words it)."""

    queue: Mapping[str, Any] | None = None
    environments: Sequence[Mapping[str, Any]] = ()
    problems: Sequence[str] = field(default_factory=tuple)


def environment_names(queue: Mapping[str, Any]) -> list[str]:
    """The compute environments (ARNs or names) of a DescribeJobQueues entry, in the queue's order."""
    order = sorted(queue.get("computeEnvironmentOrder") or [], key=lambda entry: entry.get("order") or 0)
    return [entry["computeEnvironment"] for entry in order if entry.get("computeEnvironment")]


def _state_text(item: Mapping[str, Any]) -> str:
    text = f"{item.get('state') or 'unknown state'}, {item.get('status') or 'unknown status'}"
    reason = item.get("statusReason")
    healthy = item.get("status") == "VALID"
    return f"{text} ({reason})" if reason and not healthy else text


def _vcpus_text(vcpus: float) -> str:
    return f"{vcpus:g} vCPU" + ("" if vcpus == 1 else "s")


def waiting_cause(job: Mapping[str, Any], facts: WaitFacts) -> str:
    """Why a described job has not started, in one line: its ``statusReason``, its queue's state and status,
    its compute environments' state, status and ``maxvCpus`` against the job's vCPUs, and the seed's hint."""
    reason = job.get("statusReason")
    parts = [f"statusReason {reason!r}" if reason else "AWS Batch gives no statusReason"]
    if facts.queue is not None:
        parts.append(f"job queue {facts.queue.get('jobQueueName')}: {_state_text(facts.queue)}")
        if not environment_names(facts.queue):
            parts.append("the job queue has no compute environment")
    vcpus = job_vcpus(job)
    for environment in facts.environments:
        text = f"compute environment {environment.get('computeEnvironmentName')}: {_state_text(environment)}"
        max_vcpus = (environment.get("computeResources") or {}).get("maxvCpus")
        if isinstance(max_vcpus, (int, float)):
            text += f", maxvCpus {max_vcpus:g}"
            if vcpus and math.ceil(vcpus) > max_vcpus:
                text += f", less than the job's {_vcpus_text(vcpus)}"
            elif vcpus:
                text += f" for the job's {_vcpus_text(vcpus)}"
        parts.append(text)
    parts.extend(facts.problems)
    parts.append(HINT)
    return "; ".join(parts)
