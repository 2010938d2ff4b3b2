"""Which earlier job a try adopts (pure logic), and how each platform's job reads as an ExistingJob."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest
from airflow.sdk.exceptions import AirflowException

from polysync_airflow.ownership import (
    ExistingJob,
    OwnershipRecord,
    TaskInstanceKey,
    choose_job_to_adopt,
    jobs_to_stop,
)
from polysync_airflow.statuses import aws_batch, azure_batch
from polysync_airflow.statuses.aws_batch import existing_job as aws_existing_job
from polysync_airflow.statuses.azure_batch import existing_job as azure_existing_job
from polysync_airflow.statuses.azure_batch import watched_metadata

LOG = logging.getLogger("test")


def job(run_id="j", *, finished=False, cancelling=False, watched=False, try_number=1, status="RUNNING"):
    return ExistingJob(run_id, status, finished, cancelling, watched, try_number)


def test_only_a_running_unwatched_job_is_adopted(caplog):
    caplog.set_level(logging.INFO)
    candidates = [
        job("done", finished=True, status="FAILED"),
        job("stopping", cancelling=True),
        job("watched", watched=True),
        job("orphan", try_number=2),
    ]
    assert choose_job_to_adopt(candidates, LOG) == candidates[3]
    assert "Not reattaching to job done (submitted by try 1): it has finished (FAILED)" in caplog.text
    assert "job stopping (submitted by try 1): it is being cancelled" in caplog.text
    assert "job watched (submitted by try 1): an earlier try's trigger or worker watches it" in caplog.text


def test_nothing_adoptable_means_a_new_job():
    assert choose_job_to_adopt([], LOG) is None
    assert choose_job_to_adopt([job(finished=True), job(watched=True)], LOG) is None


def test_the_newest_of_two_orphans_is_adopted_and_the_other_named(caplog):
    newest, older = job("new", try_number=3), job("old", try_number=2)
    assert choose_job_to_adopt([newest, older], LOG) is newest
    assert "Job old (submitted by try 2) also runs unwatched" in caplog.text


def test_after_a_lost_submit_answer_the_try_takes_its_own_job_even_if_it_ended():
    own = job(finished=True, status="SUCCEEDED", try_number=4)
    assert choose_job_to_adopt([own], LOG) is None
    assert choose_job_to_adopt([own], LOG, own_try=4) is own
    assert choose_job_to_adopt([own], LOG, own_try=5) is None


def test_task_instance_key_reads_the_context():
    class TI:
        dag_id, run_id, task_id, map_index, try_number = "d", "r", "t", 2, 3

    key = TaskInstanceKey.from_context({"ti": TI()})
    assert key == TaskInstanceKey("d", "r", "t", 2, 3)
    assert str(key) == "d.t[2] in r, try 3"
    assert key.uuid == TaskInstanceKey("d", "r", "t", 2, 9).uuid != TaskInstanceKey("d", "r", "t", 1, 3).uuid


@pytest.mark.parametrize(
    ("summary", "tags", "expected"),
    [
        ({"status": "RUNNABLE"}, {"polysync:try": "2"}, (False, False, False, 2)),
        ({"status": "RUNNING", "statusReason": "Cancelled by Polysync"}, {}, (False, True, False, None)),
        ({"status": "STARTING"}, {"polysync:watched": "triggerer"}, (False, False, True, None)),
        ({"status": "SUCCEEDED"}, {"polysync:try": "1"}, (True, False, False, 1)),
        ({"status": "FAILED", "statusReason": "Essential container in task exited"}, {}, (True, False, False, None)),
    ],
)
def test_aws_jobs_as_existing_jobs(summary, tags, expected):
    found = aws_existing_job({"jobId": "j1", **summary}, {"tags": tags})
    assert (found.finished, found.cancelling, found.watched, found.try_number) == expected
    assert (found.run_id, found.native_status) == ("j1", summary["status"])


@pytest.mark.parametrize(
    ("state", "metadata", "expected"),
    [
        ("active", [], (False, False, False)),
        ("active", [{"name": "polysync:watched", "value": "worker"}], (False, False, True)),
        ("terminating", [], (False, True, False)),
        ("deleting", [], (False, True, False)),
        ("completed", [], (True, False, False)),
    ],
)
def test_azure_jobs_as_existing_jobs(state, metadata, expected):
    found = azure_existing_job({"id": "polysync-x-2", "state": state, "metadata": metadata}, "polysync", 2)
    assert (found.finished, found.cancelling, found.watched) == expected
    assert (found.run_id, found.try_number) == ("polysync-x-2/polysync", 2)


def test_azure_watched_mark_keeps_other_metadata_and_is_written_once():
    active = {"state": "active", "metadata": [{"name": "owner", "value": "data"}]}
    update = watched_metadata(active, "triggerer")
    assert update == {
        "metadata": [{"name": "owner", "value": "data"}, {"name": "polysync:watched", "value": "triggerer"}]
    }
    assert watched_metadata({"state": "active", **update}, "worker") is None
    assert watched_metadata({"state": "completed", "metadata": []}, "worker") is None


def test_an_airflow_exception_is_not_a_transient_service_fault():
    assert AirflowException.status_code == 500  # a class attribute that must not read as an HTTP answer
    for is_transient in (aws_batch.is_transient, azure_batch.is_transient):
        assert not is_transient(AirflowException("Azure Batch request failed: InvalidPropertyValue"))


def test_the_record_marks_the_jobs_a_try_took_over_as_watched():
    record = OwnershipRecord().before_submitting(1)
    assert record.submitting == 1
    record = record.watching("job-1", "triggerer", 1)
    assert record.submitting is None and record.watched == {"job-1": {"by": "triggerer", "try": 1}}
    found = record.apply([job("job-1"), job("job-2", try_number=2)])
    assert [j.watched for j in found] == [True, False]
    assert choose_job_to_adopt(found, LOG).run_id == "job-2"


def test_the_record_survives_its_json_round_trip_and_ignores_what_it_did_not_write():
    record = OwnershipRecord(submitting=3).watching("a/polysync", "worker", 2).before_submitting(3)
    assert OwnershipRecord.load(json.loads(json.dumps(record.dump()))) == record
    assert OwnershipRecord.load(None) is None and OwnershipRecord.load("job-1") is None
    assert OwnershipRecord.load({"watched": {"x": "not a mapping"}}) == OwnershipRecord()


def test_running_jobs_the_try_does_not_adopt_are_stopped_unless_kept_by_cancel_on_kill():
    watched = replace(job("watched"), watched=True)
    kept = replace(job("kept", watched=True), cancel_on_kill=False)
    done, stopping = job("done", finished=True), job("stopping", cancelling=True)
    orphan, newer = job("orphan", try_number=1), job("newer", try_number=2)
    jobs = [watched, kept, done, stopping, newer, orphan]
    stops = dict((j.run_id, why) for j, why in jobs_to_stop(jobs, newer, cancel_on_kill=True))
    assert set(stops) == {"watched", "orphan"}
    assert "watches it" in stops["watched"]
    assert stops["orphan"] == "a newer job of the task instance is adopted instead"
    # a job without the mark follows this operator's choice
    assert jobs_to_stop([watched], None, cancel_on_kill=False) == []


def test_both_platforms_read_the_submitters_cancel_on_kill_choice():
    marks = TaskInstanceKey("d", "r", "t", -1, 1).identity_marks(cancel_on_kill=False)
    summary = {"jobId": "j", "status": "RUNNING"}
    assert aws_existing_job(summary, {"tags": marks}).cancel_on_kill is False
    assert aws_existing_job(summary, {"tags": {}}).cancel_on_kill is None
    metadata = [{"name": name, "value": value} for name, value in marks.items()]
    azure_job = {"id": "polysync-x-1", "state": "active", "metadata": metadata}
    assert azure_existing_job(azure_job, "polysync", 1).cancel_on_kill is False
    assert azure_existing_job({**azure_job, "metadata": []}, "polysync", 1).cancel_on_kill is None
