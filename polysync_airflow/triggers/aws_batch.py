"""The trigger that waits for an AWS Batch job in the triggerer: what it is stored with, its hook and decoder."""

from __future__ import annotations

from typing import Any

from polysync_airflow.hooks.aws_batch import AwsBatchHook
from polysync_airflow.statuses.aws_batch import decode_run, is_transient
from polysync_airflow.triggers.base import PolysyncJobTrigger


class AwsBatchJobTrigger(PolysyncJobTrigger):
    """Waits for one job (the run id is the job id). All triggers of a connection, region and client settings
    share one poller. Serializes only the job id, connection id, region, numbers and (when set) the operator's
    ``verify`` and ``botocore_config``."""

    run_id_kwarg = "job_id"
    decode = staticmethod(decode_run)
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

    def connection_kwargs(self) -> dict[str, Any]:
        # verify and botocore_config only when set: a trigger without them serializes as before this option.
        client_settings = {"verify": self.verify, "botocore_config": self.botocore_config}
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            **{name: value for name, value in client_settings.items() if value is not None},
        }

    def make_hook(self) -> AwsBatchHook:
        return AwsBatchHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )
