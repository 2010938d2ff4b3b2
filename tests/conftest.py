"""Test set-up: the plugin's throw-away Airflow home (temporary AIRFLOW_HOME, fresh SQLite metadata DB),
made here, before Airflow is imported, so that no ini option is needed; the plugin deletes it at the end."""

from __future__ import annotations

import os

from polysync_airflow.testing.airflow_home import AirflowHome, use_throwaway_airflow_home

use_throwaway_airflow_home()
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def airflow_db(polysync_airflow_db: AirflowHome) -> AirflowHome:
    """A migrated metadata DB for the tests that run DAGs (the plugin's ``polysync_airflow_db``)."""
    return polysync_airflow_db
