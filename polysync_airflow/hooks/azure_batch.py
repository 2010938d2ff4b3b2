"""Azure Batch: the connection hook and every call, sync in the worker and async in the triggerer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import cached_property
from typing import Any
from urllib.parse import urlparse

from airflow.sdk import BaseHook
from asgiref.sync import sync_to_async

from polysync_airflow.compat import AirflowException, AirflowFailException
from polysync_airflow.hooks.azure_batch_discovery import AzureBatchDiscovery
from polysync_airflow.hooks.azure_batch_waiting import AzureBatchWaitReads
from polysync_airflow.hooks.base import AsyncClientHolder
from polysync_airflow.status import CANCEL_REASON
from polysync_airflow.statuses.azure_batch import (
    ended_cleanly,
    is_transient,
    read_field,
    service_message,
    still_running,
    watched_metadata,
)

BATCH_SCOPE = "https://batch.core.windows.net//.default"
LOG_TAIL_LINES = 20
"""How many of the last lines of a task's output file the task log shows."""
RUN_JOB_PREFIX = "polysync-"  # the ids of the jobs the operator creates (requests/azure_batch.py)
TASK_READS_IN_FLIGHT = 16
LISTING_PAGE_SIZE = 250  # jobs per page of the poll's listing: the SDK decodes a page in one go, blocking the loop
FULL_READ_SECONDS = 300.0  # the shared poller reads a run's task at least this often, whatever its job shows


def split_run_id(run_id: str) -> tuple[str, str]:
    """A run id, ``{jobId}/{taskId}``, as (job id, task id)."""
    job_id, _, task_id = run_id.partition("/")
    return job_id, task_id


# azure-core logs every request and response at INFO: a line per poll in the triggerer's and task's
# logs. Ours go to a logger of their own that shows only warnings, so logs read as a status timeline.
_HTTP_LOG = logging.getLogger("polysync_airflow.azure_http")
_HTTP_LOG.setLevel(logging.WARNING)
_CLIENT_OPTIONS: dict[str, Any] = {"credential_scopes": [BATCH_SCOPE]}


def _client_options() -> dict[str, Any]:
    from azure.core.pipeline.policies import HttpLoggingPolicy

    return {**_CLIENT_OPTIONS, "http_logging_policy": HttpLoggingPolicy(logger=_HTTP_LOG)}


