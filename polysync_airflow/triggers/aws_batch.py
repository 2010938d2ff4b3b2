"""The trigger that waits for an AWS Batch job in the triggerer, and how its shared poller reads many jobs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from polysync_airflow.hooks.aws_batch import AwsBatchHook
from polysync_airflow.shared_poller import ReadMany
from polysync_airflow.status import RunState
from polysync_airflow.statuses.aws_batch import decode_job, is_transient
from polysync_airflow.triggers.base import PolysyncJobTrigger


class AwsBatchJobTrigger(PolysyncJobTrigger):
    """Waits for one job (the run id is the job id). All triggers of a connection, region and client settings
    share one poller. Serializes only the job id, connection id, region, numbers and (when set) the operator's
    ``verify`` and ``botocore_config``."""

    is_transient = staticmethod(is_transient)

    def __init__(
        self,
        job_id: str,
        job_name: str = "",
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        """``settings``: the fields of :class:`~polysync_airflow.run_watch.PollingSettings`."""
        super().__init__(run_id=job_id, job_name=job_name, **settings)
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config

    def platform_kwargs(self) -> dict[str, Any]:
        # verify and botocore_config only when set: a trigger without them serializes as before this option.
        client_settings = {"verify": self.verify, "botocore_config": self.botocore_config}
        return {
            "job_id": self.run_id,
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            **{name: value for name, value in client_settings.items() if value is not None},
        }

    def make_reader(self) -> ReadMany[dict[str, Any]]:
        # DescribeJobs with up to 100 job ids a call; each answer holds all the status needs, so unlike Azure's
        # reader this one remembers nothing between reads.
        return AwsBatchHook.adescribe_jobs

    @property
    def poller_key(self) -> tuple[Any, ...]:
        """The same connection, region and client settings (those as JSON text, so the key is hashable)."""
        settings = json.dumps([self.verify, self.botocore_config], sort_keys=True, default=str)
        return ("aws_batch", self.aws_conn_id, self.region_name, settings)

    @asynccontextmanager
    async def open_hook(self) -> AsyncIterator[AwsBatchHook]:
        hook = AwsBatchHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )
        async with hook.async_connection():
            yield hook

    def decode(self, answer: dict[str, Any] | None) -> RunState:
        return decode_job(self.run_id, answer)

    async def cancel(self, hook: AwsBatchHook) -> None:
        await hook.aterminate_run(self.run_id)

    async def mark_watched(self, hook: AwsBatchHook, answer: dict[str, Any] | None) -> None:
        await hook.amark_watched(answer, "triggerer")
