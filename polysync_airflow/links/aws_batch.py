"""The AWS Batch run links, and how their URLs are built: from the connection's template, else for the console of
the region's partition. A template that cannot be filled in falls back to the console, with a warning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

from polysync_airflow.links.base import PolysyncRunLink

if TYPE_CHECKING:
    from polysync_airflow.hooks.aws_batch import AwsBatchHook, JobLogStream

DEFAULT_MONITOR_LINK_TEMPLATE = (
    "https://{region}.console.aws.amazon.com/batch/home?region={region}#jobs/detail/{job_id}"
)
"""The commercial (``aws``) partition's console page of a job. China and GovCloud regions get their partition's
console (``console.amazonaws.cn``, ``console.amazonaws-us-gov.com``) through the Amazon provider's Batch link."""
DEFAULT_LOGS_LINK_TEMPLATE = (
    "https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
    "#logsV2:log-groups/log-group/{log_group}/log-events/{log_stream}"
)
"""The commercial partition's CloudWatch page of a log stream; other partitions as for the job link."""
COMMERCIAL_CONSOLE_DOMAIN = "aws.amazon.com"


class AwsBatchJobLink(PolysyncRunLink):
    """The AWS Batch console page of the submitted job."""

    name = "AWS Batch Job"

    @staticmethod
    def url(hook: AwsBatchHook, job_id: str) -> str:
        """The console page of a job: the connection's ``monitor_link_template`` (``{region}``, ``{job_id}``), else
        the console of the region's partition."""
        values = {"region": hook.effective_region, "job_id": quote(job_id, safe="")}
        template = hook.setting("monitor_link_template")
        if template:
            try:
                return template.format(**values)
            except (KeyError, IndexError, ValueError) as err:
                _warn_unusable(hook, "monitor_link_template", template, "{region} and {job_id}", err)
        domain = hook.console_domain(values["region"])
        if domain in (None, COMMERCIAL_CONSOLE_DOMAIN):
            return DEFAULT_MONITOR_LINK_TEMPLATE.format(**values)
        from airflow.providers.amazon.aws.links.batch import BatchJobDetailsLink

        return BatchJobDetailsLink().format_link(
            aws_domain=domain, region_name=values["region"], job_id=values["job_id"]
        )


class AwsBatchJobLogsLink(PolysyncRunLink):
    """The CloudWatch console page of the job's log stream, stored once the run has ended and the stream is known."""

    name = "AWS Batch Job Logs"

    @staticmethod
    def url(hook: AwsBatchHook, log: JobLogStream) -> str:
        """The CloudWatch page of a job's log stream: the connection's ``logs_link_template`` (``{region}``,
        ``{log_group}``, ``{log_stream}``), else the console of the stream region's partition."""
        template = hook.setting("logs_link_template")
        if template:
            try:
                return logs_console_url(template, log.region, log.group, log.stream)
            except (KeyError, IndexError, ValueError) as err:
                _warn_unusable(hook, "logs_link_template", template, "{region}, {log_group} and {log_stream}", err)
        domain = hook.console_domain(log.region)
        if domain in (None, COMMERCIAL_CONSOLE_DOMAIN):
            return logs_console_url(DEFAULT_LOGS_LINK_TEMPLATE, log.region, log.group, log.stream)
        from airflow.providers.amazon.aws.links.logs import CloudWatchEventsLink

        # The provider's CloudWatch link quotes the group and stream itself (quote_plus, as logs_console_url does).
        return CloudWatchEventsLink().format_link(
            aws_domain=domain, awslogs_region=log.region, awslogs_group=log.group, awslogs_stream_name=log.stream
        )


def logs_console_url(template: str, region: str, log_group: str, log_stream: str) -> str:
    """A log stream's console page; group and stream are quoted as the Amazon provider's CloudWatch link does."""
    return template.format(region=region, log_group=quote_plus(log_group), log_stream=quote_plus(log_stream))


def _warn_unusable(hook: Any, setting: str, template: str, placeholders: str, err: Exception) -> None:
    hook.log.warning(
        "%s %r in connection %s is not usable (%s); it may use only %s. Using the AWS console link instead.",
        setting,
        template,
        hook.aws_conn_id,
        err,
        placeholders,
    )
