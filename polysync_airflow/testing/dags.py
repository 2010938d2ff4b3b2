"""Loading and running DAGs in tests with ``dag.test()``, the same way on Airflow 3.1, 3.2 and 3.3.

``dag.test()`` runs only a DAG that has a version in the metadata database; a DAG built inside a test
function has none, and one loaded from a file outside the dags folder neither, so :func:`run_dag` writes it
there first, as the DAG processor would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BUNDLE_NAME = "dags-folder"
"""The bundle Airflow configures by default (``[dag_processor] dag_bundle_config_list``): the dags folder."""


class DagImportError(Exception):
    """A DAG file failed to import: the message holds each file and its error."""


def serialize_dag(dag: Any) -> None:
    """Store ``dag`` in the serialized-DAG table (with its DAG version), as the DAG processor does."""
    # Airflow core internals, unchanged from 3.1 to 3.3; the arguments are passed by name so that a new
    # optional one (3.3 added ``version_data``) or a reordering cannot shift them.
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    DagBundlesManager().sync_bundles_to_db()
    with create_session() as session:
        update_dag_parsing_results_in_db(
            bundle_name=BUNDLE_NAME,
            bundle_version=None,
            dags=[LazyDeserializedDAG.from_dag(dag)],
            import_errors={},
            parse_duration=None,
            warnings=set(),
            session=session,
        )


def run_dag(dag: Any, **kwargs: Any) -> Any:
    """Serialize ``dag`` and run it with ``dag.test(**kwargs)``; returns the DagRun."""
    serialize_dag(dag)
    return dag.test(**kwargs)


def load_dags(path: str | Path) -> dict[str, Any]:
    """The DAGs of a DAG file or folder, by DAG id (Airflow's ``DagBag``, without the example DAGs).

    Raises :class:`DagImportError` naming each file that failed to import and its error."""
    from polysync_airflow.compat import dag_bag

    bag = dag_bag(str(path))
    if bag.import_errors:
        errors = "\n".join(f"{file}: {error}" for file, error in sorted(bag.import_errors.items()))
        raise DagImportError(f"{len(bag.import_errors)} DAG file(s) under {path} failed to import:\n{errors}")
    return dict(bag.dags)


def load_dag(path: str | Path, dag_id: str) -> Any:
    """The DAG ``dag_id`` of a DAG file or folder (see :func:`load_dags`)."""
    dags = load_dags(path)
    if dag_id not in dags:
        raise KeyError(f"no DAG with dag_id {dag_id!r} under {path}; found: {', '.join(sorted(dags)) or 'none'}")
    return dags[dag_id]


def poll_fast(dag: Any, seconds: float = 0.2) -> Any:
    """Make every Polysync task of ``dag`` read its run's status every ``seconds`` (the default, 30 s, would
    make each task wait that long against the local endpoints); returns ``dag``.

    Reaches mapped tasks too (``.partial(...).expand(...)``): their per-index operators are built at run time
    from the ``partial`` arguments, so those are changed rather than an attribute of the mapped task.
    A task that maps over ``poll_interval`` itself keeps its mapped values."""
    from polysync_airflow.operators.base import PolysyncJobOperator

    for task in dag.tasks:
        if isinstance(task, PolysyncJobOperator):
            task.poll_interval = float(seconds)
        elif _maps(task, PolysyncJobOperator):
            task.partial_kwargs["poll_interval"] = float(seconds)
    return dag


def _maps(task: Any, operator_class: type) -> bool:
    """Whether ``task`` is a mapped task (``.partial().expand()``) of ``operator_class``."""
    mapped_class = getattr(task, "operator_class", None)
    return (
        isinstance(getattr(task, "partial_kwargs", None), dict)
        and isinstance(mapped_class, type)
        and issubclass(mapped_class, operator_class)
    )
