"""What differs between the Airflow 3 minors the package supports (3.1, 3.2, 3.3), in one place.

Each name is feature-detected, never compared by version: a patch release that back-ports a feature
gets it.
"""

from __future__ import annotations

import inspect
from typing import Any

try:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # Airflow 3.1: the Task SDK does not export AirflowFailException yet
    from airflow.exceptions import AirflowException, AirflowFailException  # type: ignore[no-redef]

__all__ = ["AirflowException", "AirflowFailException", "dag_bag"]


def dag_bag(dag_folder: str) -> Any:
    """Airflow's ``DagBag`` of the DAG files in ``dag_folder`` only (it moved to ``airflow.dag_processing`` in
    3.2; 3.1's also adds Airflow's example DAGs unless told not to)."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    options: dict[str, Any] = {}
    if "include_examples" in inspect.signature(DagBag).parameters:
        options["include_examples"] = False
    return DagBag(dag_folder=dag_folder, **options)
