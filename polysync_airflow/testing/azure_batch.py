"""A local Azure Batch service speaking the Batch REST API subset polysync-airflow uses, as the
azure-batch SDK (sync and aio) sends it: api-version 2025-06-01 paths, exact success codes, OData
paging, Azure's top-level error body, and SharedKey signatures checked as the service checks them.

Each task's command line really runs in a local process with its environment settings (container
settings are recorded, not run); task files ``stdout.txt`` and ``stderr.txt`` are served.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

import isodate

from polysync_airflow.testing._http import LocalHttpEndpoint, Request, Response
from polysync_airflow.testing.runner import LocalJobRunner

API_VERSION = "2025-06-01"
DEFAULT_KEY = base64.b64encode(b"polysync-local-account-key-0123456789").decode()
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SERVICE_TERMINATE_REASONS = ("AllTasksComplete", "JMComplete", "MaxWallClockTimeExpiry", "TaskFailed")
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


class BatchError(Exception):
    def __init__(self, status: int, code: str, message: str, values: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.values = status, code, message, values or {}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Resource:
    """What jobs and tasks share: an id, the body they were created with, and a state history."""

    id: str
    body: dict[str, Any]
    state: str = "active"
    created: datetime = field(default_factory=_now)
    transition: datetime = field(default_factory=_now)
    previous_state: str | None = None
    ended: datetime | None = None


@dataclass
class Task(_Resource):
    started: datetime | None = None
    exit_code: int | None = None
    failure_info: dict[str, Any] | None = None
    terminated: threading.Event = field(default_factory=threading.Event)

    def to_json(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = {
            "id": self.id,
            "url": f"/jobs/{job_id}/tasks/{self.id}",
            "eTag": f'"0x{abs(hash((self.id, self.transition))):X}"',
            "creationTime": _iso(self.created),
            "lastModified": _iso(self.transition),
            "state": self.state,
            "stateTransitionTime": _iso(self.transition),
            "commandLine": self.body.get("commandLine", ""),
            "environmentSettings": self.body.get("environmentSettings", []),
            "constraints": self.body.get("constraints", {"maxTaskRetryCount": 0}),
        }
        for key in ("containerSettings", "displayName"):
            if key in self.body:
                result[key] = self.body[key]
        if self.previous_state:
            result["previousState"] = self.previous_state
        if self.started:
            info: dict[str, Any] = {"startTime": _iso(self.started), "retryCount": 0, "requeueCount": 0}
            if self.state == "completed":
                info.update(
                    endTime=_iso(self.ended),
                    exitCode=self.exit_code,
                    result="success" if self.failure_info is None else "failure",
                )
                if self.failure_info:
                    info["failureInfo"] = self.failure_info
            result["executionInfo"] = info
        elif self.state == "completed" and self.failure_info:
            result["executionInfo"] = {
                "endTime": _iso(self.ended),
                "result": "failure",
                "retryCount": 0,
                "requeueCount": 0,
                "failureInfo": self.failure_info,
            }
        return result


@dataclass
class Job(_Resource):
    terminate_reason: str | None = None
    scheduling_error: dict[str, Any] | None = None
    tasks: dict[str, Task] = field(default_factory=dict)

    @property
    def on_all_tasks_complete(self) -> str:
        return self.body.get("onAllTasksComplete", "noaction").lower()

    @property
    def pool_id(self) -> str | None:
        return (self.body.get("poolInfo") or {}).get("poolId")

    def to_json(self) -> dict[str, Any]:
        info: dict[str, Any] = {"startTime": _iso(self.created), "poolId": self.pool_id}
        if self.ended:
            info["endTime"] = _iso(self.ended)
        if self.terminate_reason:
            info["terminateReason"] = self.terminate_reason
        if self.scheduling_error:
            info["schedulingError"] = self.scheduling_error
        result = {
            "id": self.id,
            "displayName": self.body.get("displayName", self.id),
            "url": f"/jobs/{self.id}",
            "eTag": f'"0x{abs(hash((self.id, self.transition))):X}"',
            "lastModified": _iso(self.transition),
            "creationTime": _iso(self.created),
            "state": self.state,
            "stateTransitionTime": _iso(self.transition),
            "priority": self.body.get("priority", 0),
            "maxParallelTasks": self.body.get("maxParallelTasks", -1),
            "usesTaskDependencies": False,
            "constraints": self.body.get(
                "constraints", {"maxWallClockTime": "P10675199DT2H48M5.4775807S", "maxTaskRetryCount": 0}
            ),
            "poolInfo": self.body.get("poolInfo", {}),
            "onAllTasksComplete": self.on_all_tasks_complete,
            "onTaskFailure": self.body.get("onTaskFailure", "noaction"),
            "executionInfo": info,
        }
        for key in ("jobManagerTask", "commonEnvironmentSettings", "metadata"):
            if key in self.body:
                result[key] = self.body[key]
        if self.previous_state:
            result["previousState"] = self.previous_state
        return result


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


class LocalAzureBatch(LocalHttpEndpoint):
    """A local Azure Batch account on 127.0.0.1 backed by local processes.

    ``account`` and ``key`` are the SharedKey credentials it accepts; ``step_seconds`` is how long a task
    stays ``active`` and ``preparing``; ``page_size`` caps list pages (Azure's maxresults default: 1000).

    For tests: task file names in ``denied_files`` are refused with 403 (as for an identity without read
    access to task files), those in ``missing_files`` answer 404 ``FileNotFound`` as if never written.
    """

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
        super().__init__(host, port)
        data = self.read_seed(seed, "azure_batch_seed.json")
        self.account = account or data.get("account", "polysyncdev")
        self.key = key
        self.step_seconds = step_seconds
        self.page_size = page_size
        self.denied_files: set[str] = set()
        self.missing_files: set[str] = set()
        self._own_runner = runner is None
        self.runner = runner or LocalJobRunner()
        self._lock = threading.RLock()
        self.pools: dict[str, dict[str, Any]] = {p["id"].lower(): p for p in data.get("pools", [])}
        self.jobs: dict[str, Job] = {}
        for job in data.get("jobs", []):
            self.jobs[job["id"].lower()] = Job(job["id"], dict(job))

    # -- helpers for tests and users --------------------------------------------------------------

    def delete_pool(self, pool_id: str) -> None:
        with self._lock:
            self.pools.pop(pool_id.lower(), None)

    def add_job(self, body: dict[str, Any]) -> Job:
        """Add a (template) job directly, without a request."""
        job = Job(body["id"], dict(body))
        with self._lock:
            self.jobs[job.id.lower()] = job
        return job

    def job(self, job_id: str) -> Job:
        with self._lock:
            job = self.jobs.get(job_id.lower())
        if job is None:
            raise BatchError(404, "JobNotFound", "The specified job does not exist.")
        return job

    def task_output(self, job_id: str, task_id: str) -> tuple[str, str]:
        return self.runner.output(f"{job_id}/{task_id}")

    def wait_for_job(self, job_id: str, timeout: float = 30.0) -> Job:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job.state == "completed":
                return job
            time.sleep(0.02)
        raise TimeoutError(f"job {job_id} did not complete within {timeout} s")

    # -- wire protocol ---------------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> None:
        match = re.match(r"^SharedKey ([^:]+):(.+)$", request.headers.get("Authorization", ""))
        expected = None
        if match and match.group(1) == self.account:
            expected = shared_key_signature(
                self.key, string_to_sign(request.method, request.raw_path, request.headers, self.account)
            )
        if expected is None or not hmac.compare_digest(expected, match.group(2)):
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
                    "value": f"{err.message}\nRequestId:{uuid.uuid4()}\nTime:{_iso(_now())}",
                },
            }
            if err.values:
                body["values"] = [{"key": k, "value": v} for k, v in err.values.items()]
            return Response.json(err.status, body, "application/json;odata=minimalmetadata")

    def _route(self, request: Request, parts: list[str], query: dict[str, str]) -> Response:
        method, n = request.method, len(parts)
        if parts[0] == "pools" and n == 2 and method == "GET":
            return self._ok(self._get_pool(parts[1]))
        if parts[0] != "jobs":
            raise BatchError(404, "ResourceNotFound", "The specified resource does not exist.")
        if n == 1 and method == "GET":
            with self._lock:
                jobs = [j.to_json() for j in self.jobs.values()]
            return self._list(request, jobs, query)
        if n == 1 and method == "POST":
            self._create_job(request.json())
            return Response(201, headers={"DataServiceId": f"https://{self.account}/jobs"})
        job = self.job(parts[1])
        if n == 2:
            if method == "GET":
                return self._ok(self._select(job.to_json(), query))
            if method in ("PATCH", "PUT"):
                self._update_job(job, request.json(), replace=method == "PUT")
                return Response(200)
            if method == "DELETE":
                self._terminate_job(job, "DeleteJob", deleting=True)
                return Response(202)
        if n == 3 and parts[2] == "terminate" and method == "POST":
            self._terminate_job(job, (request.json() or {}).get("terminateReason") or "UserTerminate")
            return Response(202)
        if n == 3 and parts[2] == "tasks":
            if method == "POST":
                self._create_task(job, request.json())
                return Response(201)
            if method == "GET":
                with self._lock:
                    tasks = [t.to_json(job.id) for t in job.tasks.values()]
                return self._list(request, tasks, query)
        if n >= 4 and parts[2] == "tasks":
            task = self._task(job, parts[3])
            if n == 4 and method == "GET":
                return self._ok(self._select(task.to_json(job.id), query))
            if n == 5 and parts[4] == "terminate" and method == "POST":
                self._terminate_task(job, task)
                return Response(204)
            if n >= 6 and parts[4] == "files" and method in ("GET", "HEAD"):
                return self._task_file(job, task, "/".join(parts[5:]), request)
        raise BatchError(400, "InvalidUri", "The requested URI does not represent any resource on the server.")

    @staticmethod
    def _ok(payload: dict[str, Any]) -> Response:
        return Response.json(200, payload, "application/json;odata=minimalmetadata")

    @staticmethod
    def _select(item: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        if not query.get("$select"):
            return item
        wanted = {name.strip() for name in query["$select"].split(",")}
        return {k: v for k, v in item.items() if k in wanted}

    def _list(self, request: Request, items: list[dict[str, Any]], query: dict[str, str]) -> Response:
        items = [item for item in items if _matches(item, query.get("$filter"))]
        start = int(query.get("$skiptoken") or 0)
        size = min(int(query.get("maxresults") or self.page_size), self.page_size)
        page = [self._select(item, query) for item in items[start : start + size]]
        payload: dict[str, Any] = {"odata.metadata": f"https://{self.account}.local/$metadata", "value": page}
        if start + size < len(items):
            carried = {k: v for k, v in query.items() if k not in ("api-version", "$skiptoken")}
            carried["$skiptoken"] = str(start + size)
            host = request.headers.get("Host", "127.0.0.1")
            payload["odata.nextLink"] = f"http://{host}{request.path}?{urlencode(carried)}"
        return self._ok(payload)

    # -- pools and jobs ---------------------------------------------------------------------------------

    def _get_pool(self, pool_id: str) -> dict[str, Any]:
        with self._lock:
            pool = self.pools.get(pool_id.lower())
        if pool is None:
            raise BatchError(404, "PoolNotFound", "The specified pool does not exist.")
        return {
            "id": pool["id"],
            "state": "active",
            "allocationState": "steady",
            "vmSize": pool.get("vmSize", ""),
        }

    @staticmethod
    def _check_id(value: Any, name: str = "id") -> str:
        if not isinstance(value, str) or not ID_RE.match(value):
            raise BatchError(
                400,
                "InvalidPropertyValue",
                "The value provided for one of the properties in the request body is invalid.",
                {"PropertyName": name, "PropertyValue": str(value)},
            )
        return value

    @staticmethod
    def _require(body: dict[str, Any], name: str) -> None:
        if not body.get(name):
            raise BatchError(
                400,
                "MissingRequiredProperty",
                "A required property was not specified in the request body.",
                {"PropertyName": name},
            )

    def _create_job(self, body: dict[str, Any]) -> None:
        job_id = self._check_id(body.get("id"))
        self._require(body, "poolInfo")
        with self._lock:
            if job_id.lower() in self.jobs:
                raise BatchError(409, "JobExists", "The specified job already exists.")
            job = Job(job_id, dict(body))
            self.jobs[job_id.lower()] = job
            # Azure: a job with no tasks has all its tasks complete.
            self._check_job_completion(job)

    def _update_job(self, job: Job, body: dict[str, Any], replace: bool) -> None:
        with self._lock:
            if job.state == "completed":
                raise BatchError(409, "JobCompleted", "The specified job is already in a completed state.")
            new_mode = body.get("onAllTasksComplete", "noaction" if replace else job.on_all_tasks_complete).lower()
            if job.on_all_tasks_complete == "terminatejob" and new_mode == "noaction":
                raise BatchError(
                    400,
                    "InvalidPropertyValue",
                    "The value provided for one of the properties in the request body is invalid.",
                    {"PropertyName": "onAllTasksComplete"},
                )
            job.body = {**job.body, **body} if not replace else {"id": job.id, **body}
            job.body["onAllTasksComplete"] = new_mode
            job.transition = _now()
            self._check_job_completion(job)

    def _check_job_completion(self, job: Job) -> None:
        if (
            job.state == "active"
            and job.on_all_tasks_complete == "terminatejob"
            and all(t.state == "completed" for t in job.tasks.values())
        ):
            self._complete_job(job, "AllTasksComplete")

    def _complete_job(self, job: Job, reason: str) -> None:
        job.previous_state, job.state = job.state, "completed"
        job.terminate_reason = reason
        job.ended = job.transition = _now()

    def _terminate_job(self, job: Job, reason: str, deleting: bool = False) -> None:
        with self._lock:
            if job.state == "completed" and not deleting:
                raise BatchError(409, "JobCompleted", "The specified job is already in a completed state.")
            # Azure ends running tasks; active ones stay active and are never scheduled.
            running = [t for t in job.tasks.values() if t.state in ("preparing", "running")]
            if job.state != "completed":
                self._complete_job(job, reason)
        for task in running:
            self._end_task(job, task)
        if deleting:
            with self._lock:
                self.jobs.pop(job.id.lower(), None)

    # -- tasks -------------------------------------------------------------------------------------------

    def _task(self, job: Job, task_id: str) -> Task:
        with self._lock:
            for task in job.tasks.values():
                if task.id.lower() == task_id.lower():
                    return task
        raise BatchError(404, "TaskNotFound", "The specified task does not exist.")

    def _create_task(self, job: Job, body: dict[str, Any]) -> None:
        task_id = self._check_id(body.get("id"))
        self._require(body, "commandLine")
        with self._lock:
            if job.state == "completed":
                raise BatchError(409, "JobCompleted", "The specified job is already in a completed state.")
            if job.state != "active":
                raise BatchError(409, "JobNotActive", "The specified job is not in an active state.")
            if task_id.lower() in (t.lower() for t in job.tasks):
                raise BatchError(409, "TaskExists", "The specified task already exists.")
            task = Task(task_id, dict(body))
            job.tasks[task_id] = task
        self.runner.spawn(lambda: self._run_task(job, task), name=f"azure-task-{job.id}-{task_id}")

    def _set_task(self, task: Task, state: str) -> None:
        with self._lock:
            if task.state == "completed":
                return
            task.previous_state, task.state = task.state, state
            task.transition = _now()
            if state == "running":
                task.started = task.transition

    def _run_task(self, job: Job, task: Task) -> None:
        # A pool that does not exist: Azure keeps the task active and reports a scheduling error on the job.
        while True:
            if task.terminated.wait(self.step_seconds) or self.runner.stopping.is_set():
                return
            with self._lock:
                if job.state != "active":
                    return
                pool_exists = job.pool_id is not None and job.pool_id.lower() in self.pools
                if not pool_exists and job.scheduling_error is None:
                    job.scheduling_error = {
                        "category": "usererror",
                        "code": "PoolNotFound",
                        "message": f"The pool {job.pool_id} specified for the job does not exist.",
                    }
            if pool_exists:
                break
        self._set_task(task, "preparing")
        if task.terminated.wait(self.step_seconds):
            return
        self._set_task(task, "running")
        env = {s["name"]: s["value"] for s in job.body.get("commonEnvironmentSettings", [])}
        env.update({s["name"]: s["value"] for s in task.body.get("environmentSettings", [])})
        env.update(AZ_BATCH_JOB_ID=job.id, AZ_BATCH_TASK_ID=task.id, AZ_BATCH_POOL_ID=job.pool_id or "")
        wall_clock = (job.body.get("constraints") or {}).get("maxWallClockTime")
        timeout = None
        if wall_clock:
            limit = isodate.parse_duration(wall_clock)
            if isinstance(limit, timedelta) and limit < timedelta(days=3650):
                timeout = max(0.0, (job.created + limit - _now()).total_seconds())
        outcome = self.runner.run_process(f"{job.id}/{task.id}", task.body["commandLine"], env, timeout=timeout)
        with self._lock:
            if task.state == "completed":
                return
            task.exit_code = outcome.exit_code
            if outcome.killed:
                task.failure_info = _task_ended()
            elif outcome.exit_code != 0:
                task.failure_info = {
                    "category": "usererror",
                    "code": "FailureExitCode",
                    "message": "The task exited with an exit code representing a failure",
                    "details": [{"name": "Message", "value": f"The task exited with exit code {outcome.exit_code}"}],
                }
            task.previous_state, task.state = task.state, "completed"
            task.ended = task.transition = _now()
            if outcome.timed_out and job.state == "active":
                self._complete_job(job, "MaxWallClockTimeExpiry")
            self._check_job_completion(job)

    def _end_task(self, job: Job, task: Task) -> None:
        """Terminate a task: it is completed at once (TaskEnded); its process is killed."""
        task.terminated.set()
        with self._lock:
            if task.state != "completed":
                task.previous_state, task.state = task.state, "completed"
                task.ended = task.transition = _now()
                task.failure_info = _task_ended()
                self._check_job_completion(job)
        self.runner.kill(f"{job.id}/{task.id}")

    def _terminate_task(self, job: Job, task: Task) -> None:
        with self._lock:
            if task.state == "completed":
                raise BatchError(409, "TaskCompleted", "The specified task is already completed.")
        self._end_task(job, task)

    def _task_file(self, job: Job, task: Task, path: str, request: Request) -> Response:
        file = self.runner.run_dir(f"{job.id}/{task.id}") / path
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

    def stop(self) -> None:
        super().stop()
        if self._own_runner:
            self.runner.shutdown()


def _task_ended() -> dict[str, Any]:
    return {"category": "usererror", "code": "TaskEnded", "message": "The task was terminated"}


_FILTER_TERM = re.compile(r"^\s*(?:(\w+) eq '([^']*)'|startswith\((\w+),\s*'([^']*)'\))\s*$")


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
