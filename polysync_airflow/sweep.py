"""The orphan sweep: stop the Polysync jobs that no task instance owns any more.

A job can outlive its task: a task marked failed before the triggerer picked its trigger up gets no
``on_kill`` (and on Airflow 3.1 and 3.2 triggers have none at all), a deleted DAG run takes its task
instances with it, and a worker killed while it polled (``deferrable=False``) leaves its job running. Every
job carries the identity of the task instance that submitted it (``ownership.py``: AWS tags, Azure job
metadata), so the sweep lists the jobs still queued or running, reads their task instances' states through
what Airflow lets a task (or a client of its REST API) read, and decides for each job (:func:`decide`):

- **stop** it when its task instance ended (success, failed, skipped, removed, upstream_failed), its DAG run
  is gone, or a later try of its task instance has a job of its own;
- **leave** it when its task instance is still scheduled, queued, running, deferred or up for retry (that
  try will adopt or stop it), when it was submitted with ``cancel_on_kill=False``, or when it carries no
  identity (submitted before the marks existed, or not by Polysync).

A stop is the platform's cancel (AWS TerminateJob, Azure terminate task then job) with a reason naming the
task instance and why. Each job the sweep looks at gets one log line. It runs as ``polysync-airflow sweep``
(``cli/sweep.py``) or as :class:`~polysync_airflow.operators.sweep.PolysyncOrphanSweepOperator` in a maintenance
DAG.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from polysync_airflow.ownership import TaskInstanceKey, cancel_on_kill_of
from polysync_airflow.run_watch import Log, describe_error
from polysync_airflow.status import CANCEL_REASON

if TYPE_CHECKING:
    from polysync_airflow.hooks.aws_batch import AwsBatchHook
    from polysync_airflow.hooks.azure_batch import AzureBatchHook

Instance = tuple[str, str, str, int]
"""(dag id, run id, task id, map index): a task instance, whatever its try."""

ENDED_STATES = frozenset({"success", "failed", "skipped", "removed", "upstream_failed"})
"""Task instance states in which no try runs, nor will without a user clearing it: their jobs are orphans."""
ALIVE_STATES = frozenset(
    {"scheduled", "queued", "running", "deferred", "up_for_retry", "up_for_reschedule", "restarting", "none"}
)
"""States whose try (or next try) adopts or stops the job itself. ``none``: just cleared, about to be scheduled."""

AWS_ACTIVE_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
AWS_JOB_NAME = re.compile(r"^Polysync-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
AZURE_JOB_ID = re.compile(r"^polysync-[0-9a-f]{32}-\d+(-[0-9a-f]{8})?$")


@dataclass(frozen=True)
class ActiveJob:
    """A Polysync job still queued or running, as the sweep sees it."""

    platform: str
    run_id: str
    """What the platform's cancel takes: the AWS job id, the Azure ``{jobId}/{taskId}``."""
    native_status: str
    owner: TaskInstanceKey | None
    """The task instance and try that submitted it (None: the job carries no identity)."""
    cancel_on_kill: bool
    created: float = 0.0
    """Epoch seconds: orders the jobs of one try (a try that ran again, e.g. ``airflow tasks test``)."""
    cancelling: bool = False


@dataclass(frozen=True)
class Verdict:
    job: ActiveJob
    stop: bool
    why: str

    @property
    def reason(self) -> str:
        """What the platform's cancel records: ``Cancelled by Polysync sweep: <task instance>: <why>``. It starts
        with the cancel reason the status tables recognise, so a try that still reads the job reports it
        cancelled."""
        owner = self.job.owner.task_instance if self.job.owner else "unknown task instance"
        return f"{CANCEL_REASON} sweep: {owner}: {self.why}"[:1024]


def _later_jobs(jobs: Sequence[ActiveJob]) -> dict[ActiveJob, ActiveJob]:
    """For each job a later try of its task instance also has a job of, that newest job."""
    newest: dict[Instance, ActiveJob] = {}
    for job in jobs:
        if job.owner is None:
            continue
        held = newest.get(job.owner.instance)
        order = (job.owner.try_number, job.created)
        if held is None or order > (held.owner.try_number, held.created):  # type: ignore[union-attr]
            newest[job.owner.instance] = job
    return {
        job: newest[job.owner.instance]
        for job in jobs
        if job.owner is not None and newest[job.owner.instance] is not job
    }


