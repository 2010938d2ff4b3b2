"""The AWS Batch job type: submit a job from a job definition, wait for it, report its outcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from botocore.exceptions import ClientError

from polysync_airflow.compat import AirflowFailException
from polysync_airflow.hooks.aws_batch import LOG_TAIL_LINES, AwsBatchHook, JobLogStream, NoLogStream
from polysync_airflow.links.aws_batch import AwsBatchJobLink, AwsBatchJobLogsLink
from polysync_airflow.operators.base import PolysyncJobOperator, SubmittedRun
from polysync_airflow.ownership import ExistingJob, TaskInstanceKey
from polysync_airflow.requests.aws_batch import build_submit_job_request, check_tag_key, job_name_for
from polysync_airflow.run_watch import describe_error
from polysync_airflow.status import RunStatus
from polysync_airflow.statuses.aws_batch import (
    array_counts,
    array_size,
    decode_run,
    existing_job,
    is_transient,
    job_exit_code,
    log_read_problem,
    missing_resource,
)
from polysync_airflow.triggers.aws_batch import AwsBatchJobTrigger
from polysync_airflow.validation import reject_non_finite_numbers

if TYPE_CHECKING:
    from airflow.sdk import Context

MAX_LISTED_CHILDREN = 20  # failed array children named in the failure message; the rest are counted


def failed_children_text(indexes: Sequence[int], size: int, limit: int = MAX_LISTED_CHILDREN) -> str:
    """``children 3, 7 failed (2 of 10)``; past ``limit`` indexes, ``... and N more failed``."""
    shown = ", ".join(str(index) for index in indexes[:limit])
    more = f" and {len(indexes) - limit} more" if len(indexes) > limit else ""
    noun = "child" if len(indexes) == 1 else "children"
    return f"{noun} {shown}{more} failed ({len(indexes)} of {size})"


def child_index(summary: Mapping[str, Any]) -> int | None:
    """An array child's index: ``arrayProperties.index``, else the ``<parent>:<index>`` suffix of its id."""
    props = summary.get("arrayProperties")
    index = props.get("index") if isinstance(props, Mapping) else None
    if isinstance(index, int) and not isinstance(index, bool) and index >= 0:
        return index
    _parent, colon, suffix = str(summary.get("jobId") or "").rpartition(":")
    return int(suffix) if colon and suffix.isdigit() else None


def child_failure_text(child: Mapping[str, Any]) -> str:
    """Why one child failed: its status reason, its container's reason and its exit code."""
    container = child.get("container") or {}
    attempts = child.get("attempts") or [{}]
    reasons = [child.get("statusReason"), container.get("reason"), (attempts[-1].get("container") or {}).get("reason")]
    text = ": ".join(dict.fromkeys(reason for reason in reasons if reason))
    code = job_exit_code(child)
    if code is None:
        return text
    return f"{text} (exit code {code})" if text else f"exit code {code}"


