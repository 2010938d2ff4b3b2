"""The platform-neutral run status model (what one answer of the platform says about a run: its status and its
timing), and the shape every platform's status table has."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


def utc(moment: datetime | None) -> datetime | None:
    """An aware datetime in UTC (a naive one is taken as UTC), None for None."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def from_epoch_ms(value: Any) -> datetime | None:
    """AWS's timestamps (milliseconds since the epoch) as UTC datetimes; None for a missing or malformed one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return datetime.fromtimestamp(value / 1000, UTC)


def from_iso(value: Any) -> datetime | None:
    """Azure's timestamps (ISO 8601 text, or the SDK's datetimes) as UTC datetimes; None when missing or malformed."""
    if isinstance(value, datetime):
        return utc(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` (millisecond precision), None for None."""
    found = utc(moment)
    return found.isoformat(timespec="milliseconds").replace("+00:00", "Z") if found else None


def format_duration(seconds: float) -> str:
    """``42s``, ``4m12s``, ``1h02m03s`` (whole seconds, rounded)."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return round(max((end - start).total_seconds(), 0.0), 3) if start and end else None


@dataclass(frozen=True)
class RunTiming:
    """When a run was submitted, started and ended (UTC; None when unknown) and how many attempts it made."""

    submitted_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    attempts: int = 0

    @property
    def queued_seconds(self) -> float | None:
        """Submitted until started (or, for a run that never started, until it ended); None while unknown."""
        return _seconds(self.submitted_at, self.started_at or self.ended_at)

    @property
    def running_seconds(self) -> float | None:
        """Started until ended; None for a run that never started or has not ended."""
        return _seconds(self.started_at, self.ended_at)

    def waited_seconds(self, now: datetime) -> float | None:
        """How long a run that has not started has waited by ``now`` (None: its submit time is unknown)."""
        return _seconds(self.submitted_at, utc(now))

    def to_dict(self) -> dict[str, Any]:
        """The ``timing`` entry of the task's XCom (JSON values only)."""
        return {
            "submitted_at": iso(self.submitted_at),
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "queued_seconds": self.queued_seconds,
            "running_seconds": self.running_seconds,
            "attempts": self.attempts,
        }

    @classmethod
    def from_dict(cls, data: Any) -> RunTiming:
        """A timing from its ``to_dict`` form (an event's ``timing``); anything else gives an unknown timing."""
        data = data if isinstance(data, dict) else {}
        attempts = data.get("attempts")
        return cls(
            from_iso(data.get("submitted_at")),
            from_iso(data.get("started_at")),
            from_iso(data.get("ended_at")),
            attempts if isinstance(attempts, int) else 0,
        )

    def summary(self, run_id: str) -> str:
        """``Run <id> queued 4m12s, ran 12m03s (2 attempts)``, the task log's last line about the run."""
        queued, running = self.queued_seconds, self.running_seconds
        queued_text = f"queued {format_duration(queued)}" if queued is not None else "queued for an unknown time"
        if running is not None:
            ran_text = f"ran {format_duration(running)}"
        elif self.started_at is not None:
            ran_text = "ran for an unknown time"
        else:
            ran_text = "never ran"
        plural = "attempt" if self.attempts == 1 else "attempts"
        return f"Run {run_id} {queued_text}, {ran_text} ({self.attempts} {plural})"


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
    waiting: bool = field(default=False, compare=False)
    """Whether the run has not started running yet (the queue thresholds count for it)."""
    timing: RunTiming = field(default_factory=RunTiming, compare=False)
    """When the run was submitted, started and ended, as far as the answer tells."""

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
