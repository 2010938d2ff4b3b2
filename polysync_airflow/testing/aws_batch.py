"""A local AWS Batch endpoint speaking the Batch REST-JSON protocol as boto3 and aiobotocore send it.

Every submitted job really runs its job definition's command (``Ref::name`` placeholders substituted)
in a local subprocess and walks the AWS status sequence SUBMITTED -> PENDING -> RUNNABLE -> STARTING ->
RUNNING -> SUCCEEDED/FAILED, with the real exit code and AWS's wording of the status reason.

Each job's output is also kept as a CloudWatch Logs stream (the job's ``container.logStreamName``, in the
job definition's ``awslogs-group``, else ``/aws/batch/job``), served by the CloudWatch Logs JSON API
``GetLogEvents`` on the same URL, so a boto3 ``logs`` client with this ``endpoint_url`` reads it.

This module is the protocol: routing (``POST /v1/<operation>``, ``/v1/tags/<arn>``, CloudWatch Logs by
``X-Amz-Target``), paging tokens, answer bodies and errors on the wire. The state and AWS's rules are the
model's (:mod:`~polysync_airflow.testing.aws_batch_model`), how a job runs its life cycle's
(:mod:`~polysync_airflow.testing.aws_batch_lifecycle`).
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from polysync_airflow.testing._emulator import BatchEndpoint, OnModel
from polysync_airflow.testing._http import Request, Response
from polysync_airflow.testing.aws_batch_model import AwsBatchModel, ClientException
from polysync_airflow.testing.aws_batch_resources import ComputeEnvironment, Job, JobDefinition, JobQueue
from polysync_airflow.testing.aws_logs import LOGS_TARGET_PREFIX, LocalCloudWatchLogs
from polysync_airflow.testing.runner import LocalJobRunner

TAGS_PATH = "/v1/tags/"
PAGE_KEY = "polysync-local"
PAGE_SIZE = 100


def _page(items: list[Any], max_results: int | None, token: str | None) -> tuple[list[Any], str | None]:
    """One page of ``items`` and the token of the next (None on the last): AWS's opaque ``nextToken``."""
    start = int(base64.urlsafe_b64decode(token.encode()).decode().split(":")[1]) if token else 0
    end = start + (max_results or PAGE_SIZE)
    next_token = base64.urlsafe_b64encode(f"{PAGE_KEY}:{end}".encode()).decode() if end < len(items) else None
    return items[start:end], next_token


def _paged(
    key: str, items: list[Any], body: dict[str, Any], describe: Callable[[Any], dict[str, Any]]
) -> dict[str, Any]:
    """A List/Describe answer: the page's items described under ``key``, and ``nextToken`` if there is more."""
    items, token = _page(items, body.get("maxResults"), body.get("nextToken"))
    result: dict[str, Any] = {key: [describe(item) for item in items]}
    if token:
        result["nextToken"] = token
    return result


def _error(status: int, code: str, message: str) -> Response:
    return Response.json(status, {"__type": code, "message": message}, **{"x-amzn-ErrorType": code})


