"""What every Polysync trigger shares: watching the run through the shared poller, the deadline, cancel on
user action, and what it is serialized with."""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from polysync_airflow.run_watch import PollingSettings, RunWatch, quietly, timed_out_state
from polysync_airflow.shared_poller import ReadMany, SharedPoller
from polysync_airflow.status import RunState

CANCEL_TIMEOUT_SECONDS = 20.0  # inside the triggerer's own on_kill_timeout (30 s by default)


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

    # -- what a platform provides ------------------------------------------------------------------

    @staticmethod
    @abstractmethod
    def is_transient(err: BaseException) -> bool:
        """Whether a fault of the platform heals (``statuses/<platform>.py``), so the watch rides it out."""

    @abstractmethod
    def make_reader(self) -> ReadMany[Any]:
        """What reads many runs in few calls for the shared poller (one reader per poller)."""

    @abstractmethod
    def platform_kwargs(self) -> dict[str, Any]:
        """The run id and connection arguments this trigger is re-created from (with the polling settings)."""

    @property
    @abstractmethod
    def poller_key(self) -> tuple[Any, ...]:
        """The triggers with the same key share a poller and its client."""

    @abstractmethod
    def open_hook(self) -> AbstractAsyncContextManager[Any]:
        """The platform's hook with its async client open (the shared poller's, or one to cancel the run with)."""

    @abstractmethod
    def decode(self, answer: Any) -> RunState:
        """The run's state from the poller's answer for it (None: not found)."""

    @abstractmethod
    async def cancel(self, hook: Any) -> None:
        """Stop the run on the platform."""

    @abstractmethod
    async def mark_watched(self, hook: Any, answer: Any) -> None:
        """Record on the job that a trigger watches it, so later tries never adopt it (see ownership.py)."""

    # -- the shared flow -----------------------------------------------------------------------------

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {**self.platform_kwargs(), "job_name": self.job_name, **asdict(self.settings)},
        )

    def poller(self) -> SharedPoller[Any]:
        """The poller this trigger shares with every trigger of its key in this triggerer."""
        return SharedPoller.shared(self.poller_key, self.open_hook, self.make_reader)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watch = RunWatch(self.run_id, self.log, self.settings, self.is_transient)
        poller = self.poller()
        async with poller.watching(self.run_id, self.settings.poll_interval) as (hook, next_answer):

            async def next_state() -> RunState:
                answer = await next_answer()
                state = self.decode(answer)
                if watch.first_seen_running(state):
                    async with poller.side_calls:
                        with quietly(self.log, f"mark run {self.run_id} as watched"):
                            await self.mark_watched(hook, answer)
                return state

            state, timed_out = await watch_in_triggerer(next_state, watch, self.settings.deadline)
            if timed_out and self.settings.cancel_on_kill:
                await self._cancel(hook)
        self._reported = True  # before yielding: the triggerer may never resume us
        yield TriggerEvent({**state.to_event(), "job_name": self.job_name, "timed_out": timed_out})

    async def on_kill(self) -> None:
        """The user marked the task failed or success, or cleared it: stop the run (never raises)."""
        if not self.settings.cancel_on_kill or self._reported:
            return
        self.log.info("Task was stopped by a user; cancelling run %s", self.run_id)
        with quietly(self.log, f"cancel run {self.run_id}"):
            async with self.open_hook() as hook:
                await self._cancel(hook)

    async def _cancel(self, hook: Any) -> None:
        with quietly(self.log, f"cancel run {self.run_id}"):
            await asyncio.wait_for(self.cancel(hook), CANCEL_TIMEOUT_SECONDS)
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
