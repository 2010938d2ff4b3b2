"""Running DAGs built in a test with ``dag.test()``.

Airflow 3.3's ``dag.test()`` only runs DAGs that are in the serialized-DAG table; a DAG built inside a
test function is not, so :func:`run_dag` writes it there first.
"""

from __future__ import annotations

from typing import Any


def serialize_dag(dag: Any) -> None:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    DagBundlesManager().sync_bundles_to_db()
    with create_session() as session:
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )


def run_dag(dag: Any, **kwargs: Any) -> Any:
    """Serialize ``dag`` and run it with ``dag.test()``; returns the DagRun."""
    serialize_dag(dag)
    return dag.test(**kwargs)