class LocalAwsBatch(BatchEndpoint[Job]):
    """A real AWS Batch endpoint on 127.0.0.1 backed by local processes.

    ``step_seconds`` is how long a job stays in each of PENDING, RUNNABLE and STARTING. The operation
    methods (``submit_job(body)``, ...) take and answer the JSON bodies of the wire.
    """

    model: AwsBatchModel
    queues = OnModel[dict[str, JobQueue]]()
    definitions = OnModel[list[JobDefinition]]()
    jobs = OnModel[dict[str, Job]]()
    log_groups = OnModel[dict[str, dict[str, list[dict[str, Any]]]]]()
    region = OnModel[str]()
    account = OnModel[str]()

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
        super().__init__(AwsBatchModel(region, account, step_seconds, runner), host, port)
        self.logs = LocalCloudWatchLogs(self.model)
        self.describe_counts: Counter[str] = Counter()
        """How often each job id was asked for in DescribeJobs (tests: "is anyone watching this job?")."""
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
            "describecomputeenvironments": self.describe_compute_environments,
        }
        self.denied_operations: set[str] = set()
        """Tests: operations (``DescribeComputeEnvironments``, ...) answered with ``AccessDeniedException``, as
        AWS answers an identity whose policy does not allow them."""
        self.load_seed(seed)

    @property
    def deny_log_reads(self) -> bool:
        """Tests: answer every CloudWatch Logs read with ``AccessDeniedException``, as AWS does without
        ``logs:GetLogEvents`` permission."""
        return self.logs.deny_reads

    @deny_log_reads.setter
    def deny_log_reads(self, deny: bool) -> None:
        self.logs.deny_reads = deny

    # -- seeding and helpers for tests ---------------------------------------------------------------

    def load_seed(self, seed: str | Path | dict[str, Any] | None) -> None:
        self.model.load_seed(self.read_seed(seed, "aws_batch_seed.json"))

    def add_job_queue(
        self,
        name: str,
        priority: int = 1,
        scheduling_policy: str | None = None,
        compute_environments: list[str] | None = None,
    ) -> JobQueue:
        return self.model.add_job_queue(name, priority, scheduling_policy, compute_environments)

    def add_compute_environment(
        self,
        name: str,
        *,
        max_vcpus: int = 256,
        state: str = "ENABLED",
        status: str = "VALID",
        status_reason: str | None = None,
    ) -> ComputeEnvironment:
        """A managed compute environment to attach to queues (``add_job_queue(..., compute_environments=[name])``):
        ``status="INVALID"`` or a ``max_vcpus`` below a job's vCPUs keeps that job RUNNABLE, as on AWS."""
        return self.model.add_compute_environment(
            name, max_vcpus=max_vcpus, state=state, status=status, status_reason=status_reason
        )

    def hold_queue(self, name: str, reason: str | None) -> None:
        """Tests: jobs of the queue reaching RUNNABLE stay there with ``statusReason`` ``reason`` (None: release
        them), e.g. ``CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - ...``."""
        queue = self.model.queue(name)
        with self.model.lock:
            queue.hold_reason = reason

    def job_output(self, job_id: str) -> tuple[str, str]:
        """(stdout, stderr) of a job's last attempt."""
        return self.runner.output(job_id)

    def log_events(self, group: str, stream: str) -> list[dict[str, Any]]:
        """Tests: the events of one stream (a copy)."""
        return self.model.log_events(group, stream)

    # -- routing -----------------------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        target = next((v for k, v in request.headers.items() if k.lower() == "x-amz-target"), "")
        if target.startswith(LOGS_TARGET_PREFIX):
            operation = target[len(LOGS_TARGET_PREFIX) :]
            self.record(f"logs:{operation}")
            return self.logs.dispatch(request, operation)
        operation = request.path.rstrip("/").rsplit("/", 1)[-1].lower()
        handler = self._operations.get(operation) if request.method == "POST" else None
        resource: dict[str, str] = {}
        if request.path.startswith(TAGS_PATH) and request.method in ("GET", "POST"):
            # TagResource and ListTagsForResource: /v1/tags/{resourceArn}
            operation = "tagresource" if request.method == "POST" else "listtagsforresource"
            handler = self.tag_resource if request.method == "POST" else self.list_tags_for_resource
            resource = {"resourceArn": unquote(request.path[len(TAGS_PATH) :])}
        self.record(operation)
        denied = {name.lower(): name for name in self.denied_operations}
        if operation in denied:
            return _error(
                403,
                "AccessDeniedException",
                f"User: arn:aws:sts::{self.account}:assumed-role/airflow/worker is not authorized to perform: "
                f"batch:{denied[operation]} because no identity-based policy allows the batch:{denied[operation]} "
                "action",
            )
        if handler is None:
            return _error(404, "UnknownOperationException", f"Unknown operation {request.method} {request.path}")
        try:
            return Response.json(200, handler({**request.json(), **resource}))
        except ClientException as exc:
            return _error(400, ClientException.code, str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            return _error(400, ClientException.code, f"Invalid request: {exc}")

    # -- operations: a request body in, an answer body out --------------------------------------------------

    def submit_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self.model.submit_job(body)
        return {"jobArn": job.arn, "jobName": job.name, "jobId": job.job_id}

    def describe_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.model.lock:
            jobs = self.model.describe_jobs(body)
            self.describe_counts.update(body["jobs"])
            return {"jobs": [job.describe() for job in jobs]}

    def terminate_job(self, body: dict[str, Any]) -> dict[str, Any]:
        self.model.terminate_job(body)
        return {}

    def cancel_job(self, body: dict[str, Any]) -> dict[str, Any]:
        self.model.cancel_job(body)
        return {}

    def list_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        return _paged("jobSummaryList", self.model.list_jobs(body), body, Job.summary)

    def tag_resource(self, body: dict[str, Any]) -> dict[str, Any]:
        self.model.tag_resource(body)
        return {}

    def list_tags_for_resource(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"tags": self.model.list_tags_for_resource(body)}

    def describe_job_definitions(self, body: dict[str, Any]) -> dict[str, Any]:
        return _paged("jobDefinitions", self.model.describe_job_definitions(body), body, JobDefinition.describe)

    def register_job_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        definition = self.model.register_job_definition(body)
        return {
            "jobDefinitionName": definition.name,
            "jobDefinitionArn": definition.arn,
            "revision": definition.revision,
        }

    def deregister_job_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        self.model.deregister_job_definition(body)
        return {}

    def describe_job_queues(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"jobQueues": [queue.describe() for queue in self.model.describe_job_queues(body)]}

    def describe_compute_environments(self, body: dict[str, Any]) -> dict[str, Any]:
        environments = self.model.describe_compute_environments(body)
        return _paged("computeEnvironments", environments, body, lambda environment: environment.describe())

    def get_log_events(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.logs.get_log_events(body)

    def delete_log_stream(self, body: dict[str, Any]) -> dict[str, Any]:
        """DeleteLogStream (tests: a stream that is gone, as after its retention expired)."""
        return self.logs.delete_log_stream(body)
