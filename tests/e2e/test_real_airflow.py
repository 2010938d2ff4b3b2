"""The whole path in a real Airflow: scheduler -> executor -> deferral -> triggerer -> resume -> UI link."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ARTIFACTS

pytestmark = pytest.mark.e2e

EXAMPLES = {
    "polysync_aws_batch_job": ("load_daily_orders", "summarize"),
    "polysync_azure_batch_job": ("score_customers", "publish_scores"),
}
LINK_NAMES = {"polysync_aws_batch_job": "AWS Batch Job", "polysync_azure_batch_job": "Azure Batch Job"}
_runs: dict[str, str] = {}
_seen: dict[tuple[str, str], list[str]] = {}


def example_run(e2e, dag_id: str) -> str:
    """Trigger both example DAGs once (side by side) and record every state each task passes through."""
    if not _runs:
        for name in EXAMPLES:
            _runs[name] = e2e.cluster.trigger(name)
        pending = {(name, task_id) for name, tasks in EXAMPLES.items() for task_id in tasks}
        deadline = time.monotonic() + 240
        while pending and time.monotonic() < deadline:
            for name, task_id in sorted(pending):
                state = e2e.cluster.task_instance(name, _runs[name], task_id).get("state")
                seen = _seen.setdefault((name, task_id), [])
                if not seen or seen[-1] != state:
                    seen.append(state)
                if state in ("success", "failed", "upstream_failed"):
                    pending.discard((name, task_id))
            time.sleep(0.2)
    return _runs[dag_id]


@pytest.mark.parametrize("dag_id", list(EXAMPLES))
def test_example_dags_defer_in_the_triggerer_and_succeed(e2e, dag_id):
    run_id = example_run(e2e, dag_id)
    for task_id in EXAMPLES[dag_id]:
        states = _seen[(dag_id, task_id)]
        assert states[-1] == "success", states
        assert "deferred" in states, states
        # the trigger ran in the triggerer: its own log file, with the status timeline, next to the task's
        (trigger_log,) = e2e.cluster.trigger_logs(dag_id, run_id, task_id)
        text = trigger_log.read_text()
        assert "is SUCCEEDED (Success)" in text or "is completed (Success)" in text
    assert e2e.cluster.wait_for_run(dag_id, run_id) == "success"


@pytest.mark.parametrize("dag_id", list(EXAMPLES))
def test_extra_links_point_to_the_submitted_jobs(e2e, dag_id):
    run_id = example_run(e2e, dag_id)
    for task_id in EXAMPLES[dag_id]:
        e2e.cluster.watch_task(dag_id, run_id, task_id, until={"success", "failed"})
        base = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        links = e2e.cluster.api("GET", f"{base}/links?map_index=-1")["extra_links"]
        info = e2e.cluster.api("GET", f"{base}/xcomEntries/return_value")["value"]
        job_id = info["run_id"].split("/")[0]
        if dag_id == "polysync_aws_batch_job":
            expected = f"https://us-east-1.console.aws.amazon.com/batch/home?region=us-east-1#jobs/detail/{job_id}"
            assert job_id in e2e.aws.jobs
        else:
            expected = (
                "https://portal.azure.com/#resource/subscriptions/00000000-0000-0000-0000-000000000000/"
                f"resourceGroups/polysync-local/providers/Microsoft.Batch/batchAccounts/polysyncdev/jobs/{job_id}"
            )
            assert e2e.azure.job(job_id).state == "completed"
        # The AWS logs link is only stored when the job's log is read (failure, or fetch_logs): here it is empty.
        # The Azure task link is stored with the job link, at submission.
        others = (
            {"AWS Batch Job Logs": None}
            if dag_id == "polysync_aws_batch_job"
            else {"Azure Batch Task": f"{expected}/tasks/{info['run_id'].split('/')[1]}"}
        )
        assert links == {LINK_NAMES[dag_id]: expected, **others}


def chromium(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1440,1000",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


@pytest.mark.parametrize("dag_id", list(EXAMPLES))
def test_the_link_is_shown_in_the_ui(e2e, dag_id, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    run_id = example_run(e2e, dag_id)
    task_id = EXAMPLES[dag_id][0]
    e2e.cluster.watch_task(dag_id, run_id, task_id, until={"success", "failed"})
    expected = e2e.cluster.api(
        "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links?map_index=-1"
    )["extra_links"][LINK_NAMES[dag_id]]
    driver = chromium(tmp_path)
    try:
        driver.get(f"{e2e.cluster.url}/dags/{dag_id}/runs/{run_id}/tasks/{task_id}")
        xpath = f"//a[contains(normalize-space(.), '{LINK_NAMES[dag_id]}')]"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        screenshot = str(ARTIFACTS / f"{dag_id}-task-page.png")
        details = "//*[self::button or self::a][normalize-space(.)='Details']"
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.XPATH, details))[0].click()
        try:
            anchors = WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.XPATH, xpath))
        finally:
            time.sleep(1)  # let the page settle for the picture
            driver.save_screenshot(screenshot)
        assert anchors[0].is_displayed()
        assert anchors[0].get_attribute("href") == expected
    finally:
        driver.quit()


@pytest.mark.parametrize(
    ("task_id", "message"),
    [
        ("aws_fails", "failed: Essential container in task exited (exit code 3"),
        ("azure_fails", "failed: The task exited with an exit code representing a failure (exit code 5)"),
    ],
)
def test_a_failing_job_fails_its_task_with_the_batch_message(e2e, task_id, message):
    if "polysync_e2e_failure" not in _runs:
        _runs["polysync_e2e_failure"] = e2e.cluster.trigger("polysync_e2e_failure")
    run_id = _runs["polysync_e2e_failure"]
    states = e2e.cluster.watch_task("polysync_e2e_failure", run_id, task_id, until={"success", "failed"})
    assert states[-1] == "failed"
    log = e2e.cluster.task_log("polysync_e2e_failure", run_id, task_id, containing=message)
    assert message in log


@pytest.mark.parametrize("task_id", ["aws_long", "azure_long"])
def test_marking_a_deferred_task_failed_terminates_the_job(e2e, task_id):
    if "polysync_e2e_long" not in _runs:
        _runs["polysync_e2e_long"] = e2e.cluster.trigger("polysync_e2e_long")
    run_id = _runs["polysync_e2e_long"]
    cluster = e2e.cluster
    cluster.watch_task("polysync_e2e_long", run_id, task_id, until={"deferred"})
    base = f"/api/v2/dags/polysync_e2e_long/dagRuns/{run_id}/taskInstances/{task_id}"
    job_id = cluster.api("GET", f"{base}/links?map_index=-1")["extra_links"]
    job_id = next(iter(job_id.values())).rsplit("/", 1)[-1]

    # Wait until the triggerer runs the trigger (it polls the job): Airflow calls on_kill only for a
    # trigger that is running; a trigger not yet picked up is dropped without it (see the README).
    def polled() -> bool:
        if task_id == "aws_long":
            return e2e.aws.describe_counts[job_id] > 0
        return f"GET /jobs/{job_id}/tasks/polysync" in e2e.azure.requests

    deadline = time.monotonic() + 60
    while not polled() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert polled(), f"the trigger of {task_id} never polled its job"
    time.sleep(2)
    cluster.api("PATCH", base, {"new_state": "failed"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if task_id == "aws_long":
            job = e2e.aws.jobs[job_id]
            if job.status == "FAILED":
                assert job.status_reason == "Cancelled by Polysync"
                break
        else:
            job = e2e.azure.job(job_id)
            if job.state == "completed":
                assert job.tasks["polysync"].failure_info["code"] == "TaskEnded"
                break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the job of {task_id} was not terminated after the task was marked failed")
    assert cluster.task_instance("polysync_e2e_long", run_id, task_id)["state"] == "failed"


# -- user actions and a triggerer restart while a task is deferred (DAG polysync_e2e_actions) ------------
# Each task's job runs until the test opens its gate (``E2E.open_gate``), so nothing ends on its own.

ACTIONS = "polysync_e2e_actions"
_cleared: dict[str, str] = {}  # task id -> the job its first try submitted (cleared once for both platforms)
_restart: dict[str, Any] = {}  # the restart tasks' jobs, and the terminate requests seen just before it


def actions_run(e2e) -> str:
    """Trigger polysync_e2e_actions once: its six tasks defer side by side and wait for their test."""
    if ACTIONS not in _runs:
        _runs[ACTIONS] = e2e.cluster.trigger(ACTIONS)
    return _runs[ACTIONS]


def task_jobs(e2e, task_id: str) -> list[str]:
    """The ids of the jobs a task of polysync_e2e_actions submitted, oldest first (every try)."""
    if task_id.startswith("aws_"):
        return [job.job_id for job in list(e2e.aws.jobs.values()) if job.parameters.get("e2e_task") == task_id]
    return [
        job.id
        for job in sorted(list(e2e.azure.jobs.values()), key=lambda job: job.created)
        if job.body.get("displayName") == f"{ACTIONS}.{task_id}"
    ]


def polls(e2e, task_id: str, job_id: str) -> int:
    """How often the job's status was read (by its trigger: no worker runs while the task is deferred)."""
    if task_id.startswith("aws_"):
        return e2e.aws.describe_counts[job_id]
    # The shared poller reads a running task once, then follows it through the listing of active jobs.
    task_reads = e2e.azure.requests.count(f"GET /jobs/{job_id}/tasks/polysync")
    return task_reads + (e2e.azure.requests.count("GET /jobs") if task_reads else 0)


