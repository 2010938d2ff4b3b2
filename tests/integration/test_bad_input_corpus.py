"""A corpus of bad inputs for both operators, each run for real through ``dag.test()``.

Contract (clarification 3): bad input fails the task before any request, with a message naming the
argument (for a parameter: its key), the bad value and the rule; templated strings for numeric
arguments are validated like the numbers they claim to be. Each case below runs one operator against
the local endpoint through one of the connection types of its platform, and checks that the task
failed, that the log holds the expected text and that the endpoint received no request at all.

"""

from __future__ import annotations

import itertools
import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from airflow.sdk import DAG

from polysync_airflow import AwsBatchJobOperator, AzureBatchJobOperator
from polysync_airflow.testing.connections import aws_connection, azure_connection, conn_env_name
from polysync_airflow.testing.dags import run_dag
from polysync_airflow.validation import PolysyncValidationError
from tests.integration.helpers import run_single_task

pytestmark = pytest.mark.usefixtures("airflow_db")

AWS, AZURE = "aws", "azure"
OPERATORS = {AWS: AwsBatchJobOperator, AZURE: AzureBatchJobOperator}
ENDPOINTS = {AWS: "local_aws_batch", AZURE: "local_azure_batch"}
URL_HOST = "polysyncdev.westeurope.batch.azure.com"

# -- connection variants ---------------------------------------------------------------------------------
# ``aws``/``azure_batch`` are the providers' types with plain extra keys; the ``polysync_*`` types keep
# the package's settings under the form's prefixed keys (``extra__<conn_type>__<name>``), which the hooks
# read too.


def _aws(endpoint: Any, queue: str | None = "polysync-default") -> dict[str, Any]:
    return aws_connection(endpoint, default_job_queue=queue)


def _polysync_aws(endpoint: Any, queue: str | None = "polysync-default") -> dict[str, Any]:
    conn = aws_connection(endpoint, default_job_queue=None)
    if queue:
        conn["extra"]["extra__polysync_aws_batch__default_job_queue"] = queue
    return {**conn, "conn_type": "polysync_aws_batch"}


def _azure(endpoint: Any, url: str | None = None, login: str | None = None, key: str | None = None) -> dict[str, Any]:
    conn = azure_connection(endpoint)
    conn["extra"]["account_url"] = endpoint.url if url is None else url
    return {
        **conn,
        "login": endpoint.account if login is None else login,
        "password": endpoint.key if key is None else key,
    }


def _polysync_azure(endpoint: Any, url: str | None = None, login: str | None = None, key: str | None = None):
    conn = _azure(endpoint, url, login, key)
    extra = {f"extra__polysync_azure_batch__{name}": value for name, value in conn["extra"].items()}
    return {**conn, "conn_type": "polysync_azure_batch", "extra": extra}


CONNECTIONS = {
    "aws": _aws,
    "aws/no-default-queue": lambda ep: _aws(ep, queue=None),
    "polysync_aws_batch": _polysync_aws,
    "polysync_aws_batch/no-default-queue": lambda ep: _polysync_aws(ep, queue=None),
    "polysync_aws_batch/bad-default-queue": lambda ep: _polysync_aws(ep, queue="bad queue!"),
    "azure_batch": _azure,
    "azure_batch/no-url": lambda ep: _azure(ep, url=""),
    "azure_batch/url-no-scheme": lambda ep: _azure(ep, url=URL_HOST),
    "azure_batch/url-with-path": lambda ep: _azure(ep, url=f"https://{URL_HOST}/jobs"),
    "azure_batch/no-key": lambda ep: _azure(ep, key=""),
    "polysync_azure_batch": _polysync_azure,
    "polysync_azure_batch/no-url": lambda ep: _polysync_azure(ep, url=""),
    "polysync_azure_batch/url-ftp": lambda ep: _polysync_azure(ep, url=f"ftp://{URL_HOST}"),
    "polysync_azure_batch/key-without-login": lambda ep: _polysync_azure(ep, login=""),
}


def conn_id_of(variant: str) -> str:
    return "corpus_" + re.sub(r"\W", "_", variant)


# -- the corpus --------------------------------------------------------------------------------------------

