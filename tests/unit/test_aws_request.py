"""SubmitJob request building and validation for the AWS Batch job type (pure logic)."""

from __future__ import annotations

import json
import re

import pytest

from polysync_airflow.ownership import TaskInstanceKey
from polysync_airflow.requests.aws_batch import build_submit_job_request, job_name_for
from polysync_airflow.validation import PolysyncValidationError

BASE = {"job_name": "Polysync-x", "job_definition": "etl", "job_queue": "q"}


def build(**overrides):
    return build_submit_job_request(**{**BASE, **overrides})


def test_only_required_fields_when_nothing_optional_is_set():
    assert build() == {"jobName": "Polysync-x", "jobDefinition": "etl", "jobQueue": "q", "parameters": {}}


@pytest.mark.parametrize(
    ("argument", "value", "field", "expected"),
    [
        ("share_identifier", "teamA", "shareIdentifier", "teamA"),
        ("scheduling_priority_override", 9999, "schedulingPriorityOverride", 9999),
        ("scheduling_priority_override", "0", "schedulingPriorityOverride", 0),
        ("attempt_duration_seconds", 60, "timeout", {"attemptDurationSeconds": 60}),
        ("attempt_duration_seconds", "3600", "timeout", {"attemptDurationSeconds": 3600}),
        ("retry_attempts", 1, "retryStrategy", {"attempts": 1}),
        ("retry_attempts", "10", "retryStrategy", {"attempts": 10}),
        ("array_size", 2, "arrayProperties", {"size": 2}),
        ("array_size", "10000", "arrayProperties", {"size": 10000}),
        ("tags", {"team": "a"}, "tags", {"team": "a"}),
        ("tags", '{"team": "a"}', "tags", {"team": "a"}),
        ("propagate_tags", True, "propagateTags", True),
        ("propagate_tags", "false", "propagateTags", False),
        ("propagate_tags", "TRUE", "propagateTags", True),
        ("depends_on", [{"jobId": "j1", "type": "N_TO_N"}], "dependsOn", [{"jobId": "j1", "type": "N_TO_N"}]),
        ("depends_on", '[{"jobId": "j1"}]', "dependsOn", [{"jobId": "j1"}]),
        ("parameters", {"n": 7, "flag": True}, "parameters", {"n": "7", "flag": "true"}),
    ],
)
def test_each_optional_field_is_sent_only_when_set(argument, value, field, expected):
    request = build(**{argument: value})
    assert request[field] == expected
    others = {
        "shareIdentifier",
        "schedulingPriorityOverride",
        "timeout",
        "retryStrategy",
        "arrayProperties",
        "tags",
        "propagateTags",
        "dependsOn",
    } - {field}
    assert not others & set(request)


@pytest.mark.parametrize(
    "definition",
    [
        "etl",
        "etl_v2-x",
        "etl:1",
        "etl:42",
        "a" * 128,
        "arn:aws:batch:us-east-1:123456789012:job-definition/etl:3",
        "arn:aws:batch:eu-west-1:123456789012:job-definition/etl",
        "arn:aws-cn:batch:cn-north-1:123456789012:job-definition/etl:1",
    ],
)
def test_valid_job_definitions(definition):
    assert build(job_definition=definition)["jobDefinition"] == definition


@pytest.mark.parametrize("queue", ["q", "my-queue_1", "arn:aws:batch:us-east-1:123456789012:job-queue/my-queue"])
def test_valid_job_queues(queue):
    assert build(job_queue=queue)["jobQueue"] == queue


