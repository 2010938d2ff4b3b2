"""How one run is watched until it ends, in the worker (``deferrable=False``) and in the triggerer alike.

:class:`PollingSettings` are the operator's polling arguments, which its trigger is serialized with.
:class:`RunWatch` decides from each observation of the run: it logs each change of status or progress once
(so the task log reads as a timeline), gives a run that is not visible yet a grace period before calling it
lost, and rides out transient faults of the service for an outage window. What counts as a transient fault,
the platform tells (``is_transient`` in ``statuses/<platform>.py``). :class:`QueueWatch` watches a run that has
not started for the ``queued_warning_after`` and ``queued_timeout`` thresholds.

The loops that call it: the worker's in ``operators/base.py`` (it sleeps the poll interval, or
:func:`backoff_seconds` after a failed read), the trigger's in ``triggers/base.py`` (it only awaits each
answer: the shared poller paces the reads, see ``shared_poller.py``).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol

from polysync_airflow.status import RunState, RunStatus, RunTiming, format_duration

MAX_BACKOFF_SECONDS = 60.0


@dataclass(frozen=True)
class PollingSettings:
    """How a run is watched: the operator's arguments of that name, and what its trigger is serialized with."""

    poll_interval: float = 30.0
    """Seconds between two status reads."""
    unknown_grace_period: float = 120.0
    """Seconds a run may stay unknown (for example not visible yet) before it fails."""
    outage_window: float = 600.0
    """Seconds of transient service faults to ride out before the run fails."""
    deadline: float | None = None
    """Epoch seconds after which the run is stopped (``cancel_on_kill``) and fails; from ``execution_timeout``."""
    cancel_on_kill: bool = True
    """Stop the run when the task is killed, marked failed or success, cleared, or past its deadline."""
    mark_watched: bool = True
    """Write the watched mark on the job once it runs (a tag or job metadata: see ownership.py). Off where the
    operator recorded the ownership in Airflow's task_state_store (3.3), so watching costs no cloud write."""
    queued_warning_after: float | None = 600.0
    """Seconds a job may wait to start before the task log gets one warning naming why (None: never)."""
    queued_timeout: float | None = None
    """Seconds after which a job that has not started is stopped and the run fails (None: never)."""

    def __post_init__(self) -> None:
        # Templated or stored values may come as ints (or text): the trigger's kwargs are JSON.
        for name in ("poll_interval", "unknown_grace_period", "outage_window"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in QUEUE_SETTINGS:
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else float(value))

    def to_kwargs(self) -> dict[str, Any]:
        """What a trigger is stored with: every field, the queue settings and ``mark_watched`` only when not at
        their defaults, so a trigger without them is stored as rows written before they existed (and those rows
        load as before)."""
        kwargs = asdict(self)
        defaults = {f.name: f.default for f in fields(self)}
        return {k: v for k, v in kwargs.items() if k not in STORED_WHEN_SET or v != defaults[k]}


QUEUE_SETTINGS = ("queued_warning_after", "queued_timeout")
STORED_WHEN_SET = (*QUEUE_SETTINGS, "mark_watched")  # stored only when not at their defaults


def backoff_seconds(failures: int, first: float) -> float:
    """The wait after ``failures`` failed reads in a row: ``first``, doubling with each failure up to 60 s (or
    ``first``, if longer), each wait 50-100 % of that, so that runs that failed together do not retry together."""
    return min(first * 2 ** (failures - 1), max(first, MAX_BACKOFF_SECONDS)) * random.uniform(0.5, 1.0)


# The HTTP transport under both SDKs' async clients (aiohttp): its exceptions for dropped connections and
# timeouts, by class name so that nothing is imported for them. Each platform adds its SDK's own.
TRANSPORT_CONNECTION_FAULTS = frozenset({"ClientConnectionError", "ServerDisconnectedError", "ServerTimeoutError"})


def is_connection_fault(err: BaseException, sdk_faults: frozenset[str] = frozenset()) -> bool:
    """A dropped connection or a timeout: the standard library's, aiohttp's, or one of ``sdk_faults`` (class names)."""
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    names = TRANSPORT_CONNECTION_FAULTS | sdk_faults
    return any(cls.__name__ in names for cls in type(err).__mro__)


def describe_error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".strip()


