"""The watch both platforms share: final states, the Unknown grace period, one log line per change."""

from __future__ import annotations

import asyncio
import logging
import time

from polysync_airflow.operators.base import watch_in_worker
from polysync_airflow.run_watch import PollingSettings, RunWatch
from polysync_airflow.status import RunState, RunStatus
from polysync_airflow.triggers.base import watch_in_triggerer


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def watch(grace: float = 10.0) -> tuple[RunWatch, Lines]:
    logger = logging.getLogger(f"test.polling.{time.monotonic_ns()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = Lines()
    logger.addHandler(handler)
    return RunWatch("run-1", logger, PollingSettings(poll_interval=0.001, unknown_grace_period=grace)), handler


def state(status: RunStatus, native: str | None = None, message: str = "") -> RunState:
    return RunState("run-1", status, message, native_status=native)


def test_terminal_states_end_the_watch():
    for status in (RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED):
        w, _ = watch()
        assert w.observe(state(status, "X")) == state(status, "X")
    for status in (RunStatus.STARTING, RunStatus.RUNNING):
        w, _ = watch()
        assert w.observe(state(status, "X")) is None


def test_each_change_is_logged_once():
    w, log = watch()
    sequence = ["SUBMITTED", "SUBMITTED", "RUNNABLE", "RUNNABLE", "RUNNABLE", "RUNNING", "RUNNING"]
    for native in sequence:
        w.observe(state(RunStatus.RUNNING, native))
    w.observe(state(RunStatus.SUCCESS, "SUCCEEDED", "Essential container in task exited"))
    assert log.lines == [
        "Run run-1 is SUBMITTED (Running)",
        "Run run-1 is RUNNABLE (Running)",
        "Run run-1 is RUNNING (Running)",
        "Run run-1 is SUCCEEDED (Success): Essential container in task exited",
    ]


def test_a_new_reason_with_the_same_status_is_a_change():
    w, log = watch()
    w.observe(state(RunStatus.RUNNING, "RUNNABLE"))
    w.observe(state(RunStatus.RUNNING, "RUNNABLE", "waiting for capacity"))
    assert len(log.lines) == 2 and log.lines[1].endswith(": waiting for capacity")


def test_unknown_is_tolerated_for_the_grace_period_then_final():
    w, _ = watch(grace=30)
    unknown = state(RunStatus.UNKNOWN, None, "AWS Batch job run-1 was not found")
    assert w.observe(unknown, now=100.0) is None
    assert w.observe(unknown, now=129.0) is None
    final = w.observe(unknown, now=130.0)
    assert final is not None and final.status is RunStatus.UNKNOWN
    assert "stayed unknown for 30 s" in final.message and "was not found" in final.message


def test_a_known_status_resets_the_grace_period():
    w, _ = watch(grace=30)
    unknown = state(RunStatus.UNKNOWN)
    w.observe(unknown, now=0.0)
    w.observe(state(RunStatus.RUNNING, "RUNNING"), now=20.0)
    assert w.observe(unknown, now=40.0) is None
    assert w.observe(unknown, now=69.0) is None
    assert w.observe(unknown, now=70.0) is not None


def test_sync_and_async_loops_agree_and_respect_the_deadline():
    states = [state(RunStatus.RUNNING, "RUNNING")] * 3 + [state(RunStatus.SUCCESS, "SUCCEEDED")]

    feed = iter(states)
    final, timed_out = watch_in_worker(lambda: next(feed), watch()[0])
    assert (final.status, timed_out) == (RunStatus.SUCCESS, False)

    feed = iter(states)

    async def read():
        return next(feed)

    final, timed_out = asyncio.run(watch_in_triggerer(read, watch()[0]))
    assert (final.status, timed_out) == (RunStatus.SUCCESS, False)

    final, timed_out = watch_in_worker(lambda: states[0], watch()[0], time.time() + 0.05)
    assert timed_out and final.status is RunStatus.FAILED and "deadline" in final.message
