"""The AWS hook's connection settings and the links built from them (no requests, but for two clients)."""

from __future__ import annotations

import json

import pytest

from polysync_airflow import AwsBatchJobOperator
from polysync_airflow.hooks.aws_batch import AwsBatchHook, JobLogStream, log_stream_name
from polysync_airflow.links.aws_batch import AwsBatchJobLink, AwsBatchJobLogsLink


def use_connection(monkeypatch, conn_id: str, conn_type: str = "aws", **extra) -> AwsBatchHook:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps({"conn_type": conn_type, "login": "AKIDEXAMPLE", "password": "s3cr3t", "extra": extra}),
    )
    return AwsBatchHook(conn_id)


def test_link_name_and_xcom_key():
    assert AwsBatchJobLink.name == "AWS Batch Job"
    assert AwsBatchJobLink().xcom_key == "_link_AwsBatchJobLink"


def test_default_console_link(monkeypatch):
    hook = use_connection(monkeypatch, "aws_link", region_name="eu-west-1")
    assert AwsBatchJobLink.url(hook, "1234-abcd") == (
        "https://eu-west-1.console.aws.amazon.com/batch/home?region=eu-west-1#jobs/detail/1234-abcd"
    )


def test_job_id_is_url_quoted(monkeypatch):
    hook = use_connection(monkeypatch, "aws_link", region_name="us-east-1")
    assert AwsBatchJobLink.url(hook, "abc:1/x y").endswith("#jobs/detail/abc%3A1%2Fx%20y")


def test_the_region_argument_wins_over_the_connection(monkeypatch):
    use_connection(monkeypatch, "aws_link", region_name="eu-west-1")
    assert "region=ap-south-1" in AwsBatchJobLink.url(AwsBatchHook("aws_link", region_name="ap-south-1"), "j")


def test_template_from_the_connection(monkeypatch):
    hook = use_connection(
        monkeypatch,
        "aws_link",
        region_name="us-gov-west-1",
        monitor_link_template="https://console.amazonaws-us-gov.com/batch/home?region={region}#jobs/detail/{job_id}",
    )
    assert (
        AwsBatchJobLink.url(hook, "j-1")
        == "https://console.amazonaws-us-gov.com/batch/home?region=us-gov-west-1#jobs/detail/j-1"
    )


def test_a_broken_template_falls_back_to_the_console_and_warns(monkeypatch, caplog, capsys):
    hook = use_connection(
        monkeypatch, "aws_link", region_name="us-east-1", monitor_link_template="https://x/{account}/{job_id}"
    )
    assert AwsBatchJobLink.url(hook, "j").startswith("https://us-east-1.console.aws.amazon.com/")
    logged = caplog.text + capsys.readouterr().out
    assert "monitor_link_template 'https://x/{account}/{job_id}' in connection aws_link is not usable" in logged


@pytest.mark.parametrize("conn_type", ["aws", "polysync_aws_batch"])
def test_settings_from_either_connection_type(monkeypatch, conn_type):
    hook = use_connection(monkeypatch, "aws_settings", conn_type, region_name="us-east-1", default_job_queue="q1")
    assert hook.default_job_queue == "q1"
    assert hook.conn_config.aws_access_key_id == "AKIDEXAMPLE"


def test_settings_under_the_ui_prefixed_key(monkeypatch):
    hook = use_connection(
        monkeypatch, "aws_ui", "polysync_aws_batch", extra__polysync_aws_batch__default_job_queue="q2"
    )
    assert hook.default_job_queue == "q2"


def test_no_queue_setting(monkeypatch):
    assert use_connection(monkeypatch, "aws_none").default_job_queue is None


def test_hook_identity():
    assert AwsBatchHook.default_conn_name == "aws_default"
    assert AwsBatchHook.conn_type == "polysync_aws_batch"
    assert AwsBatchHook().client_type == "batch"


# -- the CloudWatch logs link ---------------------------------------------------------------------------------


