"""pytest fixtures for testing DAGs that use polysync-airflow, offline (registered via ``pytest11``).

Endpoints and connections (each test gets its own endpoint; connections are ``AIRFLOW_CONN_*`` environment
variables, removed after the test):

- ``local_aws_batch``: a running :class:`~polysync_airflow.testing.LocalAwsBatch` (seeded with the
  package's sample queues and job definitions).
- ``polysync_connect_aws``: a function ``connect(conn_id="aws_default", **options) -> conn_id`` that
  points any connection id (your DAG's own) at ``local_aws_batch``.
- ``polysync_aws_conn``: the id of such a connection, ``aws_local``, with ``default_job_queue`` set.
- ``local_azure_batch``, ``polysync_connect_azure`` (default ``azure_batch_default``) and
  ``polysync_azure_conn`` (``azure_batch_local``): the same for a
  :class:`~polysync_airflow.testing.LocalAzureBatch`.

Airflow home and metadata database (opt in: set ``polysync_airflow_home = true`` in the pytest ini
options, or pass ``--polysync-airflow-home``). Airflow reads its home and database URL when it is first
imported, so the plugin makes a temporary home at pytest start-up, before any ``conftest.py`` or test
module is imported, and deletes it at the end. Without the option the plugin leaves your environment
alone.

- ``polysync_airflow_home`` (session): the :class:`~polysync_airflow.testing.airflow_home.AirflowHome`
  (``path``, ``dags_folder``, ``database``).
- ``polysync_airflow_db`` (session): the home's SQLite metadata database, migrated; request it in every
  test that runs a DAG.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from polysync_airflow.testing.airflow_home import (
    AirflowAlreadyImported,
    AirflowHome,
    current_airflow_home,
    migrate_metadata_database,
    remove_throwaway_airflow_home,
    use_throwaway_airflow_home,
)
from polysync_airflow.testing.aws_batch import LocalAwsBatch
from polysync_airflow.testing.azure_batch import LocalAzureBatch
from polysync_airflow.testing.connections import aws_connection_env, azure_connection_env

HOME_OPTION = "polysync_airflow_home"


def pytest_addoption(parser: pytest.Parser) -> None:
    help_text = (
        "polysync-airflow: run the tests in a throw-away Airflow home (temporary AIRFLOW_HOME, dags folder, "
        "SQLite metadata database), made before Airflow is imported and deleted at the end"
    )
    parser.addini(HOME_OPTION, help_text, type="bool", default=False)
    parser.addoption("--polysync-airflow-home", action="store_true", dest=HOME_OPTION, help=help_text)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    # Runs before the conftest.py files are imported: the last moment before Airflow can be.
    if getattr(early_config.known_args_namespace, HOME_OPTION, False) or early_config.getini(HOME_OPTION):
        try:
            use_throwaway_airflow_home()
        except AirflowAlreadyImported as err:
            raise pytest.UsageError(f"{HOME_OPTION}: {err}") from err


def pytest_unconfigure(config: pytest.Config) -> None:
    remove_throwaway_airflow_home()


@pytest.fixture(scope="session")
def polysync_airflow_home() -> AirflowHome:
    home = current_airflow_home()
    if home is None:
        raise pytest.UsageError(
            f"the throw-away Airflow home is off: set `{HOME_OPTION} = true` in your pytest ini options (or "
            "pass --polysync-airflow-home), or call polysync_airflow.testing.airflow_home."
            "use_throwaway_airflow_home() at the top of your root conftest.py, before Airflow is imported"
        )
    return home


@pytest.fixture(scope="session")
def polysync_airflow_db(polysync_airflow_home: AirflowHome) -> AirflowHome:
    migrate_metadata_database()
    return polysync_airflow_home


def _connector(
    monkeypatch: pytest.MonkeyPatch, connection_env: Callable[..., dict[str, str]], endpoint: Any, default_conn_id: str
) -> Callable[..., str]:
    """``connect(conn_id=default_conn_id, **options) -> conn_id``: the connection to ``endpoint`` for this test."""

    def connect(conn_id: str = default_conn_id, **options: Any) -> str:
        for name, value in connection_env(conn_id, endpoint, **options).items():
            monkeypatch.setenv(name, value)
        return conn_id

    return connect


@pytest.fixture
def local_aws_batch() -> Iterator[LocalAwsBatch]:
    with LocalAwsBatch() as endpoint:
        yield endpoint


@pytest.fixture
def polysync_connect_aws(local_aws_batch: LocalAwsBatch, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``connect(conn_id="aws_default", default_job_queue="polysync-default", **extra)``: an ``aws`` connection
    to ``local_aws_batch`` under ``conn_id`` for this test (it hides a connection of that id defined elsewhere);
    returns ``conn_id``."""

    return _connector(monkeypatch, aws_connection_env, local_aws_batch, "aws_default")


@pytest.fixture
def polysync_aws_conn(polysync_connect_aws: Callable[..., str]) -> str:
    return polysync_connect_aws("aws_local")


@pytest.fixture
def local_azure_batch() -> Iterator[LocalAzureBatch]:
    with LocalAzureBatch() as endpoint:
        yield endpoint


@pytest.fixture
def polysync_connect_azure(local_azure_batch: LocalAzureBatch, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``connect(conn_id="azure_batch_default", key=None, conn_type="azure_batch", **extra)``: a connection to
    ``local_azure_batch`` under ``conn_id`` for this test; returns ``conn_id``."""

    return _connector(monkeypatch, azure_connection_env, local_azure_batch, "azure_batch_default")


@pytest.fixture
def polysync_azure_conn(polysync_connect_azure: Callable[..., str]) -> str:
    return polysync_connect_azure("azure_batch_local")
