"""The polling loop both platforms share, in the triggerer (async) and in the worker (sync).

A platform supplies one function that reads the run's current :class:`RunState`; this module decides
when the run is over, logs each change of status or progress once (so the task log reads as a
timeline), gives a run that is not visible yet a grace period before calling it lost, rides out
transient faults of the service (throttling, 5xx, dropped connections, timeouts) for an outage window
with capped exponential backoff and jitter, and enforces the run's deadline.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from polysync_airflow.status import RunState, RunStatus

DEFAULT_UNKNOWN_GRACE_PERIOD = 120.0
DEFAULT_OUTAGE_WINDOW = 600.0
MAX_BACKOFF_SECONDS = 60.0

# Error codes (AWS and Azure) that say "try again later".
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "ServerBusy",
        "OperationTimedOut",
        "RequestTimeout",
    }
)
# Exception classes (by name, so no SDK is imported here) for dropped connections and timeouts.
TRANSIENT_EXCEPTIONS = frozenset(
    {
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "ServiceRequestError",
        "ServiceResponseError",
        "ClientConnectionError",
        "ServerDisconnectedError",
        "ServerTimeoutError",
        "ResponseStreamingError",
        "IncompleteReadError",
    }
)


def is_transient(err: BaseException) -> bool:
    """True for faults that heal by themselves: throttling, 5xx, resets, timeouts (AWS and Azure SDKs)."""
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    if any(cls.__name__ in TRANSIENT_EXCEPTIONS for cls in type(err).__mro__):
        return True
    response = getattr(err, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        code = (response.get("Error") or {}).get("Code")
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
        return code in TRANSIENT_CODES or status == 429 or status >= 500
    status = getattr(err, "status_code", None)
    if isinstance(status, int) and any(cls.__name__ == "HttpResponseError" for cls in type(err).__mro__):  # azure-core
        code = getattr(getattr(err, "error", None), "code", None)
        return code in TRANSIENT_CODES or status == 429 or status >= 500
    return False


def describe_error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".strip()


class RunWatch:
    """Turns a sequence of observations into at most one final state."""

    def __init__(
        self,
        run_id: str,
        unknown_grace_period: float,
        log: logging.Logger | logging.LoggerAdapter,
        outage_window: float = DEFAULT_OUTAGE_WINDOW,
        poll_interval: float = 30.0,
    ):
        self.run_id = run_id
        self.unknown_grace_period = unknown_grace_period
        self.log = log
        self.outage_window = outage_window
        self.poll_interval = poll_interval
        self._last_seen: tuple | None = None
        self._unknown_since: float | None = None
        self._failing_since: float | None = None
        self._failures = 0

    def poll_failed(self, err: BaseException, now: float | None = None) -> tuple[RunState | None, float]:
        """A status read raised: (final state, 0) if the run must fail, else (None, seconds to wait)."""
        now = time.monotonic() if now is None else now
        if not is_transient(err):
            message = f"reading the status of run {self.run_id} failed and retrying cannot help: {describe_error(err)}"
            return RunState(self.run_id, RunStatus.FAILED, message, native_status="POLL_ERROR"), 0.0
        if self._failing_since is None:
            self._failing_since = now
        self._failures += 1
        if now - self._failing_since >= self.outage_window:
            message = (
                f"the service did not answer for run {self.run_id} for {now - self._failing_since:.0f} s "
                f"(outage window {self.outage_window:g} s, {self._failures} attempts); "
                f"last error: {describe_error(err)}"
            )
            return RunState(self.run_id, RunStatus.FAILED, message, native_status="POLL_ERROR"), 0.0
        base = min(self.poll_interval, 1.0)
        delay = min(base * 2 ** (self._failures - 1), MAX_BACKOFF_SECONDS) * random.uniform(0.5, 1.0)
        if self._failures == 1 or self._failures % 10 == 0:
            self.log.warning(
                "Reading the status of run %s failed (attempt %d, retrying for up to %g s): %s",
                self.run_id,
                self._failures,
                self.outage_window,
                describe_error(err),
            )
        return None, delay

    def observe(self, state: RunState, now: float | None = None) -> RunState | None:
        """Log a change of status (or of progress); return the final state once the run is over, else None."""
        now = time.monotonic() if now is None else now
        self._failing_since, self._failures = None, 0
        seen = (state.native_status, state.status, state.message, state.progress)
        if seen != self._last_seen:
            self._last_seen = seen
            detail = f": {state.message}" if state.message else ""
            if state.progress:
                detail += f" [children: {state.progress}]"
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


class _DeadlinePassed(Exception):
    pass


async def _before(read: Awaitable[RunState], deadline: float | None) -> RunState:
    if deadline is None:
        return await read
    try:
        return await asyncio.wait_for(read, max(deadline - time.time(), 0.0))
    except TimeoutError:
        if time.time() >= deadline:
            raise _DeadlinePassed from None
        raise


async def watch_run_async(
    read_state: Callable[[], Awaitable[RunState]],
    watch: RunWatch,
    poll_interval: float,
    deadline: float | None,
) -> tuple[RunState, bool]:
    """Poll until the run is over or its deadline (epoch seconds) passes; returns (state, timed_out).

    With ``poll_interval=0`` the reads pace themselves (a shared poller answers at the run's interval).
    """
    while True:
        wait = poll_interval
        try:
            final = watch.observe(await _before(read_state(), deadline))
        except _DeadlinePassed:
            return timed_out_state(watch.run_id, deadline or 0.0), True
        except Exception as err:
            final, wait = watch.poll_failed(err)
        if final is not None:
            return final, False
        if deadline is not None and time.time() >= deadline:
            return timed_out_state(watch.run_id, deadline), True
        await asyncio.sleep(_next_sleep(wait, deadline))


def watch_run_sync(
    read_state: Callable[[], RunState], watch: RunWatch, poll_interval: float, deadline: float | None
) -> tuple[RunState, bool]:
    """The same loop for ``deferrable=False``, polling in the worker."""
    while True:
        wait = poll_interval
        try:
            final = watch.observe(read_state())
        except Exception as err:
            final, wait = watch.poll_failed(err)
        if final is not None:
            return final, False
        if deadline is not None and time.time() >= deadline:
            return timed_out_state(watch.run_id, deadline), True
        time.sleep(_next_sleep(wait, deadline))