def test_logs_link_name_and_xcom_key():
    assert AwsBatchJobLogsLink.name == "AWS Batch Job Logs"
    assert AwsBatchJobLogsLink().xcom_key == "_link_AwsBatchJobLogsLink"
    assert AwsBatchJobLogsLink.name in {link.name for link in AwsBatchJobOperator.operator_extra_links}


def test_default_logs_console_link_quotes_group_and_stream_like_the_amazon_provider(monkeypatch):
    from airflow.providers.amazon.aws.links.logs import CloudWatchEventsLink

    hook = use_connection(monkeypatch, "aws_logs", region_name="eu-west-1")
    log = JobLogStream("/aws/batch/job", "polysync-job/default/0b1c-2d", "eu-west-1")
    url = AwsBatchJobLogsLink.url(hook, log)
    assert url == (
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        "#logsV2:log-groups/log-group/%2Faws%2Fbatch%2Fjob/log-events/polysync-job%2Fdefault%2F0b1c-2d"
    )
    # the Amazon provider's CloudWatch link (console.aws.amazon.com) has the same path and quoting
    theirs = CloudWatchEventsLink().format_link(
        aws_domain="aws.amazon.com",
        awslogs_region="eu-west-1",
        awslogs_group=log.group,
        awslogs_stream_name=log.stream,
    )
    assert url.partition(".console.")[2] == theirs.partition("://console.")[2]


def test_logs_link_quotes_spaces_and_plus(monkeypatch):
    hook = use_connection(monkeypatch, "aws_logs", region_name="us-east-1")
    url = AwsBatchJobLogsLink.url(hook, JobLogStream("/my group+x", "a b", "us-east-1"))
    assert url.endswith("#logsV2:log-groups/log-group/%2Fmy+group%2Bx/log-events/a+b")


def test_logs_link_uses_the_streams_region(monkeypatch):
    hook = use_connection(monkeypatch, "aws_logs", region_name="us-east-1")
    assert AwsBatchJobLogsLink.url(hook, JobLogStream("g", "s", "ap-south-1")).startswith(
        "https://ap-south-1.console.aws.amazon.com/cloudwatch/home?region=ap-south-1#"
    )


def test_logs_link_template_from_the_connection(monkeypatch):
    hook = use_connection(
        monkeypatch,
        "aws_logs",
        region_name="cn-north-1",
        logs_link_template="https://console.amazonaws.cn/cloudwatch/home?region={region}"
        "#logsV2:log-groups/log-group/{log_group}/log-events/{log_stream}",
    )
    assert AwsBatchJobLogsLink.url(hook, JobLogStream("/aws/batch/job", "d/default/j", "cn-north-1")) == (
        "https://console.amazonaws.cn/cloudwatch/home?region=cn-north-1"
        "#logsV2:log-groups/log-group/%2Faws%2Fbatch%2Fjob/log-events/d%2Fdefault%2Fj"
    )


def test_a_broken_logs_template_falls_back_to_the_console_and_warns(monkeypatch, caplog, capsys):
    hook = use_connection(monkeypatch, "aws_logs", region_name="us-east-1", logs_link_template="https://x/{job_id}")
    assert AwsBatchJobLogsLink.url(hook, JobLogStream("g", "s", "us-east-1")).startswith(
        "https://us-east-1.console.aws.amazon.com/"
    )
    logged = caplog.text + capsys.readouterr().out
    assert "logs_link_template 'https://x/{job_id}' in connection aws_logs is not usable" in logged


@pytest.mark.parametrize(
    ("job", "stream"),
    [
        ({"container": {"logStreamName": "d/default/1"}}, "d/default/1"),
        (
            {
                "container": {},
                "attempts": [{"container": {"logStreamName": "a"}}, {"container": {"logStreamName": "b"}}],
            },
            "b",
        ),
        ({"container": {}, "attempts": []}, None),
        ({"arrayProperties": {"size": 2}}, None),
    ],
)
def test_log_stream_name(job, stream):
    assert log_stream_name(job) == stream


