"""`AzureBatchHook.get_conn()` and `test_connection()` (the UI's Test button) against the local Azure Batch service."""

from __future__ import annotations

import base64

import pytest
from azure.batch import BatchClient

from polysync_airflow.hooks.azure_batch import AzureBatchHook
from polysync_airflow.testing.connections import azure_connection_env

WRONG_KEY = base64.b64encode(b"not-the-account-key-0123456789").decode()


@pytest.fixture
def connection_with_key(local_azure_batch, monkeypatch):
    """The id of a ``polysync_azure_batch`` connection to the local service, with the given account key."""

    def make(conn_id: str, key: str | None = None) -> str:
        env = azure_connection_env(conn_id, local_azure_batch, key=key, conn_type="polysync_azure_batch")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return conn_id

    return make


def test_get_conn_is_the_sync_sdk_client(polysync_azure_conn):
    hook = AzureBatchHook(polysync_azure_conn)
    client = hook.get_conn()
    assert isinstance(client, BatchClient) and client is hook.client
    assert [job.id for job in client.list_jobs(select=["id"])]  # the seeded template jobs


def test_the_right_key_passes_with_one_cheap_request(local_azure_batch, connection_with_key):
    local_azure_batch.requests.clear()
    ok, message = AzureBatchHook(connection_with_key("az_right")).test_connection()
    assert ok, message
    assert message == f"Connected to Azure Batch account {local_azure_batch.account!r} at {local_azure_batch.url}"
    assert local_azure_batch.requests == ["GET /jobs"]


def test_a_wrong_key_answers_the_services_message(local_azure_batch, connection_with_key):
    ok, message = AzureBatchHook(connection_with_key("az_wrong", key=WRONG_KEY)).test_connection()
    assert not ok
    assert message.startswith("AuthenticationFailed: Server failed to authenticate the request.")
    assert "The MAC signature found in the HTTP request is not the same as any computed signature." in message
    assert WRONG_KEY not in message


def test_a_connection_without_account_url_names_the_setting(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_AZ_NO_URL", '{"conn_type": "polysync_azure_batch", "login": "acct", "password": "a2V5"}'
    )
    ok, message = AzureBatchHook("az_no_url").test_connection()
    assert not ok and "has no account_url" in message


def test_airflows_test_button_path_reaches_the_hook(local_azure_batch, connection_with_key):
    """What the API's connection test runs: Airflow finds the hook by connection type, then calls it."""
    from airflow.models.connection import Connection

    right = Connection.get_connection_from_secrets(connection_with_key("az_button_right"))
    wrong = Connection.get_connection_from_secrets(connection_with_key("az_button_wrong", key=WRONG_KEY))
    assert right.test_connection() == (
        True,
        f"Connected to Azure Batch account {local_azure_batch.account!r} at {local_azure_batch.url}",
    )
    ok, message = wrong.test_connection()
    assert not ok and message.startswith("AuthenticationFailed:")
