"""The Azure Batch job type: clone a template job into a new job with one task, wait, report."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from polysync_airflow.compat import AirflowFailException
from polysync_airflow.hooks.azure_batch import LOG_TAIL_LINES, AzureBatchHook, split_run_id
from polysync_airflow.links.azure_batch import AzureBatchJobLink, AzureBatchTaskLink
from polysync_airflow.operators.base import PolysyncJobOperator, SubmittedRun
from polysync_airflow.ownership import ExistingJob, TaskInstanceKey
from polysync_airflow.requests.azure_batch import (
    TASK_ID,
    AzureJobPlan,
    AzureRunRequest,
    build_job_plan,
    build_run_request,
    job_id_for,
)
from polysync_airflow.status import RunStatus
from polysync_airflow.statuses.azure_batch import decode_run, existing_job, is_transient, log_read_problem
from polysync_airflow.triggers.azure_batch import AzureBatchJobTrigger
from polysync_airflow.validation import reject_non_finite_numbers

if TYPE_CHECKING:
    from airflow.sdk import Context


class AzureBatchJobOperator(PolysyncJobOperator):
    """Run one task in a new Azure Batch job cloned from a template job, and wait for it.

    :param template_job_id: an existing Batch job whose pool, constraints and job manager task defaults
        (command line, container image, container run options) the new job takes.
    :param parameters: become the task's environment variables (values as strings).
    :param command_line: overrides the template's command line.
    :param container_image: overrides the template's container image.
    :param container_run_options: overrides the template's container run options.
    :param azure_batch_conn_id: an ``azure_batch`` or ``polysync_azure_batch`` connection.

    Returns (XCom) ``{run_id, status, message, exit_code, monitor_url, job_name}`` with
    ``run_id = "{jobId}/{taskId}"``.

    Extra links: **Azure Batch Job** and **Azure Batch Task** (the portal pages of the job and its task),
    there as soon as the job is submitted. When the run fails, the last lines of the task's ``stderr.txt``
    (of ``stdout.txt`` when ``stderr.txt`` is empty or cannot be read) go into the task log; when it
    succeeds and ``fetch_logs=True``, the last lines of ``stdout.txt``. A file that cannot be read gives a
    warning, never a task failure.
    """

    template_fields: Sequence[str] = (
        "template_job_id",
        "parameters",
        "command_line",
        "container_image",
        "container_run_options",
        "azure_batch_conn_id",
        "queued_warning_after",
        "queued_timeout",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"parameters": "json"}
    operator_extra_links = (AzureBatchJobLink(), AzureBatchTaskLink())
    link_class = AzureBatchJobLink
    decode = staticmethod(decode_run)
    is_transient = staticmethod(is_transient)
    log_tail_lines = LOG_TAIL_LINES
    ui_color = "#0078d4"

    def __init__(
        self,
        *,
        template_job_id: str,
        parameters: dict[str, Any] | str | None = None,
        command_line: str | None = None,
        container_image: str | None = None,
        container_run_options: str | None = None,
        azure_batch_conn_id: str = "azure_batch_default",
        **kwargs: Any,
    ) -> None:
        """``kwargs``: the shared arguments (see :class:`PolysyncJobOperator`) and ``BaseOperator``'s."""
        super().__init__(**kwargs)
        self.template_job_id = template_job_id
        self.parameters = reject_non_finite_numbers(parameters)
        self.command_line = command_line
        self.container_image = container_image
        self.container_run_options = container_run_options
        self.azure_batch_conn_id = azure_batch_conn_id
        self._request: AzureRunRequest | None = None
        self._taken_job_ids: set[str] = set()

    @cached_property
    def hook(self) -> AzureBatchHook:
        return AzureBatchHook(self.azure_batch_conn_id)

    def persist_links(self, context: Context, run: SubmittedRun) -> None:
        """The job's portal link, and the task's (``run_id`` = ``{jobId}/{taskId}``), once submitted or reattached."""
        super().persist_links(context, run)
        task_url = AzureBatchTaskLink.url(self.hook, run.run_id)
        AzureBatchTaskLink.persist(context, task_url)
        if task_url:
            self.log.info("Task %s in the Azure portal: %s", run.run_id, task_url)

    def prepare(self, context: Context, key: TaskInstanceKey) -> None:
        self._request = build_run_request(
            template_job_id=self.template_job_id,
            parameters=self.parameters,
            command_line=self.command_line,
            container_image=self.container_image,
            container_run_options=self.container_run_options,
        )
        self.hook.validate()

    def find_existing_jobs(self, key: TaskInstanceKey) -> list[ExistingJob]:
        """This try's job id, then the earlier tries' (newest first), up to the first one that exists."""
        for try_number in range(key.try_number, 0, -1):
            job_id = job_id_for(key, try_number)
            try:
                job = self.hook.find_job(job_id)
            except Exception as err:
                raise self.hook.explain(err) from err
            if job is not None:
                self._taken_job_ids.add(job_id)
                return [existing_job(job, TASK_ID, try_number)]
        return []

    def _read_template(self, template_job_id: str) -> tuple[Any, str]:
        template = self.hook.find_job(template_job_id, select=None)
        if template is None:
            raise AirflowFailException(
                f"Template job {template_job_id!r} does not exist in Batch account {self.hook.account_name!r}: "
                "check template_job_id (`polysync-airflow discover azure-batch` lists the jobs)"
            )
        pool_id = (template.get("poolInfo") or {}).get("poolId")
        if not pool_id:
            raise AirflowFailException(
                f"Template job {template_job_id!r} has no poolInfo.poolId (auto pools are not supported): "
                "give the template job an existing pool"
            )
        if self.hook.find_pool(pool_id) is None:
            raise AirflowFailException(
                f"PoolNotFound: pool {pool_id!r} of template job {template_job_id!r} does not exist in "
                f"Batch account {self.hook.account_name!r}: update the template job's pool"
            )
        return template, pool_id

    def _plan(self, job_id: str, marks: dict[str, str] | None = None) -> AzureJobPlan:
        assert self._request is not None
        try:
            template, pool_id = self._read_template(self._request.template_job_id)
        except Exception as err:
            raise self.hook.explain(err) from err
        self.log.info("Job %s: from template %s on pool %s", job_id, self._request.template_job_id, pool_id)
        return build_job_plan(
            self._request, job_id=job_id, display_name=f"{self.dag_id}.{self.task_id}", template=template, marks=marks
        )

    def submit(self, key: TaskInstanceKey) -> SubmittedRun:
        job_id = job_id_for(key, key.try_number)
        if job_id in self._taken_job_ids:  # this very try ran before (e.g. `airflow tasks test` again)
            job_id = f"{job_id}-{uuid.uuid4().hex[:8]}"
        # The task instance's identity and the try (for the orphan sweep) as job metadata, never a secret.
        plan = self._plan(job_id, key.identity_marks(self.polling.cancel_on_kill))
        self.log.info("Creating Azure Batch job %s", job_id)
        try:
            if not self.hook.create_job(plan.job):
                # JobExists for an id that was free a moment ago: the SDK retried a create the service had accepted.
                self.log.info("Job %s exists already: an earlier attempt of this submission created it", job_id)
        except Exception as err:
            raise self.hook.explain(err) from err
        return self._finish_submission(job_id, plan.task)

    def reattach(self, job: ExistingJob) -> SubmittedRun:
        job_id, _ = split_run_id(job.run_id)
        # The try that created the job may have died before adding its task.
        task = None if self.hook.find_task(job.run_id) is not None else self._plan(job_id).task
        return self._finish_submission(job_id, task)

    def _finish_submission(self, job_id: str, task: dict[str, Any] | None) -> SubmittedRun:
        """Add the task (unless it is there) and let the job end with it. Safe to repeat."""
        try:
            if task is not None:
                self.hook.add_task(job_id, task)
            # Created with noaction: a job with no tasks counts as complete, so terminatejob could end it early.
            self.hook.end_job_with_its_tasks(job_id)
        except Exception as err:
            if not is_transient(err):  # a transient fault leaves the job for the retry to find and finish
                self._remove_job(job_id)
            raise self.hook.explain(err) from err
        return SubmittedRun(f"{job_id}/{TASK_ID}", job_id, AzureBatchJobLink.url(self.hook, job_id))

    def _remove_job(self, job_id: str) -> None:
        """Leave nothing behind when the submission could not be completed."""
        self.log.warning("Submission of job %s failed part-way; deleting the job", job_id)
        try:
            self.hook.delete_job(job_id)
        except Exception as err:
            self.log.error("Could not delete job %s: %s. Delete it in the Azure portal.", job_id, err)

    def report_outcome(self, context: Context, run_id: str, status: RunStatus, info: dict[str, Any]) -> str:
        """The end of the task's output into the task log: on failure the last lines of ``stderr.txt`` (of
        ``stdout.txt`` when ``stderr.txt`` has none to give), on success with ``fetch_logs`` those of
        ``stdout.txt``. A file that cannot be read is a warning; the outcome stands."""
        files: tuple[str, ...]
        if status is RunStatus.FAILED:
            files, write = ("stderr.txt", "stdout.txt"), self.log.error
        elif status is RunStatus.SUCCESS and self.fetch_logs:
            files, write = ("stdout.txt",), self.log.info
        else:
            return ""
        try:
            task_url = AzureBatchTaskLink.stored_url(context)
        except Exception:  # the heading goes without the link
            task_url = ""
        where = f" (task page: {task_url})" if task_url else ""
        for file_name in files:
            try:
                lines = self.hook.tail_log(run_id, file_name, self.log_tail_lines)
            except Exception as err:
                self.log.warning("Could not read %s of run %s: %s%s", file_name, run_id, log_read_problem(err), where)
                continue
            if lines:
                write("Last %d line(s) of %s of run %s%s:\n%s", len(lines), file_name, run_id, where, "\n".join(lines))
                return ""
            self.log.info("%s of run %s is empty%s", file_name, run_id, where)
        return ""

    def make_trigger(self, run: SubmittedRun, deadline: float | None) -> AzureBatchJobTrigger:
        return AzureBatchJobTrigger(
            run_id=run.run_id,
            job_name=run.job_name,
            azure_batch_conn_id=self.azure_batch_conn_id,
            **asdict(replace(self.polling, deadline=deadline)),
        )
