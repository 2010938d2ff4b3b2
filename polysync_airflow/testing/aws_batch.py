"""A local AWS Batch endpoint speaking the Batch REST-JSON protocol as boto3 and aiobotocore send it.

Every submitted job really runs its job definition's command (``Ref::name`` placeholders substituted)
in a local subprocess and walks the AWS status sequence SUBMITTED -> PENDING -> RUNNABLE -> STARTING ->
RUNNING -> SUCCEEDED/FAILED, with the real exit code and AWS's wording of the status reason.

Each job's output is also kept as a CloudWatch Logs stream (the job's ``container.logStreamName``, in the
job definition's ``awslogs-group``, else ``/aws/batch/job``), served by the CloudWatch Logs JSON API
``GetLogEvents`` on the same URL, so a boto3 ``logs`` client with this ``endpoint_url`` reads it.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from polysync_airflow.testing._http import LocalHttpEndpoint, Request, Response
from polysync_airflow.testing.runner import LocalJobRunner

_TAGS_PATH = "/v1/tags/"
ACTIVE_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
JOB_STATUSES = (*ACTIVE_STATES, "SUCCEEDED", "FAILED")
REASON_EXITED = "Essential container in task exited"
REASON_TIMEOUT = "Job attempt duration exceeded timeout"
REASON_DEPENDENCY = "Dependent Job failed"
DEFAULT_LOG_GROUP = "/aws/batch/job"
LOGS_TARGET_PREFIX = "Logs_20140328."
_LOGS_PAGE_LIMIT = 10000


class ClientException(Exception):
    """The error AWS Batch returns for a bad request (HTTP 400, ``__type`` ClientException)."""

    code = "ClientException"


class LogsError(Exception):
    """An error of the CloudWatch Logs API (HTTP 400 with its ``__type``, as AWS answers)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class JobQueue:
    name: str
    arn: str
    priority: int = 1
    scheduling_policy_arn: str | None = None
    state: str = "ENABLED"

    def describe(self) -> dict[str, Any]:
        result = {
            "jobQueueName": self.name,
            "jobQueueArn": self.arn,
            "state": self.state,
            "status": "VALID",
            "priority": self.priority,
            "computeEnvironmentOrder": [],
            "tags": {},
        }
        if self.scheduling_policy_arn:
            result["schedulingPolicyArn"] = self.scheduling_policy_arn
        return result


@dataclass
class JobDefinition:
    name: str
    revision: int
    arn: str
    command: list[str]
    parameters: dict[str, str] = field(default_factory=dict)
    environment: list[dict[str, str]] = field(default_factory=list)
    status: str = "ACTIVE"
    timeout: dict[str, int] | None = None
    retry_strategy: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    propagate_tags: bool = False
    image: str = "busybox"
    log_configuration: dict[str, Any] | None = None

    @property
    def log_group(self) -> str:
        """Where the jobs' output goes: the ``awslogs-group`` option, else AWS Batch's default group."""
        options = (self.log_configuration or {}).get("options") or {}
        return options.get("awslogs-group") or DEFAULT_LOG_GROUP

    def describe(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "jobDefinitionName": self.name,
            "jobDefinitionArn": self.arn,
            "revision": self.revision,
            "status": self.status,
            "type": "container",
            "parameters": dict(self.parameters),
            "containerProperties": {
                "image": self.image,
                "command": list(self.command),
                "environment": list(self.environment),
                "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
            },
            "tags": dict(self.tags),
            "propagateTags": self.propagate_tags,
            "platformCapabilities": ["EC2"],
            "containerOrchestrationType": "ECS",
        }
        if self.log_configuration:
            result["containerProperties"]["logConfiguration"] = self.log_configuration
        if self.timeout:
            result["timeout"] = self.timeout
        if self.retry_strategy:
            result["retryStrategy"] = self.retry_strategy
        return result


