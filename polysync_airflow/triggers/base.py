"""What every Polysync trigger shares: watching the run through the shared poller, the deadline, cancel on
user action, and what it is serialized with."""

from __future__ import annotations

import asyncio
import json
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from polysync_airflow.hooks.base import RunHook
from polysync_airflow.run_watch import (
    PollingSettings,
    QueueWatch,
    RunWatch,
    not_started_reason,
    quietly,
    timed_out_state,
)
from polysync_airflow.shared_poller import SharedPoller
from polysync_airflow.status import CANCEL_REASON, RunState

CANCEL_TIMEOUT_SECONDS = 20.0  # inside the triggerer's own on_kill_timeout (30 s by default)
# The watched mark is best effort: a call the network never answers (the SDKs wait up to 300 s) must not hold the
# run's watch, which would then report the run's end that much later.
MARK_TIMEOUT_SECONDS = 20.0


class PolysyncJobTrigger(BaseTrigger):
    """Waits for one Batch run until it ends, then fires one event with its :class:`RunState`.

    The deadline is part of the trigger (epoch seconds) rather than ``defer(timeout=...)``, so a run that
    overstays is terminated and reported instead of being abandoned: Airflow's defer timeout fails the
    task without calling ``on_kill``.
    """

    def __init__(self, *, run_id: str, job_name: str = "", **settings: Any) -> None:
        """``settings``: the fields of :class:`PollingSettings`."""
        super().__init__()
        self.run_id = run_id
        self.job_name = job_name
        self.settings = PollingSettings(**settings)
        self._reported = False

    # -- what a platform provides (data and small pieces; the run-level calls are its hook's, see RunHook) -----

    run_id_kwarg: ClassVar[str]
    """The keyword the run id is serialized under (``job_id`` on AWS, ``run_id`` on Azure)."""

    @staticmethod
    @abstractmethod
    def decode(run_id: str, answer: Any, /) -> RunState:
        """The run's state from its hook's answer (None: not found): ``decode_run`` in ``statuses/<platform>.py``."""

    @staticmethod
    @abstractmethod
    def is_transient(err: BaseException) -> bool:
        """Whether a fault of the platform heals (``statuses/<platform>.py``), so the watch rides it out."""

    @abstractmethod
    def connection_kwargs(self) -> dict[str, Any]:
        """The connection arguments this trigger is serialized with (besides the run id and polling settings)."""

    @abstractmethod
    def make_hook(self) -> RunHook:
        """The platform's hook for those connection arguments (not connected yet)."""

    # -- the shared flow -----------------------------------------------------------------------------

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                self.run_id_kwarg: self.run_id,
                **self.connection_kwargs(),
                "job_name": self.job_name,
                **self.settings.to_kwargs(),
            },
        )

    @property
    def poller_key(self) -> tuple[Any, ...]:
        """The triggers with the same key (trigger class and connection arguments) share a poller and its hook."""
        return (self.serialize()[0], json.dumps(self.connection_kwargs(), sort_keys=True, default=str))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watch = RunWatch(self.run_id, self.log, self.settings, self.is_transient)
        queue = QueueWatch(self.run_id, self.log, self.settings.queued_warning_after, self.settings.queued_timeout)
        poller = SharedPoller.shared(self.poller_key, self.make_hook)
        async with poller.watching(self.run_id, self.settings.poll_interval) as (hook, next_answer):

            async def next_state() -> RunState:
                answer = await next_answer()
                state = await queue.aobserve(
                    self.decode(self.run_id, answer),
                    lambda: hook.aread_wait_cause(self.run_id, answer),
                    poller.side_calls,
                )
                if self.settings.mark_watched and watch.first_seen_running(state):
                    async with poller.side_calls:
                        with quietly(self.log, f"mark run {self.run_id} as watched"):
                            await asyncio.wait_for(hook.amark_watched(answer, "triggerer"), MARK_TIMEOUT_SECONDS)
                return state

            state, timed_out = await watch_in_triggerer(next_state, watch, self.settings.deadline)
            if queue.timed_out:  # a job that did not start within queued_timeout is stopped, whatever cancel_on_kill
                await self._cancel(hook, not_started_reason(self.settings.queued_timeout))
            elif timed_out and self.settings.cancel_on_kill:
                await self._cancel(hook)
        self._reported = True  # before yielding: the triggerer may never resume us
        yield TriggerEvent(
            {
                **state.to_event(),
                "job_name": self.job_name,
                "timed_out": timed_out,
                "queue_timed_out": queue.timed_out,
                "timing": queue.last_timing.to_dict(),
            }
        )

    async def on_kill(self) -> None:
        """The user marked the task failed or success, or cleared it: stop the run (never raises)."""
        if not self.settings.cancel_on_kill or self._reported:
            return
        self.log.info("Task was stopped by a user; cancelling run %s", self.run_id)
        with quietly(self.log, f"cancel run {self.run_id}"):
            hook = self.make_hook()
            async with hook.async_connection():
                await self._cancel(hook)

    async def _cancel(self, hook: RunHook, reason: str = CANCEL_REASON) -> None:
        with quietly(self.log, f"cancel run {self.run_id}"):
            await asyncio.wait_for(hook.aterminate_run(self.run_id, reason), CANCEL_TIMEOUT_SECONDS)
            self.log.info("Cancel requested for run %s", self.run_id)


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


async def watch_in_triggerer(
    next_state: Callable[[], Awaitable[RunState]], watch: RunWatch, deadline: float | None = None
) -> tuple[RunState, bool]:
    """Await each next state until the run is over or its deadline passes; returns (state, timed_out). Never
    sleeps: ``next_state`` is paced by the shared poller, failed reads included."""
    while True:
        try:
            final = watch.observe(await _before(next_state(), deadline))
        except _DeadlinePassed:
            return timed_out_state(watch.run_id, deadline or 0.0), True
        except Exception as err:
            final = watch.poll_failed(err)
        if final is not None:
            return final, False
        if deadline is not None and time.time() >= deadline:
            return timed_out_state(watch.run_id, deadline), True
