"""The whole path in a real Airflow: scheduler -> executor -> deferral -> triggerer -> resume -> UI link."""

from __future__ import annotations

import time
from pathlib import Path

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
        assert links == {LINK_NAMES[dag_id]: expected}


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
    log = e2e.cluster.task_log("polysync_e2e_failure", run_id, task_id)
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