@dataclass
class Job:
    job_id: str
    name: str
    arn: str
    queue: JobQueue
    definition: JobDefinition
    parameters: dict[str, str]
    request: dict[str, Any]
    created_at: int = field(default_factory=_now_ms)
    status: str = "SUBMITTED"
    status_reason: str | None = None
    started_at: int | None = None
    stopped_at: int | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    array_index: int | None = None
    children: list[Job] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def log_stream_name(self) -> str:
        return f"{self.definition.name}/default/{self.job_id.replace(':', '-')}"

    def status_summary(self) -> dict[str, int]:
        summary = dict.fromkeys((*ACTIVE_STATES, "SUCCEEDED", "FAILED"), 0)
        for child in self.children:
            summary[child.status] += 1
        return summary

    def container(self) -> dict[str, Any]:
        container: dict[str, Any] = {
            "image": self.definition.image,
            "command": substitute(self.definition.command, self.parameters),
            "environment": self.environment_list(),
        }
        if self.started_at is not None:  # AWS names the stream once the container has started
            container["logStreamName"] = self.log_stream_name
        if self.definition.log_configuration:
            container["logConfiguration"] = self.definition.log_configuration
        if self.exit_code is not None:
            container["exitCode"] = self.exit_code
        return container

    def environment_list(self) -> list[dict[str, str]]:
        return [
            {"name": item["name"], "value": substitute([item["value"]], self.parameters)[0]}
            for item in self.definition.environment
        ]

    def describe(self) -> dict[str, Any]:
        req = self.request
        detail: dict[str, Any] = {
            "jobArn": self.arn,
            "jobName": self.name,
            "jobId": self.job_id,
            "jobQueue": self.queue.arn,
            "status": self.status,
            "attempts": list(self.attempts),
            "createdAt": self.created_at,
            "dependsOn": list(req.get("dependsOn", [])),
            "jobDefinition": self.definition.arn,
            "parameters": dict(self.parameters),
            "tags": dict(self.tags),
            "propagateTags": bool(req.get("propagateTags", self.definition.propagate_tags)),
            "platformCapabilities": ["EC2"],
        }
        if not self.children:
            detail["container"] = self.container()
        for key, value in (
            ("statusReason", self.status_reason),
            ("startedAt", self.started_at),
            ("stoppedAt", self.stopped_at),
            ("shareIdentifier", req.get("shareIdentifier")),
            ("schedulingPriority", req.get("schedulingPriorityOverride")),
            ("timeout", req.get("timeout") or self.definition.timeout),
            ("retryStrategy", req.get("retryStrategy") or self.definition.retry_strategy),
        ):
            if value is not None:
                detail[key] = value
        if self.children:
            detail["arrayProperties"] = {"size": len(self.children), "statusSummary": self.status_summary()}
        elif self.array_index is not None:
            detail["arrayProperties"] = {"index": self.array_index}
        return detail

    def summary(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "jobArn": self.arn,
            "jobId": self.job_id,
            "jobName": self.name,
            "createdAt": self.created_at,
            "status": self.status,
            "jobDefinition": self.definition.arn,
        }
        for key, value in (
            ("statusReason", self.status_reason),
            ("startedAt", self.started_at),
            ("stoppedAt", self.stopped_at),
        ):
            if value is not None:
                item[key] = value
        if self.exit_code is not None:
            item["container"] = {"exitCode": self.exit_code}
        if self.children:
            item["arrayProperties"] = {"size": len(self.children)}
        elif self.array_index is not None:
            item["arrayProperties"] = {"index": self.array_index}
        return item


_REF = re.compile(r"Ref::([A-Za-z0-9_]+)")


def substitute(command: list[str], parameters: dict[str, str]) -> list[str]:
    """Replace ``Ref::name`` with the parameter's value, leaving unknown placeholders as AWS does."""
    return [_REF.sub(lambda m: parameters.get(m.group(1), m.group(0)), part) for part in command]


_PAGE_KEY = "polysync-local"


