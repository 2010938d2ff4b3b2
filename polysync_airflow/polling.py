"""The polling loop both platforms share, in the triggerer (async) and in the worker (sync).

A platform supplies one function that reads the run's current :class:`RunState`; this module decides
when the run is over, logs each change of status once (so the task log reads as a timeline), gives a
run that is not visible yet a grace period before calling it lost, and enforces the run's deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from polysync_airflow.status import RunState, RunStatus

DEFAULT_UNKNOWN_GRACE_PERIOD = 120.0


class RunWatch:
    """Turns a sequence of observations into at most one final state."""

    def __init__(self, run_id: str, unknown_grace_period: float, log: logging.Logger | logging.LoggerAdapter):
        self.run_id = run_id
        self.unknown_grace_period = unknown_grace_period
        self.log = log
        self._last_seen: tuple | None = None
        self._unknown_since: float | None = None

    def observe(self, state: RunState, now: float | None = None) -> RunState | None:
        """Log a change of status; return the final state once the run is over, else None."""
        now = time.monotonic() if now is None else now
        seen = (state.native_status, state.status, state.message)
        if seen != self._last_seen:
            self._last_seen = seen
            detail = f": {state.message}" if state.message else ""
            self.log.info("Run %s is %s (%s)%s", self.run_id, state.native_status or "not found", state.status, detail)
        if state.status.is_terminal:
            return state
        if state.status is not RunStatus.UNKNOWN:
            self._unknown_since = None
            return None
        if self._unknown_since is None:
            self._unknown_since = now
        if now - self._unknown_since >= self.unknown_grace_period:
            return RunState(
                run_id=self.run_id,
                status=RunStatus.UNKNOWN,
                message=(
                    f"the status of run {self.run_id} stayed unknown for {self.unknown_grace_period:g} s "
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


def _next_sleep(poll_interval: float, deadline: float | None) -> float:
    if deadline is None:
        return poll_interval
    return max(0.0, min(poll_interval, deadline - time.time()))


async def watch_run_async(
    read_state: Callable[[], Awaitable[RunState]],
    watch: RunWatch,
    poll_interval: float,
    deadline: float | None,
) -> tuple[RunState, bool]:
    """Poll until the run is over or its deadline (epoch seconds) passes; returns (state, timed_out)."""
    while True:
        final = watch.observe(await read_state())
        if final is not None:
            return final, False
        if deadline is not None and time.time() >= deadline:
            return timed_out_state(watch.run_id, deadline), True
        await asyncio.sleep(_next_sleep(poll_interval, deadline))


def watch_run_sync(
    read_state: Callable[[], RunState], watch: RunWatch, poll_interval: float, deadline: float | None
) -> tuple[RunState, bool]:
    """The same loop for ``deferrable=False``, polling in the worker."""
    while True:
        final = watch.observe(read_state())
        if final is not None:
            return final, False
        if deadline is not None and time.time() >= deadline:
            return timed_out_state(watch.run_id, deadline), True
        time.sleep(_next_sleep(poll_interval, deadline))