def wait_for_a_poll(e2e, task_id: str, job_id: str, timeout: float = 90) -> None:
    """Wait until a trigger polls the job from now on: the trigger runs in the current triggerer (Airflow
    calls on_kill only for a running trigger; a trigger not yet picked up is dropped without it)."""
    before = polls(e2e, task_id, job_id)
    deadline = time.monotonic() + timeout
    while polls(e2e, task_id, job_id) <= before:
        assert time.monotonic() < deadline, f"no trigger polled job {job_id} of {task_id} for {timeout} s"
        time.sleep(0.2)


def is_deferred(e2e, task_id: str, try_number: int) -> bool:
    ti = e2e.cluster.task_instance(ACTIONS, actions_run(e2e), task_id)
    return (ti["state"], ti["try_number"]) == ("deferred", try_number)


def deferred_job(e2e, task_id: str, try_number: int = 1) -> str:
    """Wait until the task's try ``try_number`` is deferred and its trigger polls its job; the job's id."""
    deadline = time.monotonic() + 180
    while not is_deferred(e2e, task_id, try_number):
        assert time.monotonic() < deadline, f"{task_id} try {try_number} never deferred"
        time.sleep(0.3)
    job_id = task_jobs(e2e, task_id)[-1]  # a deferred try has submitted (or taken over) its job
    wait_for_a_poll(e2e, task_id, job_id)
    return job_id


