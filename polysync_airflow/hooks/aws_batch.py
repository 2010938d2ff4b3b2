"""AWS Batch: the connection hook and every call, sync in the worker and async in the triggerer."""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.links.base_aws import BaseAwsLink
from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper
from airflow.providers.common.compat.sdk import AirflowNotFoundException
from botocore.config import Config
from botocore.exceptions import UnknownRegionError

from polysync_airflow.hooks.aws_batch_discovery import AwsBatchDiscovery
from polysync_airflow.hooks.aws_batch_waiting import AwsBatchWaitReads
from polysync_airflow.hooks.base import AsyncClientHolder
from polysync_airflow.ownership import WATCHED_MARK
from polysync_airflow.queueing.aws_batch import main_node_container
from polysync_airflow.status import CANCEL_REASON

DEFAULT_LOG_GROUP = "/aws/batch/job"
"""Where AWS Batch sends a container's output when its job definition names no ``awslogs-group``."""
LOG_TAIL_LINES = 50
"""How many of the last lines of a job's log stream the task log shows."""


def _ecs_containers(properties: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The containers of an ``ecsProperties`` (job or definition) or of an attempt's ``taskProperties``, essential
    ones first (the one whose output a user wants)."""
    tasks = (properties or {}).get("taskProperties") or []
    containers = [container for task in tasks for container in task.get("containers") or []]
    return sorted(containers, key=lambda container: container.get("essential") is False)


def log_stream_name(job: Mapping[str, Any]) -> str | None:
    """The job's CloudWatch log stream (None: not started): ``container.logStreamName``; for an ECS-properties
    job, its (essential) container's; else its last attempt's, which for a multi-node job is the main node's
    (as the Amazon provider reads it)."""
    candidates = [job.get("container") or {}, *_ecs_containers(job.get("ecsProperties"))]
    if job.get("attempts"):
        last = job["attempts"][-1]
        candidates += [last.get("container") or {}, *_ecs_containers(last)]
    return next((c["logStreamName"] for c in candidates if c.get("logStreamName")), None)


def _log_configuration(properties: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``logConfiguration`` of a job or job definition: of its container (``container`` or
    ``containerProperties``), its (essential) ECS container, or its multi-node main node's container."""
    container = properties.get("container") or properties.get("containerProperties")
    if container:
        return container.get("logConfiguration")
    ecs = _ecs_containers(properties.get("ecsProperties"))
    if ecs:
        return ecs[0].get("logConfiguration")
    main = main_node_container(properties.get("nodeProperties") or {})
    return main.get("logConfiguration") if main else None


class AwsConnectionNotDefined(AirflowNotFoundException):
    """A named AWS connection that Airflow does not know. Falling back to an empty connection would run with
    whatever credentials the machine has (or none), so the hook refuses before any request. Retryable like
    Airflow's own missing-connection error: a secrets backend that did not answer may answer next time."""

    def __init__(self, conn_id: str) -> None:
        super().__init__(
            f"connection {conn_id!r} is not defined: add it (Admin > Connections, `airflow connections add "
            f"{conn_id} --conn-type aws ...` or the environment variable AIRFLOW_CONN_{conn_id.upper()}), "
            "or pass aws_conn_id=None to use boto3's default credentials"
        )
        self.conn_id = conn_id


_default_chain_logged = threading.Event()  # the aws_default fallback is logged once per process


class NoLogStream(Exception):
    """The job has no CloudWatch log stream to read; the message says why."""


@dataclass(frozen=True)
class JobLogStream:
    """Where a job's output is in CloudWatch Logs."""

    group: str
    stream: str
    region: str


class AwsBatchHook(AwsBatchWaitReads, AwsBatchDiscovery, AsyncClientHolder, AwsBaseHook):
    """AWS Batch through an Airflow ``aws`` (or ``polysync_aws_batch``) connection.

    Credentials come from the Amazon provider's AWS base hook, so keys, profiles, role assumption, web
    identity, ``region_name`` and ``endpoint_url`` all work. The connection's extra may also hold
    ``default_job_queue``, ``monitor_link_template`` (placeholders ``{region}`` and ``{job_id}``) and
    ``logs_link_template`` (placeholders ``{region}``, ``{log_group}`` and ``{log_stream}``).
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
        """The connection, as the Amazon provider's base hook wraps it, except that a named connection that does
        not exist is an error (:class:`AwsConnectionNotDefined`) instead of an empty connection. Only
        ``aws_default`` keeps the provider's fallback to boto3's default credential chain (logged once)."""
        connection = None
        if self.aws_conn_id:
            try:
                connection = self.get_connection(self.aws_conn_id)
            except AirflowNotFoundException:
                if self.aws_conn_id != self.default_conn_name:
                    raise AwsConnectionNotDefined(self.aws_conn_id) from None
                if not _default_chain_logged.is_set():
                    _default_chain_logged.set()
                    self.log.info(
                        "Connection %r is not defined; using boto3's default credential chain (environment, shared "
                        "config files, instance or task role)",
                        self.aws_conn_id,
                    )
        # The base hook warns about any connection type but "aws"; ours is an aws connection too.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*expected connection type 'aws'", category=UserWarning)
            return AwsConnectionWrapper(
                conn=connection, region_name=self._region_name, botocore_config=self._config, verify=self._verify
            )

    def setting(self, name: str) -> str | None:
        """A Polysync setting from the connection's extra (under its name, or as the UI form stores it)."""
        extra = self.conn_config.extra_config
        value = extra.get(name) or extra.get(f"extra__{self.conn_type}__{name}")
        return str(value) if value else None

    @property
    def default_job_queue(self) -> str | None:
        return self.setting("default_job_queue")

    @property
    def effective_region(self) -> str:
        return self.region_name or self.conn.meta.region_name

    def partition_of(self, region: str) -> str:
        """The AWS partition of a region (``aws``, ``aws-cn``, ``aws-us-gov``, ...), from botocore's endpoint data."""
        if region == self.conn_region_name:
            return self.conn_partition
        try:
            return self._session.get_partition_for_region(region)
        except UnknownRegionError:  # a region botocore does not know yet: the client's own partition
            return self.conn_partition

    def console_domain(self, region: str) -> str | None:
        """The console's domain for the region's partition, as the Amazon provider's links choose it
        (``aws.amazon.com``, ``amazonaws.cn``, ``amazonaws-us-gov.com``); None for a partition without one."""
        return BaseAwsLink.get_aws_domain(self.partition_of(region))

    # -- calls (sync, in the worker) -----------------------------------------------------------------

    @cached_property
    def _session(self) -> Any:
        return self.get_session(region_name=self.region_name)

    def _make_client(self, config: Config, service: str = "batch", region_name: str | None = None) -> Any:
        # Every client from one session: the second batch one reuses the service model the first one loaded.
        return self._session.client(
            service,
            region_name=region_name,
            endpoint_url=self.conn_config.get_service_endpoint_url(service_name=service),
            config=self._get_config(config),
            verify=self.verify,
        )

    @cached_property
    def conn(self) -> Any:
        return self._make_client(self.config)

    @cached_property
    def _submit_client(self) -> Any:
        # SubmitJob is not idempotent: a retry by botocore after a lost answer would start a second job. The
        # operator retries instead, after looking up whether the first attempt was accepted.
        return self._make_client(self.config.merge(Config(retries={"total_max_attempts": 1})))

    def submit_job(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return self._submit_client.submit_job(**request)

    def describe_job(self, job_id: str) -> dict[str, Any] | None:
        jobs = self.describe_jobs([job_id])
        return jobs[0] if jobs else None

    def describe_jobs(self, job_ids: list[str]) -> list[dict[str, Any]]:
        return self.conn.describe_jobs(jobs=job_ids).get("jobs", [])

    def find_jobs_named(self, job_name: str, job_queue: str) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """The jobs with this exact name in the queue, newest first, each as its ListJobs entry and its DescribeJobs
        entry (with the tags; None if it could not be described): ListJobs, all pages, then DescribeJobs."""
        pages = self.conn.get_paginator("list_jobs").paginate(
            jobQueue=job_queue, filters=[{"name": "JOB_NAME", "values": [job_name]}]
        )
        summaries = [s for page in pages for s in page.get("jobSummaryList", []) if s.get("jobName") == job_name]
        summaries.sort(key=lambda s: s.get("createdAt") or 0, reverse=True)
        ids = [s["jobId"] for s in summaries]  # tags are only in DescribeJobs, up to 100 ids per call
        details = {job["jobId"]: job for i in range(0, len(ids), 100) for job in self.describe_jobs(ids[i : i + 100])}
        return [(s, details.get(s["jobId"])) for s in summaries]

    def list_array_children(self, array_job_id: str, status: str, page_size: int = 100) -> list[dict[str, Any]]:
        """The children of an array job in one status (ListJobs ``arrayJobId`` + ``jobStatus``, all pages)."""
        pages = self.conn.get_paginator("list_jobs").paginate(
            arrayJobId=array_job_id, jobStatus=status, PaginationConfig={"PageSize": page_size}
        )
        return [child for page in pages for child in page.get("jobSummaryList", [])]

    def read_run(self, run_id: str) -> dict[str, Any] | None:
        """What the status table reads for a run (its job: the run id is the job id), None when not found."""
        return self.describe_job(run_id)

    def mark_watched(self, run_id: str, watcher: str) -> None:
        """Tag the run's job watched, unless it is (DescribeJobs, then TagResource)."""
        job = self.describe_job(run_id)
        if job is not None and WATCHED_MARK not in (job.get("tags") or {}):
            self.conn.tag_resource(resourceArn=job["jobArn"], tags={WATCHED_MARK: watcher})

    def terminate_run(self, run_id: str, reason: str = CANCEL_REASON) -> None:
        """Stop the run's job (TerminateJob: queued and running jobs alike)."""
        self.conn.terminate_job(jobId=run_id, reason=reason)

    def job_log_stream(self, job: Mapping[str, Any]) -> JobLogStream:
        """Where a described job's output is: its stream, and the log group (and region) of its
        ``logConfiguration`` (from the job, else DescribeJobDefinitions of its definition ARN), by default
        ``/aws/batch/job`` in the connection's region. Raises :class:`NoLogStream` when there is none."""
        stream = log_stream_name(job)
        if stream is None:
            raise NoLogStream(f"job {job.get('jobId')} has no log stream (its container never started)")
        config = _log_configuration(job) or self._definition_log_configuration(job.get("jobDefinition"))
        driver = config.get("logDriver") or "awslogs"
        if driver != "awslogs":
            raise NoLogStream(f"job {job.get('jobId')} logs with the {driver!r} log driver, not to CloudWatch Logs")
        options = config.get("options") or {}
        return JobLogStream(
            options.get("awslogs-group") or DEFAULT_LOG_GROUP,
            stream,
            options.get("awslogs-region") or self.effective_region,
        )

    def _definition_log_configuration(self, definition_arn: str | None) -> dict[str, Any]:
        if not definition_arn:
            return {}
        found = self.conn.describe_job_definitions(jobDefinitions=[definition_arn]).get("jobDefinitions", [])
        return (_log_configuration(found[0]) or {}) if found else {}

    def tail_log(self, log: JobLogStream, lines: int = LOG_TAIL_LINES) -> list[str]:
        """The last ``lines`` events of a log stream, oldest first (one GetLogEvents from the stream's end)."""
        response = self._make_client(self.config, "logs", log.region).get_log_events(
            logGroupName=log.group, logStreamName=log.stream, limit=lines, startFromHead=False
        )
        return [event.get("message", "").rstrip("\n") for event in response.get("events", [])][-lines:]

    # -- calls (async, in the triggerer) ------------------------------------------------------------

    @asynccontextmanager
    async def async_connection(self) -> AsyncIterator[None]:
        """Open the aiobotocore client the ``a...`` calls below make their requests with, until the block ends."""
        async with self._holding(await self.get_async_conn()):
            yield

    async def aread_runs(self, run_ids: Sequence[str]) -> dict[str, Any]:
        """The shared poller's read: many jobs by id, in ceil(n / 100) DescribeJobs calls made side by side; a job
        not found is absent, and the jobs of a call that failed map to its error (the other calls' answers stand).
        Each answer holds all the status needs, so unlike Azure's this read keeps nothing."""
        chunks = [list(run_ids[i : i + 100]) for i in range(0, len(run_ids), 100)]
        pages = await asyncio.gather(
            *(self.async_client.describe_jobs(jobs=chunk) for chunk in chunks), return_exceptions=True
        )
        answers: dict[str, Any] = {}
        for chunk, page in zip(chunks, pages, strict=True):
            if isinstance(page, Exception):
                answers.update(dict.fromkeys(chunk, page))
            elif isinstance(page, BaseException):  # cancelled: the poller is stopping
                raise page
            else:
                answers.update((job["jobId"], job) for job in page.get("jobs", []))
        return answers

    async def aterminate_run(self, run_id: str, reason: str = CANCEL_REASON) -> None:
        await self.async_client.terminate_job(jobId=run_id, reason=reason)

    async def amark_watched(self, job: Mapping[str, Any] | None, watcher: str) -> None:
        """Tag a job, as the last read described it (its answer), watched, unless it is (one TagResource, no read)."""
        if job is not None and WATCHED_MARK not in (job.get("tags") or {}):
            await self.async_client.tag_resource(resourceArn=job["jobArn"], tags={WATCHED_MARK: watcher})
