"""The shared poller: one per platform connection in a triggerer, many runs, a few calls per interval.

This module says how a trigger is paced. Every trigger of one connection (and region or account) in one
event loop shares a :class:`SharedPoller`. A trigger joins with its run id and poll interval and awaits
the run's next answer; the poller asks the service for every run that is due in as few calls as the API
allows (its hook's ``aread_runs``, in ``hooks/<platform>.py``, asked for ``READ_CHUNK`` runs at a time so the
event loop never blocks on a thousand answers at once), and hands each waiting trigger its own answer, or the error
of the call that covered it (a read that fails as a whole fails every run it was asked for; a hook maps a run
whose own call failed to that error, and the other runs' answers stand).

A run is due with the beat of its poll interval: a run that joins is read at once (its first status
comes without waiting), and from then on with every run of its interval, so N runs cost ceil(N / 100)
calls per interval however spread out their joins were (tasks defer one after another, over many seconds,
on a busy deployment). After a failed read, the run's next read waits the backoff of
``run_watch.backoff_seconds``, starting at the poll interval (one failed call covers many runs, and a
throttled service must not be asked sooner); it rejoins the beat after its next good read. Runs due within
a short slack of each other are read together. A run that leaves (its trigger ended or was cancelled) is
simply no longer read. The poller opens one hook (``async with hook.async_connection()``) when its first run
joins and closes it when the last leaves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

from polysync_airflow.hooks.base import RunHook
from polysync_airflow.run_watch import backoff_seconds

GATHER_SECONDS = 0.05  # runs that start together (a triggerer starting many triggers) share the first call
MAX_SLACK_SECONDS = 1.0  # a run due this much later is read now, so runs fall into step
# Runs per read call (a multiple of DescribeJobs' 100): a call's answers are decoded, in one go, when it returns, so
# a thousand runs read at once are asked in chunks, each handed out before the next (a hook with a ``runs_per_read``
# attribute sets its own: Azure's, whose read lists every active run, reads all at once).
READ_CHUNK = 200
HANDOUT_SLICE = 50  # answers handed out per event-loop turn: a thousand triggers resuming at once stall the loop
SIDE_CALLS_IN_FLIGHT = 8  # per-run calls besides the reads (the watched mark): a burst of them would stall it too


@dataclass
class _Run:
    interval: float
    next_due: float
    members: int = 1  # triggers watching this run (normally one)
    failures: int = 0  # failed reads in a row: the next read backs off exponentially, with jitter
    waiters: list[asyncio.Future[Any]] = field(default_factory=list)
    unread: tuple[Any, BaseException | None] | None = None  # read while its trigger was busy: kept for it

    def schedule(self, now: float, beats: dict[float, float]) -> None:
        """After a read at ``now``: the next read is at the beat of this run's interval (the next read of
        every run of that interval), starting a new beat when none is ahead; after a failure, a backoff."""
        if self.failures:
            self.next_due = now + backoff_seconds(self.failures, first=self.interval)
            return
        beat = beats.get(self.interval)
        if beat is None or beat <= now + self.slack:  # no beat ahead, or this read is the beat's own
            beat = beats[self.interval] = now + self.interval
        self.next_due = beat  # a run read off the beat (it just joined) is read again with the others

    @property
    def slack(self) -> float:
        return min(self.interval / 4, MAX_SLACK_SECONDS)


class SharedPoller:
    """Reads every joined run; see the module docstring."""

    _shared: ClassVar[dict[tuple[asyncio.AbstractEventLoop, tuple[Any, ...]], SharedPoller]] = {}

    def __init__(self, key: tuple[Any, ...], make_hook: Callable[[], RunHook]) -> None:
        self.key = key
        self._make_hook = make_hook  # one hook for the poller's life: its read may keep state (Azure's does)
        self._runs: dict[str, _Run] = {}
        self._beats: dict[float, float] = {}  # poll interval -> when every run of that interval is read next
        self._wake = asyncio.Event()
        self._hook_ready: asyncio.Future[RunHook] | None = None
        self._exit_stack = AsyncExitStack()
        self._loop_task: asyncio.Task[None] | None = None
        self.side_calls = asyncio.Semaphore(SIDE_CALLS_IN_FLIGHT)

    @classmethod
    def shared(cls, key: tuple[Any, ...], make_hook: Callable[[], RunHook]) -> SharedPoller:
        """The poller of ``key`` in the running event loop, created on first use."""
        loop = asyncio.get_running_loop()
        poller = cls._shared.get((loop, key))
        if poller is None:
            poller = cls._shared[(loop, key)] = cls(key, make_hook)
        return poller

    @asynccontextmanager
    async def watching(
        self, run_id: str, interval: float
    ) -> AsyncIterator[tuple[RunHook, Callable[[], Awaitable[Any]]]]:
        """Join with ``run_id``; yields ``(hook, next_answer)``, the hook connected; leaving stops reading the run.
        An answer is None for a run the read did not find."""
        run = self._runs.get(run_id)
        if run is None:
            self._runs[run_id] = _Run(interval, time.monotonic())
        else:
            run.members += 1
            run.interval = min(run.interval, interval)
        try:
            hook = await self._hook_opened()
            if self._loop_task is None or self._loop_task.done():
                self._loop_task = asyncio.ensure_future(self._poll_loop())
            self._wake.set()
            yield hook, partial(self._next_answer, run_id)
        finally:
            await self._leave(run_id)

    async def _hook_opened(self) -> RunHook:
        if self._hook_ready is None:
            self._hook_ready = asyncio.get_running_loop().create_future()
            try:
                hook = self._make_hook()
                await self._exit_stack.enter_async_context(hook.async_connection())
            except BaseException as err:
                self._hook_ready.set_exception(err)
                self._hook_ready.exception()  # retrieved: every joiner gets it below
                self._hook_ready = None
                raise
            self._hook_ready.set_result(hook)
        return await asyncio.shield(self._hook_ready)

    async def _next_answer(self, run_id: str) -> Any:
        """The run's answer from the next read that covers it (a read made while the trigger was busy counts)."""
        run = self._runs[run_id]
        if run.unread is not None:
            (answer, error), run.unread = run.unread, None
            if error is not None:
                raise error
            return answer
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        run.waiters.append(waiter)
        try:
            return await waiter
        finally:
            if waiter in run.waiters:
                run.waiters.remove(waiter)

    async def _leave(self, run_id: str) -> None:
        run = self._runs.get(run_id)
        if run is not None:
            run.members -= 1
            if run.members <= 0:
                del self._runs[run_id]
        if self._runs:
            return
        # The last run left: stop polling, close the hook's client, and let the next joiner start afresh.
        loop = asyncio.get_running_loop()
        if SharedPoller._shared.get((loop, self.key)) is self:
            del SharedPoller._shared[(loop, self.key)]
        if self._loop_task is not None:
            self._loop_task.cancel()
        await self._exit_stack.aclose()

    async def _poll_loop(self) -> None:
        while self._runs:
            await asyncio.sleep(GATHER_SECONDS)  # let the runs that join together be read together
            now = time.monotonic()
            if any(run.next_due <= now for run in self._runs.values()):
                # With the runs that are due, read those due shortly after: runs started apart fall into step.
                await self._read([run_id for run_id, run in self._runs.items() if run.next_due - run.slack <= now], now)
                continue
            self._wake.clear()
            sleep = min(run.next_due for run in self._runs.values()) - now - GATHER_SECONDS
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(sleep, 0.0))

    async def _read(self, run_ids: list[str], now: float) -> None:
        first = 0
        while first < len(run_ids):
            try:
                hook = await self._hook_opened()
                chunk = run_ids[first : first + (getattr(hook, "runs_per_read", None) or READ_CHUNK)]
                answers = await hook.aread_runs(chunk)
            except Exception as err:  # every run the call covered gets its error, and so do the rest of this read:
                for run_id in run_ids[first:]:  # a failing (or throttling) service is not asked again at once
                    self._deliver(run_id, now, error=err)
                return
            for start in range(0, len(chunk), HANDOUT_SLICE):
                if start:
                    await asyncio.sleep(0)  # let the triggers handed an answer run before the next slice
                for run_id in chunk[start : start + HANDOUT_SLICE]:
                    answer = answers.get(run_id)
                    if isinstance(answer, BaseException):  # this run's own request failed; the others' stand
                        self._deliver(run_id, now, error=answer)
                    else:
                        self._deliver(run_id, now, answer=answer)
            first += len(chunk)
            await asyncio.sleep(0)  # and before the next chunk's answers arrive

    def _deliver(self, run_id: str, now: float, answer: Any = None, error: BaseException | None = None) -> None:
        run = self._runs.get(run_id)
        if run is None:  # left while the call was under way
            return
        run.failures = run.failures + 1 if error is not None else 0
        run.schedule(now, self._beats)
        waiters = [waiter for waiter in run.waiters if not waiter.done()]
        run.waiters.clear()
        if not waiters:
            run.unread = (answer, error)
        for waiter in waiters:
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(answer)
