"""A local Azure Batch service speaking the Batch REST API subset polysync-airflow uses, as the
azure-batch SDK (sync and aio) sends it: api-version 2025-06-01 paths, exact success codes, OData
paging, Azure's top-level error body, and SharedKey signatures checked as the service checks them.

Each task's command line really runs in a local process with its environment settings (container
settings are recorded, not run); task files ``stdout.txt`` and ``stderr.txt`` are served.

This module is the protocol: SharedKey authentication, routing, OData (``$select``, ``$filter``, paging),
task file downloads, answer bodies and errors on the wire. The state and Azure's rules are the model's
(:mod:`~polysync_airflow.testing.azure_batch_model`), how a task runs its life cycle's
(:mod:`~polysync_airflow.testing.azure_batch_lifecycle`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

from polysync_airflow.testing._emulator import BatchEndpoint, OnModel
from polysync_airflow.testing._http import Request, Response
from polysync_airflow.testing.azure_batch_lifecycle import run_key
from polysync_airflow.testing.azure_batch_model import AzureBatchModel, BatchError
from polysync_airflow.testing.azure_batch_resources import Job, Task, describe_pool, iso, now
from polysync_airflow.testing.runner import LocalJobRunner

API_VERSION = "2025-06-01"
DEFAULT_KEY = base64.b64encode(b"polysync-local-account-key-0123456789").decode()
CONTENT_TYPE = "application/json;odata=minimalmetadata"
_SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)
_SHARED_KEY = re.compile(r"^SharedKey ([^:]+):(.+)$")
_FILTER_TERM = re.compile(r"^\s*(?:(\w+) eq '([^']*)'|startswith\((\w+),\s*'([^']*)'\))\s*$")


def string_to_sign(method: str, raw_path: str, headers: dict[str, str], account: str) -> str:
    """The SharedKey string-to-sign, exactly as Azure Batch builds it."""
    lowered = {k.lower(): v for k, v in headers.items() if v}
    if method not in ("GET", "HEAD") and "content-length" not in lowered:
        lowered["content-length"] = "0"
    text = method + "\n" + "\n".join(lowered.get(name, "") for name in _SIGNED_HEADERS) + "\n"
    for name, value in sorted((k, v) for k, v in lowered.items() if "ocp-" in k):
        text += f"{name}:{value}\n"
    path, _, query = raw_path.partition("?")
    text += f"/{account}{path}"
    parsed = parse_qs(query)
    for name in sorted(parsed):
        if parsed[name][0]:
            text += f"\n{name}:{parsed[name][0]}"
    return text


def shared_key_signature(key_b64: str, text: str) -> str:
    return base64.b64encode(hmac.new(base64.b64decode(key_b64), text.encode(), hashlib.sha256).digest()).decode()


def _matches(item: dict[str, Any], expression: str | None) -> bool:
    """The OData $filter subset used here: ``field eq 'v'`` and ``startswith(field,'v')`` joined by ``and``."""
    if not expression:
        return True
    for term in re.split(r"\s+and\s+", expression):
        match = _FILTER_TERM.match(term)
        if not match:
            raise BatchError(400, "InvalidQueryParameterValue", f"Unsupported $filter: {expression}")
        if match.group(1):
            if str(item.get(match.group(1), "")).lower() != match.group(2).lower():
                return False
        elif not str(item.get(match.group(3), "")).lower().startswith(match.group(4).lower()):
            return False
    return True


def _select(item: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
    """OData ``$select``: only the properties named."""
    if not query.get("$select"):
        return item
    wanted = {name.strip() for name in query["$select"].split(",")}
    return {k: v for k, v in item.items() if k in wanted}


def _ok(payload: dict[str, Any]) -> Response:
    return Response.json(200, payload, CONTENT_TYPE)


class LocalAzureBatch(BatchEndpoint[Job]):
    """A local Azure Batch account on 127.0.0.1 backed by local processes.

    ``account`` and ``key`` are the SharedKey credentials it accepts; ``step_seconds`` is how long a task
    stays ``active`` and ``preparing``; ``page_size`` caps list pages (Azure's maxresults default: 1000).

    For tests: task file names in ``denied_files`` are refused with 403 (as for an identity without read
    access to task files), those in ``missing_files`` answer 404 ``FileNotFound`` as if never written.
    """

    model: AzureBatchModel
    pools = OnModel[dict[str, dict[str, Any]]]()
    jobs = OnModel[dict[str, Job]]()

    def __init__(
        self,
        seed: str | Path | dict[str, Any] | None = None,
        *,
        account: str | None = None,
        key: str = DEFAULT_KEY,
        step_seconds: float = 0.05,
        page_size: int = 1000,
        runner: LocalJobRunner | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(AzureBatchModel(step_seconds, runner), host, port)
        data = self.read_seed(seed, "azure_batch_seed.json")
        self.model.load_seed(data)
        self.account = account or data.get("account", "polysyncdev")
        self.key = key
        self.page_size = page_size
        self.denied_files: set[str] = set()
        self.denied_reads: set[str] = set()
        """Tests: resource kinds (``"pools"``) whose reads are refused with 403, as for an identity without
        read access to them."""
        self.missing_files: set[str] = set()

    # -- helpers for tests and users --------------------------------------------------------------

    def delete_pool(self, pool_id: str) -> None:
        self.model.delete_pool(pool_id)

    def set_pool(self, pool_id: str, **fields: Any) -> None:
        """Change a pool as ``GET /pools/{id}`` shows it, by wire names: e.g. ``currentDedicatedNodes=0``,
        ``allocationState="steady"``, ``resizeErrors=[{"code": ..., "message": ...}]``. Tasks wait ``active``
        while the pool has no node (dedicated or low-priority) and start once it has one."""
        pool = self.model.pool(pool_id)
        with self.model.lock:
            pool.update(fields)

    def add_job(self, body: dict[str, Any]) -> Job:
        """Add a (template) job directly, without a request."""
        return self.model.add_job(body)

    def job(self, job_id: str) -> Job:
        return self.model.job(job_id)

    def task_output(self, job_id: str, task_id: str) -> tuple[str, str]:
        """(stdout, stderr) of a task."""
        return self.runner.output(run_key(job_id, task_id))

    # -- wire protocol ---------------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> None:
        match = _SHARED_KEY.match(request.headers.get("Authorization", ""))
        if match is None or match.group(1) != self.account:
            signed = False
        else:
            expected = shared_key_signature(
                self.key, string_to_sign(request.method, request.raw_path, request.headers, self.account)
            )
            signed = hmac.compare_digest(expected, match.group(2))
        if not signed:
            raise BatchError(
                403,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the value of Authorization header is "
                "formed correctly including the signature.",
                {
                    "AuthenticationErrorDetail": "The MAC signature found in the HTTP request is not the same as "
                    "any computed signature."
                },
            )

    def dispatch(self, request: Request) -> Response:
        parts = [unquote(p) for p in request.path.strip("/").split("/")]
        self.record(f"{request.method} /{'/'.join(parts)}")
        query = {k: v[0] for k, v in parse_qs(request.query).items()}
        try:
            self._authenticate(request)
            if query.get("api-version") != API_VERSION:
                raise BatchError(
                    400,
                    "MissingRequiredQueryParameter",
                    "A query parameter that's mandatory for this request is not specified.",
                    {"QueryParameterName": "api-version"},
                )
            return self._route(request, parts, query)
        except BatchError as err:
            body: dict[str, Any] = {
                "odata.metadata": f"https://{self.account}.local/$metadata#Microsoft.Azure.Batch.Protocol."
                "Entities.Container.errors/@Element",
                "code": err.code,
                "message": {
                    "lang": "en-US",
                    "value": f"{err.message}\nRequestId:{uuid.uuid4()}\nTime:{iso(now())}",
                },
            }
            if err.values:
                body["values"] = [{"key": k, "value": v} for k, v in err.values.items()]
            return Response.json(err.status, body, CONTENT_TYPE)

    def _route(self, request: Request, parts: list[str], query: dict[str, str]) -> Response:
        method, n, model = request.method, len(parts), self.model
        if parts[0] == "pools" and n == 2 and method == "GET":
            if "pools" in self.denied_reads:
                raise BatchError(
                    403,
                    "InsufficientPermissions",
                    "The caller does not have permission to read the pools of this account.",
                )
            with model.lock:
                return _ok(_select(describe_pool(model.pool(parts[1])), query))
        if parts[0] != "jobs":
            raise BatchError(404, "ResourceNotFound", "The specified resource does not exist.")
        if n == 1 and method == "GET":
            with model.lock:
                jobs = [j.describe() for j in model.jobs.values()]
            return self._list(request, jobs, query)
        if n == 1 and method == "POST":
            model.create_job(request.json())
            return Response(201, headers={"DataServiceId": f"https://{self.account}/jobs"})
        job = model.job(parts[1])
        if n == 2:
            if method == "GET":
                return _ok(_select(job.describe(), query))
            if method in ("PATCH", "PUT"):
                model.update_job(job, request.json(), replace=method == "PUT")
                return Response(200)
            if method == "DELETE":
                model.terminate_job(job, "DeleteJob", deleting=True)
                return Response(202)
        if n == 3 and parts[2] == "terminate" and method == "POST":
            model.terminate_job(job, (request.json() or {}).get("terminateReason") or "UserTerminate")
            return Response(202)
        if n == 3 and parts[2] == "tasks":
            if method == "POST":
                model.create_task(job, request.json())
                return Response(201)
            if method == "GET":
                with model.lock:
                    tasks = [t.describe(job.id) for t in job.tasks.values()]
                return self._list(request, tasks, query)
        if n >= 4 and parts[2] == "tasks":
            task = model.task(job, parts[3])
            if n == 4 and method == "GET":
                return _ok(_select(task.describe(job.id), query))
            if n == 5 and parts[4] == "terminate" and method == "POST":
                model.terminate_task(job, task)
                return Response(204)
            if n >= 6 and parts[4] == "files" and method in ("GET", "HEAD"):
                return self._task_file(job, task, "/".join(parts[5:]), request)
        raise BatchError(400, "InvalidUri", "The requested URI does not represent any resource on the server.")

    def _list(self, request: Request, items: list[dict[str, Any]], query: dict[str, str]) -> Response:
        """One OData page of ``items`` (filtered, selected) with ``odata.nextLink`` if there is more."""
        items = [item for item in items if _matches(item, query.get("$filter"))]
        start = int(query.get("$skiptoken") or 0)
        size = min(int(query.get("maxresults") or self.page_size), self.page_size)
        page = [_select(item, query) for item in items[start : start + size]]
        payload: dict[str, Any] = {"odata.metadata": f"https://{self.account}.local/$metadata", "value": page}
        if start + size < len(items):
            carried = {k: v for k, v in query.items() if k not in ("api-version", "$skiptoken")}
            carried["$skiptoken"] = str(start + size)
            host = request.headers.get("Host", "127.0.0.1")
            payload["odata.nextLink"] = f"http://{host}{request.path}?{urlencode(carried)}"
        return _ok(payload)

    def _task_file(self, job: Job, task: Task, path: str, request: Request) -> Response:
        file = self.model.task_file(job, task, path)
        if path in self.denied_files:
            raise BatchError(
                403,
                "InsufficientPermissions",
                "The caller does not have permission to read the files of this task.",
            )
        if path not in ("stdout.txt", "stderr.txt") or path in self.missing_files or not file.exists():
            raise BatchError(404, "FileNotFound", "The specified file does not exist.")
        data = file.read_bytes()
        headers = {
            "Content-Type": "application/octet-stream",
            "Last-Modified": format_datetime(datetime.fromtimestamp(file.stat().st_mtime, UTC), usegmt=True),
            "ocp-creation-time": format_datetime(task.created, usegmt=True),
            "ocp-batch-file-isdirectory": "False",
            "ocp-batch-file-url": f"/jobs/{job.id}/tasks/{task.id}/files/{path}",
        }
        wanted = re.match(r"bytes=(\d+)-(\d*)", request.headers.get("ocp-range", ""))
        if wanted:
            end = int(wanted.group(2)) + 1 if wanted.group(2) else len(data)
            data = data[int(wanted.group(1)) : end]
        headers["Content-Length"] = str(len(data))
        return Response(200, data, headers)
