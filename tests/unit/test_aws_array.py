"""AWS array jobs: the children's progress from statusSummary, its log lines, the failure texts (pure logic)."""

from __future__ import annotations

import logging
import time

import pytest

from polysync_airflow.operators.aws_batch import child_failure_text, child_index, failed_children_text
from polysync_airflow.run_watch import PollingSettings, RunWatch
from polysync_airflow.status import RunStatus
from polysync_airflow.statuses.aws_batch import array_counts, array_size, decode_job, format_array_progress


def parent(status: str = "RUNNING", size: int = 100, **summary: int) -> dict:
    full = dict.fromkeys(("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"), 0)
    return {"jobId": "p", "status": status, "arrayProperties": {"size": size, "statusSummary": {**full, **summary}}}


def test_counts_and_progress_of_a_running_array():
    job = parent(SUCCEEDED=37, FAILED=2, RUNNING=10, STARTING=1, RUNNABLE=50)
    counts = array_counts(job)
    assert counts == {"size": 100, "succeeded": 37, "failed": 2, "running": 10, "waiting": 51}
    assert format_array_progress(counts) == "37/100 succeeded, 2 failed, 10 running, 51 waiting"


def test_no_waiting_part_once_every_child_started():
    counts = array_counts(parent("SUCCEEDED", size=10, SUCCEEDED=8, FAILED=2))
    assert format_array_progress(counts) == "8/10 succeeded, 2 failed, 0 running"


def test_children_not_created_yet_count_as_waiting():
    # AWS creates the children as the parent leaves SUBMITTED; the summary can hold fewer than ``size``.
    job = {"status": "PENDING", "arrayProperties": {"size": 5, "statusSummary": {"PENDING": 2}}}
    assert array_counts(job) == {"size": 5, "succeeded": 0, "failed": 0, "running": 0, "waiting": 5}


@pytest.mark.parametrize(
    "job",
    [
        {"status": "RUNNING"},  # a single job
        {"status": "RUNNING", "arrayProperties": {"index": 3}},  # a child
        {"status": "SUBMITTED", "arrayProperties": {"size": 4}},  # no summary yet
        {"status": "SUBMITTED", "arrayProperties": {"size": 4, "statusSummary": {}}},
        {"status": "RUNNING", "arrayProperties": "garbage"},
        {"status": "RUNNING", "arrayProperties": {"size": "4", "statusSummary": {"RUNNING": 1}}},
    ],
)
def test_no_progress_without_a_parent_summary(job):
    assert array_counts(job) is None
    assert decode_job("j", job).progress == ""


def test_malformed_counts_read_as_zero():
    job = {"arrayProperties": {"size": 3, "statusSummary": {"SUCCEEDED": "2", "FAILED": True, "RUNNING": -1}}}
    assert array_counts(job) == {"size": 3, "succeeded": 0, "failed": 0, "running": 0, "waiting": 3}
    assert array_size({"arrayProperties": {"size": True}}) == 0


def test_decode_job_puts_the_progress_beside_the_status():
    state = decode_job("p", parent(SUCCEEDED=37, FAILED=2, RUNNING=10, RUNNABLE=51))
    assert (state.status, state.progress) == (RunStatus.RUNNING, "37/100 succeeded, 2 failed, 10 running, 51 waiting")
    assert state.to_event()["progress"] == state.progress
    assert set(state.to_event()) >= {"status", "run_id", "message", "exit_code"}


def lines_of_watch() -> tuple[RunWatch, list[str]]:
    logger = logging.getLogger(f"test.array.{time.monotonic_ns()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    return RunWatch("p", logger, PollingSettings(unknown_grace_period=10.0)), lines


def test_a_change_of_progress_is_logged_once_and_repeats_add_nothing():
    w, lines = lines_of_watch()
    answers = [
        parent("PENDING", size=4, PENDING=4),
        parent("RUNNABLE", size=4, RUNNABLE=4),
        parent("RUNNABLE", size=4, RUNNABLE=4),
        parent("RUNNING", size=4, RUNNING=2, RUNNABLE=2),
        parent("RUNNING", size=4, RUNNING=2, RUNNABLE=2),
        parent("RUNNING", size=4, SUCCEEDED=1, RUNNING=3),
        parent("RUNNING", size=4, SUCCEEDED=1, RUNNING=3),
        parent("RUNNING", size=4, SUCCEEDED=3, FAILED=1),
        {**parent("FAILED", size=4, SUCCEEDED=3, FAILED=1), "statusReason": "Array Child Job failed"},
    ]
    final = None
    for answer in answers:
        final = w.observe(decode_job("p", answer))
    assert final is not None and final.status is RunStatus.FAILED
    assert lines == [
        "Run p is PENDING (Running) [children: 0/4 succeeded, 0 failed, 0 running, 4 waiting]",
        "Run p is RUNNABLE (Running) [children: 0/4 succeeded, 0 failed, 0 running, 4 waiting]",
        "Run p is RUNNING (Running) [children: 0/4 succeeded, 0 failed, 2 running, 2 waiting]",
        "Run p is RUNNING (Running) [children: 1/4 succeeded, 0 failed, 3 running]",
        "Run p is RUNNING (Running) [children: 3/4 succeeded, 1 failed, 0 running]",
        "Run p is FAILED (Failed): Array Child Job failed [children: 3/4 succeeded, 1 failed, 0 running]",
    ]


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ({"jobId": "p:7", "arrayProperties": {"index": 7}}, 7),
        ({"jobId": "p:12"}, 12),  # moto leaves arrayProperties out of a child
        ({"jobId": "p"}, None),
        ({"jobId": "p:x", "arrayProperties": {"index": "3"}}, None),
    ],
)
def test_child_index(summary, expected):
    assert child_index(summary) == expected


def test_failed_children_text():
    assert failed_children_text([3], 10) == "child 3 failed (1 of 10)"
    assert failed_children_text([3, 7], 10) == "children 3, 7 failed (2 of 10)"
    capped = failed_children_text(list(range(25)), 100)
    assert capped == f"children {', '.join(map(str, range(20)))} and 5 more failed (25 of 100)"
    assert failed_children_text(list(range(4)), 10, limit=2) == "children 0, 1 and 2 more failed (4 of 10)"


@pytest.mark.parametrize(
    ("child", "expected"),
    [
        (
            {"statusReason": "Essential container in task exited", "container": {"exitCode": 1}},
            "Essential container in task exited (exit code 1)",
        ),
        (  # the exit code from the last attempt; the container's own reason adds to the status reason
            {
                "statusReason": "Essential container in task exited",
                "attempts": [{"container": {"exitCode": 137, "reason": "OutOfMemoryError: Container killed"}}],
            },
            "Essential container in task exited: OutOfMemoryError: Container killed (exit code 137)",
        ),
        ({"statusReason": "Dependent Job failed"}, "Dependent Job failed"),
        ({"container": {"exitCode": 2}}, "exit code 2"),
        ({"statusReason": "x", "container": {"reason": "x"}}, "x"),
        ({}, ""),
    ],
)
def test_child_failure_text(child, expected):
    assert child_failure_text(child) == expected
