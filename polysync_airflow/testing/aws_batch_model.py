"""The local AWS Batch service without HTTP: its job queues, job definitions and jobs, AWS's rules for the
requests that change or read them (with AWS's error messages), and the CloudWatch Logs streams its jobs
write to.

Operations take a request body as AWS documents it (``SubmitJob``'s ``jobName``, ``jobQueue``, ...) and
answer with records (:mod:`~polysync_airflow.testing.aws_batch_resources`); a rule broken raises
:class:`ClientException`. How a submitted job runs is :mod:`~polysync_airflow.testing.aws_batch_lifecycle`;
the REST-JSON protocol in front is :mod:`~polysync_airflow.testing.aws_batch`.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from polysync_airflow.testing._emulator import BatchModel
from polysync_airflow.testing.aws_batch_lifecycle import start_job, stop_job
from polysync_airflow.testing.aws_batch_resources import (
    FINISHED_STATES,
    JOB_STATUSES,
    ComputeEnvironment,
    Job,
    JobDefinition,
    JobQueue,
    essential_container,
    main_node_container,
    now_ms,
    vcpus_of,
)
from polysync_airflow.testing.runner import LocalJobRunner

JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


class ClientException(Exception):
    """The error AWS Batch returns for a bad request (HTTP 400, ``__type`` ClientException)."""

    code = "ClientException"


class AwsBatchModel(BatchModel[Job]):
    """The state of one local AWS Batch account in one region, and its operations."""

    def __init__(
        self,
        region: str = "us-east-1",
        account: str = "123456789012",
        step_seconds: float = 0.05,
        runner: LocalJobRunner | None = None,
    ) -> None:
        super().__init__(step_seconds, runner)
        self.region, self.account = region, account
        self.compute_environments: dict[str, ComputeEnvironment] = {}
        self.queues: dict[str, JobQueue] = {}
        self.definitions: list[JobDefinition] = []
        self.jobs: dict[str, Job] = {}
        """Submitted jobs by id; an array job's children are in its ``children``."""
        self.log_groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
        """CloudWatch Logs: group name -> stream name -> events (``timestamp``, ``message``, ``ingestionTime``)."""

    def load_seed(self, data: dict[str, Any]) -> None:
        """Compute environments, queues and definitions in the shape of ``aws_batch_seed.json``."""
        for environment in data.get("compute_environments", []):
            self.add_compute_environment(
                environment["name"],
                max_vcpus=environment.get("max_vcpus", 256),
                state=environment.get("state", "ENABLED"),
                status=environment.get("status", "VALID"),
                status_reason=environment.get("status_reason"),
            )
        for queue in data.get("job_queues", []):
            self.add_job_queue(
                queue["name"],
                queue.get("priority", 1),
                queue.get("scheduling_policy"),
                queue.get("compute_environments"),
            )
        for definition in data.get("job_definitions", []):
            log_configuration = definition.get("log_configuration")
            container = {
                "image": "busybox",
                "command": definition["command"],
                "resourceRequirements": [{"type": "VCPU", "value": str(definition.get("vcpus", 1))}],
                **({"logConfiguration": log_configuration} if log_configuration else {}),
            }
            body: dict[str, Any] = {
                "jobDefinitionName": definition["name"],
                "type": "container",
                "parameters": definition.get("parameters", {}),
                "containerProperties": container,
            }
            registered = self.register_job_definition(body)
            if definition.get("deregistered"):
                self.deregister_job_definition({"jobDefinition": registered.arn})

    def arn(self, kind: str, name: str) -> str:
        return f"arn:aws:batch:{self.region}:{self.account}:{kind}/{name}"

    # -- job queues and job definitions ------------------------------------------------------------

    def add_compute_environment(
        self,
        name: str,
        *,
        max_vcpus: int = 256,
        state: str = "ENABLED",
        status: str = "VALID",
        status_reason: str | None = None,
    ) -> ComputeEnvironment:
        """A managed EC2 compute environment (``status`` INVALID, or a small ``max_vcpus``, keeps jobs RUNNABLE)."""
        reason = status_reason or ("ComputeEnvironment Healthy" if status == "VALID" else "CLIENT_ERROR - invalid")
        environment = ComputeEnvironment(
            name,
            self.arn("compute-environment", name),
            state=state,
            status=status,
            status_reason=reason,
            max_vcpus=max_vcpus,
            service_role=f"arn:aws:iam::{self.account}:role/aws-service-role/batch.amazonaws.com/AWSServiceRoleForBatch",
        )
        with self.lock:
            self.compute_environments[name] = environment
        return environment

    def compute_environment(self, name_or_arn: str) -> ComputeEnvironment:
        with self.lock:
            for environment in self.compute_environments.values():
                if name_or_arn in (environment.name, environment.arn):
                    return environment
        raise ClientException(f"Compute environment {name_or_arn} does not exist")

    def describe_compute_environments(self, body: dict[str, Any]) -> list[ComputeEnvironment]:
        with self.lock:
            environments = list(self.compute_environments.values())
        wanted = body.get("computeEnvironments")
        return [e for e in environments if e.name in wanted or e.arn in wanted] if wanted else environments

    def add_job_queue(
        self,
        name: str,
        priority: int = 1,
        scheduling_policy: str | None = None,
        compute_environments: list[str] | None = None,
    ) -> JobQueue:
        policy_arn = self.arn("scheduling-policy", scheduling_policy) if scheduling_policy else None
        environments = [self.compute_environment(e) for e in compute_environments or []]
        queue = JobQueue(name, self.arn("job-queue", name), priority, policy_arn, compute_environments=environments)
        with self.lock:
            self.queues[name] = queue
        return queue

    def queue(self, name_or_arn: str) -> JobQueue:
        with self.lock:
            for queue in self.queues.values():
                if name_or_arn in (queue.name, queue.arn):
                    return queue
        raise ClientException(f"Job queue {name_or_arn} does not exist")

    def describe_job_queues(self, body: dict[str, Any]) -> list[JobQueue]:
        with self.lock:
            queues = list(self.queues.values())
        if body.get("jobQueues"):
            queues = [q for q in queues if q.name in body["jobQueues"] or q.arn in body["jobQueues"]]
        return queues

    def register_job_definition(self, body: dict[str, Any]) -> JobDefinition:
        """A new revision of ``jobDefinitionName`` (1 more than its latest)."""
        name = body["jobDefinitionName"]
        node_properties, ecs_properties = body.get("nodeProperties"), body.get("ecsProperties")
        if body.get("type") == "multinode" and not node_properties:
            raise ClientException("nodeProperties is required for a multinode job definition")
        if node_properties:
            props = main_node_container(node_properties)
        elif ecs_properties:
            props = essential_container(ecs_properties)
        else:
            props = body.get("containerProperties", {})
        with self.lock:
            revision = 1 + max((d.revision for d in self.definitions if d.name == name), default=0)
            definition = JobDefinition(
                name=name,
                revision=revision,
                arn=self.arn("job-definition", f"{name}:{revision}"),
                command=list(props.get("command", ["/bin/true"])),
                parameters=dict(body.get("parameters", {})),
                environment=list(props.get("environment", [])),
                timeout=body.get("timeout"),
                retry_strategy=body.get("retryStrategy"),
                tags=dict(body.get("tags", {})),
                propagate_tags=bool(body.get("propagateTags", False)),
                image=props.get("image", "busybox"),
                log_configuration=props.get("logConfiguration"),
                vcpus=vcpus_of(props),
                node_properties=node_properties,
                ecs_properties=ecs_properties,
                container_name=props.get("name", "default"),
            )
            self.definitions.append(definition)
        return definition

    def deregister_job_definition(self, body: dict[str, Any]) -> None:
        """INACTIVE from now on: kept for reading, refused for new jobs."""
        ref = body["jobDefinition"]
        with self.lock:
            for definition in self.definitions:
                if ref in (definition.arn, f"{definition.name}:{definition.revision}"):
                    definition.status = "INACTIVE"

    def definition(self, ref: str) -> JobDefinition:
        """The definition a job may run: ``name:revision``, its ARN, or a bare name (the latest ACTIVE)."""
        name = ref.split("/", 1)[1] if ref.startswith("arn:") and "/" in ref else ref
        base, _, revision = name.partition(":")
        with self.lock:
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

    def describe_job_definitions(self, body: dict[str, Any]) -> list[JobDefinition]:
        """The definitions the request names (all without a filter), by name and revision."""
        with self.lock:
            found = list(self.definitions)
        if body.get("jobDefinitions"):
            wanted = body["jobDefinitions"]
            found = [d for d in found if d.arn in wanted or d.name in wanted or f"{d.name}:{d.revision}" in wanted]
        if body.get("jobDefinitionName"):
            found = [d for d in found if d.name == body["jobDefinitionName"]]
        if body.get("status"):
            found = [d for d in found if d.status == body["status"]]
        found.sort(key=lambda d: (d.name, d.revision))
        return found

    # -- jobs ------------------------------------------------------------------------------------------

    def find_job(self, job_id: str) -> Job | None:
        """A job by id, or an array child by ``<id>:<index>``; None if there is none."""
        with self.lock:
            parent_id, _, index = job_id.partition(":")
            job = self.jobs.get(parent_id)
            if job is not None and index:
                return job.children[int(index)] if index.isdigit() and int(index) < len(job.children) else None
            return job

    def finished_job(self, job_id: str) -> Job | None:
        job = self.find_job(job_id)
        return job if job is not None and job.status in FINISHED_STATES else None

    def submit_job(self, body: dict[str, Any]) -> Job:
        """SubmitJob: checks the request as AWS does, then starts the job's life cycle."""
        name = body["jobName"]
        if not JOB_NAME.fullmatch(name):
            raise ClientException(
                "Job name should be 1-128 characters long, start with a letter or number, and contain "
                "only letters, numbers, hyphens and underscores"
            )
        queue = self.queue(body["jobQueue"])
        definition = self.definition(body["jobDefinition"])
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
        job = Job(job_id, name, self.arn("job", job_id), queue, definition, parameters, body)
        job.tags = dict(body.get("tags", {}))
        if size:
            job.children = [
                Job(
                    f"{job_id}:{i}",
                    name,
                    self.arn("job", f"{job_id}:{i}"),
                    queue,
                    definition,
                    parameters,
                    body,
                    array_index=i,
                )
                for i in range(size)
            ]
        with self.lock:
            self.jobs[job_id] = job
        start_job(self, job)
        return job

    def describe_jobs(self, body: dict[str, Any]) -> list[Job]:
        """The jobs the request names that exist (AWS leaves unknown ids out)."""
        ids = body["jobs"]
        if len(ids) > 100:
            raise ClientException("Too many job IDs: at most 100 are allowed")
        with self.lock:
            return [job for job in map(self.find_job, ids) if job is not None]

    def terminate_job(self, body: dict[str, Any]) -> None:
        self._stop(body, "'reason' is a required field (cannot be a empty string)", include_running=True)

    def cancel_job(self, body: dict[str, Any]) -> None:
        self._stop(body, "'reason' is a required field (cannot be an empty string)", include_running=False)

    def _stop(self, body: dict[str, Any], no_reason: str, include_running: bool) -> None:
        if not body.get("reason"):
            raise ClientException(no_reason)  # AWS words the two operations' messages apart
        job = self.find_job(body["jobId"])
        if job is not None:  # an unknown id is not an error on AWS
            stop_job(self, job, body["reason"], include_running)

    def list_jobs(self, body: dict[str, Any]) -> list[Job]:
        """ListJobs' matches, newest first (the protocol pages them)."""
        if body.get("jobQueue") and body.get("arrayJobId"):
            raise ClientException("Only one of jobQueue and arrayJobId may be specified")
        wanted = body.get("jobStatus", "RUNNING")  # without a status, AWS lists only RUNNING jobs
        if wanted not in JOB_STATUSES and not body.get("filters"):
            raise ClientException(f"Job status is not one of {' | '.join(JOB_STATUSES)}")
        if body.get("arrayJobId"):
            parent = self.find_job(body["arrayJobId"])
            with self.lock:
                jobs = list(parent.children) if parent else []
        elif body.get("jobQueue"):
            queue = self.queue(body["jobQueue"])
            with self.lock:
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
        return jobs

    def tagged_job(self, arn: str) -> Job:
        """The job a TagResource / ListTagsForResource ARN names (jobs are the only taggable resource here)."""
        job = self.find_job(arn.rpartition(":job/")[2]) if arn.startswith(self.arn("job", "")) else None
        if job is None:
            raise ClientException(f"Resource {arn} not found")
        return job

    def tag_resource(self, body: dict[str, Any]) -> None:
        job = self.tagged_job(body["resourceArn"])
        with self.lock:
            job.tags = {**job.tags, **body["tags"]}

    def list_tags_for_resource(self, body: dict[str, Any]) -> dict[str, str]:
        job = self.tagged_job(body["resourceArn"])
        with self.lock:
            return dict(job.tags)

    # -- the jobs' output, as CloudWatch Logs --------------------------------------------------------------

    def open_log_stream(self, job: Job) -> None:
        """The container started: its stream exists from now on (empty until output arrives)."""
        with self.lock:
            self.log_groups.setdefault(job.definition.log_group, {}).setdefault(job.log_stream_name, [])

    def append_output(self, job: Job, *paths: Path) -> None:
        """An attempt ended: its output, line by line, becomes events of the job's stream (stdout, then stderr)."""
        now = now_ms()
        lines = [line for path in paths if path.exists() for line in path.read_text(errors="replace").splitlines()]
        with self.lock:
            stream = self.log_groups.setdefault(job.definition.log_group, {}).setdefault(job.log_stream_name, [])
            stream += [{"timestamp": now, "message": line, "ingestionTime": now} for line in lines]

    def log_events(self, group: str, stream: str) -> list[dict[str, Any]]:
        """The events of one stream (a copy)."""
        with self.lock:
            return list(self.log_groups[group][stream])
