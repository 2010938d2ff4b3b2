"""The trigger that waits for an AWS Batch job in the triggerer, with a real aiobotocore client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from polysync_airflow.hooks.aws_batch import AwsBatchHook, decode_job
from polysync_airflow.poller import StatusPoller
from polysync_airflow.status import RunState
from polysync_airflow.triggers.base import PolysyncJobTrigger


class AwsBatchJobTrigger(PolysyncJobTrigger):
    """Waits for one job. All triggers of a connection, region and client settings share one poller: up to 100
    jobs per DescribeJobs call. Serializes only the job id, connection id, region, numbers and (when set) the
    operator's ``verify`` and ``botocore_config``."""

    def __init__(
        self,
        job_id: str,
        job_name: str = "",
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        **polling: Any,
    ) -> None:
        """``polling``: poll_interval, unknown_grace_period, deadline, cancel_on_kill, outage_window."""
        super().__init__(run_id=job_id, job_name=job_name, **polling)
        self.job_id = job_id
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config

    def serialize(self) -> tuple[str, dict[str, Any]]:
        # verify and botocore_config only when set: a trigger without them serializes as before this option.
        client_settings = {"verify": self.verify, "botocore_config": self.botocore_config}
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                **{name: value for name, value in client_settings.items() if value is not None},
                **self._common_kwargs(),
            },
        )

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Any]:
        hook = AwsBatchHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )
        async with await hook.get_async_conn() as client:
            yield client

    @property
    def poller_key(self) -> tuple[Any, ...]:
        """The triggers with the same key share a poller and its client: the same connection, region and client
        settings (those as JSON text, so the key is hashable)."""
        settings = json.dumps([self.verify, self.botocore_config], sort_keys=True, default=str)
        return ("aws_batch", self.aws_conn_id, self.region_name, settings)

    def poller(self) -> StatusPoller[dict[str, Any]]:
        return StatusPoller.shared(self.poller_key, self.client, lambda: AwsBatchHook.adescribe_jobs)

    def decode(self, answer: dict[str, Any] | None) -> RunState:
        return decode_job(self.job_id, answer)

    async def cancel(self, client: Any) -> None:
        await AwsBatchHook.aterminate_job(client, self.job_id)

    async def mark_watched(self, client: Any, answer: dict[str, Any] | None) -> None:
        await AwsBatchHook.amark_watched(client, answer, "triggerer")
