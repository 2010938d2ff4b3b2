"""Our triggers against the official providers' Batch triggers, N runs in one event loop (a script, not a test).

For each platform and each N, a fresh process runs N concurrent triggers in one asyncio loop, as the triggerer
does: first ours (``AwsBatchJobTrigger``, ``AzureBatchJobTrigger``), then the official ones
(``BatchJobTrigger`` from the Amazon provider, ``AzureBatchTrigger`` from the Microsoft Azure provider). They
poll a loopback endpoint whose virtual jobs run for a set time (every tenth fails) and which counts every
request. Job ends are spread over one poll interval so detection latency is sampled across it.

Measured per run of a trigger kind: status calls, calls per run per poll, writes (the watched mark: AWS TagResource,
Azure job update; none on Airflow 3.3, where the operator records ownership in the task_state_store), every request
per run per poll (status reads, other reads and writes), CPU seconds, memory per run (peak RSS
growth over the resident baseline / N), detection latency from a job's end to its trigger's event (median, max),
first-poll delay (from the trigger's start to the first status read of its job), the longest event-loop stall,
log lines per run, and whether every trigger reported the outcome its job really had. Prints JSON and a table
and draws ``docs/img/performance.png``.

    .venv/bin/python benchmarks/trigger_polling.py                 # N = 10, 100, 1000; about 10 minutes
    .venv/bin/python benchmarks/trigger_polling.py --sizes 10 100 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

KINDS = {
    "aws": ("polysync AwsBatchJobTrigger", "amazon BatchJobTrigger"),
    "azure": ("polysync AzureBatchJobTrigger", "azure AzureBatchTrigger"),
}
ACCOUNT = "benchaccount"
BLOCKED_SECONDS = 0.2  # a loop stall the triggerer would report as blocked
CHART = Path(__file__).resolve().parent.parent / "docs" / "img" / "performance.png"


# -- the loopback endpoint: virtual AWS Batch and Azure Batch jobs ---------------------------------------------
class VirtualJobs:
    """Jobs that run until a set wall-clock end, then succeed or fail. Counts every request it answers."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.metadata: dict[str, list[dict[str, str]]] = {}  # Azure job metadata
        self.tags: dict[str, dict[str, str]] = {}  # AWS job tags
        self.calls: Counter[str] = Counter()
        self.first_read: dict[str, float] = {}

    def load(self, jobs: list[dict[str, Any]]) -> None:
        self.jobs = {job["id"]: job for job in jobs}
        self.metadata.clear()
        self.tags.clear()
        self.calls.clear()
        self.first_read.clear()

    def read(self, job_id: str) -> None:
        self.first_read.setdefault(job_id, time.time())

    def ended(self, job: dict[str, Any]) -> bool:
        return time.time() >= job["end"]

    # AWS Batch (JSON over POST /v1/...)
    def describe_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls["status"] += 1
        found = []
        for job_id in body.get("jobs", []):
            if (job := self.jobs.get(job_id)) is not None:
                self.read(job_id)
                found.append(self.aws_job(job))
        return {"jobs": found}

    def aws_job(self, job: dict[str, Any]) -> dict[str, Any]:
        ms = int(job["start"] * 1000)
        answer: dict[str, Any] = {
            "jobArn": f"arn:aws:batch:us-east-1:123456789012:job/{job['id']}",
            "jobName": f"bench-{job['id'][:8]}",
            "jobId": job["id"],
            "jobQueue": "arn:aws:batch:us-east-1:123456789012:job-queue/polysync-default",
            "jobDefinition": "arn:aws:batch:us-east-1:123456789012:job-definition/polysync-job:1",
            "createdAt": ms,
            "startedAt": ms,
            "status": "RUNNING",
            "attempts": [],
            "container": {"image": "polysync", "logStreamName": f"polysync-job/default/{job['id']}"},
            "tags": self.tags.get(job["id"], {}),
        }
        if self.ended(job):
            code = 1 if job["failed"] else 0
            answer.update(status="FAILED" if job["failed"] else "SUCCEEDED", stoppedAt=int(job["end"] * 1000))
            answer["container"]["exitCode"] = code
            if job["failed"]:
                answer["statusReason"] = "Essential container in task exited"
        return answer

    # Azure Batch (REST, JSON with odata metadata)
    def azure_job(self, job: dict[str, Any]) -> dict[str, Any]:
        ended = self.ended(job)
        moment = job["end"] if ended else job["start"]
        return {
            "id": job["id"],
            "url": f"/jobs/{job['id']}",
            "state": "completed" if ended else "active",
            "lastModified": iso(moment),
            "creationTime": iso(job["start"]),
            "stateTransitionTime": iso(moment),
            "poolInfo": {"poolId": "polysync-pool"},
            "onAllTasksComplete": "terminatejob",
            "executionInfo": {"startTime": iso(job["start"]), "poolId": "polysync-pool"}
            | ({"endTime": iso(job["end"]), "terminateReason": "AllTasksComplete"} if ended else {}),
            "metadata": self.metadata.get(job["id"], []),
        }

    def azure_task(self, job: dict[str, Any]) -> dict[str, Any]:
        ended = self.ended(job)
        info: dict[str, Any] = {"startTime": iso(job["start"]), "retryCount": 0, "requeueCount": 0}
        if ended:
            info.update(endTime=iso(job["end"]), exitCode=1 if job["failed"] else 0)
            info["result"] = "failure" if job["failed"] else "success"
            if job["failed"]:
                info["failureInfo"] = {"category": "usererror", "code": "FailureExitCode", "message": "exit code 1"}
        moment = job["end"] if ended else job["start"]
        return {
            "id": "polysync",
            "url": f"/jobs/{job['id']}/tasks/polysync",
            "creationTime": iso(job["start"]),
            "lastModified": iso(moment),
            "state": "completed" if ended else "running",
            "stateTransitionTime": iso(moment),
            "commandLine": "polysync run",
            "executionInfo": info,
        }


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def serve_endpoint(port_out: Any) -> None:
    """Runs in its own process, so its CPU is not charged to the triggers."""
    from aiohttp import web

    state = VirtualJobs()
    odata = {"content_type": "application/json", "headers": {"odata-version": "3.0"}}

    async def control(request: web.Request) -> web.Response:
        if request.method == "POST":
            state.load((await request.json())["jobs"])
            return web.json_response({})
        return web.json_response({"calls": dict(state.calls), "first_read": state.first_read})

    async def aws(request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action == "describejobs":
            return web.json_response(state.describe_jobs(await request.json()))
        if action.startswith("tags/"):
            state.calls["mark"] += 1
            job_id = action.rsplit("/", 1)[-1]
            state.tags.setdefault(job_id, {}).update((await request.json()).get("tags", {}))
            return web.json_response({})
        state.calls["other"] += 1
        return web.json_response({"__type": "ClientException", "message": f"not served: {action}"}, status=400)

    async def azure(request: web.Request) -> web.Response:
        parts = [p for p in request.path.split("/") if p]
        query = request.query
        if len(parts) == 1:  # GET /jobs: the listing ours uses
            state.calls["status"] += 1
            wanted = {s.strip() for s in query.get("$select", "").split(",") if s.strip()}
            prefix = "polysync-" if "startswith(id,'polysync-')" in query.get("$filter", "") else ""
            active_only = "state eq 'active'" in query.get("$filter", "")
            items = []
            for job in state.jobs.values():
                item = state.azure_job(job)
                if item["id"].startswith(prefix) and (not active_only or item["state"] == "active"):
                    items.append({k: v for k, v in item.items() if not wanted or k in wanted})
            start = int(query.get("$skiptoken") or 0)
            size = min(int(query.get("maxresults") or 1000), 1000)  # Azure's page size: maxresults, at most 1000
            page = items[start : start + size]
            body: dict[str, Any] = {"value": page}
            if start + size < len(items):
                body["odata.nextLink"] = f"http://{request.host}/jobs?" + "&".join(
                    f"{k}={v}" for k, v in {**query, "$skiptoken": str(start + size)}.items()
                )
            return web.json_response(body, **odata)
        job = state.jobs.get(parts[1])
        if job is None:
            error = {"code": "JobNotFound", "message": {"lang": "en-US", "value": "The specified job does not exist."}}
            return web.json_response(error, status=404, **odata)
        if len(parts) == 2 and request.method == "PATCH":
            state.calls["mark"] += 1
            state.metadata[job["id"]] = (await request.json()).get("metadata", [])
            return web.Response(status=200)
        if len(parts) == 2:
            state.calls["other"] += 1
            return web.json_response(state.azure_job(job), **odata)
        state.calls["status"] += 1
        state.read(job["id"])
        task = state.azure_task(job)
        return web.json_response(task if len(parts) == 4 else {"value": [task]}, **odata)

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/__jobs", control)
        app.router.add_post("/v1/{action:.+}", aws)
        app.router.add_route("*", "/jobs{rest:.*}", azure)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port_out.send(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(start())


# -- one measured phase: N triggers of one kind in a fresh process -------------------------------------------
def connections(url: str) -> dict[str, str]:
    aws = {"endpoint_url": url, "region_name": "us-east-1"}
    azure = {"account_url": url, "subscription_id": "0" * 8, "resource_group": "bench"}
    return {
        "AIRFLOW_CONN_BENCH_AWS": json.dumps(
            {"conn_type": "aws", "login": "bench-key", "password": "bench-secret", "extra": aws}
        ),
        "AIRFLOW_CONN_BENCH_AZURE": json.dumps(
            {"conn_type": "azure_batch", "login": ACCOUNT, "password": "YmVuY2gta2V5", "extra": azure}
        ),
    }


# Our triggers as the operator defers them: on Airflow 3.3 without the watched mark (the task_state_store holds the
# ownership), on 3.1 and 3.2 with it (one write per run).
MARKS_WATCHED = importlib.util.find_spec("airflow.models.task_state_store") is None


def make_trigger(platform: str, official: bool, job_id: str, interval: float) -> Any:
    if platform == "aws" and official:
        from airflow.providers.amazon.aws.triggers.batch import BatchJobTrigger

        return BatchJobTrigger(job_id=job_id, aws_conn_id="bench_aws", waiter_delay=int(interval))
    if platform == "aws":
        from polysync_airflow.triggers.aws_batch import AwsBatchJobTrigger

        return AwsBatchJobTrigger(
            job_id=job_id, aws_conn_id="bench_aws", poll_interval=interval, mark_watched=MARKS_WATCHED
        )
    if official:
        from airflow.providers.microsoft.azure.triggers.batch import AzureBatchTrigger

        return AzureBatchTrigger(job_id, "bench_azure", end_time=time.time() + 3600, poll_interval=int(interval))
    from polysync_airflow.triggers.azure_batch import AzureBatchJobTrigger

    return AzureBatchJobTrigger(
        run_id=f"{job_id}/polysync",
        azure_batch_conn_id="bench_azure",
        poll_interval=interval,
        mark_watched=MARKS_WATCHED,
    )


def job_ids(platform: str, prefix: str, n: int) -> list[str]:
    if platform == "aws":
        return [f"{prefix}{i:04d}-0000-4000-8000-{i:012d}" for i in range(n)]
    return [f"polysync-{prefix}{i:04d}" for i in range(n)]


def outcome(event: Any) -> str:
    """The job outcome a trigger reported: success or failure."""
    if isinstance(event, BaseException):
        return "failure" if "Failure while running batch job" in str(event) else f"error: {event}"
    status = event.payload.get("status")
    return {"Success": "success", "success": "success", "Failed": "failure", "error": "failure"}.get(status, status)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def control(url: str, jobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        if jobs is None:
            async with session.get(f"{url}/__jobs") as answer:
                return await answer.json()
        async with session.post(f"{url}/__jobs", json={"jobs": jobs}) as answer:
            return await answer.json()


async def drive(trigger: Any) -> tuple[float, Any]:
    """What the triggerer does with a trigger: take its first event, then let it go."""
    try:
        async for event in trigger.run():
            return time.time(), event
        return time.time(), RuntimeError("no event")
    except Exception as err:
        return time.time(), err


async def measure(platform: str, official: bool, n: int, duration: float, interval: float, url: str) -> dict:
    # Warm up both kinds alike (imports, service models, first client): a triggerer is already running.
    await control(url, [{"id": i, "start": time.time(), "end": 0, "failed": False} for i in job_ids(platform, "w", 1)])
    await drive(make_trigger(platform, official, job_ids(platform, "w", 1)[0], interval))

    sys.stdout.flush()
    log_start = os.lseek(1, 0, os.SEEK_END)
    stall, peak_rss, stopping = [0.0, 0.0], [rss_bytes()], asyncio.Event()
    blocked = [0]  # stalls over 0.2 s: what the triggerer would warn about ("blocked")

    async def watch_loop() -> None:
        started = time.perf_counter()
        while not stopping.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.02)
            late = time.perf_counter() - before - 0.02
            stall[0] = max(stall[0], late)
            blocked[0] += late > BLOCKED_SECONDS
            if before - started < 10:
                stall[1] = max(stall[1], late)
            peak_rss[0] = max(peak_rss[0], rss_bytes())

    ids = job_ids(platform, "r", n)
    start = time.time()
    ends = {job_id: start + duration + interval * i / n for i, job_id in enumerate(ids)}
    failed = {job_id: i % 10 == 9 for i, job_id in enumerate(ids)}
    await control(url, [{"id": j, "start": start, "end": ends[j], "failed": failed[j]} for j in ids])

    steady: list[int] = []

    async def count_steady_calls() -> None:
        """Status calls while every run is running and none has ended: what each further interval costs."""
        for moment in (start + 2 * interval, start + duration - 0.5):
            await asyncio.sleep(max(0.0, moment - time.time()))
            steady.append((await control(url))["calls"].get("status", 0))

    base_rss, base_cpu = rss_bytes(), cpu_seconds()
    monitor = asyncio.create_task(watch_loop())
    counting = asyncio.create_task(count_steady_calls())
    started = time.time()
    runs = [asyncio.create_task(drive(make_trigger(platform, official, job_id, interval))) for job_id in ids]
    results = await asyncio.gather(*runs)
    cpu = cpu_seconds() - base_cpu
    stopping.set()
    await monitor
    await counting
    stats = await control(url)
    sys.stdout.flush()
    sys.stderr.flush()
    with open("/proc/self/fd/1", "rb") as log:
        log.seek(log_start)
        log_lines = log.read().count(b"\n")

    latency = [at - ends[job_id] for job_id, (at, _) in zip(ids, results, strict=True)]
    wrong = [
        f"{job_id}: {outcome(event)}"
        for job_id, (_, event) in zip(ids, results, strict=True)
        if outcome(event) != ("failure" if failed[job_id] else "success")
    ]
    first = [stats["first_read"].get(job_id, math.inf) - started for job_id in ids]
    watched = sum(at - started for at, _ in results)
    polls = n + watched / interval  # each run is read at once, then once per interval until its end
    calls = stats["calls"].get("status", 0)
    return {
        "kind": KINDS[platform][official],
        "platform": platform,
        "n": n,
        "status_calls": calls,
        "calls_per_run_per_poll": round(calls / polls, 4),
        "steady_calls_per_run_per_poll": round(
            (steady[1] - steady[0]) * interval / (duration - 0.5 - 2 * interval) / n, 4
        ),
        "other_calls": stats["calls"].get("mark", 0) + stats["calls"].get("other", 0),
        "write_calls": stats["calls"].get("mark", 0),
        "writes_per_run": round(stats["calls"].get("mark", 0) / n, 4),
        # every request: status reads, other reads (a job read on Azure) and writes, per run per poll
        "requests_per_run_per_poll": round(sum(stats["calls"].values()) / polls, 4),
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_run": round(cpu * 1000 / n, 2),
        "memory_kb_per_run": round(max(0, peak_rss[0] - base_rss) / 1024 / n, 1),
        "latency_median_s": round(statistics.median(latency), 2),
        "latency_max_s": round(max(latency), 2),
        "first_poll_max_s": round(max(first), 2),
        "max_loop_stall_s": round(stall[0], 3),
        "startup_loop_stall_s": round(stall[1], 3),
        "stalls_over_0_2s": blocked[0],
        "log_lines_per_run": round(log_lines / n, 1),
        "wrong_outcomes": len(wrong),
        "wrong_examples": wrong[:3],
    }


def run_phase(args: tuple[str, bool, int, float, float, str], out: Any) -> None:
    """One phase in a fresh process; its log goes to a file (as the triggerer's does), counted line by line."""
    os.environ.update(connections(args[-1]))
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            out.send(asyncio.run(measure(*args)))
        except BaseException:
            out.send({"error": traceback.format_exc()})
            raise


# -- the whole benchmark --------------------------------------------------------------------------------------
def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    merged = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, int | float) and key != "n":
            merged[key] = round(statistics.median(row[key] for row in rows), 4)
    merged["wrong_outcomes"] = sum(row["wrong_outcomes"] for row in rows)
    merged["repeats"] = len(rows)
    return merged


def draw(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (calls, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {False: "-o", True: "--s"}
    for names in KINDS.values():
        for official, name in ((False, names[0]), (True, names[1])):
            mine = sorted((r for r in rows if r["kind"] == name), key=lambda r: r["n"])
            if not mine:
                continue
            sizes = [r["n"] for r in mine]
            calls.plot(sizes, [r["status_calls"] for r in mine], styles[official], label=name)
            memory.plot(sizes, [r["memory_kb_per_run"] for r in mine], styles[official], label=name)
    calls.set(xscale="log", yscale="log", xlabel="concurrent runs (N)", ylabel="status requests, all N runs")
    calls.set_title("Status requests while N jobs run and end")
    memory.set(xscale="log", yscale="log", xlabel="concurrent runs (N)", ylabel="KB of RSS per run")
    memory.set_title("Memory per run")
    for axes in (calls, memory):
        axes.grid(True, which="both", alpha=0.3)
    calls.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--platforms", nargs="+", choices=sorted(KINDS), default=sorted(KINDS))
    parser.add_argument("--sides", nargs="+", choices=["ours", "official"], default=["ours", "official"])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds each job runs (default 30)")
    parser.add_argument("--interval", type=float, default=5.0, help="poll interval of every trigger (default 5)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per phase; the table shows medians")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--chart", type=Path, default=CHART)
    parser.add_argument("--redraw", type=Path, metavar="JSON", help="only draw the chart from saved results")
    args = parser.parse_args(argv)
    if args.redraw:
        draw(json.loads(args.redraw.read_text())["results"], args.chart)
        return 0

    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="polysync-bench-"))
    spawn = multiprocessing.get_context("spawn")
    receive, send = spawn.Pipe(duplex=False)
    endpoint = spawn.Process(target=serve_endpoint, args=(send,), daemon=True)
    endpoint.start()
    url = f"http://127.0.0.1:{receive.recv()}"

    rows = []
    try:
        for platform in args.platforms:
            for n in args.sizes:
                for official in [side == "official" for side in args.sides]:
                    runs = []
                    for _ in range(args.repeats):
                        receive, send = spawn.Pipe(duplex=False)
                        phase = spawn.Process(
                            target=run_phase, args=((platform, official, n, args.duration, args.interval, url), send)
                        )
                        phase.start()
                        result = receive.recv()
                        phase.join()
                        if "error" in result:
                            raise RuntimeError(f"{KINDS[platform][official]} N={n} failed:\n{result['error']}")
                        runs.append(result)
                    rows.append(median_row(runs))
                    print(f"measured {rows[-1]['kind']} N={n}", file=sys.stderr, flush=True)
    finally:
        endpoint.terminate()

    settings = {"duration_s": args.duration, "interval_s": args.interval, "repeats": args.repeats}
    report = {"settings": settings, "cpus": os.cpu_count(), "results": rows}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    columns = (
        ("kind", "trigger", 30),
        ("n", "N", 5),
        ("status_calls", "calls", 7),
        ("calls_per_run_per_poll", "/run/poll", 9),
        ("steady_calls_per_run_per_poll", "steady", 7),
        ("write_calls", "writes", 6),
        ("requests_per_run_per_poll", "req/run/poll", 12),
        ("memory_kb_per_run", "KB/run", 8),
        ("cpu_ms_per_run", "CPU ms/run", 10),
        ("latency_median_s", "lat med s", 9),
        ("latency_max_s", "lat max s", 9),
        ("first_poll_max_s", "1st poll s", 10),
        ("startup_loop_stall_s", "stall s", 7),
        ("max_loop_stall_s", "max stall", 9),
        ("stalls_over_0_2s", ">0.2s", 5),
        ("log_lines_per_run", "log/run", 7),
        ("wrong_outcomes", "wrong", 5),
    )

    def line(cells: list[Any]) -> str:
        pairs = enumerate(zip(cells, [width for _, _, width in columns], strict=True))
        return " ".join(f"{c:{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in pairs)

    print("\n" + line([title for _, title, _ in columns]))
    for row in rows:
        print(line([row[key] for key, _, _ in columns]))
    draw(rows, args.chart)
    print(f"\nchart: {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