class Log(Protocol):
    """A standard library logger, or Airflow's structlog one."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any) -> Any: ...


@contextmanager
def quietly(log: Log, action: str) -> Iterator[None]:
    """Run a call whose failure must not change the run's outcome (a watched mark, a cancel): a failure is a
    warning, ``Could not <action>: <error>``. Works around ``await`` too."""
    try:
        yield
    except Exception as err:
        log.warning("Could not %s: %s", action, describe_error(err))


class RunWatch:
    """Turns a sequence of observations of one run, and of failed reads, into at most one final state."""

    def __init__(
        self,
        run_id: str,
        log: Log,
        settings: PollingSettings,
        is_transient: Callable[[BaseException], bool] = is_connection_fault,
    ) -> None:
        self.run_id = run_id
        self.log = log
        self.settings = settings
        self.is_transient = is_transient
        self.failures = 0
        """Failed reads in a row."""
        self._last_seen: tuple[Any, ...] | None = None
        self._unknown_since: float | None = None
        self._failing_since: float | None = None
        self._seen_running = False

    def first_seen_running(self, state: RunState) -> bool:
        """True once, for the first observation of the run running: when its watcher marks it watched (see
        ownership.py), so that no later try adopts it."""
        if self._seen_running or state.status is not RunStatus.RUNNING:
            return False
        self._seen_running = True
        return True

    def poll_failed(self, err: BaseException, now: float | None = None) -> RunState | None:
        """A status read raised: the final state if the run must fail, else None (read again)."""
        now = time.monotonic() if now is None else now
        if not self.is_transient(err):
            message = f"reading the status of run {self.run_id} failed and retrying cannot help: {describe_error(err)}"
            return RunState(self.run_id, RunStatus.FAILED, message, native_status="POLL_ERROR")
        if self._failing_since is None:
            self._failing_since = now
        self.failures += 1
        window = self.settings.outage_window
        if now - self._failing_since >= window:
            message = (
                f"the service did not answer for run {self.run_id} for {now - self._failing_since:.0f} s "
                f"(outage window {window:g} s, {self.failures} attempts); last error: {describe_error(err)}"
            )
            return RunState(self.run_id, RunStatus.FAILED, message, native_status="POLL_ERROR")
        if self.failures == 1 or self.failures % 10 == 0:
            self.log.warning(
                "Reading the status of run %s failed (attempt %d, retrying for up to %g s): %s",
                self.run_id,
                self.failures,
                window,
                describe_error(err),
            )
        return None

    def observe(self, state: RunState, now: float | None = None) -> RunState | None:
        """Log a change of status (or of progress); return the final state once the run is over, else None."""
        now = time.monotonic() if now is None else now
        self._failing_since, self.failures = None, 0
        seen = (state.native_status, state.status, state.message, state.progress)
        if seen != self._last_seen:
            self._last_seen = seen
            detail = f": {state.message}" if state.message else ""
            if state.progress:
                detail += f" [{state.progress_of or 'progress'}: {state.progress}]"
            self.log.info("Run %s is %s (%s)%s", self.run_id, state.native_status or "not found", state.status, detail)
        if state.status.is_terminal:
            return state
        if state.status is not RunStatus.UNKNOWN:
            self._unknown_since = None
            return None
        if self._unknown_since is None:
            self._unknown_since = now
        grace = self.settings.unknown_grace_period
        if now - self._unknown_since >= grace:
            return RunState(
                run_id=self.run_id,
                status=RunStatus.UNKNOWN,
                message=(
                    f"the status of run {self.run_id} stayed unknown for {grace:g} s "
                    f"({state.message or 'the job was not found'}); giving up"
                ),
                exit_code=state.exit_code,
                native_status=state.native_status,
            )
        return None


def timed_out_state(run_id: str, deadline: float) -> RunState:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deadline))
    return RunState(
        run_id=run_id,
        status=RunStatus.FAILED,
        message=f"run {run_id} did not finish before its deadline ({when})",
        native_status="TIMED_OUT",
    )


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


class QueueWatch:
    """Watches one run's states for its queue thresholds: logs one warning with the cause when ``warning_after``
    passes, and past ``timeout`` turns the state into a failure (the caller stops the job). The time waited is
    measured from the job's own creation time (``RunState.timing``, from the answer), so a watch built after a
    triggerer restart sees the same. The cause is read once per threshold passed, never on other polls: its hook's
    ``read_wait_cause`` (``hooks/<platform>_waiting.py``), worded by ``queueing/<platform>.py``."""

    def __init__(self, run_id: str, log: Any, warning_after: float | None, timeout: float | None) -> None:
        self.run_id = run_id
        self.log = log
        self.warning_after = warning_after
        self.timeout = timeout
        self.timed_out = False
        self.last_timing = RunTiming()
        """The timing of the last state decoded from an answer (for the event and the XCom)."""
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

    def observe(self, state: RunState, read_cause: Callable[[], str]) -> RunState:
        """The worker's watch (sync): ``state``, or the failure of a run past its queue timeout."""
        self.last_timing = state.timing
        check, waited = self.check(state.timing, state.waiting)
        if check is QueueCheck.NOTHING:
            return state
        try:
            cause = read_cause()
        except Exception as err:  # the reads never change the run's outcome
            cause = f"the reasons could not be read: {describe_error(err)}"
        return self._act(check, waited, state, cause)

    async def aobserve(self, state: RunState, read_cause: Callable[[], Awaitable[str]], gate: Any = None) -> RunState:
        """The trigger's watch (async; the diagnosis reads inside ``gate``, the shared poller's side-call limit)."""
        self.last_timing = state.timing
        check, waited = self.check(state.timing, state.waiting)
        if check is QueueCheck.NOTHING:
            return state
        try:
            async with gate if gate is not None else contextlib.nullcontext():
                cause = await read_cause()
        except Exception as err:  # the reads never change the run's outcome
            cause = f"the reasons could not be read: {describe_error(err)}"
        return self._act(check, waited, state, cause)

    def _act(self, check: QueueCheck, waited: float, state: RunState, cause: str) -> RunState:
        if check is QueueCheck.WARN:
            self.log.warning("%s", waiting_message(self.run_id, waited, state.native_status, cause))
            return state
        self.timed_out = True
        message = not_started_message(self.run_id, self.timeout or 0.0, cause)
        return RunState(self.run_id, RunStatus.FAILED, message, native_status=QUEUE_TIMED_OUT)
