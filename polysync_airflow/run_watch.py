"""How one run is watched until it ends, in the worker (``deferrable=False``) and in the triggerer alike.

:class:`PollingSettings` are the operator's polling arguments, which its trigger is serialized with.
:class:`RunWatch` decides from each observation of the run: it logs each change of status or progress once
(so the task log reads as a timeline), gives a run that is not visible yet a grace period before calling it
lost, and rides out transient faults of the service for an outage window. What counts as a transient fault,
the platform tells (``is_transient`` in ``statuses/<platform>.py``).

The loops that call it: the worker's in ``operators/base.py`` (it sleeps the poll interval, or
:func:`backoff_seconds` after a failed read), the trigger's in ``triggers/base.py`` (it only awaits each
answer: the shared poller paces the reads, see ``shared_poller.py``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

from polysync_airflow.status import RunState, RunStatus

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
