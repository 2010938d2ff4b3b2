"""Triggerer restart: serialize every running trigger, drop the event loop, re-create the triggers from
their serialized form; every run completes, nothing is submitted or terminated.

The triggerer is mirrored with Airflow's own code (``airflow.jobs.triggerer_job_runner``):

- each trigger runs inside ``TriggerRunner.run_trigger``, the coroutine that calls ``on_kill`` when a
  trigger is cancelled for a user's action and ``cleanup`` whatever happens;
- the triggers' event loop is started with ``asyncio.run``, as ``TriggerRunner.run`` does;
- a SIGTERM goes to ``TriggerRunner._handle_signal``, which sets ``stop``; the main coroutine then
  returns with the trigger tasks still running, and ``asyncio.run`` cancels them *without a message*:
  Airflow's shutdown path, which must not call ``on_kill`` (only ``cancel_triggers`` passes the
  user-action message);
- the new triggerer builds each trigger as ``TriggerRunner.create_triggers`` does: from the trigger row's
  classpath (``get_trigger_by_classpath``, Airflow's ``import_string``) and its stored kwargs (the
  ``Trigger`` model's encoding, decrypted and decoded with Airflow's functions).

Jobs are submitted with the platforms' plain clients (not the operators), so that only the triggers
talk to the endpoints after the submissions.
"""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from airflow.triggers.base import BaseTrigger

from polysync_airflow.testing import LocalAwsBatch, LocalAzureBatch
from polysync_airflow.triggers.aws_batch import AwsBatchJobTrigger
from polysync_airflow.triggers.azure_batch import AzureBatchJobTrigger
from polysync_airflow.triggers.base import PolysyncJobTrigger

POLL_INTERVAL = 0.1
POLLS_BEFORE_RESTART = 3  # by the old triggerer, for every run
POLLS_AFTER_RESTART = 2  # by the new triggerer, for every run, before the jobs may end
EXIT_CODES = [0, 0, 3, 0]  # one job each: it runs until the test opens its gate, then exits with this code

# Trigger on_kill (a user's mark failed / success / clear reaching a deferred task's trigger) is Airflow 3.3+.
TRIGGERS_HAVE_ON_KILL = hasattr(BaseTrigger, "on_kill")


class Triggerer:
    """One triggerer process: Airflow's ``TriggerRunner`` running the given trigger rows.

    ``start()`` runs the event loop in a thread (the triggerer's async subprocess); ``sigterm()`` stops
    it as a SIGTERM does and waits until ``asyncio.run`` has cancelled and finished every trigger task.
    """

    def __init__(self, rows: dict[int, Any]) -> None:
        from airflow.jobs.triggerer_job_runner import TriggerRunner

        self.rows = rows
        self.runner = TriggerRunner()
        self.instances: dict[int, PolysyncJobTrigger] = {}
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def inflate(self, trigger_id: int) -> PolysyncJobTrigger:
        """``TriggerRunner.create_triggers`` for one row (without a task instance: none is needed)."""
        from airflow.models.trigger import Trigger

        try:
            from airflow.serialization.decoders import smart_decode_trigger_kwargs
        except ImportError:  # Airflow 3.1 keeps it with the serialized objects
            from airflow.serialization.serialized_objects import smart_decode_trigger_kwargs

        row = self.rows[trigger_id]
        trigger_class = self.runner.get_trigger_by_classpath(row.classpath)
        kwargs = {k: smart_decode_trigger_kwargs(v) for k, v in Trigger._decrypt_kwargs(row.encrypted_kwargs).items()}
        trigger = trigger_class(**kwargs)
        trigger.trigger_id = trigger_id
        return trigger

    async def main(self) -> None:
        for trigger_id in self.rows:
            trigger = self.instances[trigger_id] = self.inflate(trigger_id)
            name = f"{type(trigger).__name__} {trigger.run_id} (ID {trigger_id})"
            self.runner.triggers[trigger_id] = {
                "task": asyncio.create_task(self.runner.run_trigger(trigger_id, trigger), name=name),
                "is_watcher": False,
                "name": name,
                "events": 0,
            }
        # TriggerRunner.arun's loop: until stopped. Unlike the real one it also ends once every trigger
        # is done (the new triggerer's run to completion).
        while not self.runner.stop and not all(d["task"].done() for d in self.runner.triggers.values()):
            await self.runner.cancel_triggers()  # the triggers a user acted on (``user_action``)
            await asyncio.sleep(0.02)

    def _run(self) -> None:
        try:
            asyncio.run(self.main())  # TriggerRunner.run
        except BaseException as err:
            self.error = err

    def start(self) -> Triggerer:
        self.thread = threading.Thread(target=self._run, name="triggerer", daemon=True)
        self.thread.start()
        return self

    def user_action(self, trigger_id: int) -> None:
        """The user marked the task failed or success, or cleared it: the supervisor's ``to_cancel``."""
        self.runner.to_cancel.append(trigger_id)

    def sigterm(self, timeout: float = 30) -> None:
        self.runner._handle_signal(signal.SIGTERM, None)
        self.join(timeout)

    def join(self, timeout: float) -> None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the triggerer's event loop did not end within {timeout} s"
        assert self.error is None, f"the triggerer's event loop failed: {self.error!r}"

    def tasks(self) -> dict[int, asyncio.Task]:
        return {trigger_id: details["task"] for trigger_id, details in self.runner.triggers.items()}

    def events(self) -> dict[int, list[dict[str, Any]]]:
        found: dict[int, list[dict[str, Any]]] = {trigger_id: [] for trigger_id in self.rows}
        for entry in self.runner.events:
            # Airflow 3.2+ queues event records; 3.1 queues (trigger_id, event) pairs
            trigger_id, event = (entry.trigger_id, entry.event) if hasattr(entry, "trigger_id") else entry
            found[trigger_id].append(event.payload)
        return found


