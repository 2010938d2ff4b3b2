"""AWS Batch: the connection hook and the status table of the AWS Batch job type."""

from __future__ import annotations

import asyncio
import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import quote, quote_plus

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.links.base_aws import BaseAwsLink
from airflow.providers.amazon.aws.links.batch import BatchJobDetailsLink
from airflow.providers.amazon.aws.links.logs import CloudWatchEventsLink
from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper
from airflow.providers.common.compat.sdk import AirflowNotFoundException
from botocore.config import Config
from botocore.exceptions import ClientError, UnknownRegionError

from polysync_airflow.ownership import TRY_MARK, WATCHED_MARK, ExistingJob
from polysync_airflow.status import RunState, RunStatus

CANCEL_REASON = "Cancelled by Polysync"
DEFAULT_MONITOR_LINK_TEMPLATE = (
    "https://{region}.console.aws.amazon.com/batch/home?region={region}#jobs/detail/{job_id}"
)
"""The commercial (``aws``) partition's console page of a job. China and GovCloud regions get their partition's
console (``console.amazonaws.cn``, ``console.amazonaws-us-gov.com``) through the Amazon provider's Batch link."""
DEFAULT_LOG_GROUP = "/aws/batch/job"
"""Where AWS Batch sends a container's output when its job definition names no ``awslogs-group``."""
DEFAULT_LOGS_LINK_TEMPLATE = (
    "https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
    "#logsV2:log-groups/log-group/{log_group}/log-events/{log_stream}"
)
"""The commercial partition's CloudWatch page of a log stream; other partitions as for the job link."""
COMMERCIAL_CONSOLE_DOMAIN = "aws.amazon.com"

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


def log_stream_name(job: Mapping[str, Any]) -> str | None:
    """The job's CloudWatch log stream: ``container.logStreamName``, else its last attempt's (None: not started)."""
    name = (job.get("container") or {}).get("logStreamName")
    if not name and job.get("attempts"):
        name = (job["attempts"][-1].get("container") or {}).get("logStreamName")
    return name or None


def logs_console_url(template: str, region: str, log_group: str, log_stream: str) -> str:
    """A log stream's console page; group and stream are quoted as the Amazon provider's CloudWatch link does."""
    return template.format(region=region, log_group=quote_plus(log_group), log_stream=quote_plus(log_stream))


def is_cancel_reason(reason: str | None) -> bool:
    return any(phrase in (reason or "").lower() for phrase in CANCELLATION_PHRASES)


_MISSING_WORDING = re.compile(r"does not exist|not found|inactive|not in active status", re.IGNORECASE)
_RESOURCE_NAMES = (
    ("job_definition", re.compile(r"job\s?definition", re.IGNORECASE)),
    ("job_queue", re.compile(r"job\s?queue", re.IGNORECASE)),
)


def missing_resource(err: BaseException) -> str | None:
    """``"job_definition"`` or ``"job_queue"`` when AWS Batch refused a request because that resource does not
    exist (or, for a definition, is not ACTIVE), else None.

    AWS answers a ClientException (HTTP 400) worded, depending on the API and the resource, "JobDefinition name
    x does not exist or is not in ACTIVE status", "JobQueue x not found." or (moto, the local endpoint)
    "Job queue x does not exist"; the resource named first in the message is the one that is missing."""
    if not isinstance(err, ClientError):
        return None
    error = err.response.get("Error") or {}
    message = str(error.get("Message") or "")
    if error.get("Code") != "ClientException" or not _MISSING_WORDING.search(message):
        return None
    found = [(match.start(), name) for name, pattern in _RESOURCE_NAMES if (match := pattern.search(message))]
    return min(found)[1] if found else None


