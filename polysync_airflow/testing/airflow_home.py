"""A throw-away Airflow home for tests: a temporary ``AIRFLOW_HOME`` with a ``dags`` folder, its own
``airflow.cfg`` and a SQLite metadata database, removed when the test session ends.

Airflow reads its settings (home, config file, database URL) once, when ``airflow`` is first imported, so
the home must be made before that. The pytest plugin does it at start-up when asked to (the
``polysync_airflow_home`` ini option or ``--polysync-airflow-home``); without pytest, or from a root
``conftest.py``, call :func:`use_throwaway_airflow_home` before anything imports Airflow.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


class AirflowAlreadyImported(RuntimeError):
    """Airflow was imported before the throw-away home was made, so it keeps the settings it read then."""


@dataclass(frozen=True)
class AirflowHome:
    path: Path
    dags_folder: Path
    database: Path

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.database}"


_current: AirflowHome | None = None
_saved_environment: dict[str, str | None] = {}


def current_airflow_home() -> AirflowHome | None:
    """The throw-away home this process uses, or None when it was not made."""
    return _current


def use_throwaway_airflow_home(prefix: str = "polysync-airflow-home-") -> AirflowHome:
    """Make a temporary Airflow home and point Airflow at it through environment variables.

    Every setting that could reach a real deployment is overridden: the config file (``AIRFLOW_CONFIG``), the
    dags folder and the database URL (always the home's own SQLite file, never a database the environment
    names). Calling it again returns the same home. Raises :class:`AirflowAlreadyImported` when Airflow
    was imported before.
    """
    global _current
    if _current is not None:
        return _current
    if "airflow" in sys.modules:
        raise AirflowAlreadyImported(
            "Airflow was imported before the throw-away Airflow home was made, so it already read AIRFLOW_HOME "
            "and its database URL: make the home first (the polysync_airflow_home ini option or "
            "--polysync-airflow-home, or use_throwaway_airflow_home() at the top of the root conftest.py)"
        )
    path = Path(tempfile.mkdtemp(prefix=prefix))
    home = AirflowHome(path=path, dags_folder=path / "dags", database=path / "airflow.db")
    home.dags_folder.mkdir()
    environment = {
        "AIRFLOW_HOME": str(path),
        "AIRFLOW_CONFIG": str(path / "airflow.cfg"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home.dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": home.database_url,
    }
    for name, value in environment.items():
        _saved_environment[name] = os.environ.get(name)
        os.environ[name] = value
    _current = home
    return home


def migrate_metadata_database() -> None:
    """Create the tables of the throw-away home's database (a new, empty SQLite file)."""
    if _current is None:
        raise RuntimeError(
            "No throw-away Airflow home was made, and the metadata database is only created there (never in "
            "a database of yours): set the polysync_airflow_home ini option (or --polysync-airflow-home), or "
            "call use_throwaway_airflow_home() before Airflow is imported"
        )
    from airflow import settings
    from airflow.utils import db

    settings.configure_orm()
    db.initdb()


def remove_throwaway_airflow_home() -> None:
    """Undo :func:`use_throwaway_airflow_home`: restore the environment and delete the home's files."""
    global _current
    if _current is None:
        return
    if "airflow.settings" in sys.modules:
        from airflow import settings

        settings.dispose_orm()
    for name, value in _saved_environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _saved_environment.clear()
    shutil.rmtree(_current.path, ignore_errors=True)
    _current = None
