"""Azure Batch: the connection hook and the status table of the Azure Batch job type."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import quote, urlparse

from airflow.sdk import BaseHook

from polysync_airflow.compat import AirflowException, AirflowFailException
from polysync_airflow.ownership import WATCHED_MARK, ExistingJob
from polysync_airflow.polling import is_transient
from polysync_airflow.status import RunState, RunStatus

CANCEL_REASON = "Cancelled by Polysync"
DEFAULT_MONITOR_LINK_TEMPLATE = (
    "https://portal.azure.com/#resource/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
    "/providers/Microsoft.Batch/batchAccounts/{account}/jobs/{job_id}"
)
TASK_LINK_SUFFIX = "/tasks/{task_id}"
BATCH_SCOPE = "https://batch.core.windows.net//.default"

# The seed's status table: Batch task state -> run status (completed is decided by the exit code).
AZURE_TASK_STATUS: Mapping[str, RunStatus] = {
    "active": RunStatus.STARTING,
    "preparing": RunStatus.STARTING,
    "running": RunStatus.RUNNING,
    "completed": RunStatus.SUCCESS,  # exit code 0; any other exit code or a failure: Failed
}
# Reasons the service itself gives for ending a job; any other terminate reason is a user's cancel.
SERVICE_TERMINATE_REASONS = ("AllTasksComplete", "JMComplete", "MaxWallClockTimeExpiry", "TaskFailed")


def _get(obj: Any, *path: str) -> Any:
    """Follow wire (camelCase) keys; azure-batch models are mappings of their wire JSON too."""
    for name in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(name)
    return obj


def decode_task(run_id: str, task: Any | None, job: Any | None = None) -> RunState:
    """One task (and its job, for scheduling errors and terminate reasons) as a :class:`RunState`."""
    if task is None:
        return RunState(run_id, RunStatus.UNKNOWN, f"Azure Batch task {run_id} was not found")
    native = _get(task, "state")
    exit_code = _get(task, "executionInfo", "exitCode")
    failure = _get(task, "executionInfo", "failureInfo")
    failure_message = _get(failure, "message")
    terminate_reason = _get(job, "executionInfo", "terminateReason")
    scheduling_error = _get(job, "executionInfo", "schedulingError")
    cancelled_reason = (
        terminate_reason if terminate_reason and terminate_reason not in SERVICE_TERMINATE_REASONS else None
    )
    status = AZURE_TASK_STATUS.get(native or "", RunStatus.UNKNOWN)

    if status is RunStatus.SUCCESS:
        if _get(failure, "code") == "TaskEnded" or (cancelled_reason and exit_code != 0):
            return RunState(
                run_id,
                RunStatus.CANCELLED,
                cancelled_reason or failure_message or "task terminated",
                exit_code,
                native,
            )
        if exit_code != 0 or failure is not None:
            if terminate_reason == "MaxWallClockTimeExpiry":
                failure_message = "the job exceeded its maxWallClockTime constraint (MaxWallClockTimeExpiry)"
            message = failure_message or f"Task exit code: {exit_code}"
            if failure_message and exit_code is not None:
                message = f"{failure_message} (exit code {exit_code})"
            return RunState(run_id, RunStatus.FAILED, message, exit_code, native)
        return RunState(run_id, RunStatus.SUCCESS, f"Task exit code: {exit_code}", exit_code, native)
    if cancelled_reason and status is RunStatus.STARTING:
        # a terminated job leaves its active tasks active forever
        return RunState(run_id, RunStatus.CANCELLED, cancelled_reason, exit_code, native)
    if scheduling_error is not None and status is RunStatus.STARTING:
        code, message = _get(scheduling_error, "code"), _get(scheduling_error, "message")
        return RunState(run_id, RunStatus.FAILED, f"job scheduling error {code}: {message}", exit_code, native)
    return RunState(run_id, status, failure_message or "", exit_code, native)


def _ended_cleanly(task: Any) -> bool:
    """Completed with exit code 0 and no failure: a success whatever its job says."""
    info = _get(task, "executionInfo")
    return _get(task, "state") == "completed" and _get(info, "exitCode") == 0 and _get(info, "failureInfo") is None


def split_run_id(run_id: str) -> tuple[str, str]:
    job_id, _, task_id = run_id.partition("/")
    return job_id, task_id


def is_watched(job: Any) -> bool:
    return any(_get(item, "name") == WATCHED_MARK for item in _get(job, "metadata") or [])


def existing_job(job: Any, task_id: str, try_number: int) -> ExistingJob:
    """A Batch job (``id``, ``state``, ``metadata``) as :class:`ExistingJob`."""
    state = _get(job, "state") or ""
    return ExistingJob(
        run_id=f"{_get(job, 'id')}/{task_id}",
        native_status=state,
        finished=state == "completed",
        cancelling=state in ("terminating", "deleting"),
        watched=is_watched(job),
        try_number=try_number,
    )


def watched_metadata(job: Any, watcher: str) -> dict[str, Any] | None:
    """The job update that marks an active job watched, or None (marked already, or no longer active)."""
    if _get(job, "state") != "active" or is_watched(job):
        return None
    items = [{"name": _get(i, "name"), "value": _get(i, "value")} for i in _get(job, "metadata") or []]
    return {"metadata": [*items, {"name": WATCHED_MARK, "value": watcher}]}


# azure-core logs every request and response at INFO: a line per poll in the triggerer's and task's
# logs. Ours go to a logger of their own that shows only warnings, so logs read as a status timeline.
_HTTP_LOG = logging.getLogger("polysync_airflow.azure_http")
_HTTP_LOG.setLevel(logging.WARNING)
_CLIENT_OPTIONS: dict[str, Any] = {"credential_scopes": [BATCH_SCOPE]}


def _client_options() -> dict[str, Any]:
    from azure.core.pipeline.policies import HttpLoggingPolicy

    return {**_CLIENT_OPTIONS, "http_logging_policy": HttpLoggingPolicy(logger=_HTTP_LOG)}


_WATCH_FIELDS = ["id", "state", "metadata"]
_POLL_FIELDS = ["id", "state", "lastModified", "executionInfo", "metadata"]
_TASK_POLL_FIELDS = ["id", "state", "executionInfo"]  # what decode_task reads
TASK_READS_IN_FLIGHT = 16
FULL_READ_SECONDS = 300.0  # a run's task is read at least this often, whatever its job shows


class AzureRunReader:
    """Reads many runs for the shared poller in few calls: ``{run_id: (task, job)}`` (absent: not found).

    Each run is its own job, which Batch terminates when its task completes. One listing of our active
    jobs (``$filter`` on the id prefix and state, ``$select`` of the fields the status needs) tells
    which runs changed; a task is read only for a run whose job changed or left the listing, whose task
    has not started running yet (so ``Running`` is seen), or that was last read long ago.
    """

    def __init__(self, job_prefix: str = "polysync-") -> None:
        self._filter = f"startswith(id,'{job_prefix}') and state eq 'active'"
        self._seen: dict[str, tuple[float, Any, Any]] = {}  # run id -> (when, task, job)

    async def __call__(self, client: Any, run_ids: Sequence[str]) -> dict[str, tuple[Any, Any]]:
        now = time.monotonic()
        active = {job.id: job async for job in client.list_jobs(filter=self._filter, select=_POLL_FIELDS)}
        answers: dict[str, tuple[Any, Any]] = {}
        stale = []
        for run_id in run_ids:
            job = active.get(split_run_id(run_id)[0])
            seen = self._seen.get(run_id)
            if (
                seen is not None
                and job is not None
                and now - seen[0] < FULL_READ_SECONDS
                and _get(seen[1], "state") == "running"
                and _get(job, "lastModified") == _get(seen[2], "lastModified")
            ):
                answers[run_id] = (seen[1], job)
            else:
                stale.append((run_id, job))
        gate = asyncio.Semaphore(TASK_READS_IN_FLIGHT)

        async def read(run_id: str, job: Any) -> None:
            from azure.core.exceptions import ResourceNotFoundError

            job_id, task_id = split_run_id(run_id)
            async with gate:
                try:
                    task = await client.get_task(job_id, task_id, select=_TASK_POLL_FIELDS)
                    if job is None and not _ended_cleanly(task):  # its job tells a cancel or scheduling error
                        job = await client.get_job(job_id, select=_POLL_FIELDS)
                except ResourceNotFoundError:
                    self._seen.pop(run_id, None)
                    return
            self._seen[run_id] = (now, task, job)
            answers[run_id] = (task, job)

        await asyncio.gather(*(read(run_id, job) for run_id, job in stale))
        for run_id in [r for r, (when, _, _) in self._seen.items() if now - when > 2 * FULL_READ_SECONDS]:
            del self._seen[run_id]  # runs that left
        return answers


@dataclass(frozen=True)
class JobTemplateInfo:
    """One Batch job that can serve as a template (discovery)."""

    id: str
    display_name: str | None
    state: str | None


class AzureBatchHook(BaseHook):
    """Azure Batch through an ``azure_batch`` (official provider) or ``polysync_azure_batch`` connection.

    Shared key: login = account name, password = account key, extra ``account_url``. Without a key,
    Microsoft Entra ID through azure-identity (managed identity: extra ``managed_identity_client_id``;
    workload identity: ``workload_identity_tenant_id``), as the official hook does. Polysync settings in
    the extra: ``subscription_id`` and ``resource_group`` (for the portal links of the job and its task),
    optional ``monitor_link_template`` (placeholders ``{subscription_id}``, ``{resource_group}``, ``{account}``,
    ``{job_id}``) and ``task_link_template`` (the same and ``{task_id}``; see :meth:`task_url`).
    """

    conn_name_attr = "azure_batch_conn_id"
    default_conn_name = "azure_batch_default"
    conn_type = "polysync_azure_batch"
    hook_name = "Polysync Azure Batch"

    def __init__(self, azure_batch_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.azure_batch_conn_id = azure_batch_conn_id

    @cached_property
    def connection(self) -> Any:
        return self.get_connection(self.azure_batch_conn_id)

    def _setting(self, name: str) -> str | None:
        extra = self.connection.extra_dejson
        for key in (name, f"extra__azure_batch__{name}", f"extra__{self.conn_type}__{name}"):
            if extra.get(key):
                return str(extra[key])
        return None

    @cached_property
    def account_url(self) -> str:
        url = self._setting("account_url")
        if not url:
            raise AirflowException(
                f"Connection {self.azure_batch_conn_id!r} has no account_url: set the extra 'account_url' to "
                "the Batch account endpoint, e.g. https://<account>.<region>.batch.azure.com"
            )
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path not in ("", "/"):
            raise AirflowException(
                f"Connection {self.azure_batch_conn_id!r} has a malformed account_url {url!r}: it must look like "
                "https://<account>.<region>.batch.azure.com (scheme and host, no path)"
            )
        return url.rstrip("/")

    @property
    def account_name(self) -> str:
        return self.connection.login or (urlparse(self.account_url).hostname or "").split(".")[0]

    def validate(self) -> None:
        """Check the connection holds what a call needs (no request is made)."""
        url, conn = self.account_url, self.connection
        if conn.password and not conn.login:
            raise AirflowFailException(
                f"Connection {self.azure_batch_conn_id!r} has an account key (password) but no account name (login): "
                "set the login to the Batch account name, or remove the key to use Microsoft Entra ID"
            )
        if not conn.password and urlparse(url).scheme != "https":
            raise AirflowFailException(
                f"Connection {self.azure_batch_conn_id!r} has no account key (password), so it would use Microsoft "
                f"Entra ID, which needs an https account_url, not {url!r}: set the password to the account key, or "
                "use the https endpoint"
            )

    def monitor_url(self, job_id: str) -> str:
        """The portal page of a job, or "" (with a warning naming the missing extra) when unknown."""
        template = self._setting("monitor_link_template") or DEFAULT_MONITOR_LINK_TEMPLATE
        return self._portal_url(template, "monitor_link_template", f"job {job_id}", job_id=job_id)

    def task_url(self, run_id: str) -> str:
        """The portal page of a run's task (``run_id`` = ``{jobId}/{taskId}``), or "" (with a warning).

        ``task_link_template`` in the extra when set; otherwise the job link's template (``monitor_link_template``
        or the portal default) followed by ``/tasks/{task_id}``, which needs that template to end with
        ``{job_id}`` (the portal's form: ``.../batchAccounts/{account}/jobs/{job_id}/tasks/{task_id}``).
        """
        job_id, task_id = split_run_id(run_id)
        template = self._setting("task_link_template")
        setting = "task_link_template"
        if not template:
            job_template = self._setting("monitor_link_template") or DEFAULT_MONITOR_LINK_TEMPLATE
            if not job_template.endswith("{job_id}"):
                self.log.warning(
                    "No Azure portal link for task %s: monitor_link_template of connection %s does not end with "
                    "{job_id}, so the task page cannot be derived from it; set 'task_link_template' in the extra.",
                    run_id,
                    self.azure_batch_conn_id,
                )
                return ""
            template, setting = job_template + TASK_LINK_SUFFIX, "monitor_link_template"
        return self._portal_url(template, setting, f"task {run_id}", job_id=job_id, task_id=task_id)

    def _portal_url(self, template: str, setting: str, what: str, **ids: str) -> str:
        values = {
            "subscription_id": self._setting("subscription_id"),
            "resource_group": self._setting("resource_group"),
            "account": self.account_name,
            **{name: quote(value, safe="") for name, value in ids.items()},
        }
        needed = [name for name in ("subscription_id", "resource_group") if f"{{{name}}}" in template]
        missing = [name for name in needed if not values[name]]
        if missing:
            self.log.warning(
                "No Azure portal link for %s: set %s in the extra of connection %s.",
                what,
                " and ".join(repr(m) for m in missing),
                self.azure_batch_conn_id,
            )
            return ""
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError) as err:
            self.log.warning(
                "%s %r in connection %s is not usable (%s); it may use %s.",
                setting,
                template,
                self.azure_batch_conn_id,
                err,
                ", ".join(f"{{{name}}}" for name in values),
            )
            return ""

    # -- clients -----------------------------------------------------------------------------------------

    def _credential(self, asynchronous: bool) -> Any:
        conn = self.connection
        if conn.login and conn.password:
            from azure.core.credentials import AzureNamedKeyCredential

            return AzureNamedKeyCredential(conn.login, conn.password)
        if asynchronous:
            from azure.identity.aio import DefaultAzureCredential
        else:
            from azure.identity import DefaultAzureCredential
        kwargs: dict[str, Any] = {}
        if client_id := self._setting("managed_identity_client_id"):
            kwargs["managed_identity_client_id"] = client_id
        if tenant_id := self._setting("workload_identity_tenant_id"):
            kwargs.update(workload_identity_tenant_id=tenant_id, additionally_allowed_tenants=[tenant_id])
        return DefaultAzureCredential(**kwargs)

    @cached_property
    def client(self) -> Any:
        """The sync ``azure.batch.BatchClient`` (worker side)."""
        from azure.batch import BatchClient

        return BatchClient(self.account_url, self._credential(asynchronous=False), **_client_options())

    def get_conn(self) -> Any:
        """The sync ``azure.batch.BatchClient`` (the same object as :attr:`client`), as Airflow hooks offer it."""
        return self.client

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: list one job (``maxresults=1``, ids only), the cheapest call that needs the
        account's credentials. A refusal answers the service's own code and message."""
        try:
            self.validate()
            next(iter(self.client.list_jobs(max_results=1, select=["id"])), None)
        except Exception as err:
            return False, service_message(err)
        return True, f"Connected to Azure Batch account {self.account_name!r} at {self.account_url}"

    def async_client(self) -> Any:
        """A new ``azure.batch.aio.BatchClient`` (triggerer side); use it with ``async with``."""
        from azure.batch.aio import BatchClient

        return BatchClient(self.account_url, self._credential(asynchronous=True), **_client_options())

    def explain(self, err: Exception) -> Exception:
        """A Batch error as the message a user can act on (never containing the account key)."""
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

        if is_transient(err):  # kept as it is, so callers can retry it
            return err
        code = getattr(getattr(err, "error", None), "code", None)
        if code == "AuthenticationFailed" or isinstance(err, ClientAuthenticationError):
            return AirflowFailException(
                f"Azure Batch did not accept the credentials of connection {self.azure_batch_conn_id!r} for account "
                f"{self.account_name!r} at {self.account_url} ({code or type(err).__name__}): check the account "
                "name (login) and account key (password), or the Entra ID identity's access to the account."
            )
        if isinstance(err, HttpResponseError):
            return AirflowException(
                f"Azure Batch request failed: {code or err.status_code}: {err.reason}. {err.message}"
            )
        return err

    def get_run_state(self, run_id: str) -> RunState:
        from azure.core.exceptions import ResourceNotFoundError

        job_id, task_id = split_run_id(run_id)
        try:
            task = self.client.get_task(job_id, task_id)
            job = self.client.get_job(job_id, select=["id", "state", "executionInfo"])
        except ResourceNotFoundError:
            return decode_task(run_id, None)
        return decode_task(run_id, task, job)

    def terminate_run(self, run_id: str, reason: str = CANCEL_REASON) -> None:
        """Terminate the task, then its job (a job that already completed counts as done)."""
        from azure.core.exceptions import ResourceExistsError

        job_id, task_id = split_run_id(run_id)
        with contextlib.suppress(ResourceExistsError):  # TaskCompleted
            self.client.terminate_task(job_id, task_id)
        with contextlib.suppress(ResourceExistsError):  # JobCompleted: it ended when its only task did
            self.client.begin_terminate_job(job_id, {"terminateReason": reason}, polling_interval=1)

    @staticmethod
    async def aterminate_run(client: Any, run_id: str, reason: str = CANCEL_REASON) -> None:
        from azure.core.exceptions import ResourceExistsError

        job_id, task_id = split_run_id(run_id)
        with contextlib.suppress(ResourceExistsError):
            await client.terminate_task(job_id, task_id)
        with contextlib.suppress(ResourceExistsError):
            await client.begin_terminate_job(job_id, {"terminateReason": reason}, polling_interval=1)

    def find_job(self, job_id: str) -> Any | None:
        """A job's id, state and metadata (JobExists, before creating one), or None."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self.client.get_job(job_id, select=_WATCH_FIELDS)
        except ResourceNotFoundError:
            return None

    def mark_watched(self, run_id: str, watcher: str) -> None:
        from azure.batch import models

        job_id, _ = split_run_id(run_id)
        update = watched_metadata(self.client.get_job(job_id, select=_WATCH_FIELDS), watcher)
        if update is not None:
            self.client.update_job(job_id, models.BatchJobUpdateOptions(update))

    @staticmethod
    async def amark_watched(client: Any, job: Any, watcher: str) -> None:
        """Mark a job (as read with its metadata) watched, unless it is (one update, no read)."""
        from azure.batch import models

        update = watched_metadata(job, watcher) if job is not None else None
        if update is not None:
            await client.update_job(_get(job, "id"), models.BatchJobUpdateOptions(update))

    def list_job_templates(self) -> list[JobTemplateInfo]:
        """Every job of the account (``$select=id,displayName,state``, all pages)."""
        return [
            JobTemplateInfo(job.id, job.display_name, _get(job, "state"))
            for job in self.client.list_jobs(select=["id", "displayName", "state"])
        ]

    def download_tail(self, run_id: str, file_name: str, max_bytes: int = 16384) -> str:
        """The last ``max_bytes`` of a task file (``stderr.txt``, ``stdout.txt``), from a line start when cut."""
        job_id, task_id = split_run_id(run_id)
        size = self.client.get_task_file_properties(job_id, task_id, file_name).content_length or 0
        if size == 0:
            return ""
        start = max(0, size - max_bytes)
        chunks = self.client.download_task_file(job_id, task_id, file_name, ocp_range=f"bytes={start}-{size - 1}")
        text = b"".join(chunks).decode("utf-8", errors="replace")
        if start > 0:  # the first line is cut: drop it (unless it is all there is)
            text = text.partition("\n")[2] or text
        return text


def service_message(err: BaseException) -> str:
    """What Azure Batch said, as ``<code>: <message>`` and its details; any other error as its text."""
    error = getattr(err, "error", None)  # an HttpResponseError's parsed body
    if not getattr(error, "message", None):
        return str(err) or type(err).__name__
    details = [detail.message for detail in getattr(error, "details", None) or [] if detail.message]
    return "\n".join([f"{error.code}: {error.message}", *details])


def file_read_problem(err: BaseException) -> str:
    """Why a task file could not be read, for a warning (file operations carry no error body)."""
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    if isinstance(err, ResourceNotFoundError):
        return "the file does not exist (404 Not Found)"
    if isinstance(err, HttpResponseError) and err.status_code is not None:
        code = getattr(err.error, "code", None)
        reason = {401: "not authenticated", 403: "access denied"}.get(err.status_code, "the service refused the read")
        return f"{reason} ({err.status_code} {err.reason or code or ''})".replace(" )", ")")
    return f"{type(err).__name__}: {err}".strip()
