"""Which Batch job a task instance owns, so a retry finds the job an earlier try started.

Every job carries the identity of its task instance (dag, run, task, map index) in something the
service can be asked about: the AWS job name, the Azure job id (and, for the orphan sweep, the whole
identity in tags or metadata). Before submitting, an operator looks for the jobs of its task instance and
adopts one only if it is still running and nobody watches it: the try that submitted it died (or its
submit call timed out) before a trigger or a polling worker took the job over. A job that is finished,
being cancelled, or watched is never adopted: a retry after a real failure, or a user clearing the task,
gets a new job, and two tries never both own one job. A running job the try does not adopt is stopped
(unless it was submitted with ``cancel_on_kill=False``), so no two jobs of a task instance run at once.

Where "watched" is recorded: on Airflow 3.3, in the task instance's ``task_state_store``, which its tries
share and a clear keeps (:class:`OwnershipRecord`, written by the worker: a trigger cannot reach the store),
so watching costs no cloud write; on 3.1 and 3.2, on the job itself (the ``polysync:watched`` tag or
metadata, written by the trigger or worker that polls it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

# Marks set on a job: by the submitting try, and by whatever starts watching the job.
TRY_MARK = "polysync:try"
WATCHED_MARK = "polysync:watched"
# The task instance that submitted the job, and whether it may be stopped when that task instance no longer owns
# it: what the orphan sweep (sweep.py) reads. Plain identifiers only, never a secret.
DAG_MARK = "polysync:dag"
RUN_MARK = "polysync:run"
TASK_MARK = "polysync:task"
MAP_INDEX_MARK = "polysync:map-index"
CANCEL_ON_KILL_MARK = "polysync:cancel-on-kill"
IDENTITY_MARKS = (DAG_MARK, RUN_MARK, TASK_MARK, MAP_INDEX_MARK, TRY_MARK, CANCEL_ON_KILL_MARK)
_NAMESPACE = uuid.UUID("6f1c2b4e-5d1a-4f3b-9a57-2f7f1f0c9e11")


@dataclass(frozen=True)
class TaskInstanceKey:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> TaskInstanceKey:
        ti = context["ti"]
        return cls(ti.dag_id, ti.run_id, ti.task_id, int(ti.map_index), int(ti.try_number))

    @property
    def uuid(self) -> uuid.UUID:
        """The same for every try of the task instance."""
        return uuid.uuid5(_NAMESPACE, f"{self.dag_id}\n{self.run_id}\n{self.task_id}\n{self.map_index}")

    def __str__(self) -> str:
        return f"{self.task_instance}, try {self.try_number}"

    @property
    def task_instance(self) -> str:
        """The task instance, without the try: ``dag.task[map index] in run``."""
        index = f"[{self.map_index}]" if self.map_index >= 0 else ""
        return f"{self.dag_id}.{self.task_id}{index} in {self.run_id}"

    @property
    def instance(self) -> tuple[str, str, str, int]:
        """(dag id, run id, task id, map index): what every try of the task instance shares."""
        return self.dag_id, self.run_id, self.task_id, self.map_index

    def identity_marks(self, cancel_on_kill: bool) -> dict[str, str]:
        """The marks a job is submitted with (AWS tags, Azure job metadata), so the sweep can tell its owner."""
        return {
            DAG_MARK: self.dag_id,
            RUN_MARK: self.run_id,
            TASK_MARK: self.task_id,
            MAP_INDEX_MARK: str(self.map_index),
            TRY_MARK: str(self.try_number),
            CANCEL_ON_KILL_MARK: "true" if cancel_on_kill else "false",
        }

    @classmethod
    def from_marks(cls, marks: Mapping[str, str]) -> TaskInstanceKey | None:
        """The task instance and try a job's marks name; None when any is missing or malformed (a job submitted
        before the marks existed, or not by Polysync)."""
        try:
            dag_id, run_id, task_id = marks[DAG_MARK], marks[RUN_MARK], marks[TASK_MARK]
            map_index, try_number = int(marks[MAP_INDEX_MARK]), int(marks[TRY_MARK])
        except (KeyError, ValueError):
            return None
        return cls(dag_id, run_id, task_id, map_index, try_number) if dag_id and run_id and task_id else None


def cancel_on_kill_of(marks: Mapping[str, str]) -> bool:
    """Whether the job's submitter allowed stopping it (``cancel_on_kill``); a job without the mark is kept."""
    return marks.get(CANCEL_ON_KILL_MARK) == "true"


@dataclass(frozen=True)
class ExistingJob:
    """A job of this task instance found on the service."""

    run_id: str
    native_status: str
    finished: bool
    cancelling: bool
    watched: bool
    try_number: int | None = None
    cancel_on_kill: bool | None = None
    """What the job's submitter chose (its mark); None for a job submitted before the mark existed."""

    def why_not_adoptable(self, own_try: int | None = None) -> str | None:
        if own_try is not None and self.try_number == own_try:  # this try's submit, whose answer was lost
            return None
        if self.finished:
            return f"it has finished ({self.native_status})"
        if self.cancelling:
            return f"it is being cancelled ({self.native_status})"
        if self.watched:
            return "an earlier try's trigger or worker watches it (cancelled on clear, or kept by cancel_on_kill=False)"
        return None


