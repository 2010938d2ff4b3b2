"""Which Batch job a task instance owns, so a retry finds the job an earlier try started.

Every job carries the identity of its task instance (dag, run, task, map index) in something the
service can be asked about: the AWS job name, the Azure job id. Before submitting, an operator looks for
the jobs of its task instance and adopts one only if it is still running and nobody watches it: the
try that submitted it died (or its submit call timed out) before a trigger or a polling worker took
the job over. A job that is finished, being cancelled, or watched (marked by the trigger or worker
that polls it) is never adopted: a retry after a real failure, or a user clearing the task, gets a
new job, and two tries never both own one job.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
