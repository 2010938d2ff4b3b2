"""What every Polysync operator shares: submit, persist the link, defer (or poll), report the outcome."""

from __future__ import annotations

import re
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from polysync_airflow.compat import AirflowException, AirflowFailException
from polysync_airflow.hooks.base import RunHook
from polysync_airflow.links.base import PolysyncRunLink
from polysync_airflow.ownership import (
    ExistingJob,
    OwnershipLedger,
    TaskInstanceKey,
    choose_job_to_adopt,
    jobs_to_stop,
)
from polysync_airflow.run_watch import (
    PollingSettings,
    QueueWatch,
    RunWatch,
    backoff_seconds,
    describe_error,
    not_started_reason,
    quietly,
    timed_out_state,
)
from polysync_airflow.status import CANCEL_REASON, RunState, RunStatus, RunTiming
from polysync_airflow.triggers.base import PolysyncJobTrigger
from polysync_airflow.validation import as_optional_seconds

if TYPE_CHECKING:
    from airflow.sdk import Context


# How long a new try gives an earlier try's trigger to stop its job (Airflow calls the trigger's on_kill on clear or
# mark; its own on_kill_timeout is 30 s) before stopping the job itself, and how often it looks meanwhile.
ON_KILL_GRACE_SECONDS = 45.0
ON_KILL_GRACE_POLL_SECONDS = 2.0
SUBMIT_ATTEMPTS = 4  # a submit refused for a transient fault is retried twice more, 1, 2 then 4 s later


@dataclass(frozen=True)
class SubmittedRun:
    run_id: str
    job_name: str
    monitor_url: str


