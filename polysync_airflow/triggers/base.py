"""What every Polysync trigger shares: the polling loop, the deadline and cancel on user action."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from polysync_airflow.poller import StatusPoller
from polysync_airflow.polling import (
    DEFAULT_OUTAGE_WINDOW,
    DEFAULT_UNKNOWN_GRACE_PERIOD,
    RunWatch,
    describe_error,
    watch_run_async,
)
from polysync_airflow.status import RunState, RunStatus

CANCEL_TIMEOUT_SECONDS = 20.0  # inside the triggerer's own on_kill_timeout (30 s by default)


class PolysyncJobTrigger(BaseTrigger):
    """Polls one Batch run until it ends, then fires one event with its :class:`RunState`.

    The deadline is part of the trigger (epoch seconds) rather than ``defer(timeout=...)``, so a run that
    overstays is terminated and reported instead of being abandoned: Airflow's defer timeout fails the
    task without calling ``on_kill``.
    """

    def __init__(
        self,
        *,
        run_id: str,
        job_name: str = "",
        poll_interval: float = 30.0,
        unknown_grace_period: float = DEFAULT_UNKNOWN_GRACE_PERIOD,
        deadline: float | None = None,
        cancel_on_kill: bool = True,
        outage_window: float = DEFAULT_OUTAGE_WINDOW,
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.job_name = job_name
        self.poll_interval = float(poll_interval)
        self.unknown_grace_period = float(unknown_grace_period)
        self.deadline = deadline
        self.cancel_on_kill = cancel_on_kill
        self.outage_window = float(outage_window)
        self._reported = False

    def _common_kwargs(self) -> dict[str, Any]:
        return {
            "job_name": self.job_name,
            "poll_interval": self.poll_interval,
            "unknown_grace_period": self.unknown_grace_period,
            "deadline": self.deadline,
            "cancel_on_kill": self.cancel_on_kill,
            "outage_window": self.outage_window,
        }

    @abstractmethod
    def client(self) -> AbstractAsyncContextManager[Any]:
        """An async client of the platform (the shared poller's, or one to cancel the run with)."""

    @abstractmethod
    def poller(self) -> StatusPoller[Any]:
        """The status poller this trigger shares with every trigger of its connection in this triggerer."""

    @abstractmethod
    def decode(self, answer: Any) -> RunState:
        """The run's state from the poller's answer for it (None: not found)."""

    @abstractmethod
    async def cancel(self, client: Any) -> None:
        """Stop the run on the platform."""

    @abstractmethod
    async def mark_watched(self, client: Any, answer: Any) -> None:
        """Record on the job that a trigger watches it, so later tries never adopt it (see ownership.py)."""

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Poll interval 0: the shared poller paces the reads and backs off on faults, not this loop.
        watch = RunWatch(self.run_id, self.unknown_grace_period, self.log, self.outage_window, 0.0)
        poller = self.poller()
        async with poller.watching(self.run_id, self.poll_interval) as (client, next_answer):
            marked = False

            async def poll() -> RunState:
                nonlocal marked
                answer = await next_answer()
                state = self.decode(answer)
                if state.status is RunStatus.RUNNING and not marked:
                    marked = True
                    async with poller.side_calls:
                        await self._mark_watched_quietly(client, answer)
                return state

            state, timed_out = await watch_run_async(poll, watch, 0.0, self.deadline)
            if timed_out and self.cancel_on_kill:
                await self._cancel_quietly(client)
        self._reported = True  # before yielding: the triggerer may never resume us
        yield TriggerEvent({**state.to_event(), "job_name": self.job_name, "timed_out": timed_out})

    async def _mark_watched_quietly(self, client: Any, answer: Any) -> None:
        try:
            await self.mark_watched(client, answer)
        except Exception as err:  # the mark only guards reattaching; polling goes on without it
            self.log.warning("Could not mark run %s as watched: %s", self.run_id, describe_error(err))

    async def on_kill(self) -> None:
        """The user marked the task failed or success, or cleared it: stop the run (never raises)."""
        if not self.cancel_on_kill or self._reported:
            return
        self.log.info("Task was stopped by a user; cancelling run %s", self.run_id)
        try:
            async with self.client() as client:
                await self._cancel_quietly(client)
        except Exception as err:
            self.log.warning("Could not open a client to cancel run %s: %s", self.run_id, err)

    async def _cancel_quietly(self, client: Any) -> None:
        try:
            await asyncio.wait_for(self.cancel(client), CANCEL_TIMEOUT_SECONDS)
            self.log.info("Cancel requested for run %s", self.run_id)
        except Exception as err:
            self.log.warning("Could not cancel run %s: %s", self.run_id, err)