# (arguments, the field the error must name, a text of the bad value it must show, a word of the rule)
INVALID = [
    ({"job_definition": "etl:latest"}, "job_definition", "etl:latest", "name:revision"),
    ({"job_definition": "etl:0"}, "job_definition", "etl:0", "revision"),
    ({"job_definition": ""}, "job_definition", "''", "name"),
    ({"job_definition": "bad name"}, "job_definition", "bad name", "name"),
    ({"job_definition": "a" * 129}, "job_definition", "a" * 129, "name"),
    ({"job_definition": "arn:aws:s3:::bucket/key"}, "job_definition", "arn:aws:s3", "ARN"),
    (
        {"job_definition": "arn:aws:batch:us-east-1:123456789012:job-queue/q"},
        "job_definition",
        "job-queue",
        "ARN",
    ),
    ({"job_definition": 12}, "job_definition", "12", "name"),
    ({"job_queue": None}, "job_queue", "None", "default_job_queue"),
    ({"job_queue": ""}, "job_queue", "''", "default_job_queue"),
    ({"job_queue": "no spaces allowed"}, "job_queue", "no spaces allowed", "queue name"),
    ({"share_identifier": 5}, "share_identifier", "5", "string"),
    ({"share_identifier": "x" * 256}, "share_identifier", "xxx", "255"),
    ({"scheduling_priority_override": -1}, "scheduling_priority_override", "-1", "0 to 9999"),
    ({"scheduling_priority_override": 10000}, "scheduling_priority_override", "10000", "0 to 9999"),
    ({"scheduling_priority_override": "1.5"}, "scheduling_priority_override", "1.5", "integer"),
    ({"scheduling_priority_override": "abc"}, "scheduling_priority_override", "abc", "integer"),
    ({"scheduling_priority_override": True}, "scheduling_priority_override", "True", "integer"),
    ({"scheduling_priority_override": 2.0}, "scheduling_priority_override", "2.0", "integer"),
    ({"attempt_duration_seconds": 59}, "attempt_duration_seconds", "59", ">= 60"),
    ({"attempt_duration_seconds": "-1"}, "attempt_duration_seconds", "-1", ">= 60"),
    ({"retry_attempts": 0}, "retry_attempts", "0", "1 to 10"),
    ({"retry_attempts": 11}, "retry_attempts", "11", "1 to 10"),
    ({"retry_attempts": "ten"}, "retry_attempts", "ten", "integer"),
    ({"array_size": 1}, "array_size", "1", "2 to 10000"),
    ({"array_size": 10001}, "array_size", "10001", "2 to 10000"),
    ({"array_size": "1.5"}, "array_size", "1.5", "integer"),
    ({"tags": "not json"}, "tags", "not json", "JSON object"),
    ({"tags": "[1]"}, "tags", "[1]", "JSON object"),
    ({"tags": {"k": 1}}, "tags['k']", "1", "strings"),
    ({"tags": {"k": "v" * 257}}, "tags['k']", "vvv", "256"),
    ({"tags": {"aws:owner": "x"}}, "tags['aws:owner']", "x", "aws:"),
    ({"tags": {"": "x"}}, "tags['']", "x", "1-128"),
    ({"tags": {"k" * 129: "x"}}, "tags['kkk", "x", "1-128"),
    ({"tags": {f"k{i}": "v" for i in range(44)}}, "tags", "k43", "at most 43"),
    ({"tags": {"polysync:try": "1"}}, "tags['polysync:try']", "1", "reserved"),
    ({"propagate_tags": "yes"}, "propagate_tags", "yes", "bool"),
    ({"propagate_tags": 1}, "propagate_tags", "1", "bool"),
    ({"depends_on": "{oops"}, "depends_on", "{oops", "JSON array"),
    ({"depends_on": {"jobId": "j"}}, "depends_on", "jobId", "JSON array"),
    ({"depends_on": [{"jobId": "j", "type": "ALL"}]}, "depends_on[0].type", "ALL", "SEQUENTIAL or N_TO_N"),
    ({"depends_on": [{"type": "N_TO_N"}]}, "depends_on[0].jobId", "None", "job id"),
    ({"depends_on": [{"jobId": "j", "extra": 1}]}, "depends_on[0]", "extra", "jobId"),
    ({"depends_on": ["j1"]}, "depends_on[0]", "j1", "jobId"),
    ({"depends_on": [{"jobId": f"j{i}"} for i in range(21)]}, "depends_on", "j20", "at most 20"),
    ({"parameters": {"p": None}}, "parameters['p']", "None", "None"),
]


@pytest.mark.parametrize(("arguments", "field", "shown", "rule"), INVALID)
def test_each_rule_names_the_argument_the_value_and_the_rule(arguments, field, shown, rule):
    with pytest.raises(PolysyncValidationError) as err:
        build(**arguments)
    message = str(err.value)
    assert message.startswith(field)
    assert shown in message
    assert rule in message


def test_job_names_are_the_same_for_every_try_of_a_task_instance_and_differ_between_them():
    def name(run_id="r", task_id="t", map_index=-1, try_number=1):
        return job_name_for(TaskInstanceKey("d", run_id, task_id, map_index, try_number))

    assert name(try_number=1) == name(try_number=7)
    assert len({name(), name(run_id="r2"), name(task_id="t2"), name(map_index=0), name(map_index=1)}) == 5
    assert re.fullmatch(r"Polysync-[0-9a-f-]{36}", name())


def test_request_is_json_serializable():
    request = build(tags={"a": "b"}, depends_on=[{"jobId": "x", "type": "SEQUENTIAL"}], parameters={"p": [1]})
    assert json.loads(json.dumps(request)) == request
