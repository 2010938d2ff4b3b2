"""Azure Batch: why a task is not starting, from the task, its job (the job's scheduling error) and the job's pool
(``GET /pools/{id}``), as ``read_wait_cause`` (``hooks/azure_batch_waiting.py``) reads them. Pure, no calls.

Answers are wire JSON or SDK models alike (azure-batch models are mappings of their wire JSON)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from polysync_airflow.run_watch import describe_error
from polysync_airflow.statuses.azure_batch import read_field

HINT = (
    "hint: a task waiting in active or preparing means the pool has no available compute nodes; check its "
    "autoscale formula or the account's core quota, and inspect the pool in the Azure portal"
)
"""The seed's troubleshooting advice for a task ``preparing`` forever."""
POOL_READ_PERMISSION = "Microsoft.Batch/batchAccounts/pools/read"
JOB_READ_PERMISSION = "Microsoft.Batch/batchAccounts/jobs/read"


def pool_id_of(job: Any) -> str | None:
    """The pool a job runs on (``poolInfo.poolId``, else ``executionInfo.poolId``)."""
    return read_field(job, "poolInfo", "poolId") or read_field(job, "executionInfo", "poolId")


def read_problem(err: BaseException, what: str, permission: str) -> str:
    """Why a diagnosis read failed, naming the permission when the read was denied (401 or 403)."""
    status = getattr(err, "status_code", None)
    if status in (401, 403):
        code = getattr(getattr(err, "error", None), "code", None) or getattr(err, "reason", None) or ""
        return f"could not read {what}: access denied ({status} {code}; grant {permission} to see why the task waits)"
    return f"could not read {what}: {describe_error(err)}"


@dataclass(frozen=True)
class WaitFacts:
    """What the diagnosis reads found: the job (for its scheduling error), its pool (None: not read) and the
    reads that failed (each as :func:`read_problem` words it)."""

    job: Any = None
    pool: Any = None
    problems: Sequence[str] = field(default_factory=tuple)


def _nodes(pool: Any, kind: str) -> str:
    current, target = read_field(pool, f"current{kind}Nodes"), read_field(pool, f"target{kind}Nodes")
    return f"{current if current is not None else '?'}/{target if target is not None else '?'}"


def _error_text(error: Any) -> str:
    code, message = read_field(error, "code"), read_field(error, "message")
    text = ": ".join(str(part) for part in (code, message) if part)
    # A resize error's name-value pairs are its "values", a scheduling error's its "details".
    pairs = read_field(error, "values") or read_field(error, "details") or []
    details = [f"{read_field(pair, 'name')}={read_field(pair, 'value')}" for pair in pairs]
    return f"{text} ({', '.join(details)})" if details else text


def waiting_cause(task: Any, facts: WaitFacts) -> str:
    """Why a task has not started, in one line: the job's scheduling error, the pool's allocation state, resize
    errors and current/target dedicated and low-priority nodes, and the seed's hint."""
    parts = [f"task state {read_field(task, 'state') or 'unknown'}"]
    scheduling_error = read_field(facts.job, "executionInfo", "schedulingError")
    if scheduling_error is not None:
        parts.append(f"job scheduling error {_error_text(scheduling_error)}")
    pool = facts.pool
    if pool is not None:
        text = (
            f"pool {read_field(pool, 'id')}: allocationState {read_field(pool, 'allocationState') or 'unknown'}, "
            f"dedicated nodes {_nodes(pool, 'Dedicated')}, low-priority nodes {_nodes(pool, 'LowPriority')} "
            "(current/target)"
        )
        if read_field(pool, "enableAutoScale"):
            text += ", autoscale on"
        parts.append(text)
        parts.extend(f"resize error {_error_text(error)}" for error in read_field(pool, "resizeErrors") or [])
    parts.extend(facts.problems)
    parts.append(HINT)
    return "; ".join(parts)
