"""Test set-up: a throw-away AIRFLOW_HOME with a fresh SQLite metadata DB, before Airflow is imported."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_home = Path(tempfile.mkdtemp(prefix="polysync-airflow-home-"))
(_home / "dags").mkdir()
os.environ["AIRFLOW_HOME"] = str(_home)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_home / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated metadata DB for the tests that run DAGs."""
    from airflow import settings
    from airflow.utils import db

    settings.configure_orm()
    db.resetdb()