def job_outcome(e2e, task_id: str, job_id: str) -> str | None:
    """``cancelled`` (terminated by Polysync), ``succeeded``, ``failed``, or None while it runs."""
    if task_id.startswith("aws_"):
        job = e2e.aws.jobs[job_id]
        if job.status not in ("SUCCEEDED", "FAILED"):
            return None
        if job.status_reason == "Cancelled by Polysync":
            return "cancelled"
        return "succeeded" if job.status == "SUCCEEDED" else "failed"
    job = e2e.azure.job(job_id)
    if job.state != "completed":
        return None
    task = job.tasks["polysync"]
    # Polysync terminates the task (TaskEnded), then the job; with terminatejob the job has completed already
    if (task.failure_info or {}).get("code") == "TaskEnded":
        assert f"POST /jobs/{job_id}/tasks/polysync/terminate" in e2e.azure.requests
        return "cancelled"
    return "succeeded" if task.exit_code == 0 and not task.failure_info else "failed"


def wait_for_outcome(e2e, task_id: str, job_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while (outcome := job_outcome(e2e, task_id, job_id)) is None:
        assert time.monotonic() < deadline, f"job {job_id} of {task_id} still runs after {timeout} s"
        time.sleep(0.3)
    return outcome


def on_kill_lines(e2e, task_id: str) -> list[str]:
    """Airflow's "invoking on_kill" lines in the task's trigger logs (one file per triggerer and try)."""
    return [
        line
        for path in e2e.cluster.trigger_logs(ACTIONS, actions_run(e2e), task_id)
        for line in path.read_text(errors="replace").splitlines()
        if "invoking on_kill" in line
    ]


@pytest.mark.parametrize("task_id", ["aws_mark_success", "azure_mark_success"])
def test_marking_a_deferred_task_success_terminates_the_job(e2e, task_id):
    run_id = actions_run(e2e)
    job_id = deferred_job(e2e, task_id)
    time.sleep(2)
    base = f"/api/v2/dags/{ACTIONS}/dagRuns/{run_id}/taskInstances/{task_id}"
    e2e.cluster.api("PATCH", base, {"new_state": "success"})
    assert wait_for_outcome(e2e, task_id, job_id) == "cancelled"
    ti = e2e.cluster.task_instance(ACTIONS, run_id, task_id)
    assert (ti["state"], ti["try_number"]) == ("success", 1)
    assert task_jobs(e2e, task_id) == [job_id]
    assert on_kill_lines(e2e, task_id), "the trigger log does not show Airflow invoking on_kill"


def is_terminate(entry: str) -> bool:
    """A request that stops a job, in either endpoint's request log."""
    if entry in ("terminatejob", "canceljob") or entry.startswith("DELETE /jobs/"):
        return True
    return entry.startswith("POST /jobs/") and entry.endswith("/terminate")


def terminate_requests(e2e) -> list[str]:
    return [entry for entry in [*e2e.aws.requests, *e2e.azure.requests] if is_terminate(entry)]


def cleared_jobs(e2e) -> dict[str, str]:
    """Clear both deferred clear tasks at once (once): the job each first try submitted.

    The old triggers' terminate calls are held at the endpoints (up to 15 s, inside the triggers' 20 s
    cancel timeout) until both new tries have deferred: the new try looks for its task instance's jobs
    while the old job still runs, as it does when a real job takes its time to stop. It must not take
    that job over (the trigger marked it watched) but submit a new one.
    """
    if not _cleared:
        run_id = actions_run(e2e)
        first = {task_id: deferred_job(e2e, task_id) for task_id in ("aws_clear", "azure_clear")}
        time.sleep(2)
        release = threading.Event()

        def hold_terminates(entry: str) -> None:
            if is_terminate(entry):
                release.wait(15)

        e2e.aws.on_request = e2e.azure.on_request = hold_terminates
        try:
            e2e.cluster.api(
                "POST",
                f"/api/v2/dags/{ACTIONS}/clearTaskInstances",
                {
                    "dry_run": False,
                    "task_ids": list(first),
                    "dag_run_id": run_id,
                    "only_failed": False,
                    "reset_dag_runs": True,
                },
            )
            started = time.monotonic()
            while time.monotonic() < started + 15 and not all(is_deferred(e2e, task_id, 2) for task_id in first):
                time.sleep(0.3)
            print(f"new tries deferred {time.monotonic() - started:.1f} s after the clear, terminates held till then")
        finally:
            release.set()
            e2e.aws.on_request = e2e.azure.on_request = None
        _cleared.update(first)
    return _cleared


@pytest.mark.parametrize("task_id", ["aws_clear", "azure_clear"])
def test_clearing_a_deferred_task_terminates_its_job_and_the_new_try_submits_a_new_one(e2e, task_id):
    run_id = actions_run(e2e)
    old_job = cleared_jobs(e2e)[task_id]
    assert wait_for_outcome(e2e, task_id, old_job) == "cancelled"
    new_job = deferred_job(e2e, task_id, try_number=2)
    assert new_job != old_job, f"try 2 took over the job of try 1 ({old_job}) instead of submitting a new one"
    assert task_jobs(e2e, task_id) == [old_job, new_job]
    e2e.open_gate(task_id, 2)
    states = e2e.cluster.watch_task(ACTIONS, run_id, task_id, until={"success", "failed"}, timeout=120)
    assert states[-1] == "success", states
    assert wait_for_outcome(e2e, task_id, new_job) == "succeeded"
    assert job_outcome(e2e, task_id, old_job) == "cancelled"
    ti = e2e.cluster.task_instance(ACTIONS, run_id, task_id)
    assert ti["try_number"] == 2
    base = f"/api/v2/dags/{ACTIONS}/dagRuns/{run_id}/taskInstances/{task_id}"
    result = e2e.cluster.api("GET", f"{base}/xcomEntries/return_value")
    assert result["value"]["run_id"].split("/")[0] == new_job
    assert result["value"]["status"] == "Success"


def restarted(e2e) -> dict[str, str]:
    """Restart the triggerer (once) while both restart tasks are deferred: the job of each."""
    if not _restart:
        jobs = {task_id: deferred_job(e2e, task_id) for task_id in ("aws_restart", "azure_restart")}
        terminates = terminate_requests(e2e)
        took = e2e.cluster.restart_triggerer()
        print(f"triggerer restarted in {took:.1f} s")
        _restart.update(jobs=jobs, terminates=terminates)
    return _restart["jobs"]


@pytest.mark.parametrize("task_id", ["aws_restart", "azure_restart"])
def test_a_triggerer_restart_while_deferred_terminates_nothing_and_the_run_completes(e2e, task_id):
    run_id = actions_run(e2e)
    job_id = restarted(e2e)[task_id]
    wait_for_a_poll(e2e, task_id, job_id)  # the new triggerer took the trigger over
    assert job_outcome(e2e, task_id, job_id) is None, "the job ended during the restart"
    e2e.open_gate(task_id, 1)
    states = e2e.cluster.watch_task(ACTIONS, run_id, task_id, until={"success", "failed"}, timeout=120)
    assert states[-1] == "success", states
    assert wait_for_outcome(e2e, task_id, job_id) == "succeeded"
    ti = e2e.cluster.task_instance(ACTIONS, run_id, task_id)
    assert ti["try_number"] == 1
    assert task_jobs(e2e, task_id) == [job_id]
    # nothing was terminated anywhere since just before the restart
    assert terminate_requests(e2e) == _restart["terminates"]
    # the trigger ran in two triggerers (one log file each), and neither invoked on_kill
    assert len(e2e.cluster.trigger_logs(ACTIONS, run_id, task_id)) == 2
    assert on_kill_lines(e2e, task_id) == []