def trigger_row(trigger: PolysyncJobTrigger) -> Any:
    """What the deferral stores: the ``trigger`` table row built from ``serialize()`` (kwargs encrypted)."""
    from airflow.models.trigger import Trigger

    return Trigger.from_object(trigger)


def gated_command(gate: str) -> str:
    """A shell command that runs until the file ``gate`` exists (the test decides when a job ends)."""
    return f"while [ ! -e {gate} ]; do sleep 0.05; done"


@dataclass
class Platform:
    endpoint: Any
    submit: Callable[[str, int], str]  # (gate file, exit code) -> run id
    make_trigger: Callable[[str], PolysyncJobTrigger]
    job_name: Callable[[str], str]
    polls: Callable[[str], int]  # how often the run's status was read so far
    final: Callable[[str], tuple[str, int | None]]  # the run's real final (status, exit code)
    is_submit: Callable[[str], bool]
    is_terminate: Callable[[str], bool]
    submits_per_run: int


def aws_platform(endpoint: LocalAwsBatch, conn_id: str) -> Platform:
    import boto3

    client = boto3.client(
        "batch",
        endpoint_url=endpoint.url,
        region_name=endpoint.region,
        aws_access_key_id="local-access-key",
        aws_secret_access_key="local-secret-key",
    )
    endpoint.step_seconds = 0.1  # SUBMITTED, PENDING, RUNNABLE, STARTING, then RUNNING until the gate opens
    client.register_job_definition(
        jobDefinitionName="polysync-gated",
        type="container",
        parameters={"exit_code": "0"},
        containerProperties={
            "image": "busybox",
            "command": ["/bin/sh", "-c", gated_command("Ref::gate") + "; exit Ref::exit_code"],
        },
    )

    def submit(gate: str, exit_code: int) -> str:
        return client.submit_job(
            jobName="Polysync-restart",
            jobQueue="polysync-default",
            jobDefinition="polysync-gated",
            parameters={"gate": gate, "exit_code": str(exit_code)},
        )["jobId"]

    def final(job_id: str) -> tuple[str, int | None]:
        job = endpoint.wait_for_job(job_id, timeout=5)
        return {"SUCCEEDED": "Success", "FAILED": "Failed"}[job.status], job.exit_code

    return Platform(
        endpoint=endpoint,
        submit=submit,
        make_trigger=lambda run_id: AwsBatchJobTrigger(
            job_id=run_id, job_name="Polysync-restart", aws_conn_id=conn_id, poll_interval=POLL_INTERVAL
        ),
        job_name=lambda run_id: "Polysync-restart",
        polls=lambda run_id: endpoint.describe_counts[run_id],
        final=final,
        is_submit=lambda entry: entry == "submitjob",
        is_terminate=lambda entry: entry in ("terminatejob", "canceljob"),
        submits_per_run=1,
    )