DEF_RULE = "must be a job definition name, name:revision (revision a positive integer) or a Batch job-definition ARN"
QUEUE_RULE = "must be a job queue name or a Batch job-queue ARN"
NO_QUEUE_RULE = "no job queue: pass job_queue= or set default_job_queue in the connection's extra"
PRIORITY_RULE = "must be an integer from 0 to 9999"
DURATION_RULE = "must be an integer >= 60"
RETRY_RULE = "must be an integer from 1 to 10"
ARRAY_RULE = "must be an integer from 2 to 10000"
TAG_KEY_RULE = "tag keys must be 1-128 characters and must not start with 'aws:'"
TAG_VALUE_RULE = "tag values must be strings of at most 256 characters"
BOOL_RULE = 'must be a bool (true or false, or the text "true"/"false")'
ENV_RULE = "parameter names become environment variables: letters, digits and underscores, not starting with a digit"
JOB_ID_RULE = "must be a Batch job id: 1-64 letters, digits, hyphens and underscores"
NO_URL = "set the extra 'account_url' to the Batch account endpoint"
URL_RULE = "it must look like https://<account>.<region>.batch.azure.com (scheme and host, no path)"
ARN = "arn:aws:batch:us-east-1:123456789012"
MANY_TAGS = {f"k{i}": "v" for i in range(51)}
MANY_DEPENDENCIES = [{"jobId": f"job-{i}"} for i in range(21)]


def invalid(field: str, value: Any, rule: str) -> tuple[str, str]:
    """The validation message's parts: the argument (or parameter key) with the value's repr, and the rule."""
    return f"{field}={value!r} is invalid: ", rule


def case(
    case_id: str,
    platform: str,
    conn: str,
    kwargs: dict[str, Any],
    expected: tuple[str, ...],
    native: bool = False,
    at_build: bool = False,
):
    """One row: ``expected`` are substrings of the log; ``native`` renders templates as Python objects;
    ``at_build``: rejected when the operator is built (before Airflow stores rendered fields)."""
    return pytest.param(platform, conn, kwargs, expected, native, at_build, id=case_id)


