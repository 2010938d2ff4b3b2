"""The Azure hook's connection settings and the links built from them (no requests)."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowException

from polysync_airflow.hooks.azure_batch import AzureBatchHook
from polysync_airflow.links.azure_batch import AzureBatchJobLink, AzureBatchTaskLink


def hook(monkeypatch, conn_type="azure_batch", login="acct", password="a2V5", **extra) -> AzureBatchHook:
    monkeypatch.setenv(
        "AIRFLOW_CONN_AZ_TEST",
        json.dumps({"conn_type": conn_type, "login": login, "password": password, "extra": extra}),
    )
    return AzureBatchHook("az_test")


def test_link_name_and_key():
    assert AzureBatchJobLink.name == "Azure Batch Job" and AzureBatchJobLink().xcom_key == "_link_AzureBatchJobLink"


def test_task_link_name_and_key():
    assert AzureBatchTaskLink.name == "Azure Batch Task"
    assert AzureBatchTaskLink().xcom_key == "_link_AzureBatchTaskLink"


def test_task_portal_link(monkeypatch):
    h = hook(
        monkeypatch, account_url="https://acct.westeurope.batch.azure.com", subscription_id="sub", resource_group="rg"
    )
    assert AzureBatchTaskLink.url(h, "job 1/polysync") == (
        "https://portal.azure.com/#resource/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Batch/"
        "batchAccounts/acct/jobs/job%201/tasks/polysync"
    )
    assert AzureBatchTaskLink.url(h, "job 1/polysync") == AzureBatchJobLink.url(h, "job 1") + "/tasks/polysync"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"monitor_link_template": "https://batch.example/{account}/{job_id}"}, "https://batch.example/acct/j/tasks/t"),
        (
            {
                "monitor_link_template": "https://batch.example/{account}/{job_id}",
                "task_link_template": "https://batch.example/t?job={job_id}&task={task_id}",
            },
            "https://batch.example/t?job=j&task=t",
        ),
        ({"monitor_link_template": "https://batch.example/?job={job_id}&x=1"}, ""),
        ({"task_link_template": "https://batch.example/{task}"}, ""),
    ],
    ids=["from-the-job-template", "own-template", "job-template-not-ending-in-job-id", "bad-placeholder"],
)
def test_task_link_templates(monkeypatch, capsys, caplog, extra, expected):
    h = hook(monkeypatch, account_url="https://a.x.batch.azure.com", **extra)
    assert AzureBatchTaskLink.url(h, "j/t") == expected
    if not expected:
        assert "task_link_template" in caplog.text + capsys.readouterr().out


def test_missing_link_settings_give_no_task_link(monkeypatch, capsys, caplog):
    h = hook(monkeypatch, account_url="https://a.x.batch.azure.com", subscription_id="s")
    assert AzureBatchTaskLink.url(h, "j/t") == ""
    assert "No Azure portal link for task j/t: set 'resource_group' in the extra of connection az_test" in (
        caplog.text + capsys.readouterr().out
    )


def test_hook_identity():
    assert AzureBatchHook.default_conn_name == "azure_batch_default"
    assert AzureBatchHook().azure_batch_conn_id == "azure_batch_default"


@pytest.mark.parametrize("conn_type", ["azure_batch", "polysync_azure_batch"])
def test_portal_link(monkeypatch, conn_type):
    h = hook(
        monkeypatch,
        conn_type,
        account_url="https://acct.westeurope.batch.azure.com",
        subscription_id="sub",
        resource_group="rg",
    )
    assert AzureBatchJobLink.url(h, "job 1") == (
        "https://portal.azure.com/#resource/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Batch/"
        "batchAccounts/acct/jobs/job%201"
    )


def test_account_from_the_url_when_there_is_no_login(monkeypatch):
    h = hook(
        monkeypatch,
        login=None,
        password=None,
        account_url="https://myacct.westeurope.batch.azure.com",
        subscription_id="s",
        resource_group="r",
    )
    assert h.account_name == "myacct" and "/batchAccounts/myacct/jobs/j" in AzureBatchJobLink.url(h, "j")


def test_prefixed_extra_keys_are_read(monkeypatch):
    h = hook(monkeypatch, extra__azure_batch__account_url="https://a.b.batch.azure.com")
    assert h.account_url == "https://a.b.batch.azure.com"


def test_custom_template(monkeypatch):
    h = hook(
        monkeypatch,
        account_url="https://a.x.batch.azure.com",
        monitor_link_template="https://batch.example/{account}/{job_id}",
    )
    assert AzureBatchJobLink.url(h, "j") == "https://batch.example/acct/j"


@pytest.mark.parametrize(
    ("extra", "missing"),
    [({}, "'subscription_id' and 'resource_group'"), ({"subscription_id": "s"}, "'resource_group'")],
)
def test_missing_link_settings_warn_and_give_no_link(monkeypatch, capsys, caplog, extra, missing):
    h = hook(monkeypatch, account_url="https://a.x.batch.azure.com", **extra)
    assert AzureBatchJobLink.url(h, "j") == ""
    assert f"set {missing} in the extra of connection az_test" in caplog.text + capsys.readouterr().out


def test_missing_account_url(monkeypatch):
    with pytest.raises(AirflowException, match="has no account_url: set the extra 'account_url'"):
        hook(monkeypatch).validate()


@pytest.mark.parametrize("url", ["acct.batch.azure.com", "ftp://acct.batch.azure.com", "https://", "https://a.b/jobs"])
def test_malformed_account_url(monkeypatch, url):
    with pytest.raises(AirflowException, match="malformed account_url"):
        hook(monkeypatch, account_url=url).validate()


def test_shared_key_credential_from_login_and_password(monkeypatch):
    from azure.core.credentials import AzureNamedKeyCredential

    credential = hook(monkeypatch, account_url="https://a.x.batch.azure.com")._credential(asynchronous=False)
    assert isinstance(credential, AzureNamedKeyCredential) and credential.named_key.name == "acct"


def test_entra_id_without_a_key(monkeypatch):
    from azure.identity import DefaultAzureCredential
    from azure.identity.aio import DefaultAzureCredential as AsyncDefaultAzureCredential

    h = hook(monkeypatch, password=None, account_url="https://a.x.batch.azure.com", managed_identity_client_id="mi")
    assert isinstance(h._credential(asynchronous=False), DefaultAzureCredential)
    assert isinstance(h._credential(asynchronous=True), AsyncDefaultAzureCredential)