# -- console links follow the partition -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "console"),
    [
        ("eu-west-1", "https://eu-west-1.console.aws.amazon.com"),
        ("cn-north-1", "https://console.amazonaws.cn"),
        ("cn-northwest-1", "https://console.amazonaws.cn"),
        ("us-gov-west-1", "https://console.amazonaws-us-gov.com"),
        ("us-gov-east-1", "https://console.amazonaws-us-gov.com"),
    ],
)
def test_the_job_link_uses_the_console_of_the_regions_partition(monkeypatch, region, console):
    hook = use_connection(monkeypatch, "aws_partition", region_name=region)
    assert AwsBatchJobLink.url(hook, "j:1") == f"{console}/batch/home?region={region}#jobs/detail/j%3A1"


@pytest.mark.parametrize(
    ("region", "console"),
    [
        ("eu-west-1", "https://eu-west-1.console.aws.amazon.com"),
        ("cn-north-1", "https://console.amazonaws.cn"),
        ("us-gov-west-1", "https://console.amazonaws-us-gov.com"),
    ],
)
def test_the_logs_link_uses_the_console_of_the_streams_partition(monkeypatch, region, console):
    hook = use_connection(monkeypatch, "aws_partition", region_name=region)
    assert AwsBatchJobLogsLink.url(hook, JobLogStream("/aws/batch/job", "d/default/j 1", region)) == (
        f"{console}/cloudwatch/home?region={region}"
        "#logsV2:log-groups/log-group/%2Faws%2Fbatch%2Fjob/log-events/d%2Fdefault%2Fj+1"
    )


def test_a_stream_in_another_region_gets_that_regions_partition(monkeypatch):
    hook = use_connection(monkeypatch, "aws_partition", region_name="cn-north-1")
    assert AwsBatchJobLogsLink.url(hook, JobLogStream("g", "s", "cn-northwest-1")).startswith(
        "https://console.amazonaws.cn/cloudwatch/home?region=cn-northwest-1#"
    )
    assert hook.partition_of("moon-1") == "aws-cn"  # unknown to botocore: the client's own partition


def test_partition_domains_are_the_amazon_providers(monkeypatch):
    from airflow.providers.amazon.aws.links.base_aws import BaseAwsLink

    for region in ("us-east-1", "cn-north-1", "us-gov-west-1"):
        hook = use_connection(monkeypatch, "aws_partition", region_name=region)
        assert hook.console_domain(region) == BaseAwsLink.get_aws_domain(hook.conn_partition)


@pytest.mark.parametrize("region", ["cn-north-1", "us-gov-west-1"])
def test_templates_from_the_connection_win_in_every_partition(monkeypatch, region):
    hook = use_connection(
        monkeypatch,
        "aws_partition",
        region_name=region,
        monitor_link_template="https://batch.example/{region}/{job_id}",
        logs_link_template="https://logs.example/{region}/{log_group}/{log_stream}",
    )
    assert AwsBatchJobLink.url(hook, "j") == f"https://batch.example/{region}/j"
    assert AwsBatchJobLogsLink.url(hook, JobLogStream("g", "s", region)) == f"https://logs.example/{region}/g/s"


def test_a_broken_template_falls_back_to_the_partitions_console(monkeypatch):
    hook = use_connection(
        monkeypatch, "aws_partition", region_name="us-gov-west-1", monitor_link_template="https://x/{account}"
    )
    assert AwsBatchJobLink.url(hook, "j").startswith(
        "https://console.amazonaws-us-gov.com/batch/home?region=us-gov-west-1#"
    )


# -- the base hook's attributes (no longer shadowed) ---------------------------------------------------------------


def test_the_base_hooks_client_attributes_work(local_aws_batch, polysync_aws_conn):
    hook = AwsBatchHook(polysync_aws_conn)
    assert hook.conn_partition == "aws"
    assert hook.conn_region_name == "us-east-1"
    assert "batch_job_complete" in hook.list_waiters()
    assert hook.get_waiter("batch_job_complete").name == "batch_job_complete"
    assert hook.get_conn() is hook.conn
    assert local_aws_batch.requests == []  # none of these calls the service