CASES = [
    # AWS job_definition
    case("aws-def-name-latest", AWS, "aws", {"job_definition": "polysync-job:latest"},
         invalid("job_definition", "polysync-job:latest", DEF_RULE)),
    case("aws-def-revision-0", AWS, "polysync_aws_batch", {"job_definition": "polysync-job:0"},
         invalid("job_definition", "polysync-job:0", DEF_RULE)),
    case("aws-def-templated-latest", AWS, "aws", {"job_definition": "{{ 'polysync-job' }}:latest"},
         invalid("job_definition", "polysync-job:latest", DEF_RULE)),
    case("aws-def-non-batch-arn", AWS, "polysync_aws_batch",
         {"job_definition": "arn:aws:ecs:us-east-1:123456789012:task-definition/polysync-job:1"},
         invalid("job_definition", "arn:aws:ecs:us-east-1:123456789012:task-definition/polysync-job:1", DEF_RULE)),
    case("aws-def-queue-arn", AWS, "aws", {"job_definition": f"{ARN}:job-queue/polysync-default"},
         invalid("job_definition", f"{ARN}:job-queue/polysync-default", DEF_RULE)),
    case("aws-def-empty", AWS, "aws", {"job_definition": ""}, invalid("job_definition", "", DEF_RULE)),
    case("aws-def-not-a-string", AWS, "polysync_aws_batch", {"job_definition": 42},
         invalid("job_definition", 42, DEF_RULE)),
    case("aws-def-trailing-space", AWS, "aws", {"job_definition": "polysync-job "},
         invalid("job_definition", "polysync-job ", DEF_RULE)),
    # AWS job_queue (argument and connection default)
    case("aws-queue-invalid-name", AWS, "polysync_aws_batch", {"job_queue": "bad queue!"},
         invalid("job_queue", "bad queue!", QUEUE_RULE)),
    case("aws-queue-definition-arn", AWS, "aws", {"job_queue": f"{ARN}:job-definition/polysync-job:1"},
         invalid("job_queue", f"{ARN}:job-definition/polysync-job:1", QUEUE_RULE)),
    case("aws-queue-not-a-string", AWS, "polysync_aws_batch", {"job_queue": ["polysync-default"]},
         invalid("job_queue", ["polysync-default"], QUEUE_RULE)),
    case("aws-queue-missing", AWS, "aws/no-default-queue", {}, invalid("job_queue", None, NO_QUEUE_RULE)),
    case("aws-queue-missing-polysync-conn", AWS, "polysync_aws_batch/no-default-queue", {},
         invalid("job_queue", None, NO_QUEUE_RULE)),
    case("aws-queue-templated-empty", AWS, "aws/no-default-queue", {"job_queue": "{{ '' }}"},
         invalid("job_queue", None, NO_QUEUE_RULE)),
    case("aws-queue-bad-connection-default", AWS, "polysync_aws_batch/bad-default-queue", {},
         invalid("job_queue", "bad queue!", QUEUE_RULE)),
    case("aws-queue-trailing-space", AWS, "aws", {"job_queue": "polysync-default "},
         invalid("job_queue", "polysync-default ", QUEUE_RULE)),
    case("aws-queue-false", AWS, "aws", {"job_queue": False}, invalid("job_queue", False, QUEUE_RULE)),
    # AWS parameters
    case("aws-params-list", AWS, "aws", {"parameters": ["seconds", "0"]},
         invalid("parameters", ["seconds", "0"], "must be a dict (or JSON object text)")),
    case("aws-params-malformed-json", AWS, "aws", {"parameters": '{"seconds": 0'},
         invalid("parameters", '{"seconds": 0', "must be a JSON object; the text is not JSON")),
    case("aws-params-templated-not-json", AWS, "aws", {"parameters": "{{ 'seconds=0' }}"},
         invalid("parameters", "seconds=0", "must be a JSON object; the text is not JSON")),
    case("aws-params-none-value", AWS, "polysync_aws_batch", {"parameters": {"seconds": None}},
         invalid("parameters['seconds']", None, "must not be None")),
    case("aws-params-nan", AWS, "aws", {"parameters": {"seconds": float("nan")}},
         invalid("parameters['seconds']", float("nan"), "must be a finite number"), at_build=True),
    case("aws-params-bytes", AWS, "polysync_aws_batch", {"parameters": {"message": b"hi"}},
         invalid("parameters['message']", b"hi", "type bytes is not supported")),
    case("aws-params-empty-key", AWS, "polysync_aws_batch", {"parameters": {"": "x"}},
         invalid("parameters['']", "x", "keys must be non-empty strings")),
    # AWS numbers: out of range, and the strings templating produces
    case("aws-priority-negative-text", AWS, "aws", {"scheduling_priority_override": "-1"},
         invalid("scheduling_priority_override", "-1", PRIORITY_RULE)),
    case("aws-priority-too-high", AWS, "polysync_aws_batch", {"scheduling_priority_override": 10000},
         invalid("scheduling_priority_override", 10000, PRIORITY_RULE)),
    case("aws-priority-templated-fraction", AWS, "aws", {"scheduling_priority_override": "{{ '1.5' }}"},
         invalid("scheduling_priority_override", "1.5", PRIORITY_RULE)),
    case("aws-duration-59", AWS, "aws", {"attempt_duration_seconds": 59},
         invalid("attempt_duration_seconds", 59, DURATION_RULE)),
    case("aws-duration-templated-30", AWS, "polysync_aws_batch", {"attempt_duration_seconds": "{{ 30 }}"},
         invalid("attempt_duration_seconds", "30", DURATION_RULE)),
    case("aws-duration-fraction-text", AWS, "aws", {"attempt_duration_seconds": "60.5"},
         invalid("attempt_duration_seconds", "60.5", DURATION_RULE)),
    case("aws-retries-11-text", AWS, "polysync_aws_batch", {"retry_attempts": "11"},
         invalid("retry_attempts", "11", RETRY_RULE)),
    case("aws-retries-negative-text", AWS, "aws", {"retry_attempts": "-1"},
         invalid("retry_attempts", "-1", RETRY_RULE)),
    case("aws-retries-from-params", AWS, "polysync_aws_batch",
         {"retry_attempts": "{{ params.attempts }}", "params": {"attempts": "abc"}},
         invalid("retry_attempts", "abc", RETRY_RULE)),
    case("aws-array-1", AWS, "aws", {"array_size": 1}, invalid("array_size", 1, ARRAY_RULE)),
    case("aws-array-templated-abc", AWS, "aws", {"array_size": "{{ 'abc' }}"},
         invalid("array_size", "abc", ARRAY_RULE)),
    case("aws-array-fraction-text", AWS, "polysync_aws_batch", {"array_size": "1.5"},
         invalid("array_size", "1.5", ARRAY_RULE)),
    case("aws-array-native-float", AWS, "aws", {"array_size": "{{ 2.5 }}"}, invalid("array_size", 2.5, ARRAY_RULE),
         native=True),
    # AWS tags, propagate_tags, depends_on, share_identifier
    case("aws-tags-too-many", AWS, "aws", {"tags": MANY_TAGS},
         invalid("tags", MANY_TAGS, "tags are allowed")),
    case("aws-tags-aws-prefix", AWS, "polysync_aws_batch", {"tags": {"aws:owner": "me"}},
         invalid("tags['aws:owner']", "me", TAG_KEY_RULE)),
    case("aws-tags-polysync-prefix", AWS, "aws", {"tags": {"polysync:try": "9"}},
         invalid("tags['polysync:try']", "9", "must not start with 'aws:' or 'polysync:'")),
    case("aws-tags-aws-prefix-json-upper", AWS, "aws", {"tags": '{"AWS:owner": "me"}'},
         invalid("tags['AWS:owner']", "me", TAG_KEY_RULE)),
    case("aws-tags-int-value", AWS, "aws", {"tags": {"team": 5}}, invalid("tags['team']", 5, TAG_VALUE_RULE)),
    case("aws-tags-value-too-long", AWS, "polysync_aws_batch", {"tags": {"team": "v" * 257}},
         invalid("tags['team']", "v" * 257, TAG_VALUE_RULE)),
    case("aws-tags-native-int-value", AWS, "polysync_aws_batch", {"tags": "{{ {'rows': 7} }}"},
         invalid("tags['rows']", 7, TAG_VALUE_RULE), native=True),
    case("aws-tags-malformed-json", AWS, "aws", {"tags": '{"team": "data"'},
         invalid("tags", '{"team": "data"', "must be a JSON object; the text is not JSON")),
    case("aws-tags-int-key", AWS, "aws", {"tags": {1: "one"}}, invalid("tags[1]", "one", TAG_KEY_RULE), at_build=True),
    case("aws-propagate-yes", AWS, "aws", {"propagate_tags": "yes"}, invalid("propagate_tags", "yes", BOOL_RULE)),
    case("aws-propagate-from-params", AWS, "aws", {"propagate_tags": "{{ params.flag }}", "params": {"flag": "maybe"}},
         invalid("propagate_tags", "maybe", BOOL_RULE)),
    case("aws-depends-object", AWS, "polysync_aws_batch", {"depends_on": {"jobId": "job-1"}},
         invalid("depends_on", {"jobId": "job-1"}, "must be a JSON array")),
    case("aws-depends-malformed-json", AWS, "aws", {"depends_on": '[{"jobId": "job-1"'},
         invalid("depends_on", '[{"jobId": "job-1"', "must be a JSON array; the text is not JSON")),
    case("aws-depends-bare-id", AWS, "polysync_aws_batch", {"depends_on": ["job-1"]},
         invalid("depends_on[0]", "job-1", 'each dependency must be an object {"jobId": ..., "type": ...}')),
    case("aws-depends-empty-job-id", AWS, "polysync_aws_batch", {"depends_on": '[{"jobId": ""}]'},
         invalid("depends_on[0].jobId", "", "must be a non-empty job id string")),
    case("aws-depends-bad-type", AWS, "aws", {"depends_on": [{"jobId": "job-1", "type": "PARALLEL"}]},
         invalid("depends_on[0].type", "PARALLEL", "must be SEQUENTIAL or N_TO_N")),
    case("aws-depends-too-many", AWS, "polysync_aws_batch", {"depends_on": MANY_DEPENDENCIES},
         invalid("depends_on", MANY_DEPENDENCIES, "at most 20 dependencies are allowed")),
    case("aws-share-too-long", AWS, "aws", {"share_identifier": "s" * 256},
         invalid("share_identifier", "s" * 256, "must be at most 255 characters")),
    case("aws-share-not-a-string", AWS, "polysync_aws_batch", {"share_identifier": 7},
         invalid("share_identifier", 7, "must be a string")),
    # Azure template_job_id
    case("az-template-space", AZURE, "azure_batch", {"template_job_id": "bad id!"},
         invalid("template_job_id", "bad id!", JOB_ID_RULE)),
    case("az-template-too-long", AZURE, "polysync_azure_batch", {"template_job_id": "x" * 65},
         invalid("template_job_id", "x" * 65, JOB_ID_RULE)),
    case("az-template-templated", AZURE, "azure_batch", {"template_job_id": "{{ 'polysync template' }}"},
         invalid("template_job_id", "polysync template", JOB_ID_RULE)),
    case("az-template-native-int", AZURE, "polysync_azure_batch", {"template_job_id": "{{ 42 }}"},
         invalid("template_job_id", 42, JOB_ID_RULE), native=True),
    case("az-template-trailing-space", AZURE, "azure_batch", {"template_job_id": "polysync-template "},
         invalid("template_job_id", "polysync-template ", JOB_ID_RULE)),
    # Azure parameters: names must be environment variable names; values as on AWS
    case("az-param-name-hyphen", AZURE, "azure_batch", {"parameters": {"RUN-DATE": "2026-01-01"}},
         invalid("parameters['RUN-DATE']", "2026-01-01", ENV_RULE)),
    case("az-param-name-digit-first", AZURE, "polysync_azure_batch", {"parameters": {"1ST_RUN": True}},
         invalid("parameters['1ST_RUN']", "true", ENV_RULE)),
    case("az-param-name-empty", AZURE, "azure_batch", {"parameters": {"": "x"}},
         invalid("parameters['']", "x", "keys must be non-empty strings")),
    case("az-param-name-from-params", AZURE, "polysync_azure_batch",
         {"parameters": "{{ params.env }}", "params": {"env": '{"BAD-NAME": 1}'}},
         invalid("parameters['BAD-NAME']", "1", ENV_RULE)),
    case("az-param-name-trailing-newline", AZURE, "azure_batch", {"parameters": {"RUN_DATE\n": "x"}},
         invalid("parameters['RUN_DATE\\n']", "x", ENV_RULE)),
    case("az-param-none-value", AZURE, "azure_batch", {"parameters": {"RUN_DATE": None}},
         invalid("parameters['RUN_DATE']", None, "must not be None")),
    case("az-param-inf-value", AZURE, "polysync_azure_batch", {"parameters": {"ROWS": float("inf")}},
         invalid("parameters['ROWS']", float("inf"), "must be a finite number"), at_build=True),
    case("az-param-set-value", AZURE, "azure_batch", {"parameters": {"IDS": {1, 2}}},
         invalid("parameters['IDS']", {1, 2}, "type set is not supported")),
    case("az-params-templated-not-json", AZURE, "polysync_azure_batch", {"parameters": "{{ 'not json' }}"},
         invalid("parameters", "not json", "must be a JSON object; the text is not JSON")),
    case("az-params-list", AZURE, "azure_batch", {"parameters": ["RUN_DATE"]},
         invalid("parameters", ["RUN_DATE"], "must be a dict (or JSON object text)")),
    # Azure command_line, container_image, container_run_options types
    case("az-command-int", AZURE, "polysync_azure_batch", {"command_line": 42},
         invalid("command_line", 42, "must be a string")),
    case("az-command-native-list", AZURE, "polysync_azure_batch", {"command_line": "{{ ['echo', 'hi'] }}"},
         invalid("command_line", ["echo", "hi"], "must be a string"), native=True),
    case("az-command-too-long", AZURE, "azure_batch", {"command_line": "c" * 8193},
         invalid("command_line", "c" * 8193, "must be at most 8192 characters")),
    case("az-image-int", AZURE, "polysync_azure_batch", {"container_image": 123},
         invalid("container_image", 123, "must be a string")),
    case("az-image-too-long", AZURE, "azure_batch", {"container_image": "r" * 1025},
         invalid("container_image", "r" * 1025, "must be at most 1024 characters")),
    case("az-run-options-list", AZURE, "polysync_azure_batch", {"container_run_options": ["--rm"]},
         invalid("container_run_options", ["--rm"], "must be a string")),
    case("az-run-options-native-int", AZURE, "azure_batch", {"container_run_options": "{{ 5 }}"},
         invalid("container_run_options", 5, "must be a string"), native=True),
    # Azure connection problems
    case("az-conn-no-url", AZURE, "azure_batch/no-url", {},
         ("Connection 'corpus_azure_batch_no_url' has no account_url: ", NO_URL)),
    case("az-conn-no-url-polysync", AZURE, "polysync_azure_batch/no-url", {},
         ("Connection 'corpus_polysync_azure_batch_no_url' has no account_url: ", NO_URL)),
    case("az-conn-url-no-scheme", AZURE, "azure_batch/url-no-scheme", {},
         ("Connection 'corpus_azure_batch_url_no_scheme' has a malformed account_url", f"'{URL_HOST}'", URL_RULE)),
    case("az-conn-url-with-path", AZURE, "azure_batch/url-with-path", {},
         ("Connection 'corpus_azure_batch_url_with_path' has a malformed account_url", f"'https://{URL_HOST}/jobs'",
          URL_RULE)),
    case("az-conn-url-ftp", AZURE, "polysync_azure_batch/url-ftp", {},
         ("Connection 'corpus_polysync_azure_batch_url_ftp' has a malformed account_url", f"'ftp://{URL_HOST}'",
          URL_RULE)),
    case("az-conn-no-key", AZURE, "azure_batch/no-key", {}, ("'corpus_azure_batch_no_key'", "password")),
    case("az-conn-key-without-login", AZURE, "polysync_azure_batch/key-without-login", {},
         ("'corpus_polysync_azure_batch_key_without_login'", "login")),
]  # fmt: skip

