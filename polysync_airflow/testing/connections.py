"""Airflow connections that point at the local endpoints, as ``AIRFLOW_CONN_*`` environment variables."""

from __future__ import annotations

import json
from typing import Any

from polysync_airflow.testing.aws_batch import LocalAwsBatch
from polysync_airflow.testing.azure_batch import LocalAzureBatch


def conn_env_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def aws_connection(
    endpoint: LocalAwsBatch, default_job_queue: str | None = "polysync-default", **extra: Any
) -> dict[str, Any]:
    """An ``aws`` connection (as Airflow's JSON form) for the local AWS Batch endpoint."""
    settings: dict[str, Any] = {"endpoint_url": endpoint.url, "region_name": endpoint.region, **extra}
    if default_job_queue:
        settings["default_job_queue"] = default_job_queue
    return {
        "conn_type": "aws",
        "login": "local-access-key",
        "password": "local-secret-key",
        "extra": settings,
    }


def aws_connection_env(conn_id: str, endpoint: LocalAwsBatch, **kwargs: Any) -> dict[str, str]:
    return {conn_env_name(conn_id): json.dumps(aws_connection(endpoint, **kwargs))}


def azure_connection(
    endpoint: LocalAzureBatch, key: str | None = None, conn_type: str = "azure_batch", **extra: Any
) -> dict[str, Any]:
    """An ``azure_batch`` connection (account name, key, account URL and link settings) for the local service."""
    settings: dict[str, Any] = {
        "account_url": endpoint.url,
        "subscription_id": "00000000-0000-0000-0000-000000000000",
        "resource_group": "polysync-local",
        **extra,
    }
    return {"conn_type": conn_type, "login": endpoint.account, "password": key or endpoint.key, "extra": settings}


def azure_connection_env(conn_id: str, endpoint: LocalAzureBatch, **kwargs: Any) -> dict[str, str]:
    return {conn_env_name(conn_id): json.dumps(azure_connection(endpoint, **kwargs))}