def azure_platform(endpoint: LocalAzureBatch, conn_id: str) -> Platform:
    import uuid

    from azure.batch import BatchClient, models
    from azure.core.credentials import AzureNamedKeyCredential

    client = BatchClient(endpoint.url, AzureNamedKeyCredential(endpoint.account, endpoint.key))
    endpoint.step_seconds = 0.1  # active, preparing, then running until the gate opens

    def submit(gate: str, exit_code: int) -> str:
        # what the operator sends: a job on the template's pool, its task, then terminatejob
        job_id = f"polysync-{uuid.uuid4().hex}"
        client.create_job(
            models.BatchJobCreateOptions(
                {"id": job_id, "poolInfo": {"poolId": "polysync-pool"}, "onAllTasksComplete": "noaction"}
            )
        )
        command = f"/bin/sh -c '{gated_command(gate)}; exit {exit_code}'"
        client.create_task(job_id, models.BatchTaskCreateOptions({"id": "polysync", "commandLine": command}))
        client.update_job(job_id, models.BatchJobUpdateOptions({"onAllTasksComplete": "terminatejob"}))
        return f"{job_id}/polysync"

    def final(run_id: str) -> tuple[str, int | None]:
        job_id, task_id = run_id.split("/")
        task = endpoint.wait_for_job(job_id, timeout=5).tasks[task_id]
        assert task.state == "completed", task
        return ("Success" if task.exit_code == 0 and not task.failure_info else "Failed"), task.exit_code

    return Platform(
        endpoint=endpoint,
        submit=submit,
        make_trigger=lambda run_id: AzureBatchJobTrigger(
            run_id=run_id, job_name=run_id.split("/")[0], azure_batch_conn_id=conn_id, poll_interval=POLL_INTERVAL
        ),
        job_name=lambda run_id: run_id.split("/")[0],
        # one listing of the active jobs reads every run (a task is read only when its job changed)
        polls=lambda run_id: endpoint.requests.count("GET /jobs"),
        final=final,
        is_submit=lambda entry: entry == "POST /jobs" or re.fullmatch(r"POST /jobs/[^/]+/tasks", entry) is not None,
        is_terminate=lambda entry: entry.endswith("/terminate") or entry.startswith("DELETE /jobs/"),
        submits_per_run=2,  # POST /jobs, POST /jobs/{id}/tasks
    )


@pytest.fixture(params=["aws", "azure"])
def platform(request) -> Platform:
    if request.param == "aws":
        return aws_platform(request.getfixturevalue("local_aws_batch"), request.getfixturevalue("polysync_aws_conn"))
    return azure_platform(request.getfixturevalue("local_azure_batch"), request.getfixturevalue("polysync_azure_conn"))