class AwsBatchJobOperator(PolysyncJobOperator):
    """Submit an AWS Batch job from a job definition and wait for it (deferred by default).

    :param job_definition: name (latest ACTIVE revision), ``name:revision`` or ARN.
    :param job_queue: the queue; defaults to the connection's ``default_job_queue``.
    :param parameters: values for the definition's ``Ref::name`` placeholders; sent as strings.
    :param share_identifier: fair-share identifier (required by fair-share queues).
    :param scheduling_priority_override: 0-9999, higher runs sooner within the share.
    :param attempt_duration_seconds: per-attempt timeout, >= 60.
    :param retry_attempts: Batch-level attempts, 1-10.
    :param array_size: 2-10000; submits an array job.
    :param tags: Batch tags, a dict of strings (or its JSON text).
    :param propagate_tags: propagate tags to the ECS/EKS resources.
    :param depends_on: ``[{"jobId": ..., "type": "SEQUENTIAL" | "N_TO_N"}]`` (or its JSON text).
    :param aws_conn_id: the ``aws`` or ``polysync_aws_batch`` connection. A connection id that is not defined
        fails the task before any request; only ``aws_default`` falls back to boto3's default credentials.
    :param region_name: overrides the connection's region.
    :param verify: whether to verify SSL certificates (or the path of a CA bundle), as in the Amazon operators.
    :param botocore_config: botocore client settings (a dict of ``botocore.config.Config`` arguments), as in the
        Amazon operators.

    Returns (XCom) ``{run_id, status, message, exit_code, monitor_url, job_name}``.
    """

    template_fields: Sequence[str] = (
        "job_definition",
        "job_queue",
        "parameters",
        "share_identifier",
        "scheduling_priority_override",
        "attempt_duration_seconds",
        "retry_attempts",
        "array_size",
        "tags",
        "propagate_tags",
        "depends_on",
        "aws_conn_id",
        "region_name",
        "verify",
        "queued_warning_after",
        "queued_timeout",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "parameters": "json",
        "tags": "json",
        "depends_on": "json",
    }
    operator_extra_links = (AwsBatchJobLink(), AwsBatchJobLogsLink())
    link_class = AwsBatchJobLink
    decode = staticmethod(decode_run)
    is_transient = staticmethod(is_transient)
    log_tail_lines = LOG_TAIL_LINES
    ui_color = "#f4a460"

    def __init__(
        self,
        *,
        job_definition: str,
        job_queue: str | None = None,
        parameters: dict[str, Any] | str | None = None,
        share_identifier: str | None = None,
        scheduling_priority_override: int | str | None = None,
        attempt_duration_seconds: int | str | None = None,
        retry_attempts: int | str | None = None,
        array_size: int | str | None = None,
        tags: dict[str, str] | str | None = None,
        propagate_tags: bool | str | None = None,
        depends_on: list[dict[str, str]] | str | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """``kwargs``: the shared arguments (see :class:`PolysyncJobOperator`) and ``BaseOperator``'s."""
        super().__init__(**kwargs)
        self.job_definition = job_definition
        self.job_queue = job_queue
        self.parameters = reject_non_finite_numbers(parameters)
        self.share_identifier = share_identifier
        self.scheduling_priority_override = scheduling_priority_override
        self.attempt_duration_seconds = attempt_duration_seconds
        self.retry_attempts = retry_attempts
        self.array_size = array_size
        if isinstance(tags, Mapping):  # Airflow 3.1 stores rendered fields as JSON before execute: no int keys
            for key, tag_value in tags.items():
                if not isinstance(key, str):
                    check_tag_key(key, tag_value)
        self.tags = tags
        self.propagate_tags = propagate_tags
        self.depends_on = depends_on
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self._request: dict[str, Any] | None = None

    @cached_property
    def hook(self) -> AwsBatchHook:
        return AwsBatchHook(
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name or None,
            verify=self.verify,
            config=self.botocore_config,
        )

    def prepare(self, context: Context, key: TaskInstanceKey) -> None:
        self.hook.conn_config  # noqa: B018 - looks the connection up: one that is not defined fails here
        self._request = build_submit_job_request(
            job_name=job_name_for(key),
            job_definition=self.job_definition,
            job_queue=self.hook.default_job_queue if self.job_queue in (None, "") else self.job_queue,
            parameters=self.parameters,
            share_identifier=self.share_identifier,
            scheduling_priority_override=self.scheduling_priority_override,
            attempt_duration_seconds=self.attempt_duration_seconds,
            retry_attempts=self.retry_attempts,
            array_size=self.array_size,
            tags=self.tags,
            propagate_tags=self.propagate_tags,
            depends_on=self.depends_on,
        )

    def find_existing_jobs(self, key: TaskInstanceKey) -> list[ExistingJob]:
        assert self._request is not None
        try:
            found = self.hook.find_jobs_named(self._request["jobName"], self._request["jobQueue"])
        except ClientError as err:
            self._fail_if_missing(err, "ListJobs")
            raise
        return [existing_job(summary, detail) for summary, detail in found]

    def _fail_if_missing(self, err: ClientError, call: str) -> None:
        """A job queue or definition that does not exist cannot heal: fail the task at once, without retrying,
        in one line naming it (as the Azure operator does for a missing template job)."""
        assert self._request is not None
        which = missing_resource(err)
        if which is None:
            return
        region, conn_id = self.hook.effective_region, self.aws_conn_id
        where = f"AWS Batch region {region}" + (f" (connection {conn_id})" if conn_id else "")
        # discover looks where the task looked: the same connection, and the operator's region if it set one
        options = (f" --conn-id {conn_id}" if conn_id else "") + (f" --region {region}" if self.region_name else "")
        discover = f"`polysync-airflow discover aws-batch{options}`"
        said = f"({call}: {err.response.get('Error', {}).get('Message')})"
        if which == "job_definition":
            raise AirflowFailException(
                f"Job definition {self._request['jobDefinition']} does not exist in {where} or has no ACTIVE "
                f"revision: check job_definition ({discover} lists the ACTIVE job definitions) {said}"
            ) from None
        field = "job_queue" if self.job_queue not in (None, "") else "default_job_queue in the connection's extra"
        raise AirflowFailException(
            f"Job queue {self._request['jobQueue']} does not exist in {where}: check {field} and the region "
            f"({discover} lists the job definitions this connection and region reach) {said}"
        ) from None

    def submit(self, key: TaskInstanceKey) -> SubmittedRun:
        assert self._request is not None
        # The task instance's identity and the try (for the next try and the orphan sweep), never a secret.
        marks = key.identity_marks(self.polling.cancel_on_kill)
        request = {**self._request, "tags": {**self._request.get("tags", {}), **marks}}
        self.log.info(
            "Submitting AWS Batch job %s: definition %s, queue %s",
            request["jobName"],
            request["jobDefinition"],
            request["jobQueue"],
        )
        try:
            job_id = self.hook.submit_job(request)["jobId"]
        except ClientError as err:
            self._fail_if_missing(err, "SubmitJob")
            raise
        return SubmittedRun(job_id, request["jobName"], AwsBatchJobLink.url(self.hook, job_id))

    def reattach(self, job: ExistingJob) -> SubmittedRun:
        assert self._request is not None
        return SubmittedRun(job.run_id, self._request["jobName"], AwsBatchJobLink.url(self.hook, job.run_id))

    def report_outcome(self, context: Context, run_id: str, status: RunStatus, info: dict[str, Any]) -> str:
        if status is RunStatus.SUCCESS and not self.fetch_logs and not self.array_size:
            return ""  # nothing to add: no log lines wanted, no children to count
        try:
            job = self.hook.describe_job(run_id)
        except Exception as err:  # the outcome stands; only its details are missing
            self.log.warning("Could not describe job %s for its details: %s", run_id, describe_error(err))
            return ""
        if job is None:
            return ""
        details = [self._report_array(job, status, info), self._report_logs(context, job, status, info)]
        return "; ".join(detail for detail in details if detail)

    def _report_array(self, job: dict[str, Any], status: RunStatus, info: dict[str, Any]) -> str:
        """An array job's final counts into ``info``; on failure, its failed children (the text returned)."""
        size = array_size(job)
        if not size:
            return ""
        counts = array_counts(job)
        info["array"] = {"size": size}
        if counts is not None:
            info["array"].update(succeeded=counts["succeeded"], failed=counts["failed"])
            if counts["running"] + counts["waiting"]:
                info["array"]["unfinished"] = counts["running"] + counts["waiting"]
        if status is not RunStatus.FAILED or (counts is not None and not counts["failed"]):
            return ""
        parent_id = job.get("jobId") or info["run_id"]
        try:
            failed = self.hook.list_array_children(parent_id, "FAILED")
        except Exception as err:  # the outcome stands; only its details are missing
            self.log.warning("Could not list the failed children of array job %s: %s", parent_id, describe_error(err))
            return f"{counts['failed']} of {size} children failed" if counts else ""
        by_index = sorted(
            ((index, child) for child in failed if (index := child_index(child)) is not None), key=lambda p: p[0]
        )
        if not by_index:
            return f"{counts['failed']} of {size} children failed" if counts else ""
        if counts is None:
            info["array"]["failed"] = len(by_index)
        details = [failed_children_text([index for index, _ in by_index], size)]
        first_index, first = by_index[0]
        try:
            first = self.hook.describe_job(first["jobId"]) or first
        except Exception as err:  # the summary from ListJobs still has the reason and exit code
            self.log.warning("Could not describe child job %s: %s", first["jobId"], describe_error(err))
        reason = child_failure_text(first)
        if reason:
            details.append(f"child {first_index}: {reason}")
        return "; ".join(details)

    def _report_logs(self, context: Context, job: dict[str, Any], status: RunStatus, info: dict[str, Any]) -> str:
        """The end of the job's CloudWatch log stream into the task log, and the logs link.

        Always when the run did not succeed; on success only with ``fetch_logs``. What cannot be read (no
        stream, no permission, any other error) is a warning: the outcome stands. Returns "" (the lines are
        in the task log, not in the failure message)."""
        succeeded = status is RunStatus.SUCCESS
        if succeeded and not self.fetch_logs:
            return ""
        if (job.get("arrayProperties") or {}).get("size") is not None:
            return ""  # an array parent has no stream of its own; its children have one each
        job_id = job.get("jobId")
        log: JobLogStream | None = None
        try:
            log = self.hook.job_log_stream(job)
            AwsBatchJobLogsLink.persist(context, AwsBatchJobLogsLink.url(self.hook, log))
            lines = self.hook.tail_log(log, self.log_tail_lines)
        except NoLogStream as err:
            self.log.warning("No log output of job %s to show: %s", job_id, err)
            return ""
        except Exception as err:  # the outcome stands; only the log lines are missing
            self.log.warning(
                "Could not read the log output of job %s%s: %s",
                job_id,
                f" (CloudWatch log group {log.group}, stream {log.stream})" if log else "",
                log_read_problem(err),
            )
            return ""
        write = self.log.info if succeeded else self.log.error
        if not lines:
            write(
                "The log stream of job %s is empty (CloudWatch log group %s, stream %s)", job_id, log.group, log.stream
            )
            return ""
        write(
            "Last %d lines of the output of job %s (CloudWatch log group %s, stream %s):\n%s",
            len(lines),
            job_id,
            log.group,
            log.stream,
            "\n".join(lines),
        )
        return ""

    def make_trigger(self, run: SubmittedRun, deadline: float | None) -> AwsBatchJobTrigger:
        return AwsBatchJobTrigger(
            job_id=run.run_id,
            job_name=run.job_name,
            aws_conn_id=self.aws_conn_id,
            region_name=self.hook.effective_region,
            verify=self.verify,
            botocore_config=self.botocore_config,
            **asdict(replace(self.polling, deadline=deadline)),
        )
