"""polysync-airflow: run Polysync jobs on cloud batch services from Apache Airflow 3.

Everything a DAG needs is importable from here::

    from polysync_airflow import AwsBatchJobOperator, AzureBatchJobOperator, RunStatus
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from polysync_airflow.version import __version__

# Imported on first use: Airflow reads the provider metadata without loading operators and SDKs.
_EXPORTS = {
    "RunStatus": "polysync_airflow.status",
    "RunState": "polysync_airflow.status",
    "PolysyncValidationError": "polysync_airflow.validation",
    "AwsBatchHook": "polysync_airflow.hooks.aws_batch",
    "AwsBatchJobOperator": "polysync_airflow.operators.aws_batch",
    "AwsBatchJobTrigger": "polysync_airflow.triggers.aws_batch",
    "AwsBatchJobLink": "polysync_airflow.links.aws_batch",
    "AzureBatchHook": "polysync_airflow.hooks.azure_batch",
    "AzureBatchJobOperator": "polysync_airflow.operators.azure_batch",
    "AzureBatchJobTrigger": "polysync_airflow.triggers.azure_batch",
    "AzureBatchJobLink": "polysync_airflow.links.azure_batch",
    "PolysyncOrphanSweepOperator": "polysync_airflow.operators.sweep",
}

__all__ = [
    "AwsBatchHook",
    "AwsBatchJobLink",
    "AwsBatchJobOperator",
    "AwsBatchJobTrigger",
    "AzureBatchHook",
    "AzureBatchJobLink",
    "AzureBatchJobOperator",
    "AzureBatchJobTrigger",
    "PolysyncOrphanSweepOperator",
    "PolysyncValidationError",
    "RunState",
    "RunStatus",
    "__version__",
]

if TYPE_CHECKING:
    from polysync_airflow.hooks.aws_batch import AwsBatchHook
    from polysync_airflow.hooks.azure_batch import AzureBatchHook
    from polysync_airflow.links.aws_batch import AwsBatchJobLink
    from polysync_airflow.links.azure_batch import AzureBatchJobLink
    from polysync_airflow.operators.aws_batch import AwsBatchJobOperator
    from polysync_airflow.operators.azure_batch import AzureBatchJobOperator
    from polysync_airflow.operators.sweep import PolysyncOrphanSweepOperator
    from polysync_airflow.status import RunState, RunStatus
    from polysync_airflow.triggers.aws_batch import AwsBatchJobTrigger
    from polysync_airflow.triggers.azure_batch import AzureBatchJobTrigger
    from polysync_airflow.validation import PolysyncValidationError


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'polysync_airflow' has no attribute {name!r}")
