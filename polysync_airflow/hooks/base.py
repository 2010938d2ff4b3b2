"""What both hooks share: the run-level calls the shared operator and trigger make, and the async client their
triggerer-side calls make their requests with."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

from polysync_airflow.status import CANCEL_REASON


class RunHook(Protocol):
    """The calls ``operators/base.py`` and ``triggers/base.py`` make on a platform's hook, named alike on both.

    An *answer* is what the platform's decoder (``decode_run`` in ``statuses/<platform>.py``) reads: AWS, the
    job's DescribeJobs entry; Azure, the task and its job. None: the run was not found."""

    # -- sync, in the worker (``deferrable=False``) --
    def read_run(self, run_id: str) -> Any:
        """The run's answer."""

    def mark_watched(self, run_id: str, watcher: str) -> None:
        """Record on the run's job that ``watcher`` polls it, so no later try adopts it (see ownership.py)."""

    def terminate_run(self, run_id: str, reason: str = CANCEL_REASON) -> None:
        """Stop the run on the platform."""

    # -- async, in the triggerer, inside ``async with hook.async_connection():`` --
    def async_connection(self) -> AbstractAsyncContextManager[None]:
        """Open the async client the calls below use, until the block ends (a shared poller's life, or one cancel)."""

    async def aread_runs(self, run_ids: Sequence[str]) -> Mapping[str, Any]:
        """The shared poller's batched read: many runs' answers in few calls (a run not found is absent; a run
        whose own request failed maps to that exception, so the other runs' answers stand)."""

    async def amark_watched(self, answer: Any, watcher: str) -> None:
        """``mark_watched`` from the answer just read (so without reading the job again)."""

    async def aterminate_run(self, run_id: str, reason: str = CANCEL_REASON) -> None:
        """Stop the run on the platform."""

    # -- a run that waits to start (``QueueWatch`` in ``run_watch.py``): the one-time diagnosis --
    def read_wait_cause(self, run_id: str, answer: Any) -> str:
        """Why the run has not started, in one line (the platform's diagnosis reads; never raises for them)."""

    async def aread_wait_cause(self, run_id: str, answer: Any) -> str:
        """``read_wait_cause`` with the async client."""


class AsyncClientHolder:
    """Keeps one open async client for the hook's ``a...`` calls, from ``async with hook.async_connection():``
    to the end of that block (a shared poller's lifetime, or one cancel)."""

    _async_client: Any = None

    @asynccontextmanager
    async def _holding(self, opening: AbstractAsyncContextManager[Any]) -> AsyncIterator[None]:
        async with opening as client:
            self._async_client = client
            try:
                yield
            finally:
                self._async_client = None

    @property
    def async_client(self) -> Any:
        """The open async client (see ``async_connection``)."""
        assert self._async_client is not None, "the async calls need `async with hook.async_connection():`"
        return self._async_client