def decide(jobs: Sequence[ActiveJob], states: Mapping[Instance, str | None]) -> list[Verdict]:
    """Whether to stop each job, and why. ``states``: the state of each task instance that exists (``None``:
    it has no state); a task instance absent from it is gone with its DAG run."""
    later = _later_jobs(jobs)
    verdicts = []
    for job in jobs:
        owner = job.owner
        if owner is None:
            verdicts.append(Verdict(job, False, "it carries no task instance identity (not submitted by this version)"))
            continue
        if not job.cancel_on_kill:
            verdicts.append(Verdict(job, False, "it was submitted with cancel_on_kill=False"))
            continue
        if job.cancelling:
            verdicts.append(Verdict(job, False, "it is being cancelled already"))
            continue
        if owner.instance not in states:
            verdicts.append(Verdict(job, True, f"its DAG run {owner.run_id} is gone"))
            continue
        state = str(states[owner.instance] or "none").lower()
        if state in ENDED_STATES:
            verdicts.append(Verdict(job, True, f"its task instance ended ({state})"))
        elif job in later:
            newer = later[job]
            try_number = newer.owner.try_number if newer.owner else "?"
            verdicts.append(
                Verdict(
                    job,
                    True,
                    f"a later try (try {try_number}) owns job {newer.run_id}; this is try {owner.try_number}'s",
                )
            )
        elif state in ALIVE_STATES:
            verdicts.append(Verdict(job, False, f"its task instance is {state}"))
        else:  # a state this version does not know: never stop on a guess
            verdicts.append(Verdict(job, False, f"its task instance is in state {state!r}, unknown to the sweep"))
    return verdicts


# -- where the jobs are --------------------------------------------------------------------------------


class JobSource(Protocol):
    platform: str

    def active_jobs(self) -> list[ActiveJob]:
        """The Polysync jobs still queued or running."""

    def stop(self, job: ActiveJob, reason: str) -> None:
        """The platform's cancel."""


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return value / 1000 if value > 1e11 else float(value)  # AWS: milliseconds
    return 0.0


class AwsBatchJobs:
    """The Polysync jobs of the job queues an AWS connection reaches (every queue of its region by default).

    Costs per sweep: DescribeJobQueues (unless queues are given), then per queue one ListJobs per active status
    (pages of 100), and one DescribeJobs per 100 Polysync jobs found (the tags are only there)."""

    platform = "aws-batch"

    def __init__(self, hook: AwsBatchHook, job_queues: Sequence[str] | None = None) -> None:
        self.hook = hook
        self.job_queues = list(job_queues or [])

    def _queues(self) -> list[str]:
        if self.job_queues:
            return self.job_queues
        pages = self.hook.conn.get_paginator("describe_job_queues").paginate()
        return [queue["jobQueueName"] for page in pages for queue in page.get("jobQueues", [])]

    def active_jobs(self) -> list[ActiveJob]:
        from polysync_airflow.statuses.aws_batch import is_cancel_reason

        summaries: dict[str, dict[str, Any]] = {}
        for queue in self._queues():
            for status in AWS_ACTIVE_STATUSES:
                pages = self.hook.conn.get_paginator("list_jobs").paginate(jobQueue=queue, jobStatus=status)
                for page in pages:
                    for summary in page.get("jobSummaryList", []):
                        if AWS_JOB_NAME.fullmatch(summary.get("jobName") or ""):
                            summaries[summary["jobId"]] = summary
        ids = list(summaries)
        details = {
            job["jobId"]: job for i in range(0, len(ids), 100) for job in self.hook.describe_jobs(ids[i : i + 100])
        }
        jobs = []
        for job_id, summary in summaries.items():
            detail = details.get(job_id) or summary
            tags = detail.get("tags") or {}
            reason = detail.get("statusReason") or summary.get("statusReason")
            jobs.append(
                ActiveJob(
                    self.platform,
                    job_id,
                    detail.get("status") or summary.get("status") or "",
                    TaskInstanceKey.from_marks(tags),
                    cancel_on_kill_of(tags),
                    _epoch(summary.get("createdAt")),
                    cancelling=is_cancel_reason(reason),
                )
            )
        return jobs

    def stop(self, job: ActiveJob, reason: str) -> None:
        self.hook.terminate_run(job.run_id, reason)


class AzureBatchJobs:
    """The Polysync jobs of an Azure Batch account that are still active (one listing, pages of 1,000)."""

    platform = "azure-batch"

    def __init__(self, hook: AzureBatchHook) -> None:
        self.hook = hook

    def active_jobs(self) -> list[ActiveJob]:
        from polysync_airflow.requests.azure_batch import TASK_ID
        from polysync_airflow.statuses.azure_batch import read_field

        listing = self.hook.client.list_jobs(
            filter="startswith(id,'polysync-') and state eq 'active'",
            select=["id", "state", "metadata", "creationTime"],
        )
        jobs = []
        for job in listing:
            job_id = read_field(job, "id") or ""
            if not AZURE_JOB_ID.fullmatch(job_id):
                continue
            marks = {read_field(item, "name"): read_field(item, "value") for item in read_field(job, "metadata") or []}
            jobs.append(
                ActiveJob(
                    self.platform,
                    f"{job_id}/{TASK_ID}",
                    read_field(job, "state") or "",
                    TaskInstanceKey.from_marks(marks),
                    cancel_on_kill_of(marks),
                    _epoch(read_field(job, "creationTime") or read_field(job, "creation_time")),
                )
            )
        return jobs

    def stop(self, job: ActiveJob, reason: str) -> None:
        self.hook.terminate_run(job.run_id, reason)