def wait_until(condition: Callable[[], bool], triggerer: Triggerer, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert triggerer.thread is not None and triggerer.thread.is_alive(), (
            f"the triggerer stopped before {what}: {triggerer.error!r}, events {triggerer.events()}"
        )
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting until {what}"
        time.sleep(0.02)


def test_a_restarted_triggerer_resumes_every_run_without_submitting_or_terminating(platform, tmp_path):
    gates = [tmp_path / f"gate-{index}" for index in range(len(EXIT_CODES))]
    runs = [platform.submit(str(gate), exit_code) for gate, exit_code in zip(gates, EXIT_CODES, strict=True)]
    submitted = len(platform.endpoint.requests)  # the submissions end here: only triggers call from now on
    run_of = dict(enumerate(runs, start=1))
    rows = {trigger_id: trigger_row(platform.make_trigger(run)) for trigger_id, run in run_of.items()}

    # The first triggerer: every trigger polls its run a few times, then the process gets SIGTERM.
    old = Triggerer(rows).start()
    try:
        wait_until(
            lambda: all(platform.polls(run) >= POLLS_BEFORE_RESTART for run in runs),
            old,
            timeout=60,
            what=f"every trigger polled its run {POLLS_BEFORE_RESTART} times",
        )
    finally:
        old.sigterm()
    polls_at_restart = {run: platform.polls(run) for run in runs}
    # Every trigger was still running when the loop went away, and was cancelled by the shutdown itself.
    assert old.events() == {trigger_id: [] for trigger_id in rows}
    assert all(task.cancelled() for task in old.tasks().values()), old.tasks()
    # What a restart keeps is the row: each running trigger serializes to exactly what its row holds.
    for trigger_id, trigger in old.instances.items():
        assert trigger.serialize()[0] == rows[trigger_id].classpath
        assert trigger_row(trigger).kwargs == rows[trigger_id].kwargs
    assert [entry for entry in platform.endpoint.requests if platform.is_terminate(entry)] == []

    # The new triggerer: the same rows, new trigger objects in a new event loop. The jobs end only once
    # it has polled each of them, so every event comes from the new triggerer.
    new = Triggerer(rows).start()
    wait_until(
        lambda: all(platform.polls(run) >= polls_at_restart[run] + POLLS_AFTER_RESTART for run in runs),
        new,
        timeout=60,
        what=f"the new triggerer polled every run {POLLS_AFTER_RESTART} times",
    )
    assert new.events() == {trigger_id: [] for trigger_id in rows}
    for gate in gates:
        gate.touch()
    new.join(timeout=60)

    events = new.events()
    for trigger_id, run in run_of.items():
        assert new.instances[trigger_id] is not old.instances[trigger_id]
        assert len(events[trigger_id]) == 1, (run, events[trigger_id])
        (event,) = events[trigger_id]
        status, exit_code = platform.final(run)
        assert (event["run_id"], event["status"], event["exit_code"]) == (run, status, exit_code), event
        assert (event["job_name"], event["timed_out"]) == (platform.job_name(run), False), event
    assert [platform.final(run) for run in runs] == [
        ("Success" if code == 0 else "Failed", code) for code in EXIT_CODES
    ]

    after = platform.endpoint.requests[submitted:]
    assert [entry for entry in after if platform.is_submit(entry)] == [], after
    assert sum(map(platform.is_submit, platform.endpoint.requests)) == len(runs) * platform.submits_per_run
    assert [entry for entry in platform.endpoint.requests if platform.is_terminate(entry)] == []


def test_the_mirrored_triggerer_calls_on_kill_for_a_users_action_only(platform, tmp_path):
    """The control: in the same mirrored triggerer, a user's action on one task terminates that job (Airflow
    calls on_kill); the shutdown that follows leaves the other job running."""
    gates = [tmp_path / "gate-killed", tmp_path / "gate-kept"]
    killed, kept = (platform.submit(str(gate), 0) for gate in gates)
    rows = {1: trigger_row(platform.make_trigger(killed)), 2: trigger_row(platform.make_trigger(kept))}
    triggerer = Triggerer(rows).start()
    try:
        wait_until(lambda: min(map(platform.polls, (killed, kept))) >= 2, triggerer, 60, "both runs were polled")
        terminates_before = sum(map(platform.is_terminate, platform.endpoint.requests))
        triggerer.user_action(1)
        wait_until(lambda: triggerer.tasks()[1].done(), triggerer, 60, "the user's action ended the trigger")
    finally:
        triggerer.sigterm()
    for gate in gates:
        gate.touch()
    assert terminates_before == 0
    terminated = [entry for entry in platform.endpoint.requests if platform.is_terminate(entry)]
    if not TRIGGERS_HAVE_ON_KILL:  # Airflow 3.1/3.2: a user's action cannot reach the trigger (documented)
        assert terminated == []
        assert platform.final(killed) == ("Success", 0) and platform.final(kept) == ("Success", 0)
        return
    assert terminated, platform.endpoint.requests
    # (Azure's log names the job; AWS's does not, but a terminated job would not have succeeded)
    assert all(kept.split("/")[0] not in entry for entry in terminated), terminated
    assert platform.final(killed)[0] == "Failed"
    assert platform.final(kept) == ("Success", 0)