def _count(value: Any) -> int:
    """A non-negative count from an answer, 0 for anything else (a missing or malformed field)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def array_size(job: Mapping[str, Any]) -> int:
    """The number of children of an array parent (DescribeJobs ``arrayProperties.size``); 0 for other jobs."""
    props = job.get("arrayProperties")
    return _count(props.get("size")) if isinstance(props, Mapping) else 0


def array_counts(job: Mapping[str, Any]) -> dict[str, int] | None:
    """An array parent's children by state, from ``arrayProperties.statusSummary``: size, succeeded, failed,
    running and waiting (every other child: submitted, pending, runnable, starting or not created yet).
    None for a job that is no array parent, or whose summary is not there yet."""
    size = array_size(job)
    summary = job["arrayProperties"].get("statusSummary") if size else None
    if not isinstance(summary, Mapping) or not summary:
        return None
    succeeded, failed, running = (_count(summary.get(name)) for name in ("SUCCEEDED", "FAILED", "RUNNING"))
    waiting = max(size - succeeded - failed - running, 0)
    return {"size": size, "succeeded": succeeded, "failed": failed, "running": running, "waiting": waiting}


def format_array_progress(counts: Mapping[str, int]) -> str:
    """``37/100 succeeded, 2 failed, 10 running`` (and ``, 51 waiting`` while some children wait)."""
    text = f"{counts['succeeded']}/{counts['size']} succeeded, {counts['failed']} failed, {counts['running']} running"
    return f"{text}, {counts['waiting']} waiting" if counts.get("waiting") else text


def child_index(summary: Mapping[str, Any]) -> int | None:
    """An array child's index: ``arrayProperties.index``, else the ``<parent>:<index>`` suffix of its id."""
    props = summary.get("arrayProperties")
    index = props.get("index") if isinstance(props, Mapping) else None
    if isinstance(index, int) and not isinstance(index, bool) and index >= 0:
        return index
    _parent, colon, suffix = str(summary.get("jobId") or "").rpartition(":")
    return int(suffix) if colon and suffix.isdigit() else None


def decode_job(job_id: str, job: Mapping[str, Any] | None) -> RunState:
    """One DescribeJobs entry (or None: not found) as a :class:`RunState`."""
    if job is None:
        return RunState(job_id, RunStatus.UNKNOWN, f"AWS Batch job {job_id} was not found")
    native = job.get("status")
    reason = job.get("statusReason") or ""
    exit_code = job_exit_code(job)
    status = AWS_BATCH_STATUS.get(native or "", RunStatus.UNKNOWN)
    if status is RunStatus.FAILED and is_cancel_reason(reason):
        status = RunStatus.CANCELLED
    if reason:
        message = reason
    elif exit_code is not None:
        message = f"Container exit code: {exit_code}"
    else:
        message = ""
    counts = array_counts(job)
    progress = format_array_progress(counts) if counts else ""
    return RunState(job_id, status, message, exit_code, native, progress)