def _unless_missing(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any | None:
    """``call(*args, **kwargs)``, or None for a resource that does not exist."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return call(*args, **kwargs)
    except ResourceNotFoundError:
        return None


async def _aunless_missing(call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any | None:
    """``await call(*args, **kwargs)``, or None for a resource that does not exist."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return await call(*args, **kwargs)
    except ResourceNotFoundError:
        return None


_WATCH_FIELDS = ["id", "state", "metadata"]
_POLL_FIELDS = ["id", "state", "lastModified", "executionInfo", "metadata"]
# what the status table reads, and the creation time (how long the task waited, its timing)
_TASK_POLL_FIELDS = ["id", "state", "creationTime", "executionInfo"]
_ACTIVE_RUNS = f"startswith(id,'{RUN_JOB_PREFIX}') and state eq 'active'"


class AzureBatchHook(AzureBatchWaitReads, AzureBatchDiscovery, AsyncClientHolder, BaseHook):
    """Azure Batch through an ``azure_batch`` (official provider) or ``polysync_azure_batch`` connection.

    Shared key: login = account name, password = account key, extra ``account_url``. Without a key,
    Microsoft Entra ID through azure-identity (managed identity: extra ``managed_identity_client_id``;
    workload identity: ``workload_identity_tenant_id``), as the official hook does. Polysync settings in
    the extra: ``subscription_id`` and ``resource_group`` (for the portal links of the job and its task),
    optional ``monitor_link_template`` (placeholders ``{subscription_id}``, ``{resource_group}``, ``{account}``,
    ``{job_id}``) and ``task_link_template`` (the same and ``{task_id}``; see ``links/azure_batch.py``).
    """

    conn_name_attr = "azure_batch_conn_id"
    default_conn_name = "azure_batch_default"
    conn_type = "polysync_azure_batch"
    hook_name = "Polysync Azure Batch"

    def __init__(self, azure_batch_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.azure_batch_conn_id = azure_batch_conn_id
        self._seen: dict[str, tuple[float, Any, Any]] = {}  # aread_runs' memory: run id -> (when, task, job)

    @cached_property
    def connection(self) -> Any:
        return self.get_connection(self.azure_batch_conn_id)

    def setting(self, name: str) -> str | None:
        """A setting from the connection's extra (under its name, or as either provider's UI form stores it)."""
        extra = self.connection.extra_dejson
        for key in (name, f"extra__azure_batch__{name}", f"extra__{self.conn_type}__{name}"):
            if extra.get(key):
                return str(extra[key])
        return None

    @cached_property
    def account_url(self) -> str:
        url = self.setting("account_url")
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

    # -- clients -----------------------------------------------------------------------------------------

    def _credential(self, asynchronous: bool) -> Any:
        conn = self.connection
        if conn.login and conn.password:
            from azure.core.credentials import AzureNamedKeyCredential

            return AzureNamedKeyCredential(conn.login, conn.password)
        kwargs: dict[str, Any] = {}
        if client_id := self.setting("managed_identity_client_id"):
            kwargs["managed_identity_client_id"] = client_id
        if tenant_id := self.setting("workload_identity_tenant_id"):
            kwargs.update(workload_identity_tenant_id=tenant_id, additionally_allowed_tenants=[tenant_id])
        if asynchronous:
            from azure.identity.aio import DefaultAzureCredential as AsyncDefaultAzureCredential

            return AsyncDefaultAzureCredential(**kwargs)
        from azure.identity import DefaultAzureCredential

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

    # -- calls (sync, in the worker) -----------------------------------------------------------------

    def find_job(self, job_id: str, select: list[str] | None = _WATCH_FIELDS) -> Any | None:
        """A job (by default its id, state and metadata; ``select=None``: all of it), or None."""
        return _unless_missing(self.client.get_job, job_id, select=select)

    def find_pool(self, pool_id: str) -> Any | None:
        """A pool's id and state, or None."""
        return _unless_missing(self.client.get_pool, pool_id, select=["id", "state"])

    def find_task(self, run_id: str) -> Any | None:
        """A run's task (its id only), or None."""
        return _unless_missing(self.client.get_task, *split_run_id(run_id), select=["id"])

    def create_job(self, job: dict[str, Any]) -> bool:
        """Create a job from its wire JSON; False when a job with its id exists already."""
        from azure.batch import models
        from azure.core.exceptions import ResourceExistsError

        try:
            self.client.create_job(models.BatchJobCreateOptions(job))
        except ResourceExistsError:
            return False
        return True

    def add_task(self, job_id: str, task: dict[str, Any]) -> None:
        """Add a task to a job from its wire JSON; a task with its id there already counts as added."""
        from azure.batch import models
        from azure.core.exceptions import ResourceExistsError

        try:
            self.client.create_task(job_id, models.BatchTaskCreateOptions(task))
        except ResourceExistsError as err:
            if getattr(err.error, "code", None) != "TaskExists":
                raise

    def end_job_with_its_tasks(self, job_id: str) -> None:
        """Let Batch terminate the job once all its tasks complete (``onAllTasksComplete=terminatejob``)."""
        from azure.batch import models

        self.client.update_job(job_id, models.BatchJobUpdateOptions({"onAllTasksComplete": "terminatejob"}))

    def delete_job(self, job_id: str) -> None:
        """Start deleting a job (Batch deletes it, and its tasks, in the background)."""
        self.client.begin_delete_job(job_id, polling_interval=1)

    def read_run(self, run_id: str) -> tuple[Any, Any]:
        """What the status table reads for a run: its task and its job, (None, None) when not found."""
        from azure.core.exceptions import ResourceNotFoundError

        job_id, task_id = split_run_id(run_id)
        try:
            task = self.client.get_task(job_id, task_id)
            job = self.client.get_job(job_id, select=["id", "state", "executionInfo"])
        except ResourceNotFoundError:
            return None, None
        return task, job

    def mark_watched(self, run_id: str, watcher: str) -> None:
        """Mark the run's job watched, unless it is (a read, then an update)."""
        from azure.batch import models

        job_id, _ = split_run_id(run_id)
        update = watched_metadata(self.client.get_job(job_id, select=_WATCH_FIELDS), watcher)
        if update is not None:
            self.client.update_job(job_id, models.BatchJobUpdateOptions(update))

    def terminate_run(self, run_id: str, reason: str = CANCEL_REASON) -> None:
        """Terminate the task, then its job (a task or job that already completed counts as done)."""
        from azure.core.exceptions import ResourceExistsError

        job_id, task_id = split_run_id(run_id)
        with contextlib.suppress(ResourceExistsError):  # TaskCompleted
            self.client.terminate_task(job_id, task_id)
        with contextlib.suppress(ResourceExistsError):  # JobCompleted: it ended when its only task did
            self.client.begin_terminate_job(job_id, {"terminateReason": reason}, polling_interval=1)

    def tail_log(self, run_id: str, file_name: str, lines: int = LOG_TAIL_LINES, max_bytes: int = 16384) -> list[str]:
        """The last ``lines`` lines of a task's output file (``stderr.txt``, ``stdout.txt``), from its last
        ``max_bytes`` (a line cut at their start is left out)."""
        job_id, task_id = split_run_id(run_id)
        size = self.client.get_task_file_properties(job_id, task_id, file_name).content_length or 0
        if size == 0:
            return []
        start = max(0, size - max_bytes)
        chunks = self.client.download_task_file(job_id, task_id, file_name, ocp_range=f"bytes={start}-{size - 1}")
        text = b"".join(chunks).decode("utf-8", errors="replace")
        if start > 0:  # the first line is cut: drop it (unless it is all there is)
            text = text.partition("\n")[2] or text
        return text.splitlines()[-lines:]

    # -- calls (async, in the triggerer) ------------------------------------------------------------

    @asynccontextmanager
    async def async_connection(self) -> AsyncIterator[None]:
        """Open the ``azure.batch.aio.BatchClient`` the ``a...`` calls below make their requests with, until the
        block ends."""
        from azure.batch.aio import BatchClient

        await sync_to_async(self.validate)()  # the connection lookup is a blocking call into the supervisor
        async with self._holding(
            BatchClient(self.account_url, self._credential(asynchronous=True), **_client_options())
        ):
            yield

    runs_per_read = 100_000  # the shared poller asks for every due run in one read: it lists all active runs anyway

    async def aread_runs(self, run_ids: Sequence[str]) -> dict[str, Any]:
        """The shared poller's read: many runs in few calls, ``{run_id: (task, job)}`` (absent: not found; a run whose
        own task read failed maps to its error, so one flaky read does not fail every run's poll).

        Each run is its own job, which Batch terminates when its task completes. One listing of our active jobs
        (``$filter`` on the id prefix and state, ``$select``) tells which runs changed; a task is read only for a
        run whose job changed or left the listing, whose task was not running yet (so ``Running`` is seen), or that
        was last read long ago. So, unlike AWS's, this read remembers what it saw: one hook per shared poller."""
        now = time.monotonic()
        listing = self.async_client.list_jobs(filter=_ACTIVE_RUNS, select=_POLL_FIELDS, max_results=LISTING_PAGE_SIZE)
        active = {job.id: job async for job in listing}
        answers: dict[str, Any] = {}
        stale = []
        for run_id in run_ids:
            job = active.get(split_run_id(run_id)[0])
            when, task, job_then = self._seen.get(run_id, (0.0, None, None))
            if job is not None and now - when < FULL_READ_SECONDS and still_running(task, job_then, job):
                answers[run_id] = (task, job)
            else:
                stale.append((run_id, job))
        gate = asyncio.Semaphore(TASK_READS_IN_FLIGHT)

        async def read(run_id: str, job: Any) -> None:
            try:
                async with gate:
                    task = await _aunless_missing(
                        self.async_client.get_task, *split_run_id(run_id), select=_TASK_POLL_FIELDS
                    )
                    if task is not None and job is None and not ended_cleanly(task):
                        # its job tells a cancel or a scheduling error; no job: gone with its task
                        job = await _aunless_missing(
                            self.async_client.get_job, split_run_id(run_id)[0], select=_POLL_FIELDS
                        )
                        task = task if job is not None else None
            except Exception as err:  # this run's read failed: it gets the error, the other runs their answers
                answers[run_id] = err
                return
            if task is None:
                self._seen.pop(run_id, None)
                return
            self._seen[run_id] = (now, task, job)
            answers[run_id] = (task, job)

        await asyncio.gather(*(read(run_id, job) for run_id, job in stale))
        for run_id in [r for r, (when, _, _) in self._seen.items() if now - when > 2 * FULL_READ_SECONDS]:
            del self._seen[run_id]  # runs that left
        return answers

    async def aterminate_run(self, run_id: str, reason: str = CANCEL_REASON) -> None:
        from azure.core.exceptions import ResourceExistsError

        job_id, task_id = split_run_id(run_id)
        with contextlib.suppress(ResourceExistsError):
            await self.async_client.terminate_task(job_id, task_id)
        with contextlib.suppress(ResourceExistsError):
            await self.async_client.begin_terminate_job(job_id, {"terminateReason": reason}, polling_interval=1)

    async def amark_watched(self, answer: tuple[Any, Any] | None, watcher: str) -> None:
        """Mark the run's job, as the last read gave it (with its metadata), watched, unless it is (one update,
        no read)."""
        from azure.batch import models

        job = answer[1] if answer else None
        update = watched_metadata(job, watcher) if job is not None else None
        if update is not None:
            await self.async_client.update_job(read_field(job, "id"), models.BatchJobUpdateOptions(update))
