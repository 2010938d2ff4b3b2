"""The platform-neutral run status model, and the shape every platform's status table has."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar


class RunStatus(StrEnum):
    """What a Polysync run is doing, whatever platform runs it."""

    STARTING = "Starting"
    RUNNING = "Running"
    SUCCESS = "Success"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    UNKNOWN = "Unknown"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RunState:
    """One observation of a run: the decoded status plus what the platform said."""

    run_id: str
    status: RunStatus
    message: str
    exit_code: int | None = None
    native_status: str | None = None
    """The platform's own status word (AWS job status, Azure task state), for the log timeline."""
    progress: str = ""
    """How far a run made of many parts has come (an AWS array job's children), e.g.
    "37/100 succeeded, 2 failed, 10 running"; "" when the platform tells nothing of the kind."""
    progress_of: str = ""
    """What ``progress`` counts (``children``), for the log timeline."""

    def to_event(self) -> dict[str, Any]:
        """The trigger event payload (contract: status, run_id, message, exit_code; also native_status, progress)."""
        return {
            "status": self.status.value,
            "run_id": self.run_id,
            "message": self.message,
            "exit_code": self.exit_code,
            "native_status": self.native_status,
            "progress": self.progress,
        }


CANCEL_REASON = "Cancelled by Polysync"
"""The reason Polysync gives when it stops a run (AWS TerminateJob, Azure job terminate); a status table that
finds it in the platform's answer reads the run as cancelled."""

Facts = TypeVar("Facts")
"""What a platform's table reads from one answer (a small dataclass per platform)."""

ANY_OTHER_STATE = "(any other)"
"""The ``states`` of a table's last row: every state no row above names, and none at all."""


def always(_facts: object) -> bool:
    """The condition of a row that needs none."""
    return True


@dataclass(frozen=True)
class StatusRow(Generic[Facts]):
    """One row of a platform's status table, as the seeds write theirs: the platform's state (``states``, the
    seed's ``"active / preparing"``), a further ``condition`` on its answer, the run status they mean, and the rule
    that gives the ``message``."""

    states: str
    condition: Callable[[Facts], bool]
    status: RunStatus
    message: Callable[[Facts], str]
    _names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = frozenset(name.strip() for name in self.states.split("/"))
        object.__setattr__(self, "_names", frozenset() if self.states == ANY_OTHER_STATE else names)

    def matches(self, state: str | None, facts: Facts) -> bool:
        return (not self._names or state in self._names) and self.condition(facts)


def look_up(table: Sequence[StatusRow[Facts]], state: str | None, facts: Facts) -> tuple[RunStatus, str]:
    """The status and message of the first row that matches; a table ends with an ``ANY_OTHER_STATE`` row."""
    for row in table:
        if row.matches(state, facts):
            return row.status, row.message(facts)
    raise LookupError(f"no row of the status table matches state {state!r}: the table needs an ANY_OTHER_STATE row")