def existing_job(summary: Mapping[str, Any], detail: Mapping[str, Any] | None) -> ExistingJob:
    """A ListJobs entry (and, for a job still running, its DescribeJobs entry with the tags) as :class:`ExistingJob`."""
    status = summary.get("status") or ""
    tags = (detail or {}).get("tags") or {}
    submitted_by = tags.get(TRY_MARK, "")
    return ExistingJob(
        run_id=summary["jobId"],
        native_status=status,
        finished=AWS_BATCH_STATUS.get(status, RunStatus.RUNNING).is_terminal,
        # A terminated job can stay RUNNING until its container stops; its status reason says so at once.
        cancelling=is_cancel_reason(summary.get("statusReason") or (detail or {}).get("statusReason")),
        watched=WATCHED_MARK in tags,
        try_number=int(submitted_by) if submitted_by.isdigit() else None,
    )


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

    @property
    def logs_link_template(self) -> str:
        return self._setting("logs_link_template") or DEFAULT_LOGS_LINK_TEMPLATE

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

    def monitor_url(self, job_id: str) -> str:
        """The console page of a job, from the connection's template (or the console of the region's partition)."""
        values = {"region": self.effective_region, "job_id": quote(job_id, safe="")}
        if self._setting("monitor_link_template"):
            try:
                return self.monitor_link_template.format(**values)
            except (KeyError, IndexError, ValueError) as err:
                self._warn_template("monitor_link_template", self.monitor_link_template, "{region} and {job_id}", err)
        domain = self.console_domain(values["region"])
        if domain in (None, COMMERCIAL_CONSOLE_DOMAIN):
            return DEFAULT_MONITOR_LINK_TEMPLATE.format(**values)
        return BatchJobDetailsLink().format_link(
            aws_domain=domain, region_name=values["region"], job_id=values["job_id"]
        )

    def logs_url(self, log: JobLogStream) -> str:
        """The CloudWatch console page of a job's log stream, from the connection's template (or the console of
        the stream region's partition)."""
        if self._setting("logs_link_template"):
            try:
                return logs_console_url(self.logs_link_template, log.region, log.group, log.stream)
            except (KeyError, IndexError, ValueError) as err:
                self._warn_template(
                    "logs_link_template", self.logs_link_template, "{region}, {log_group} and {log_stream}", err
                )
        domain = self.console_domain(log.region)
        if domain in (None, COMMERCIAL_CONSOLE_DOMAIN):
            return logs_console_url(DEFAULT_LOGS_LINK_TEMPLATE, log.region, log.group, log.stream)
        # The provider's CloudWatch link quotes the group and stream itself (quote_plus, as logs_console_url does).
        return CloudWatchEventsLink().format_link(
            aws_domain=domain, awslogs_region=log.region, awslogs_group=log.group, awslogs_stream_name=log.stream
        )

    def _warn_template(self, setting: str, template: str, placeholders: str, err: Exception) -> None:
        self.log.warning(
            "%s %r in connection %s is not usable (%s); it may use only %s. Using the AWS console link instead.",
            setting,
            template,
            self.aws_conn_id,
            err,
            placeholders,
        )

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

    def find_jobs_named(self, job_name: str, job_queue: str) -> list[ExistingJob]:
        """The jobs with this exact name in the queue, newest first (ListJobs, all pages, then their tags)."""
        pages = self.conn.get_paginator("list_jobs").paginate(
            jobQueue=job_queue, filters=[{"name": "JOB_NAME", "values": [job_name]}]
        )
        summaries = [s for page in pages for s in page.get("jobSummaryList", []) if s.get("jobName") == job_name]
        summaries.sort(key=lambda s: s.get("createdAt") or 0, reverse=True)
        ids = [s["jobId"] for s in summaries]  # tags are only in DescribeJobs, up to 100 ids per call
        details = {job["jobId"]: job for i in range(0, len(ids), 100) for job in self.describe_jobs(ids[i : i + 100])}
        return [existing_job(s, details.get(s["jobId"])) for s in summaries]

    def list_array_children(self, array_job_id: str, status: str, page_size: int = 100) -> list[dict[str, Any]]:
        """The children of an array job in one status (ListJobs ``arrayJobId`` + ``jobStatus``, all pages)."""
        pages = self.conn.get_paginator("list_jobs").paginate(
            arrayJobId=array_job_id, jobStatus=status, PaginationConfig={"PageSize": page_size}
        )
        return [child for page in pages for child in page.get("jobSummaryList", [])]

    def mark_watched(self, job_id: str, watcher: str) -> None:
        job = self.describe_job(job_id)
        if job is not None and WATCHED_MARK not in (job.get("tags") or {}):
            self.conn.tag_resource(resourceArn=job["jobArn"], tags={WATCHED_MARK: watcher})

    def get_run_state(self, job_id: str) -> RunState:
        return decode_job(job_id, self.describe_job(job_id))

    def terminate_job(self, job_id: str, reason: str = CANCEL_REASON) -> None:
        self.conn.terminate_job(jobId=job_id, reason=reason)

    def job_log_stream(self, job: Mapping[str, Any]) -> JobLogStream:
        """Where a described job's output is: its stream, and the log group (and region) of its
        ``logConfiguration`` (from the job, else DescribeJobDefinitions of its definition ARN), by default
        ``/aws/batch/job`` in the connection's region. Raises :class:`NoLogStream` when there is none."""
        stream = log_stream_name(job)
        if stream is None:
            raise NoLogStream(f"job {job.get('jobId')} has no log stream (its container never started)")
        config = (job.get("container") or {}).get("logConfiguration") or self._definition_log_configuration(
            job.get("jobDefinition")
        )
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
        return (found[0].get("containerProperties") or {}).get("logConfiguration") or {} if found else {}

    def tail_log(self, log: JobLogStream, lines: int = 50) -> list[str]:
        """The last ``lines`` events of a log stream, oldest first (one GetLogEvents from the stream's end)."""
        response = self._make_client(self.config, "logs", log.region).get_log_events(
            logGroupName=log.group, logStreamName=log.stream, limit=lines, startFromHead=False
        )
        return [event.get("message", "").rstrip("\n") for event in response.get("events", [])][-lines:]

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

    # -- calls (async, in the triggerer) ------------------------------------------------------------

    @staticmethod
    async def adescribe_jobs(client: Any, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Many jobs by id, in ceil(n / 100) DescribeJobs calls made side by side."""
        pages = await asyncio.gather(
            *(client.describe_jobs(jobs=list(job_ids[i : i + 100])) for i in range(0, len(job_ids), 100))
        )
        return {job["jobId"]: job for page in pages for job in page.get("jobs", [])}

    @staticmethod
    async def aterminate_job(client: Any, job_id: str, reason: str = CANCEL_REASON) -> None:
        await client.terminate_job(jobId=job_id, reason=reason)

    @staticmethod
    async def amark_watched(client: Any, job: Mapping[str, Any] | None, watcher: str) -> None:
        """Tag a described job watched, unless it is (one TagResource, no read)."""
        if job is not None and WATCHED_MARK not in (job.get("tags") or {}):
            await client.tag_resource(resourceArn=job["jobArn"], tags={WATCHED_MARK: watcher})