def test_verify_and_botocore_config_reach_every_client(local_aws_batch, polysync_aws_conn):
    hook = AwsBatchHook(polysync_aws_conn, verify=False, config={"read_timeout": 7, "user_agent_extra": "nightly"})
    assert hook.verify is False
    for client in (hook.conn, hook._submit_client, hook._make_client(hook.config, "logs")):
        assert client.meta.config.read_timeout == 7
        assert "nightly" in client.meta.config.user_agent_extra
    assert hook._submit_client.meta.config.retries["total_max_attempts"] == 1  # SubmitJob is never retried


# -- a connection that is not defined ------------------------------------------------------------------------------


def test_a_named_connection_that_is_not_defined_is_an_error(monkeypatch):
    from polysync_airflow.hooks.aws_batch import AwsConnectionNotDefined

    monkeypatch.delenv("AIRFLOW_CONN_AWS_NIGHTLY", raising=False)
    with pytest.raises(AwsConnectionNotDefined) as err:
        AwsBatchJobLink.url(AwsBatchHook("aws_nightly"), "j")
    assert str(err.value).startswith("connection 'aws_nightly' is not defined: add it")
    assert "AIRFLOW_CONN_AWS_NIGHTLY" in str(err.value) and "\n" not in str(err.value)


def test_aws_default_alone_falls_back_to_the_default_credential_chain_logged_once(monkeypatch, caplog, capsys):
    from polysync_airflow.hooks import aws_batch

    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    monkeypatch.setattr(aws_batch, "_default_chain_logged", aws_batch.threading.Event())
    for _ in range(2):
        config = AwsBatchHook("aws_default", region_name="eu-west-1").conn_config
        assert (config.conn_type, config.aws_access_key_id, config.region_name) == (None, None, "eu-west-1")
    logged = caplog.text + capsys.readouterr().out
    assert logged.count("Connection 'aws_default' is not defined; using boto3's default credential chain") == 1
    assert "switching to empty" not in logged


def test_no_connection_id_uses_the_default_credential_chain_without_a_lookup(monkeypatch):
    hook = AwsBatchHook(None, region_name="eu-west-1")
    assert (hook.conn_config.conn_type, hook.conn_config.aws_access_key_id) == (None, None)
    assert AwsBatchJobLink.url(hook, "j").startswith("https://eu-west-1.console.aws.amazon.com/")


# -- a job queue or definition that does not exist ------------------------------------------------------------------


def client_error(message: str, code: str = "ClientException", operation: str = "SubmitJob"):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize(
    ("message", "resource"),
    [
        # AWS
        ("JobDefinition name nextflow does not exist or is not in ACTIVE status", "job_definition"),
        ("JobDefinition arn:aws:batch:us-east-2:123456789012:job-definition/etl not found.", "job_definition"),
        ("JobQueue x-job-queue not found.", "job_queue"),
        # moto and the local endpoint
        ("Job definition no-such-definition does not exist", "job_definition"),
        ("Job queue no-such-queue does not exist", "job_queue"),
        ("Job definition etl:3 is INACTIVE", "job_definition"),
        # other refusals can heal or are not about a missing resource
        ("Share identifier is required for job queue q with a fair share scheduling policy", None),
        ("Array size must be between 2 and 10000", None),
        ("Job name should match valid pattern", None),
    ],
)
def test_missing_resource_reads_the_services_message(message, resource):
    from polysync_airflow.statuses.aws_batch import missing_resource

    assert missing_resource(client_error(message)) == resource


def test_missing_resource_needs_a_client_exception():
    from polysync_airflow.statuses.aws_batch import missing_resource

    assert missing_resource(client_error("Job queue q does not exist", code="AccessDeniedException")) is None
    assert missing_resource(ValueError("Job queue q does not exist")) is None
