"""The monitor link and the connection settings of the AWS hook."""

from __future__ import annotations

import json

import pytest

from polysync_airflow.hooks.aws_batch import AwsBatchHook
from polysync_airflow.links.aws_batch import AwsBatchJobLink


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
    assert hook.monitor_url("1234-abcd") == (
        "https://eu-west-1.console.aws.amazon.com/batch/home?region=eu-west-1#jobs/detail/1234-abcd"
    )


def test_job_id_is_url_quoted(monkeypatch):
    hook = use_connection(monkeypatch, "aws_link", region_name="us-east-1")
    assert hook.monitor_url("abc:1/x y").endswith("#jobs/detail/abc%3A1%2Fx%20y")


def test_the_region_argument_wins_over_the_connection(monkeypatch):
    use_connection(monkeypatch, "aws_link", region_name="eu-west-1")
    assert "region=ap-south-1" in AwsBatchHook("aws_link", region_name="ap-south-1").monitor_url("j")


def test_template_from_the_connection(monkeypatch):
    hook = use_connection(
        monkeypatch,
        "aws_link",
        region_name="us-gov-west-1",
        monitor_link_template="https://console.amazonaws-us-gov.com/batch/home?region={region}#jobs/detail/{job_id}",
    )
    assert (
        hook.monitor_url("j-1")
        == "https://console.amazonaws-us-gov.com/batch/home?region=us-gov-west-1#jobs/detail/j-1"
    )


def test_a_broken_template_falls_back_to_the_console_and_warns(monkeypatch, caplog, capsys):
    hook = use_connection(
        monkeypatch, "aws_link", region_name="us-east-1", monitor_link_template="https://x/{account}/{job_id}"
    )
    assert hook.monitor_url("j").startswith("https://us-east-1.console.aws.amazon.com/")
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
