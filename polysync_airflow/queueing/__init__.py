"""How long a run queued and ran, and why a run is not starting: what both platforms share. Pure, no calls.

A platform's module (``queueing/<platform>.py``) reads its answers into a :class:`RunTiming` and words the
diagnosis of a job that waits (:func:`waiting_message`); the watch logs the warning once, when the
``queued_warning_after`` threshold passes, and stops the job past ``queued_timeout``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol

from polysync_airflow.status import RunState, RunStatus


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


def waiting_message(run_id: str, waited_seconds: float, native_status: str | None, cause: str) -> str:
    """The warning logged once when a run has waited ``queued_warning_after`` without starting."""
    state = f" (still {native_status})" if native_status else ""
    return f"Run {run_id} has not started after {format_duration(waited_seconds)}{state}: {cause}"


def not_started_reason(timeout_seconds: float | None) -> str:
    """The reason given to the service when a job is stopped for not starting within ``queued_timeout``."""
    return f"Stopped by Polysync: did not start within {timeout_seconds or 0:g} s (queued_timeout)"


def not_started_message(run_id: str, timeout_seconds: float, cause: str) -> str:
    """The failure of a run stopped because it did not start within ``queued_timeout``."""
    return f"Run {run_id} did not start within {timeout_seconds:g} s: {cause}"


class QueueCheck(Enum):
    """What a watch does about a run that has not started, after one answer."""

    NOTHING = "nothing"
    WARN = "warn"
    """``queued_warning_after`` just passed: read why once, and log one warning."""
    TIME_OUT = "time out"
    """``queued_timeout`` passed: read why, stop the job and fail the task."""


QUEUE_TIMED_OUT = "QUEUE_TIMEOUT"
"""The ``native_status`` of the state a queue timeout ends a run with."""


class WaitHook(Protocol):
    """What a platform's hook gives the queue watch (``hooks/<platform>.py``): an answer is what its run-level
    reads return (AWS, the job's DescribeJobs entry; Azure, the task and its job; None: not found)."""

    @staticmethod
    def answer_timing(answer: Any) -> RunTiming: ...

    @staticmethod
    def answer_waiting(answer: Any) -> bool: ...

    def read_wait_cause(self, run_id: str, answer: Any) -> str: ...

    async def aread_wait_cause(self, run_id: str, answer: Any) -> str: ...


class QueueWatch:
    """Watches one run's answers for its queue thresholds: logs one warning with the cause when
    ``warning_after`` passes, and past ``timeout`` turns the state into a failure (the caller stops the job).
    The time waited is measured from the job's own creation time (in the answer), so a watch built after a
    triggerer restart sees the same. The cause is read once per threshold passed, never on other polls."""

    def __init__(self, run_id: str, log: Any, warning_after: float | None, timeout: float | None) -> None:
        self.run_id = run_id
        self.log = log
        self.warning_after = warning_after
        self.timeout = timeout
        self.timed_out = False
        self.last_answer: Any = None
        self._warned = False

    @property
    def active(self) -> bool:
        return self.warning_after is not None or self.timeout is not None

    def check(self, timing: RunTiming, waiting: bool, now: datetime | None = None) -> tuple[QueueCheck, float]:
        """(what to do, seconds waited) for a run whose answer says ``waiting`` (not started) with ``timing``."""
        waited = timing.waited_seconds(now or datetime.now(UTC)) if waiting and self.active else None
        if waited is None:
            return QueueCheck.NOTHING, 0.0
        if self.timeout is not None and waited >= self.timeout:
            return QueueCheck.TIME_OUT, waited
        if self.warning_after is not None and not self._warned and waited >= self.warning_after:
            self._warned = True
            return QueueCheck.WARN, waited
        return QueueCheck.NOTHING, waited

    def observe(self, hook: WaitHook, answer: Any, state: RunState) -> RunState:
        """The worker's watch (sync): ``state``, or the failure of a run past its queue timeout."""
        self.last_answer = answer
        check, waited = self.check(hook.answer_timing(answer), hook.answer_waiting(answer))
        if check is QueueCheck.NOTHING:
            return state
        return self._act(check, waited, state, self._cause(lambda: hook.read_wait_cause(self.run_id, answer)))

    async def aobserve(self, hook: WaitHook, answer: Any, state: RunState, gate: Any = None) -> RunState:
        """The trigger's watch (async; the diagnosis reads inside ``gate``, the shared poller's side-call limit)."""
        self.last_answer = answer
        check, waited = self.check(hook.answer_timing(answer), hook.answer_waiting(answer))
        if check is QueueCheck.NOTHING:
            return state
        try:
            async with gate if gate is not None else contextlib.nullcontext():
                cause = await hook.aread_wait_cause(self.run_id, answer)
        except Exception as err:  # the reads never change the run's outcome
            cause = f"the reasons could not be read: {type(err).__name__}: {err}"
        return self._act(check, waited, state, cause)

    @staticmethod
    def _cause(read: Any) -> str:
        try:
            return str(read())
        except Exception as err:  # the reads never change the run's outcome
            return f"the reasons could not be read: {type(err).__name__}: {err}"

    def _act(self, check: QueueCheck, waited: float, state: RunState, cause: str) -> RunState:
        if check is QueueCheck.WARN:
            self.log.warning("%s", waiting_message(self.run_id, waited, state.native_status, cause))
            return state
        self.timed_out = True
        message = not_started_message(self.run_id, self.timeout or 0.0, cause)
        return RunState(self.run_id, RunStatus.FAILED, message, native_status=QUEUE_TIMED_OUT)

    def timing(self, hook: WaitHook) -> dict[str, Any]:
        """The ``timing`` of the last answer seen, for the event (JSON values)."""
        return hook.answer_timing(self.last_answer).to_dict()


def timing_from_dict(data: Any) -> RunTiming:
    """A :class:`RunTiming` from its ``to_dict`` form (an event's ``timing``)."""
    data = data if isinstance(data, dict) else {}
    attempts = data.get("attempts")
    return RunTiming(
        from_iso(data.get("submitted_at")),
        from_iso(data.get("started_at")),
        from_iso(data.get("ended_at")),
        attempts if isinstance(attempts, int) else 0,
    )
