"""What the two local Batch emulators share, written once.

Each platform is a model (state, job life cycle, validation: no HTTP) behind a protocol endpoint (routing,
request parsing, response envelopes, errors on the wire). :class:`BatchModel` is the model's base: the job
runner that really runs the commands, the lock over the state, the pace of the waiting states, waiting for
a job and shutting down. :class:`BatchEndpoint` is the endpoint's base: it serves one model over HTTP and
stops it with the server.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Generic, TypeVar, overload

from polysync_airflow.testing._http import LocalHttpEndpoint
from polysync_airflow.testing.runner import LocalJobRunner

JobT = TypeVar("JobT")
T = TypeVar("T")


class BatchModel(Generic[JobT]):
    """Base of the platform models. ``step_seconds`` is how long a job stays in each waiting state."""

    finishes = "finish"
    """The platform's word for a job reaching its end, for :meth:`wait_for_job`'s timeout message."""

    def __init__(self, step_seconds: float, runner: LocalJobRunner | None) -> None:
        self.step_seconds = step_seconds
        self._own_runner = runner is None
        self.runner = runner or LocalJobRunner()
        self.lock = threading.RLock()
        """Guards the model's state: the server's threads and the jobs' life cycle threads share it."""

    def finished_job(self, job_id: str) -> JobT | None:  # pragma: no cover - overridden
        """The job if it has reached its end, None while it has not."""
        raise NotImplementedError

    def pause(self, cancelled: threading.Event) -> bool:
        """Stay one step in a waiting state; True if ``cancelled`` was set meanwhile or the service is stopping."""
        return cancelled.wait(self.step_seconds) or self.runner.stopping.is_set()

    def wait_for_job(self, job_id: str, timeout: float = 30.0) -> JobT:
        """Block until the job has reached its end (for tests); returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.finished_job(job_id)
            if job is not None:
                return job
            time.sleep(0.02)
        raise TimeoutError(f"job {job_id} did not {self.finishes} within {timeout} s")

    def shutdown(self) -> None:
        """Kill what still runs and clean up, if the runner is the model's own (not one shared with others)."""
        if self._own_runner:
            self.runner.shutdown()


class OnModel(Generic[T]):
    """An endpoint attribute kept on its model: ``jobs = OnModel[dict[str, Job]]()`` on an endpoint class
    makes ``endpoint.jobs`` read (and assignments write) ``endpoint.model.jobs``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, endpoint: None, owner: type | None = None) -> OnModel[T]: ...

    @overload
    def __get__(self, endpoint: BatchEndpoint[Any], owner: type | None = None) -> T: ...

    def __get__(self, endpoint: BatchEndpoint[Any] | None, owner: type | None = None) -> T | OnModel[T]:
        return self if endpoint is None else getattr(endpoint.model, self.name)

    def __set__(self, endpoint: BatchEndpoint[Any], value: T) -> None:
        setattr(endpoint.model, self.name, value)


class BatchEndpoint(LocalHttpEndpoint, Generic[JobT]):
    """Base of the protocol endpoints: serves ``model`` on 127.0.0.1; stopping the server shuts the model down."""

    runner = OnModel[LocalJobRunner]()
    step_seconds = OnModel[float]()

    def __init__(self, model: BatchModel[JobT], host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.model = model

    def wait_for_job(self, job_id: str, timeout: float = 30.0) -> JobT:
        """Block until the job has reached its end (for tests); returns it."""
        return self.model.wait_for_job(job_id, timeout)

    def stop(self) -> None:
        super().stop()
        self.model.shutdown()
