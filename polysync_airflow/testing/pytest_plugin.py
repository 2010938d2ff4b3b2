"""pytest fixtures for testing DAGs that use polysync-airflow, offline (registered via ``pytest11``).

- ``local_aws_batch``: a running :class:`~polysync_airflow.testing.LocalAwsBatch` (seeded with the
  package's sample queues and job definitions).
- ``polysync_aws_conn``: the id of an Airflow connection (``aws_local``) pointing at it, with
  ``default_job_queue`` set, provided through an ``AIRFLOW_CONN_*`` environment variable.
- ``local_azure_batch``: a running :class:`~polysync_airflow.testing.LocalAzureBatch` (seeded with a pool
  and template jobs).
- ``polysync_azure_conn``: the id of an ``azure_batch`` connection (``azure_batch_local``) pointing at it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from polysync_airflow.testing.aws_batch import LocalAwsBatch
from polysync_airflow.testing.azure_batch import LocalAzureBatch
from polysync_airflow.testing.connections import aws_connection_env, azure_connection_env


@pytest.fixture
def local_aws_batch() -> Iterator[LocalAwsBatch]:
    with LocalAwsBatch() as endpoint:
        yield endpoint


@pytest.fixture
def polysync_aws_conn(local_aws_batch: LocalAwsBatch, monkeypatch: pytest.MonkeyPatch) -> str:
    conn_id = "aws_local"
    for name, value in aws_connection_env(conn_id, local_aws_batch).items():
        monkeypatch.setenv(name, value)
    return conn_id


@pytest.fixture
def local_azure_batch() -> Iterator[LocalAzureBatch]:
    with LocalAzureBatch() as endpoint:
        yield endpoint


@pytest.fixture
def polysync_azure_conn(local_azure_batch: LocalAzureBatch, monkeypatch: pytest.MonkeyPatch) -> str:
    conn_id = "azure_batch_local"
    for name, value in azure_connection_env(conn_id, local_azure_batch).items():
        monkeypatch.setenv(name, value)
    return conn_id