_native_ids = itertools.count()


def run_native(operator_class: type, **kwargs: Any):
    """As ``run_single_task``, in a DAG that renders templates as native Python objects."""
    dag_id = f"test_bad_input_native_{next(_native_ids)}"
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), render_template_as_native_obj=True) as dag:
        operator_class(task_id="job", **kwargs)
    dag_run = run_dag(dag)
    return dag_run, dag_run.get_task_instance("job")


def base_kwargs(platform: str, conn_id: str) -> dict[str, Any]:
    """Valid arguments (on AWS, for a job that ends at once) that each case overrides."""
    if platform == AWS:
        return {"job_definition": "polysync-job", "parameters": {"seconds": 0}, "aws_conn_id": conn_id}
    return {"template_job_id": "polysync-template", "azure_batch_conn_id": conn_id}


def test_the_corpus_is_wide_enough():
    ids = [param.id for param in CASES]
    assert len(ids) == len(set(ids))
    platforms_and_conns = {(param.values[0], param.values[1].split("/")[0]) for param in CASES}
    assert platforms_and_conns == {
        (AWS, "aws"),
        (AWS, "polysync_aws_batch"),
        (AZURE, "azure_batch"),
        (AZURE, "polysync_azure_batch"),
    }
    assert len(CASES) >= 45


