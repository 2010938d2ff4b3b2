"""AWS Batch: the connection hook and the status table of the AWS Batch job type."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import quote

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper

from polysync_airflow.status import RunState, RunStatus

CANCEL_REASON = "Cancelled by Polysync"
DEFAULT_MONITOR_LINK_TEMPLATE = (
    "https://{region}.console.aws.amazon.com/batch/home?region={region}#jobs/detail/{job_id}"
)

# The seed's status table: Batch job status -> run status.
AWS_BATCH_STATUS: Mapping[str, RunStatus] = {
    "SUBMITTED": RunStatus.RUNNING,
    "PENDING": RunStatus.RUNNING,
    "RUNNABLE": RunStatus.RUNNING,
    "STARTING": RunStatus.RUNNING,
    "RUNNING": RunStatus.RUNNING,
    "SUCCEEDED": RunStatus.SUCCESS,
    "FAILED": RunStatus.FAILED,  # or Cancelled, when the status reason says so
}
# A FAILED job whose statusReason contains one of these (case-insensitive) was cancelled.
CANCELLATION_PHRASES = ("cancelled", "canceled", "terminated", "job terminated", CANCEL_REASON.lower())


def job_exit_code(job: Mapping[str, Any]) -> int | None:
    """The container exit code, from the job or, where DescribeJobs leaves it out, its last attempt."""
    code = (job.get("container") or {}).get("exitCode")
    if code is None and job.get("attempts"):
        code = (job["attempts"][-1].get("container") or {}).get("exitCode")
    return code


def decode_job(job_id: str, job: Mapping[str, Any] | None) -> RunState:
    """One DescribeJobs entry (or None: not found) as a :class:`RunState`."""
    if job is None:
        return RunState(job_id, RunStatus.UNKNOWN, f"AWS Batch job {job_id} was not found")
    native = job.get("status")
    reason = job.get("statusReason") or ""
    exit_code = job_exit_code(job)
    status = AWS_BATCH_STATUS.get(native or "", RunStatus.UNKNOWN)
    if status is RunStatus.FAILED and any(phrase in reason.lower() for phrase in CANCELLATION_PHRASES):
        status = RunStatus.CANCELLED
    if reason:
        message = reason
    elif exit_code is not None:
        message = f"Container exit code: {exit_code}"
    else:
        message = ""
    return RunState(job_id, status, message, exit_code, native)


@dataclass(frozen=True)
class JobDefinitionInfo:
    """One importable job definition: its latest ACTIVE revision and default parameters."""

    name: str
    revision: int
    arn: str
    parameters: dict[str, str] = field(default_factory=dict)


class AwsBatchHook(AwsBaseHook):
    """AWS Batch through an Airflow ``aws`` (or ``polysync_aws_batch``) connection.

    Credentials come from the Amazon provider's AWS base hook, so keys, profiles, role assumption, web
    identity, ``region_name`` and ``endpoint_url`` all work. The connection's extra may also hold
    ``default_job_queue`` and ``monitor_link_template`` (placeholders ``{region}`` and ``{job_id}``).
    """

    conn_name_attr = "aws_conn_id"
    default_conn_name = "aws_default"
    conn_type = "polysync_aws_batch"
    hook_name = "Polysync AWS Batch"

    def __init__(self, aws_conn_id: str | None = default_conn_name, region_name: str | None = None, **kwargs: Any):
        kwargs.setdefault("client_type", "batch")
        super().__init__(aws_conn_id=aws_conn_id, region_name=region_name, **kwargs)

    @cached_property
    def conn_config(self) -> AwsConnectionWrapper:
        # The base hook warns about any connection type but "aws"; ours is an aws connection too.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*expected connection type 'aws'", category=UserWarning)
            return super().conn_config

    def _setting(self, name: str) -> str | None:
        extra = self.conn_config.extra_config
        value = extra.get(name) or extra.get(f"extra__{self.conn_type}__{name}")
        return str(value) if value else None

    @property
    def default_job_queue(self) -> str | None:
        return self._setting("default_job_queue")

    @property
    def monitor_link_template(self) -> str:
        return self._setting("monitor_link_template") or DEFAULT_MONITOR_LINK_TEMPLATE

    @property
    def effective_region(self) -> str:
        return self.region_name or self.conn.meta.region_name

    def monitor_url(self, job_id: str) -> str:
        """The console page of a job, from the connection's template (or AWS's console)."""
        values = {"region": self.effective_region, "job_id": quote(job_id, safe="")}
        try:
            return self.monitor_link_template.format(**values)
        except (KeyError, IndexError, ValueError) as err:
            self.log.warning(
                "monitor_link_template %r in connection %s is not usable (%s); it may use only {region} and "
                "{job_id}. Using the AWS console link instead.",
                self.monitor_link_template,
                self.aws_conn_id,
                err,
            )
            return DEFAULT_MONITOR_LINK_TEMPLATE.format(**values)

    # -- calls (sync, in the worker) -----------------------------------------------------------------

    def submit_job(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return self.conn.submit_job(**request)

    def describe_job(self, job_id: str) -> dict[str, Any] | None:
        jobs = self.conn.describe_jobs(jobs=[job_id]).get("jobs", [])
        return jobs[0] if jobs else None

    def get_run_state(self, job_id: str) -> RunState:
        return decode_job(job_id, self.describe_job(job_id))

    def terminate_job(self, job_id: str, reason: str = CANCEL_REASON) -> None:
        self.conn.terminate_job(jobId=job_id, reason=reason)

    def list_job_definitions(self) -> list[JobDefinitionInfo]:
        """Every ACTIVE job definition at its highest revision (DescribeJobDefinitions, all pages)."""
        latest: dict[str, dict[str, Any]] = {}
        request: dict[str, Any] = {"status": "ACTIVE", "maxResults": 100}
        while True:
            page = self.conn.describe_job_definitions(**request)
            for definition in page.get("jobDefinitions", []):
                name = definition["jobDefinitionName"]
                if name not in latest or definition["revision"] > latest[name]["revision"]:
                    latest[name] = definition
            if not page.get("nextToken"):
                break
            request["nextToken"] = page["nextToken"]
        return [
            JobDefinitionInfo(
                d["jobDefinitionName"], d["revision"], d["jobDefinitionArn"], dict(d.get("parameters") or {})
            )
            for d in sorted(latest.values(), key=lambda d: d["jobDefinitionName"])
        ]

    # -- calls (async, in the triggerer) ------------------------------------------------------------

    @staticmethod
    async def aget_run_state(client: Any, job_id: str) -> RunState:
        jobs = (await client.describe_jobs(jobs=[job_id])).get("jobs", [])
        return decode_job(job_id, jobs[0] if jobs else None)

    @staticmethod
    async def aterminate_job(client: Any, job_id: str, reason: str = CANCEL_REASON) -> None:
        await client.terminate_job(jobId=job_id, reason=reason)
