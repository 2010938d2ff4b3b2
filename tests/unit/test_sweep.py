"""Which jobs the orphan sweep stops (pure logic), and the identity a job carries for it."""

from __future__ import annotations

import logging

import pytest

from polysync_airflow.ownership import TaskInstanceKey, cancel_on_kill_of
from polysync_airflow.sweep import ActiveJob, Verdict, decide, sweep

LOG = logging.getLogger("test")


def owner(task_id="t", try_number=1, run_id="r1", map_index=-1) -> TaskInstanceKey:
    return TaskInstanceKey("d", run_id, task_id, map_index, try_number)


def job(run_id="j1", who: TaskInstanceKey | None = None, *, cancel_on_kill=True, created=0.0, cancelling=False):
    return ActiveJob("aws-batch", run_id, "RUNNING", who or owner(), cancel_on_kill, created, cancelling)


def verdicts(jobs, states) -> dict[str, tuple[bool, str]]:
    return {v.job.run_id: (v.stop, v.why) for v in decide(jobs, states)}


@pytest.mark.parametrize("state", ["success", "failed", "skipped", "removed", "upstream_failed"])
def test_a_job_whose_task_instance_ended_is_stopped(state):
    stop, why = verdicts([job()], {owner().instance: state})["j1"]
    assert stop and why == f"its task instance ended ({state})"


@pytest.mark.parametrize(
    "state", ["scheduled", "queued", "running", "deferred", "up_for_retry", "up_for_reschedule", "restarting", None]
)
def test_a_job_whose_task_instance_lives_is_left(state):
    stop, why = verdicts([job()], {owner().instance: state})["j1"]
    assert not stop and why == f"its task instance is {state or 'none'}"


def test_a_job_whose_dag_run_is_gone_is_stopped():
    assert verdicts([job()], {}) == {"j1": (True, "its DAG run r1 is gone")}


def test_an_earlier_tries_job_is_stopped_when_a_later_try_has_its_own():
    jobs = [job("old", owner(try_number=1)), job("new", owner(try_number=2))]
    result = verdicts(jobs, {owner().instance: "deferred"})
    assert result["new"] == (False, "its task instance is deferred")
    assert result["old"] == (True, "a later try (try 2) owns job new; this is try 1's")


def test_a_try_that_ran_twice_keeps_its_newest_job():
    jobs = [job("first", created=1.0), job("second", created=2.0)]
    result = verdicts(jobs, {owner().instance: "running"})
    assert result["first"][0] and not result["second"][0]


def test_cancel_on_kill_false_and_jobs_without_identity_are_never_stopped():
    jobs = [job("kept", cancel_on_kill=False), ActiveJob("azure-batch", "x/polysync", "active", None, True)]
    result = verdicts(jobs, {})
    assert result["kept"] == (False, "it was submitted with cancel_on_kill=False")
    assert result["x/polysync"][0] is False and "no task instance identity" in result["x/polysync"][1]


def test_a_job_being_cancelled_and_an_unknown_state_are_left():
    assert verdicts([job(cancelling=True)], {})["j1"] == (False, "it is being cancelled already")
    stop, why = verdicts([job()], {owner().instance: "some_new_state"})["j1"]
    assert not stop and "unknown to the sweep" in why


def test_task_instances_are_told_apart_by_map_index():
    jobs = [job("m0", owner(map_index=0)), job("m1", owner(map_index=1))]
    result = verdicts(jobs, {owner(map_index=0).instance: "failed", owner(map_index=1).instance: "running"})
    assert result["m0"][0] and not result["m1"][0]


def test_the_stop_reason_names_the_task_instance_and_reads_as_a_polysync_cancel():
    verdict = Verdict(job(who=owner(map_index=3)), True, "its task instance ended (failed)")
    assert verdict.reason == "Cancelled by Polysync sweep: d.t[3] in r1: its task instance ended (failed)"


def test_identity_marks_round_trip_and_hold_no_more_than_identifiers():
    key = TaskInstanceKey("dag", "manual__2026-01-01T00:00:00+00:00", "task", 4, 2)
    marks = key.identity_marks(cancel_on_kill=False)
    assert TaskInstanceKey.from_marks(marks) == key
    assert cancel_on_kill_of(marks) is False and cancel_on_kill_of(key.identity_marks(True)) is True
    assert set(marks.values()) == {"dag", "manual__2026-01-01T00:00:00+00:00", "task", "4", "2", "false"}
    assert TaskInstanceKey.from_marks({**marks, "polysync:map-index": "x"}) is None
    assert cancel_on_kill_of({}) is False  # a job that does not say is kept


class FakeSource:
    """A job source with fixed jobs (the sweep's own loop is tested here; the platforms in integration)."""

    platform = "aws-batch"

    def __init__(self, jobs, fail=False):
        self.jobs, self.stopped, self.fail = jobs, [], fail

    def active_jobs(self):
        return self.jobs

    def stop(self, job, reason):
        if self.fail:
            raise RuntimeError("refused")
        self.stopped.append((job.run_id, reason))


def test_sweep_logs_one_line_per_job_and_a_dry_run_stops_nothing(caplog):
    caplog.set_level(logging.INFO)
    source = FakeSource([job("orphan", owner("a")), job("alive", owner("b"))])
    states = {owner("a").instance: "failed", owner("b").instance: "deferred"}
    sweep([source], lambda wanted: {i: states[i] for i in wanted}, dry_run=True, log=LOG)
    assert source.stopped == []
    assert (
        "Would stop aws-batch job orphan (RUNNING) of d.a in r1, try 1: its task instance ended (failed)" in caplog.text
    )
    assert "Leaving aws-batch job alive (RUNNING) of d.b in r1, try 1: its task instance is deferred" in caplog.text
    assert len(caplog.records) == 2
    sweep([source], lambda wanted: {i: states[i] for i in wanted}, dry_run=False, log=LOG)
    assert source.stopped == [("orphan", "Cancelled by Polysync sweep: d.a in r1: its task instance ended (failed)")]


def test_a_stop_that_fails_is_a_warning_and_the_sweep_goes_on(caplog):
    source = FakeSource([job("a", owner("a")), job("b", owner("b"))], fail=True)
    result = sweep([source], lambda wanted: {}, dry_run=False, log=LOG)
    assert [v.stop for v in result] == [True, True]
    assert caplog.text.count("Could not stop aws-batch job") == 2
