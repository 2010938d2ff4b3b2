"""The AWS Batch SubmitJob request, validated and built from the operator's arguments (pure: no request is made).

Templated arguments arrive as strings ("7", "true", JSON text); every rule names the argument, the value and
the rule (:class:`~polysync_airflow.validation.PolysyncValidationError`), before anything leaves the machine.
"""

from __future__ import annotations

import re
from typing import Any

from polysync_airflow.ownership import IDENTITY_MARKS, TaskInstanceKey
from polysync_airflow.validation import (
    PolysyncValidationError,
    as_bool,
    as_int,
    as_json,
    as_optional_str,
    stringify_parameters,
)

_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"
_ARN = r"arn:aws[a-z-]*:batch:[a-z0-9-]+:\d{12}"
JOB_DEFINITION_RE = re.compile(rf"^(?:{_NAME}(?::[1-9]\d*)?|{_ARN}:job-definition/{_NAME}(?::[1-9]\d*)?)$")
JOB_QUEUE_RE = re.compile(rf"^(?:{_NAME}|{_ARN}:job-queue/{_NAME})$")
DEPENDENCY_TYPES = ("SEQUENTIAL", "N_TO_N")


def job_name_for(key: TaskInstanceKey) -> str:
    """``Polysync-<guid>``, the same guid for every try of the task instance (so a retry can look it up)."""
    return f"Polysync-{key.uuid}"


MAX_USER_TAGS = 50 - len(IDENTITY_MARKS) - 1  # AWS's limit, less Polysync's identity marks and the watched mark
TAG_KEY_RULE = "tag keys must be 1-128 characters and must not start with 'aws:' or 'polysync:' (reserved)"


def check_tag_key(key: Any, tag_value: Any) -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= 128 or key.lower().startswith(("aws:", "polysync:")):
        raise PolysyncValidationError(f"tags[{key!r}]", tag_value, TAG_KEY_RULE)


def validate_tags(value: Any) -> dict[str, str] | None:
    if value is None or value == "":
        return None
    tags = as_json("tags", value, dict)
    if len(tags) > MAX_USER_TAGS:
        raise PolysyncValidationError(
            "tags",
            value,
            f"at most {MAX_USER_TAGS} tags are allowed (AWS allows 50; Polysync uses {len(IDENTITY_MARKS) + 1})",
        )
    for key, tag_value in tags.items():
        check_tag_key(key, tag_value)
        if not isinstance(tag_value, str) or len(tag_value) > 256:
            raise PolysyncValidationError(
                f"tags[{key!r}]", tag_value, "tag values must be strings of at most 256 characters"
            )
    return tags


def validate_depends_on(value: Any) -> list[dict[str, str]] | None:
    if value is None or value == "":
        return None
    items = as_json("depends_on", value, list)
    if len(items) > 20:
        raise PolysyncValidationError("depends_on", value, "at most 20 dependencies are allowed")
    result = []
    for index, item in enumerate(items):
        field = f"depends_on[{index}]"
        if not isinstance(item, dict) or set(item) - {"jobId", "type"}:
            raise PolysyncValidationError(field, item, 'each dependency must be an object {"jobId": ..., "type": ...}')
        if not isinstance(item.get("jobId"), str) or not item["jobId"]:
            raise PolysyncValidationError(f"{field}.jobId", item.get("jobId"), "must be a non-empty job id string")
        if "type" in item and item["type"] not in DEPENDENCY_TYPES:
            raise PolysyncValidationError(f"{field}.type", item["type"], "must be SEQUENTIAL or N_TO_N")
        result.append(dict(item))
    return result


def build_submit_job_request(
    *,
    job_name: str,
    job_definition: Any,
    job_queue: Any,
    parameters: Any = None,
    share_identifier: Any = None,
    scheduling_priority_override: Any = None,
    attempt_duration_seconds: Any = None,
    retry_attempts: Any = None,
    array_size: Any = None,
    tags: Any = None,
    propagate_tags: Any = None,
    depends_on: Any = None,
) -> dict[str, Any]:
    """Validate the job arguments and build SubmitJob's request; only the optional fields that are set."""
    if not isinstance(job_definition, str) or not JOB_DEFINITION_RE.fullmatch(job_definition):
        raise PolysyncValidationError(
            "job_definition",
            job_definition,
            "must be a job definition name, name:revision (revision a positive integer) or a Batch job-definition ARN",
        )
    if job_queue in (None, ""):
        raise PolysyncValidationError(
            "job_queue",
            job_queue,
            "no job queue: pass job_queue= or set default_job_queue in the connection's extra",
        )
    if not isinstance(job_queue, str) or not JOB_QUEUE_RE.fullmatch(job_queue):
        raise PolysyncValidationError("job_queue", job_queue, "must be a job queue name or a Batch job-queue ARN")
    request: dict[str, Any] = {
        "jobName": job_name,
        "jobDefinition": job_definition,
        "jobQueue": job_queue,
        "parameters": stringify_parameters(parameters),
    }
    share = as_optional_str("share_identifier", share_identifier, max_length=255)
    if share is not None:
        request["shareIdentifier"] = share
    if scheduling_priority_override not in (None, ""):
        request["schedulingPriorityOverride"] = as_int(
            "scheduling_priority_override", scheduling_priority_override, 0, 9999
        )
    if attempt_duration_seconds not in (None, ""):
        request["timeout"] = {
            "attemptDurationSeconds": as_int("attempt_duration_seconds", attempt_duration_seconds, 60)
        }
    if retry_attempts not in (None, ""):
        request["retryStrategy"] = {"attempts": as_int("retry_attempts", retry_attempts, 1, 10)}
    if array_size not in (None, ""):
        request["arrayProperties"] = {"size": as_int("array_size", array_size, 2, 10000)}
    tag_map = validate_tags(tags)
    if tag_map is not None:
        request["tags"] = tag_map
    if propagate_tags not in (None, ""):
        request["propagateTags"] = as_bool("propagate_tags", propagate_tags)
    dependencies = validate_depends_on(depends_on)
    if dependencies is not None:
        request["dependsOn"] = dependencies
    return request
