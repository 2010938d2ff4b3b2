"""AWS Batch: the hook's discovery read (which job definitions can be imported, for ``polysync-airflow
discover``), as a mixin :class:`~polysync_airflow.hooks.aws_batch.AwsBatchHook` inherits. Mirrors
``hooks/azure_batch_discovery.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any


@dataclass(frozen=True)
class JobDefinitionInfo:
    """One importable job definition: its latest ACTIVE revision and default parameters."""

    name: str
    revision: int
    arn: str
    parameters: dict[str, str] = field(default_factory=dict)


class AwsBatchDiscovery:
    """``polysync-airflow discover aws``'s read."""

    if TYPE_CHECKING:

        @property
        def conn(self) -> Any: ...

    def list_job_definitions(self) -> list[JobDefinitionInfo]:
        """Every ACTIVE job definition at its highest revision (DescribeJobDefinitions, all pages)."""
        latest: dict[str, dict[str, Any]] = {}
        pages = self.conn.get_paginator("describe_job_definitions").paginate(
            status="ACTIVE", PaginationConfig={"PageSize": 100}
        )
        for definition in (d for page in pages for d in page.get("jobDefinitions", [])):
            name = definition["jobDefinitionName"]
            if name not in latest or definition["revision"] > latest[name]["revision"]:
                latest[name] = definition
        return [
            JobDefinitionInfo(
                d["jobDefinitionName"], d["revision"], d["jobDefinitionArn"], dict(d.get("parameters") or {})
            )
            for d in sorted(latest.values(), key=lambda d: d["jobDefinitionName"])
        ]