# -- where the task instance states are ------------------------------------------------------------------

StateReader = Callable[[Collection[Instance]], Mapping[Instance, str | None]]


def _state_text(state: Any) -> str | None:
    value = getattr(state, "value", state)
    return None if value is None else str(value)


def task_sdk_states(instances: Collection[Instance]) -> dict[Instance, str | None]:
    """The states of task instances, read from inside a task through the Task SDK (``RuntimeTaskInstance.
    get_task_states``, Airflow 3.0 and later): one call per DAG and map index. Absent: the DAG run is gone."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    groups: dict[tuple[str, int], list[Instance]] = defaultdict(list)
    for instance in instances:
        groups[(instance[0], instance[3])].append(instance)
    found: dict[Instance, str | None] = {}
    for (dag_id, map_index), members in groups.items():
        by_run = RuntimeTaskInstance.get_task_states(
            dag_id=dag_id,
            map_index=map_index,
            task_ids=sorted({task_id for _, _, task_id, _ in members}),
            run_ids=sorted({run_id for _, run_id, _, _ in members}),
        )
        for instance in members:
            _, run_id, task_id, _ = instance
            states = by_run.get(run_id) or {}
            name = task_id if map_index < 0 else f"{task_id}_{map_index}"
            if name in states:
                found[instance] = _state_text(states[name])
    return found


class RestApiStates:
    """The states of task instances, read through Airflow's public REST API (for the command line): ``POST
    /api/v2/dags/~/dagRuns/~/taskInstances/list``, pages of 100. ``token``: an API token (JWT); with
    ``username``/``password`` one is asked for at ``/auth/token`` (Airflow's simple auth manager)."""

    PAGE = 100

    def __init__(
        self, api_url: str, token: str | None = None, username: str | None = None, password: str | None = None
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._token = token
        self._credentials = (username, password) if username and password else None

    def _headers(self, client: Any) -> dict[str, str]:
        if self._token is None and self._credentials is not None:
            username, password = self._credentials
            answer = client.post(f"{self.api_url}/auth/token", json={"username": username, "password": password})
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def __call__(self, instances: Collection[Instance]) -> dict[Instance, str | None]:
        import httpx

        wanted = set(instances)
        found: dict[Instance, str | None] = {}
        if not wanted:
            return found
        body: dict[str, Any] = {
            "dag_ids": sorted({i[0] for i in wanted}),
            "dag_run_ids": sorted({i[1] for i in wanted}),
            "task_ids": sorted({i[2] for i in wanted}),
            "page_limit": self.PAGE,
        }
        with httpx.Client(timeout=30) as client:
            headers = self._headers(client)
            offset = 0
            while True:
                answer = client.post(
                    f"{self.api_url}/api/v2/dags/~/dagRuns/~/taskInstances/list",
                    json={**body, "page_offset": offset},
                    headers=headers,
                )
                answer.raise_for_status()
                page = answer.json()
                for ti in page.get("task_instances", []):
                    instance = (ti["dag_id"], ti["dag_run_id"], ti["task_id"], int(ti["map_index"]))
                    if instance in wanted:
                        found[instance] = _state_text(ti.get("state"))
                offset += len(page.get("task_instances", []))
                if not page.get("task_instances") or offset >= int(page.get("total_entries", 0)):
                    return found


# -- the sweep -------------------------------------------------------------------------------------------


def sweep(sources: Iterable[JobSource], read_states: StateReader, *, dry_run: bool, log: Log) -> list[Verdict]:
    """List the active jobs of every source, decide, and stop the orphans (``dry_run``: only say so). One log
    line per job; a stop that fails is a warning and the sweep goes on (the next sweep tries again)."""
    owned: list[tuple[JobSource, ActiveJob]] = [(source, job) for source in sources for job in source.active_jobs()]
    instances = {job.owner.instance for _, job in owned if job.owner is not None}
    states = read_states(instances) if instances else {}
    verdicts = decide([job for _, job in owned], states)
    for (source, job), verdict in zip(owned, verdicts, strict=True):
        verb, why, write = "Leaving", verdict.why, log.info
        if verdict.stop and dry_run:
            verb = "Would stop"
        elif verdict.stop:
            verb = "Stopped"
            try:
                source.stop(job, verdict.reason)
            except Exception as err:
                verb, why, write = "Could not stop", f"{verdict.why} ({describe_error(err)})", log.warning
        write("%s %s job %s (%s) of %s: %s", verb, job.platform, job.run_id, job.native_status, job.owner or "?", why)
    return verdicts