def choose_job_to_adopt(jobs: Iterable[ExistingJob], log: Any, own_try: int | None = None) -> ExistingJob | None:
    """The newest adoptable job (``jobs`` newest first); logs why each other job is left alone.

    ``own_try``: after a submit call failed, the try that made it; its job is adopted even if it already ended.
    """
    adopted = None
    for job in jobs:
        reason = job.why_not_adoptable(own_try)
        submitted_by = f"try {job.try_number}" if job.try_number else "an earlier try"
        if reason is None and adopted is None:
            adopted = job
        elif reason is None:
            log.warning("Job %s (submitted by %s) also runs unwatched; not adopting it", job.run_id, submitted_by)
        else:
            log.info("Not reattaching to job %s (submitted by %s): %s", job.run_id, submitted_by, reason)
    return adopted


def jobs_to_stop(
    jobs: Iterable[ExistingJob], adopted: ExistingJob | None, cancel_on_kill: bool
) -> list[tuple[ExistingJob, str]]:
    """The jobs of earlier tries still queued or running that this try does not adopt, each with why it is not
    adopted: the try stops them before it submits, so no two jobs of the task instance run at once. A job whose
    submitter chose ``cancel_on_kill=False`` is left (``cancel_on_kill``: this operator's choice, for jobs that do
    not record one)."""
    found = []
    for job in jobs:
        if job is adopted or job.finished or job.cancelling:
            continue
        if not (cancel_on_kill if job.cancel_on_kill is None else job.cancel_on_kill):
            continue
        found.append((job, job.why_not_adoptable() or "a newer job of the task instance is adopted instead"))
    return found


OWNERSHIP_KEY = "polysync_ownership"
"""The ``task_state_store`` key (Airflow 3.3) the tries of a task instance record their jobs under."""


@dataclass(frozen=True)
class OwnershipRecord:
    """What the tries of a task instance recorded in Airflow 3.3's ``task_state_store``: which try is submitting
    (written before the submit call, so a job whose answer was lost is looked for) and which jobs a try took over
    to watch (by run id: ``"triggerer"`` or ``"worker"`` and the try), never adopted again. Its tries share it,
    and clearing the task keeps it (checked on Airflow 3.3.2)."""

    submitting: int | None = None
    watched: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, value: Any) -> OwnershipRecord | None:
        """The record as stored (None: nothing stored, or not a record this version wrote)."""
        if not isinstance(value, Mapping):
            return None
        submitting = value.get("submitting")
        watched = value.get("watched")
        return cls(
            submitting if isinstance(submitting, int) else None,
            {str(run): dict(by) for run, by in watched.items() if isinstance(by, Mapping)}
            if isinstance(watched, Mapping)
            else {},
        )

    def dump(self) -> dict[str, Any]:
        return {"submitting": self.submitting, "watched": {run: dict(by) for run, by in self.watched.items()}}

    def before_submitting(self, try_number: int) -> OwnershipRecord:
        return replace(self, submitting=try_number)

    def watching(self, run_id: str, watcher: str, try_number: int) -> OwnershipRecord:
        """The try has taken ``run_id`` over: its trigger (``"triggerer"``) or its worker polls it from now on."""
        return OwnershipRecord(None, {**self.watched, run_id: {"by": watcher, "try": try_number}})

    def apply(self, jobs: Iterable[ExistingJob]) -> list[ExistingJob]:
        """The jobs found on the service, with those a try recorded as watched marked so."""
        return [replace(job, watched=True) if job.run_id in self.watched else job for job in jobs]


class OwnershipLedger:
    """Where a try reads and records which jobs its task instance's tries took over: Airflow 3.3's
    ``task_state_store`` (``store``: ``get``/``set``), or nowhere (``store`` None: Airflow 3.1 and 3.2, where the
    job itself carries the watched mark, written by whatever polls it)."""

    def __init__(self, store: Any | None) -> None:
        self.store = store
        self.record = OwnershipRecord.load(store.get(OWNERSHIP_KEY)) if store is not None else None

    @classmethod
    def of(cls, context: Mapping[str, Any]) -> OwnershipLedger:
        """The ledger of the running task instance: in Airflow 3.3's ``context["task_state_store"]``, or none
        (Airflow 3.1 and 3.2 have no such key; neither has a context built outside a task run)."""
        getter = getattr(context, "get", None)
        return cls(getter("task_state_store") if getter is not None else None)

    @property
    def in_store(self) -> bool:
        """Whether ownership is recorded in Airflow (so the job needs no watched mark)."""
        return self.store is not None

    def known(self, jobs: Iterable[ExistingJob]) -> list[ExistingJob]:
        """The jobs found on the service, with those a try recorded as watched marked so."""
        return self.record.apply(jobs) if self.record is not None else list(jobs)

    def watched_by(self, run_id: str) -> str | None:
        """Who an earlier try recorded as watching ``run_id`` (``"triggerer"`` or ``"worker"``), if anyone."""
        by = self.record.watched.get(run_id) if self.record is not None else None
        return str(by.get("by")) if by else None

    def submitting(self, try_number: int) -> None:
        """Before the submit call: a job it starts is looked for even if its answer is lost."""
        self._write((self.record or OwnershipRecord()).before_submitting(try_number))

    def watching(self, run_id: str, watcher: str, try_number: int) -> None:
        """Before the try defers (``"triggerer"``) or polls (``"worker"``): no later try adopts ``run_id``."""
        self._write((self.record or OwnershipRecord()).watching(run_id, watcher, try_number))

    def _write(self, record: OwnershipRecord) -> None:
        if self.store is not None:
            self.store.set(OWNERSHIP_KEY, record.dump())
            self.record = record