@pytest.mark.parametrize(("platform", "conn", "kwargs", "expected", "native", "at_build"), CASES)
def test_bad_input_fails_the_task_before_any_request(
    platform, conn, kwargs, expected, native, at_build, request, monkeypatch, capsys
):
    endpoint = request.getfixturevalue(ENDPOINTS[platform])
    conn_id = conn_id_of(conn)
    monkeypatch.setenv(conn_env_name(conn_id), json.dumps(CONNECTIONS[conn](endpoint)))
    # Bad arguments fail for good (no retry); a connection can be fixed between tries, so it may retry.
    final = any(" is invalid: " in text for text in expected)
    retries = {"retries": 1, "retry_delay": timedelta(0)} if final else {}
    arguments = {**base_kwargs(platform, conn_id), "poll_interval": 0.1, **retries, **kwargs}

    if at_build:
        with pytest.raises(PolysyncValidationError) as error:
            OPERATORS[platform](task_id="job", **arguments)
        assert endpoint.requests == []
        assert all(text in str(error.value) for text in expected)
        return
    _dag_run, ti = (run_native if native else run_single_task)(OPERATORS[platform], **arguments)

    log = capsys.readouterr().out
    assert endpoint.requests == []
    assert ti.state == "failed"
    for text in expected:
        assert text in log
    if final:
        assert ti.try_number == 1