class PolysyncJobOperator(BaseOperator):
    """Base of the Batch operators. Subclasses build and submit the job; this class does the rest.

    :param deferrable: wait in the triggerer (default) rather than polling in the worker.
    :param poll_interval: seconds between two status reads.
    :param cancel_on_kill: stop the job when the task is killed, marked failed or success, or cleared.
    :param unknown_grace_period: seconds a job may stay unknown (for example not yet visible) before
        the task fails.
    :param outage_window: seconds of transient service faults (throttling, 5xx, dropped connections,
        timeouts) to ride out, retrying with capped exponential backoff, before the task fails.
    :param fetch_logs: also put the end of the job's output into the task log when it succeeds (it is
        always put there when the job fails).
    :param queued_warning_after: seconds a job may wait to start (from its creation) before the task log gets
        one warning saying why, as the service tells it (None: no warning). Templated.
    :param queued_timeout: seconds after which a job that has not started is stopped and the task fails with
        ``Run <id> did not start within <n> s: <why>`` (retries apply; None: no limit). Templated.

    The operator's ``execution_timeout`` also bounds a deferred run: past it the job is terminated
    (when ``cancel_on_kill``) and the task fails.
    """

    link_class: ClassVar[type[PolysyncRunLink]]
    """The link to the run's job, stored as soon as it is submitted."""
    log_tail_lines: ClassVar[int]
    """How many of the last lines of the job's output the task log shows."""

    def __init__(
        self,
        *,
        deferrable: bool = True,
        poll_interval: float = PollingSettings.poll_interval,
        cancel_on_kill: bool = PollingSettings.cancel_on_kill,
        unknown_grace_period: float = PollingSettings.unknown_grace_period,
        outage_window: float = PollingSettings.outage_window,
        fetch_logs: bool = False,
        queued_warning_after: float | str | None = PollingSettings.queued_warning_after,
        queued_timeout: float | str | None = PollingSettings.queued_timeout,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable
        self.polling = PollingSettings(
            poll_interval=poll_interval,
            unknown_grace_period=unknown_grace_period,
            outage_window=outage_window,
            cancel_on_kill=cancel_on_kill,
        )
        self.fetch_logs = fetch_logs
        # Kept as given (templated), validated into the polling settings when the task runs.
        self.queued_warning_after = queued_warning_after
        self.queued_timeout = queued_timeout
        self._submitted: SubmittedRun | None = None
        self._finished = False

    @property
    def poll_interval(self) -> float:
        return self.polling.poll_interval

    @poll_interval.setter
    def poll_interval(self, seconds: float) -> None:
        """Settable after construction (``polysync_airflow.testing.dags.poll_fast`` does)."""
        self.polling = replace(self.polling, poll_interval=seconds)

    # -- what a platform provides (data and small pieces; the run-level calls are its hook's, see RunHook) -----

    @property
    @abstractmethod
    def hook(self) -> RunHook:
        """The platform's hook for the operator's connection arguments."""

    @staticmethod
    @abstractmethod
    def decode(run_id: str, answer: Any, /) -> RunState:
        """The run's state from its hook's answer (None: not found): ``decode_run`` in ``statuses/<platform>.py``."""

    @staticmethod
    @abstractmethod
    def is_transient(err: BaseException) -> bool:
        """Whether a fault of the platform heals (``statuses/<platform>.py``): a submit is retried, a watch rides
        it out."""

    @abstractmethod
    def prepare(self, context: Context, key: TaskInstanceKey) -> None:
        """Validate every argument and build the request. No request may leave the machine here."""

    @abstractmethod
    def find_existing_jobs(self, key: TaskInstanceKey) -> list[ExistingJob]:
        """The jobs earlier tries (or this one) of the task instance started, newest first."""

    @abstractmethod
    def submit(self, key: TaskInstanceKey) -> SubmittedRun:
        """Start a new job on the platform."""

    @abstractmethod
    def reattach(self, job: ExistingJob) -> SubmittedRun:
        """Take over a job an earlier try submitted (finishing its submission where needed)."""

    def report_outcome(self, context: Context, run_id: str, status: RunStatus, info: dict[str, Any]) -> str:
        """After the run ended: log what the platform can tell (the end of the job's output, always on
        failure, on success with ``fetch_logs``), add details to the run ``info`` and persist extra links.
        Returns text to add to the failure message ("" for none). Never raises for what it cannot read."""
        return ""

    def persist_links(self, context: Context, run: SubmittedRun) -> None:
        """Store the run's extra links right after submitting (before deferring, so the UI shows them while
        the run goes on). Platforms with more links than the job's add theirs."""
        self.link_class.persist(context, run.monitor_url)

    @abstractmethod
    def make_trigger(self, run: SubmittedRun, deadline: float | None) -> PolysyncJobTrigger:
        """The trigger that waits for ``run`` in the triggerer: the operator's polling settings with ``deadline``."""

    # -- the shared flow -----------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        PolysyncRunLink.start_try(context)
        self.polling = replace(
            self.polling,
            queued_warning_after=as_optional_seconds("queued_warning_after", self.queued_warning_after),
            queued_timeout=as_optional_seconds("queued_timeout", self.queued_timeout),
        )
        ledger = OwnershipLedger.of(context)
        run = self._submitted = self.start_run(context, ledger)
        self.log.info("Monitor run %s (job name %s) at %s", run.run_id, run.job_name, run.monitor_url)
        self.persist_links(context, run)
        # Recorded before the try defers or polls: no later try adopts this job (see ownership.py). Where Airflow
        # records it (3.3), the trigger or worker writes no watched mark on the job.
        ledger.watching(run.run_id, "triggerer" if self.deferrable else "worker", int(context["ti"].try_number))
        if ledger.in_store:
            self.polling = replace(self.polling, mark_watched=False)
        if self.deferrable:
            deadline = time.time() + self.execution_timeout.total_seconds() if self.execution_timeout else None
            self.defer(trigger=self.make_trigger(run, deadline), method_name="execute_complete")
        # deferrable=False: the worker polls (execution_timeout kills it, and on_kill stops the run).
        watch = RunWatch(run.run_id, self.log, self.polling, self.is_transient)
        queue = QueueWatch(run.run_id, self.log, self.polling.queued_warning_after, self.polling.queued_timeout)

        def next_state() -> RunState:
            answer = self.hook.read_run(run.run_id)
            state = queue.observe(
                self.decode(run.run_id, answer), lambda: self.hook.read_wait_cause(run.run_id, answer)
            )
            if self.polling.mark_watched and watch.first_seen_running(state):
                with quietly(self.log, f"mark run {run.run_id} as watched"):
                    self.hook.mark_watched(run.run_id, "worker")
            return state

        try:
            state, timed_out = watch_in_worker(next_state, watch)
        except BaseException:
            self._cancel_after_interruption()
            raise
        if queue.timed_out:  # a job that did not start within queued_timeout is stopped, whatever cancel_on_kill
            with quietly(self.log, f"stop run {run.run_id}"):
                self.hook.terminate_run(run.run_id, not_started_reason(self.polling.queued_timeout))
        event = {"timed_out": timed_out, "queue_timed_out": queue.timed_out, "timing": queue.last_timing.to_dict()}
        return self._finish(context, state.to_event() | event, run)

    def read_state(self, run_id: str) -> RunState:
        """The run's current state (sync: the worker's watch, ``deferrable=False``)."""
        return self.decode(run_id, self.hook.read_run(run_id))

    def start_run(self, context: Context, ledger: OwnershipLedger | None = None) -> SubmittedRun:
        """Validate, then reattach to the task instance's unwatched running job, or submit a new one; first stop
        the earlier tries' jobs that still run and are not adopted (unless kept by ``cancel_on_kill=False``)."""
        key = TaskInstanceKey.from_context(context)
        ledger = ledger or OwnershipLedger.of(context)
        self.prepare(context, key)
        # Looked up on the first try too: a missing job queue fails there at once (see the AWS operator).
        jobs = ledger.known(self.find_existing_jobs(key))
        adopted = choose_job_to_adopt(jobs, self.log)
        self._stop_unadopted(jobs, adopted, key, ledger)
        if adopted is not None:
            return self._reattach(adopted, "nobody watches it (the try that submitted it ended before deferring)")
        ledger.submitting(key.try_number)
        attempt = 1
        while True:
            try:
                run = self.submit(key)
            except Exception as err:
                if not self.is_transient(err) or attempt == SUBMIT_ATTEMPTS:
                    raise
                self.log.warning(
                    "Submitting failed (attempt %d of %d): %s. Checking whether the service accepted it anyway",
                    attempt,
                    SUBMIT_ATTEMPTS,
                    describe_error(err),
                )
                time.sleep(2 ** (attempt - 1))
                attempt += 1
                # If this lookup fails too, the try fails and the next try looks again: never submit blind.
                adopted = choose_job_to_adopt(self.find_existing_jobs(key), self.log, own_try=key.try_number)
                if adopted is not None:
                    return self._reattach(adopted, "the service had accepted the failed-looking submission")
            else:
                self.log.info("Submitted run %s for %s", run.run_id, key)
                return run

    def _stop_unadopted(
        self, jobs: list[ExistingJob], adopted: ExistingJob | None, key: TaskInstanceKey, ledger: OwnershipLedger
    ) -> None:
        """Stop the earlier tries' jobs that still run and that this try does not adopt, so that no two jobs of the
        task instance run at once (a job whose submitter chose ``cancel_on_kill=False`` is left, and named). A
        stop that fails fails the try before it starts a job; the next try looks again."""
        stops = [
            (job, why)
            for job, why in jobs_to_stop(jobs, adopted, self.polling.cancel_on_kill)
            if not self._ended_by_its_trigger(job, ledger)
        ]
        stopping = {job.run_id for job, _ in stops}
        for job in jobs:
            if job is not adopted and not job.finished and not job.cancelling and job.run_id not in stopping:
                self.log.warning(
                    "Job %s (submitted by try %s) still runs and is left running: it was submitted with "
                    "cancel_on_kill=False",
                    job.run_id,
                    job.try_number or "?",
                )
        for job, why in stops:
            self.log.warning(
                "Stopping job %s (submitted by try %s): it still runs and try %d does not adopt it: %s",
                job.run_id,
                job.try_number or "?",
                key.try_number,
                why,
            )
            try:
                self.hook.terminate_run(job.run_id, f"{CANCEL_REASON}: try {key.try_number} of {key.task_instance}")
            except Exception as err:
                raise AirflowException(
                    f"Could not stop job {job.run_id} of an earlier try ({describe_error(err)}); not starting a "
                    "second job beside it. Stop it yourself, or let the next try stop it"
                ) from err

    def _ended_by_its_trigger(self, job: ExistingJob, ledger: OwnershipLedger) -> bool:
        """Whether a job an earlier try's trigger watched ends within ``ON_KILL_GRACE_SECONDS``. On Airflow 3.3 a
        cleared or marked task's trigger gets ``on_kill``, which stops the job: waiting for that keeps it to one
        stop, with the trigger's reason. Elsewhere (a worker watched it; no ``on_kill`` on 3.1/3.2) nobody else will
        stop it, so this try does at once."""
        if ledger.watched_by(job.run_id) != "triggerer":  # recorded only in Airflow 3.3's store
            return False
        self.log.info("Job %s of an earlier try still runs; giving its trigger's cancel time to stop it", job.run_id)
        deadline = time.monotonic() + ON_KILL_GRACE_SECONDS
        while time.monotonic() < deadline:
            time.sleep(ON_KILL_GRACE_POLL_SECONDS)
            with quietly(self.log, f"read run {job.run_id}"):
                if self.read_state(job.run_id).status.is_terminal:
                    return True
        return False

    def _reattach(self, job: ExistingJob, why: str) -> SubmittedRun:
        run = self.reattach(job)
        self.log.info(
            "Reattached to run %s (%s) instead of submitting a new one: %s", run.run_id, job.native_status, why
        )
        return run

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        monitor_url = self.link_class.stored_url(context)
        return self._finish(context, event, SubmittedRun(event["run_id"], event.get("job_name") or "", monitor_url))

    def _finish(self, context: Context, event: dict[str, Any], run: SubmittedRun) -> dict[str, Any]:
        """Turn the final event into the task's outcome: run info on success, an error otherwise."""
        self._finished = True
        status = RunStatus(event["status"])
        message = event.get("message") or ""
        info = {
            "run_id": event["run_id"],
            "status": status.value,
            "message": message,
            "exit_code": event.get("exit_code"),
            "monitor_url": run.monitor_url,
            "job_name": run.job_name,
        }
        info["timing"] = self._timing(run.run_id, event.get("timing"))
        details = self.report_outcome(context, run.run_id, status, info)
        self.log.info("%s", RunTiming.from_dict(info["timing"]).summary(run.run_id))
        if details:
            message = f"{message}; {details}" if message else details
            if status is not RunStatus.SUCCESS:
                info["message"] = message
        where = f"(see {run.monitor_url})"
        code = event.get("exit_code")
        if code is not None and not re.search(rf"exit code:? {code}\b", message, re.IGNORECASE):
            where = f"(exit code {event['exit_code']}; see {run.monitor_url})"
        if status is RunStatus.SUCCESS:
            self.log.info("Run %s succeeded: %s", run.run_id, message or "no message")
            return info
        if status is RunStatus.CANCELLED:
            raise AirflowFailException(f"Run {run.run_id} was cancelled: {message or 'no reason given'} {where}")
        if event.get("queue_timed_out"):  # the message says it: "Run <id> did not start within <n> s: <why>"
            raise AirflowException(f"{message} {where}")
        if event.get("timed_out"):
            raise AirflowException(f"Run {run.run_id} timed out: {message} {where}")
        if status is RunStatus.FAILED:
            raise AirflowException(f"Run {run.run_id} failed: {message or 'no reason given'} {where}")
        raise AirflowException(f"Run {run.run_id} ended with status {status.value}: {message} {where}")

    def _timing(self, run_id: str, timing: Any) -> dict[str, Any]:
        """The run's timing from the final event; read once more when it lacks the end (the run was stopped after
        that answer, or the event came from a trigger stored before timing existed). Never raises."""
        if isinstance(timing, dict) and timing.get("ended_at"):
            return timing
        with quietly(self.log, f"read the timing of run {run_id}"):
            return self.read_state(run_id).timing.to_dict()
        return timing if isinstance(timing, dict) else RunTiming().to_dict()

    def _cancel_after_interruption(self) -> None:
        if self.polling.cancel_on_kill and self._submitted is not None and not self._finished:
            self._finished = True
            self.log.info("Cancelling run %s", self._submitted.run_id)
            with quietly(self.log, f"cancel run {self._submitted.run_id}"):
                self.hook.terminate_run(self._submitted.run_id)

    def on_kill(self) -> None:
        """The worker is being killed while it polls (``deferrable=False``): stop the job too."""
        self._cancel_after_interruption()


def watch_in_worker(
    read_state: Callable[[], RunState], watch: RunWatch, deadline: float | None = None
) -> tuple[RunState, bool]:
    """Poll until the run is over or its deadline (epoch seconds) passes; returns (state, timed_out). Sleeps the
    poll interval between reads; after a failed read, the backoff from 1 s (or the interval, if shorter)."""
    interval = watch.settings.poll_interval
    while True:
        try:
            final, wait = watch.observe(read_state()), interval
        except Exception as err:
            final, wait = watch.poll_failed(err), backoff_seconds(watch.failures, first=min(interval, 1.0))
        if final is not None:
            return final, False
        if deadline is not None and time.time() >= deadline:
            return timed_out_state(watch.run_id, deadline), True
        time.sleep(wait if deadline is None else max(0.0, min(wait, deadline - time.time())))
