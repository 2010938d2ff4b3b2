"""What both hooks share: the async client their triggerer-side calls make their requests with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any


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
