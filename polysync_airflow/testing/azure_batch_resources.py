"""The records of the local Azure Batch service (job, task; pools are their seed dicts) and how Azure shows each.

A record's ``describe()`` is its JSON in the service's answers (``GET /jobs/{id}``, ``GET .../tasks/{id}``
and the list items), as the AWS records' ``describe()`` is theirs: the model (``azure_batch_model.py``)
keeps the records, the protocol (``azure_batch.py``) puts these bodies in its answers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Resource:
    """What jobs and tasks share: an id, the body they were created with, and a state history."""

    id: str
    body: dict[str, Any]
    state: str = "active"
    created: datetime = field(default_factory=now)
    transition: datetime = field(default_factory=now)
    previous_state: str | None = None
    ended: datetime | None = None


@dataclass
class Task(Resource):
    """A task: ``body`` is its create request; ``terminated`` is set when it is ended by a request."""

    started: datetime | None = None
    exit_code: int | None = None
    failure_info: dict[str, Any] | None = None
    terminated: threading.Event = field(default_factory=threading.Event)

    def describe(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = {
            "id": self.id,
            "url": f"/jobs/{job_id}/tasks/{self.id}",
            "eTag": f'"0x{abs(hash((self.id, self.transition))):X}"',
            "creationTime": iso(self.created),
            "lastModified": iso(self.transition),
            "state": self.state,
            "stateTransitionTime": iso(self.transition),
            "commandLine": self.body.get("commandLine", ""),
            "environmentSettings": self.body.get("environmentSettings", []),
            "constraints": self.body.get("constraints", {"maxTaskRetryCount": 0}),
        }
        for key in ("containerSettings", "displayName"):
            if key in self.body:
                result[key] = self.body[key]
        if self.previous_state:
            result["previousState"] = self.previous_state
        if self.started:
            info: dict[str, Any] = {"startTime": iso(self.started), "retryCount": 0, "requeueCount": 0}
            if self.state == "completed":
                info.update(
                    endTime=iso(self.ended),
                    exitCode=self.exit_code,
                    result="success" if self.failure_info is None else "failure",
                )
                if self.failure_info:
                    info["failureInfo"] = self.failure_info
            result["executionInfo"] = info
        elif self.state == "completed" and self.failure_info:
            result["executionInfo"] = {
                "endTime": iso(self.ended),
                "result": "failure",
                "retryCount": 0,
                "requeueCount": 0,
                "failureInfo": self.failure_info,
            }
        return result


@dataclass
class Job(Resource):
    """A job: ``body`` is its create (or last update) request, ``tasks`` its tasks by id."""

    terminate_reason: str | None = None
    scheduling_error: dict[str, Any] | None = None
    tasks: dict[str, Task] = field(default_factory=dict)

    @property
    def on_all_tasks_complete(self) -> str:
        return self.body.get("onAllTasksComplete", "noaction").lower()

    @property
    def pool_id(self) -> str | None:
        return (self.body.get("poolInfo") or {}).get("poolId")

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"startTime": iso(self.created), "poolId": self.pool_id}
        if self.ended:
            info["endTime"] = iso(self.ended)
        if self.terminate_reason:
            info["terminateReason"] = self.terminate_reason
        if self.scheduling_error:
            info["schedulingError"] = self.scheduling_error
        result = {
            "id": self.id,
            "displayName": self.body.get("displayName", self.id),
            "url": f"/jobs/{self.id}",
            "eTag": f'"0x{abs(hash((self.id, self.transition))):X}"',
            "lastModified": iso(self.transition),
            "creationTime": iso(self.created),
            "state": self.state,
            "stateTransitionTime": iso(self.transition),
            "priority": self.body.get("priority", 0),
            "maxParallelTasks": self.body.get("maxParallelTasks", -1),
            "usesTaskDependencies": False,
            "constraints": self.body.get(
                "constraints", {"maxWallClockTime": "P10675199DT2H48M5.4775807S", "maxTaskRetryCount": 0}
            ),
            "poolInfo": self.body.get("poolInfo", {}),
            "onAllTasksComplete": self.on_all_tasks_complete,
            "onTaskFailure": self.body.get("onTaskFailure", "noaction"),
            "executionInfo": info,
        }
        for key in ("jobManagerTask", "commonEnvironmentSettings", "metadata"):
            if key in self.body:
                result[key] = self.body[key]
        if self.previous_state:
            result["previousState"] = self.previous_state
        return result


POOL_NODE_FIELDS = ("currentDedicatedNodes", "currentLowPriorityNodes")


def describe_pool(pool: dict[str, Any]) -> dict[str, Any]:
    """A pool as ``GET /pools/{id}`` shows it: the seed's dict over a steady pool of one dedicated node (a seed
    or :meth:`~polysync_airflow.testing.LocalAzureBatch.set_pool` may give it no nodes and ``resizeErrors``)."""
    result: dict[str, Any] = {
        "id": pool["id"],
        "url": f"/pools/{pool['id']}",
        "state": "active",
        "allocationState": "steady",
        "vmSize": pool.get("vmSize", ""),
        "currentDedicatedNodes": 1,
        "currentLowPriorityNodes": 0,
        "targetDedicatedNodes": 1,
        "targetLowPriorityNodes": 0,
        "enableAutoScale": False,
    }
    result.update({k: v for k, v in pool.items() if k != "id"})
    return result


def pool_has_nodes(pool: dict[str, Any]) -> bool:
    """Whether a pool has a compute node to run a task on (dedicated or Spot/low-priority)."""
    described = describe_pool(pool)
    return any(int(described.get(name) or 0) > 0 for name in POOL_NODE_FIELDS)