def _page(items: list[Any], max_results: int | None, token: str | None, default: int) -> tuple[list[Any], str | None]:
    start = int(base64.urlsafe_b64decode(token.encode()).decode().split(":")[1]) if token else 0
    size = max_results or default
    end = start + size
    next_token = base64.urlsafe_b64encode(f"{_PAGE_KEY}:{end}".encode()).decode() if end < len(items) else None
    return items[start:end], next_token


class LocalAwsBatch(LocalHttpEndpoint):
    """A real AWS Batch endpoint on 127.0.0.1 backed by local processes.

    ``step_seconds`` is how long a job stays in each of PENDING, RUNNABLE and STARTING.
    """

    def __init__(
        self,
        seed: str | Path | dict[str, Any] | None = None,
        *,
        region: str = "us-east-1",
        account: str = "123456789012",
        step_seconds: float = 0.05,
        runner: LocalJobRunner | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.region, self.account, self.step_seconds = region, account, step_seconds
        self._own_runner = runner is None
        self.runner = runner or LocalJobRunner()
        self._lock = threading.RLock()
        self.queues: dict[str, JobQueue] = {}
        self.definitions: list[JobDefinition] = []
        self.jobs: dict[str, Job] = {}
        self.describe_counts: Counter[str] = Counter()
        """How often each job id was asked for in DescribeJobs (tests: "is anyone watching this job?")."""
        self.log_groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
        """CloudWatch Logs: group name -> stream name -> events (``timestamp``, ``message``, ``ingestionTime``)."""
        self.deny_log_reads = False
        """Tests: answer every CloudWatch Logs read with ``AccessDeniedException``, as AWS does without
        ``logs:GetLogEvents`` permission."""
        self._logs_operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "GetLogEvents": self.get_log_events,
            "DeleteLogStream": self.delete_log_stream,
        }
        self._operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "submitjob": self.submit_job,
            "describejobs": self.describe_jobs,
            "terminatejob": self.terminate_job,
            "canceljob": self.cancel_job,
            "listjobs": self.list_jobs,
            "describejobdefinitions": self.describe_job_definitions,
            "registerjobdefinition": self.register_job_definition,
            "deregisterjobdefinition": self.deregister_job_definition,
            "describejobqueues": self.describe_job_queues,
        }
        self.load_seed(seed)

    # -- seeding -------------------------------------------------------------------------------

    def load_seed(self, seed: str | Path | dict[str, Any] | None) -> None:
        data = self.read_seed(seed, "aws_batch_seed.json")
        for queue in data.get("job_queues", []):
            self.add_job_queue(queue["name"], queue.get("priority", 1), queue.get("scheduling_policy"))
        for definition in data.get("job_definitions", []):
            registered = self.register_job_definition(
                {
                    "jobDefinitionName": definition["name"],
                    "type": "container",
                    "parameters": definition.get("parameters", {}),
                    "containerProperties": {
                        "image": "busybox",
                        "command": definition["command"],
                        **(
                            {"logConfiguration": definition["log_configuration"]}
                            if definition.get("log_configuration")
                            else {}
                        ),
                    },
                }
            )
            if definition.get("deregistered"):
                self.deregister_job_definition({"jobDefinition": registered["jobDefinitionArn"]})

    def _arn(self, kind: str, name: str) -> str:
        return f"arn:aws:batch:{self.region}:{self.account}:{kind}/{name}"

    def add_job_queue(self, name: str, priority: int = 1, scheduling_policy: str | None = None) -> JobQueue:
        policy_arn = self._arn("scheduling-policy", scheduling_policy) if scheduling_policy else None
        queue = JobQueue(name, self._arn("job-queue", name), priority, policy_arn)
        with self._lock:
            self.queues[name] = queue
        return queue

    # -- wire protocol ---------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        target = next((v for k, v in request.headers.items() if k.lower() == "x-amz-target"), "")
        if target.startswith(LOGS_TARGET_PREFIX):
            return self._dispatch_logs(request, target[len(LOGS_TARGET_PREFIX) :])
        operation = request.path.rstrip("/").rsplit("/", 1)[-1].lower()
        handler = self._operations.get(operation) if request.method == "POST" else None
        resource: dict[str, str] = {}
        if request.path.startswith(_TAGS_PATH) and request.method in ("GET", "POST"):
            # TagResource and ListTagsForResource: /v1/tags/{resourceArn}
            operation = "tagresource" if request.method == "POST" else "listtagsforresource"
            handler = self.tag_resource if request.method == "POST" else self.list_tags_for_resource
            resource = {"resourceArn": unquote(request.path[len(_TAGS_PATH) :])}
        self.record(operation)
        if handler is None:
            return self._error(404, "UnknownOperationException", f"Unknown operation {request.method} {request.path}")
        try:
            return Response.json(200, handler({**request.json(), **resource}))
        except ClientException as exc:
            return self._error(400, ClientException.code, str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            return self._error(400, ClientException.code, f"Invalid request: {exc}")

    @staticmethod
    def _error(status: int, code: str, message: str) -> Response:
        return Response.json(status, {"__type": code, "message": message}, **{"x-amzn-ErrorType": code})

    def _dispatch_logs(self, request: Request, operation: str) -> Response:
        """CloudWatch Logs (JSON 1.1 protocol: ``POST /`` with ``X-Amz-Target: Logs_20140328.<Operation>``)."""
        self.record(f"logs:{operation}")
        handler = self._logs_operations.get(operation) if request.method == "POST" else None
        if handler is None:
            return self._error(400, "UnknownOperationException", f"Unknown operation {operation}")
        content_type = "application/x-amz-json-1.1"
        try:
            return Response.json(200, handler(request.json()), content_type=content_type)
        except LogsError as exc:
            return Response.json(
                400,
                {"__type": exc.code, "message": str(exc)},
                content_type=content_type,
                **{"x-amzn-ErrorType": exc.code},
            )
        except (KeyError, TypeError, ValueError) as exc:
            return Response.json(
                400,
                {"__type": "InvalidParameterException", "message": f"Invalid request: {exc}"},
                content_type=content_type,
            )

    # -- lookups ---------------------------------------------------------------------------------

    def _queue(self, name_or_arn: str) -> JobQueue:
        with self._lock:
            for queue in self.queues.values():
                if name_or_arn in (queue.name, queue.arn):
                    return queue
        raise ClientException(f"Job queue {name_or_arn} does not exist")

    def _definition(self, ref: str) -> JobDefinition:
        name = ref.split("/", 1)[1] if ref.startswith("arn:") and "/" in ref else ref
        base, _, revision = name.partition(":")
        with self._lock:
            candidates = [d for d in self.definitions if d.name == base]
            if revision:
                found = [d for d in candidates if str(d.revision) == revision]
            else:  # a bare name means the latest ACTIVE revision
                found = sorted((d for d in candidates if d.status == "ACTIVE"), key=lambda d: d.revision)[-1:]
        if not found:
            raise ClientException(f"Job definition {ref} does not exist")
        if found[-1].status != "ACTIVE":  # AWS runs only ACTIVE revisions; a deregistered one is kept for reading
            raise ClientException(f"Job definition {ref} is INACTIVE: submit an ACTIVE revision")
        return found[-1]

    def _job(self, job_id: str) -> Job | None:
        with self._lock:
            parent_id, _, index = job_id.partition(":")
            job = self.jobs.get(parent_id)
            if job is not None and index:
                return job.children[int(index)] if index.isdigit() and int(index) < len(job.children) else None
            return job

    # -- operations ------------------------------------------------------------------------------

    def submit_job(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["jobName"]
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", name):
            raise ClientException(
                "Job name should be 1-128 characters long, start with a letter or number, and contain "
                "only letters, numbers, hyphens and underscores"
            )
        queue = self._queue(body["jobQueue"])
        definition = self._definition(body["jobDefinition"])
        if queue.scheduling_policy_arn and not body.get("shareIdentifier"):
            raise ClientException(
                f"Share identifier is required for job queue {queue.name} with a fair share scheduling policy"
            )
        if not queue.scheduling_policy_arn and body.get("shareIdentifier"):
            raise ClientException(
                f"Share identifier is not allowed for job queue {queue.name} without a scheduling policy"
            )
        size = body.get("arrayProperties", {}).get("size")
        if size is not None and not 2 <= size <= 10000:
            raise ClientException("Array size must be between 2 and 10000")
        job_id = str(uuid.uuid4())
        parameters = {**definition.parameters, **body.get("parameters", {})}
        job = Job(job_id, name, self._arn("job", job_id), queue, definition, parameters, body)
        job.tags = dict(body.get("tags", {}))
        if size:
            job.children = [
                Job(
                    f"{job_id}:{i}",
                    name,
                    self._arn("job", f"{job_id}:{i}"),
                    queue,
                    definition,
                    parameters,
                    body,
                    array_index=i,
                )
                for i in range(size)
            ]
        with self._lock:
            self.jobs[job_id] = job
        self.runner.spawn(lambda: self._lifecycle(job), name=f"aws-job-{job_id}")
        return {"jobArn": job.arn, "jobName": name, "jobId": job_id}

    def describe_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = body["jobs"]
        if len(ids) > 100:
            raise ClientException("Too many job IDs: at most 100 are allowed")
        with self._lock:
            self.describe_counts.update(ids)
            found = [job.describe() for job in map(self._job, ids) if job is not None]
        return {"jobs": found}

    def terminate_job(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("reason"):
            raise ClientException("'reason' is a required field (cannot be a empty string)")
        job = self._job(body["jobId"])
        if job is not None:
            self._stop(job, body["reason"], include_running=True)
        return {}

    def cancel_job(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("reason"):
            raise ClientException("'reason' is a required field (cannot be an empty string)")
        job = self._job(body["jobId"])
        if job is not None:
            self._stop(job, body["reason"], include_running=False)
        return {}

    def list_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("jobQueue") and body.get("arrayJobId"):
            raise ClientException("Only one of jobQueue and arrayJobId may be specified")
        wanted = body.get("jobStatus", "RUNNING")  # without a status, AWS lists only RUNNING jobs
        if wanted not in JOB_STATUSES and not body.get("filters"):
            raise ClientException(f"Job status is not one of {' | '.join(JOB_STATUSES)}")
        if body.get("arrayJobId"):
            parent = self._job(body["arrayJobId"])
            with self._lock:
                jobs = list(parent.children) if parent else []
        elif body.get("jobQueue"):
            queue = self._queue(body["jobQueue"])
            with self._lock:
                jobs = [job for job in self.jobs.values() if job.queue is queue]
        else:
            raise ClientException("Either jobQueue or arrayJobId must be specified")
        # Filters don't apply to the children of an array job; elsewhere they make AWS ignore jobStatus.
        name_filters = [f for f in body.get("filters", []) if f.get("name") == "JOB_NAME"]
        if name_filters and not body.get("arrayJobId"):
            patterns = [v.lower() for f in name_filters for v in f.get("values", [])]
            jobs = [
                job
                for job in jobs
                if any(
                    job.name.lower().startswith(p[:-1]) if p.endswith("*") else job.name.lower() == p for p in patterns
                )
            ]
        else:
            jobs = [job for job in jobs if job.status == wanted]
        jobs.sort(key=lambda job: job.created_at, reverse=True)
        page, token = _page(jobs, body.get("maxResults"), body.get("nextToken"), 100)
        result: dict[str, Any] = {"jobSummaryList": [job.summary() for job in page]}
        if token:
            result["nextToken"] = token
        return result

    def _tagged_job(self, arn: str) -> Job:
        job = self._job(arn.rpartition(":job/")[2]) if arn.startswith(self._arn("job", "")) else None
        if job is None:
            raise ClientException(f"Resource {arn} not found")
        return job

    def tag_resource(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self._tagged_job(body["resourceArn"])
        with self._lock:
            job.tags = {**job.tags, **body["tags"]}
        return {}

    def list_tags_for_resource(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self._tagged_job(body["resourceArn"])
        with self._lock:
            return {"tags": dict(job.tags)}

    def describe_job_definitions(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            found = list(self.definitions)
        if body.get("jobDefinitions"):
            wanted = body["jobDefinitions"]
            found = [d for d in found if d.arn in wanted or d.name in wanted or f"{d.name}:{d.revision}" in wanted]
        if body.get("jobDefinitionName"):
            found = [d for d in found if d.name == body["jobDefinitionName"]]
        if body.get("status"):
            found = [d for d in found if d.status == body["status"]]
        found.sort(key=lambda d: (d.name, d.revision))
        page, token = _page(found, body.get("maxResults"), body.get("nextToken"), 100)
        result: dict[str, Any] = {"jobDefinitions": [d.describe() for d in page]}
        if token:
            result["nextToken"] = token
        return result

    def register_job_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["jobDefinitionName"]
        props = body.get("containerProperties", {})
        with self._lock:
            revision = 1 + max((d.revision for d in self.definitions if d.name == name), default=0)
            definition = JobDefinition(
                name=name,
                revision=revision,
                arn=self._arn("job-definition", f"{name}:{revision}"),
                command=list(props.get("command", ["/bin/true"])),
                parameters=dict(body.get("parameters", {})),
                environment=list(props.get("environment", [])),
                timeout=body.get("timeout"),
                retry_strategy=body.get("retryStrategy"),
                tags=dict(body.get("tags", {})),
                propagate_tags=bool(body.get("propagateTags", False)),
                image=props.get("image", "busybox"),
                log_configuration=props.get("logConfiguration"),
            )
            self.definitions.append(definition)
        return {"jobDefinitionName": name, "jobDefinitionArn": definition.arn, "revision": revision}

    def deregister_job_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        ref = body["jobDefinition"]
        with self._lock:
            for definition in self.definitions:
                if ref in (definition.arn, f"{definition.name}:{definition.revision}"):
                    definition.status = "INACTIVE"
        return {}

    def describe_job_queues(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            queues = list(self.queues.values())
        if body.get("jobQueues"):
            queues = [q for q in queues if q.name in body["jobQueues"] or q.arn in body["jobQueues"]]
        return {"jobQueues": [q.describe() for q in queues]}

    # -- the job life cycle ------------------------------------------------------------------------

    def _set(self, job: Job, status: str, reason: str | None = None) -> None:
        with self._lock:
            if job.status in ("SUCCEEDED", "FAILED"):
                return
            job.status = status
            if reason is not None:
                job.status_reason = reason
            if status == "RUNNING" and job.started_at is None:
                job.started_at = _now_ms()
            if status in ("SUCCEEDED", "FAILED"):
                job.stopped_at = _now_ms()

    def _stop(self, job: Job, reason: str, include_running: bool) -> None:
        targets = [job, *job.children]
        for target in targets:
            with self._lock:
                if target.status in ("SUCCEEDED", "FAILED"):
                    continue
                if not include_running and target.status in ("STARTING", "RUNNING"):
                    continue
                target.cancel.set()
                target.status_reason = reason
            if not self.runner.kill(target.job_id):
                self._set(target, "FAILED", reason)

    def _wait(self, job: Job, seconds: float) -> bool:
        """Sleep; True if the job was cancelled meanwhile (or the endpoint is stopping)."""
        return job.cancel.wait(seconds) or self.runner.stopping.is_set()

    def _dependencies_done(self, job: Job) -> bool:
        """Wait for dependsOn jobs; False if one of them failed."""
        for dependency in job.request.get("dependsOn", []):
            other = self._job(dependency["jobId"])
            while other is not None and other.status not in ("SUCCEEDED", "FAILED"):
                if self._wait(job, self.step_seconds):
                    return True
            if other is not None and other.status == "FAILED":
                return False
        return True

    def _lifecycle(self, job: Job) -> None:
        if self._wait(job, self.step_seconds):
            return self._set(job, "FAILED")
        self._set(job, "PENDING")
        if not self._dependencies_done(job):
            return self._set(job, "FAILED", REASON_DEPENDENCY)
        if self._wait(job, self.step_seconds):
            return self._set(job, "FAILED")
        if job.children:
            return self._run_array(job)
        self._run_attempts(job)

    def _run_array(self, parent: Job) -> None:
        for child in parent.children:  # a child is created as it enters PENDING (its createdAt)
            with self._lock:
                child.created_at = _now_ms()
            self._set(child, "PENDING")
        self._set(parent, "RUNNABLE")
        indexes = iter(range(len(parent.children)))
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    index = next(indexes, None)
                if index is None:
                    return
                child = parent.children[index]
                if parent.cancel.is_set():
                    self._set(child, "FAILED", parent.status_reason)
                    continue
                self._set(child, "RUNNABLE")
                self._run_attempts(child, on_running=lambda: self._set(parent, "RUNNING"))

        workers = [threading.Thread(target=worker, daemon=True) for _ in range(min(4, len(parent.children)))]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        failed = [child for child in parent.children if child.status == "FAILED"]
        if failed:
            self._set(
                parent,
                "FAILED",
                parent.status_reason
                if parent.cancel.is_set()
                else f"Array Child Job failed: {len(failed)} of {len(parent.children)} children failed",
            )
        else:
            self._set(parent, "SUCCEEDED", REASON_EXITED)

    def _run_attempts(self, job: Job, on_running: Callable[[], None] | None = None) -> None:
        retry = job.request.get("retryStrategy") or job.definition.retry_strategy or {}
        timeout = (job.request.get("timeout") or job.definition.timeout or {}).get("attemptDurationSeconds")
        env = {item["name"]: item["value"] for item in job.environment_list()}
        env.update(AWS_BATCH_JOB_ID=job.job_id, AWS_BATCH_JQ_NAME=job.queue.name)
        if job.array_index is not None:
            env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(job.array_index)
        command = substitute(job.definition.command, job.parameters)
        for attempt in range(1, int(retry.get("attempts", 1)) + 1):
            self._set(job, "RUNNABLE")
            if self._wait(job, self.step_seconds):
                return self._set(job, "FAILED")
            self._set(job, "STARTING")
            if self._wait(job, self.step_seconds):
                return self._set(job, "FAILED")
            self._set(job, "RUNNING")
            self._open_log_stream(job)
            if on_running:
                on_running()
            started = _now_ms()
            env["AWS_BATCH_JOB_ATTEMPT"] = str(attempt)
            outcome = self.runner.run_process(job.job_id, command, env, timeout=timeout)
            self._append_output(job, outcome.stdout_path, outcome.stderr_path)
            with self._lock:
                job.exit_code = outcome.exit_code
                reason = (
                    job.status_reason if outcome.killed else (REASON_TIMEOUT if outcome.timed_out else REASON_EXITED)
                )
                job.attempts.append(
                    {
                        "container": {
                            "exitCode": outcome.exit_code,
                            "logStreamName": job.log_stream_name,
                            "networkInterfaces": [],
                        },
                        "startedAt": started,
                        "stoppedAt": _now_ms(),
                        "statusReason": reason,
                    }
                )
            if outcome.exit_code == 0 and not outcome.killed:
                return self._set(job, "SUCCEEDED", REASON_EXITED)
            if outcome.killed or outcome.timed_out:
                return self._set(job, "FAILED", reason)
        self._set(job, "FAILED", REASON_EXITED)

    # -- CloudWatch Logs ---------------------------------------------------------------------------------

    def _open_log_stream(self, job: Job) -> None:
        """The container started: its stream exists from now on (empty until output arrives)."""
        with self._lock:
            self.log_groups.setdefault(job.definition.log_group, {}).setdefault(job.log_stream_name, [])

    def _append_output(self, job: Job, *paths: Path) -> None:
        """An attempt ended: its output, line by line, becomes events of the job's stream (stdout, then stderr)."""
        now = _now_ms()
        lines = [line for path in paths if path.exists() for line in path.read_text(errors="replace").splitlines()]
        with self._lock:
            stream = self.log_groups.setdefault(job.definition.log_group, {}).setdefault(job.log_stream_name, [])
            stream += [{"timestamp": now, "message": line, "ingestionTime": now} for line in lines]

    def log_events(self, group: str, stream: str) -> list[dict[str, Any]]:
        """Tests: the events of one stream (a copy)."""
        with self._lock:
            return list(self.log_groups[group][stream])

    def _stream(self, body: dict[str, Any], action: str) -> list[dict[str, Any]]:
        group = body.get("logGroupName") or body.get("logGroupIdentifier")
        stream = body["logStreamName"]
        if not group:
            raise LogsError("InvalidParameterException", "Either logGroupName or logGroupIdentifier is required")
        if self.deny_log_reads:
            arn = f"arn:aws:logs:{self.region}:{self.account}:log-group:{group}:log-stream:{stream}"
            raise LogsError(
                "AccessDeniedException",
                f"User: arn:aws:iam::{self.account}:user/polysync-local is not authorized to perform: "
                f"logs:{action} on resource: {arn} because no identity-based policy allows the logs:{action} action",
            )
        with self._lock:
            if group not in self.log_groups:
                raise LogsError("ResourceNotFoundException", "The specified log group does not exist.")
            if stream not in self.log_groups[group]:
                raise LogsError("ResourceNotFoundException", "The specified log stream does not exist.")
            return self.log_groups[group][stream]

    def get_log_events(self, body: dict[str, Any]) -> dict[str, Any]:
        """GetLogEvents: one page of a stream. Tokens are ``f/<index>`` and ``b/<index>`` (AWS's form); without
        a token, ``startFromHead`` false (the default) gives the latest ``limit`` events."""
        with self._lock:
            events = [
                dict(e)
                for e in self._stream(body, "GetLogEvents")
                if e["timestamp"] >= body.get("startTime", 0)
                and ("endTime" not in body or e["timestamp"] < body["endTime"])
            ]
        limit = int(body.get("limit") or _LOGS_PAGE_LIMIT)
        if not 1 <= limit <= _LOGS_PAGE_LIMIT:
            raise LogsError("InvalidParameterException", f"limit must be between 1 and {_LOGS_PAGE_LIMIT}")
        token = body.get("nextToken")
        if token:
            direction, _, index = token.partition("/")
            if direction not in ("f", "b") or not index.isdigit():
                raise LogsError("InvalidParameterException", "The specified nextToken is invalid.")
            position = min(int(index), len(events))
            start, end = (position, position + limit) if direction == "f" else (position - limit, position)
        elif body.get("startFromHead"):
            start, end = 0, limit
        else:
            start, end = len(events) - limit, len(events)
        start, end = max(start, 0), min(end, len(events))
        return {
            "events": events[start:end],
            "nextForwardToken": f"f/{end:056d}",
            "nextBackwardToken": f"b/{start:056d}",
        }

    def delete_log_stream(self, body: dict[str, Any]) -> dict[str, Any]:
        """DeleteLogStream (tests: a stream that is gone, as after its retention expired)."""
        self._stream(body, "DeleteLogStream")
        with self._lock:
            del self.log_groups[body["logGroupName"]][body["logStreamName"]]
        return {}

    # -- helpers for tests -------------------------------------------------------------------------

    def wait_for_job(self, job_id: str, timeout: float = 30.0) -> Job:
        """Block until the job has finished (for tests); returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self._job(job_id)
            if job is not None and job.status in ("SUCCEEDED", "FAILED"):
                return job
            time.sleep(0.02)
        raise TimeoutError(f"job {job_id} did not finish within {timeout} s")

    def job_output(self, job_id: str) -> tuple[str, str]:
        """(stdout, stderr) of a job's last attempt."""
        return self.runner.output(job_id)

    def stop(self) -> None:
        super().stop()
        if self._own_runner:
            self.runner.shutdown()
