"""End to end on the production topology: our operators against the official ones (a script, not a test).

Starts the topology of tests/topology (PostgreSQL 15, Redis, CeleryExecutor with two workers of 8 slots,
two triggerers, the local AWS Batch and Azure Batch endpoints), then runs one DAG after the other, each
N mapped tasks whose jobs run about a minute, polled every 30 s:

- ``AwsBatchJobOperator`` (ours) and ``BatchOperator(deferrable=True)`` (Amazon provider), N = 200;
- ``AzureBatchJobOperator`` (ours), N = 100. The Microsoft provider's ``AzureBatchOperator`` cannot run
  against the local Azure Batch service: see ``AZURE_OFFICIAL`` below;
- Airflow's floor, N = 200: a task that defers to the standard provider's ``DateTimeTrigger`` for as long as a
  job runs, and calls nothing: what any deferred task costs a triggerer and a worker.

For each (with both triggerers started afresh): wall time from the DAG run's start to its last task's end;
each triggerer's CPU seconds (also above its idle rate, measured first) and peak RSS, from /proc of its
process tree; each Celery worker's CPU seconds; the Batch API requests by operation (writes included), as
the endpoint saw them, and which component sent them (each triggerer and worker talks through its own
recording proxy); the time from each job's end to its trigger's event and to its task's end (median, max).
Writes ``docs/topology.json`` (key ``benchmark``), draws ``docs/img/topology.png`` and prints a table.

    .venv/bin/python benchmarks/topology_bench.py                    # about 15 minutes on 2 cores
    .venv/bin/python benchmarks/topology_bench.py --aws-tasks 20 --azure-tasks 10 --job-seconds 20
    .venv/bin/python benchmarks/topology_bench.py --redraw docs/topology.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.topology.harness: the topology is the scenarios' own

from tests.topology.harness import (  # noqa: E402
    TI,
    ResourceMeter,
    Settings,
    Topology,
    canonical_operation,
    is_write,
    write_json,
)

DAGS = Path(__file__).resolve().parent / "topology_dags"
ARTIFACTS = ROOT / "tests" / "topology" / "artifacts" / "bench"
RESULTS = ROOT / "docs" / "topology.json"
CHART = ROOT / "docs" / "img" / "topology.png"
KINDS = (  # label, DAG id, cloud, which task count
    ("polysync AwsBatchJobOperator", "bench_polysync_aws", "aws", "aws_tasks"),
    ("amazon BatchOperator(deferrable=True)", "bench_amazon_aws", "aws", "aws_tasks"),
    ("polysync AzureBatchJobOperator", "bench_polysync_azure", "azure", "azure_tasks"),
    # No cloud: a DateTimeTrigger for as long as a job runs, Airflow's own cost of a deferred task (the floor).
    ("airflow DateTimeTrigger (floor)", "bench_airflow_floor", "", "aws_tasks"),
)
AZURE_OFFICIAL = (
    "AzureBatchOperator (Microsoft provider 15.2.1) cannot run against the local Azure Batch service: its "
    "execute() first creates the pool (POST /pools, tolerating only PoolExists) and then waits until every "
    "compute node of the pool is idle (GET /pools/{id}/nodes, again before deferring); the local service "
    "implements the job and task API polysync-airflow uses and reads pools only (GET /pools/{id}), so "
    "pool creation and node listing are answered 404 and the operator fails before it creates a job. Its "
    "trigger (AzureBatchTrigger) was measured against a virtual endpoint instead: see README, Performance."
)
IDLE_SECONDS = 60


def wait_until_done(
    topology: Topology, dag_id: str, run_id: str, count: int, timeout: float
) -> tuple[list[TI], dict[tuple[str, int], float], dict[tuple[str, int], float]]:
    """The run's task instances once ``count`` have ended; also when each was first seen deferred, and first
    seen out of DEFERRED again (its trigger's event reached Airflow), sampled every 2 s."""
    deferred: dict[tuple[str, int], float] = {}
    resumed: dict[tuple[str, int], float] = {}
    deadline = time.monotonic() + timeout
    while True:
        tis = topology.task_instances(dag_id, run_id)
        now = time.time()
        for ti in tis:
            key = (ti.task_id, ti.map_index)
            if ti.state == "deferred":
                deferred.setdefault(key, now)
            elif key in deferred:
                resumed.setdefault(key, now)
        if sum(ti.state in ("success", "failed") for ti in tis) >= count:
            return tis, deferred, resumed
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dag_id}: not done after {timeout} s: {Counter(ti.state for ti in tis)}")
        time.sleep(2)


def job_of(topology: Topology, ti: TI, cloud: str, phase_start: float) -> Any:
    """The job a task instance of the benchmark submitted (the official one names it ``bench-<map index>``)."""
    if ti.dag_id == "bench_amazon_aws":
        name = f"bench-{ti.map_index}"
        (job,) = [j for j in list(topology.aws.jobs.values()) if j.name == name and j.created_at / 1000 >= phase_start]
        return job
    (job,) = topology.jobs_of(ti, cloud)
    return job


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 1), "max": round(max(values), 1)} if values else {}


def run_kind(topology: Topology, label: str, dag_id: str, cloud: str, count: int, idle: dict[str, float]) -> dict:
    print(f"{label}: {count} mapped tasks ...", flush=True)
    # Fresh triggerers for each operator: a Python process keeps the memory it once used, so the peak RSS of
    # one run would otherwise carry over into the next.
    for name in topology.triggerers:
        topology.cluster.stop_component(name)
        topology.cluster.start_component(name)
    topology.wait_healthy()
    time.sleep(10)
    meter = ResourceMeter(topology.cluster).start()
    phase_start = time.time()
    run_id = topology.cluster.trigger(dag_id)
    tis, deferred, resumed = wait_until_done(topology, dag_id, run_id, count, timeout=3600)
    time.sleep(2)  # the last task's worker finishes its bookkeeping
    usage = meter.stop()
    phase_end = time.time()
    phase = phase_end - phase_start
    ((run_start,),) = topology.db("SELECT start_date FROM dag_run WHERE dag_id = %s AND run_id = %s", dag_id, run_id)
    last_end = max(ti.ended_at for ti in tis if ti.ended_at)
    operations = Counter(
        canonical_operation(endpoint, entry)
        for moment, endpoint, entry in list(topology.timeline)
        if endpoint == cloud and phase_start <= moment <= phase_end
    )
    by_component = {
        component: dict(proxy.operations(phase_start, phase_end).most_common())
        for (component, proxy_cloud), proxy in topology.proxies.items()
        if proxy_cloud == cloud
    }
    latencies, to_event = [], []
    for ti in tis if cloud else ():
        job = job_of(topology, ti, cloud, phase_start)
        job_end = topology.job_end(job)
        if job_end is not None and ti.ended_at is not None:
            latencies.append(ti.ended_at - job_end)
        if job_end is not None and (ti.task_id, ti.map_index) in resumed:
            to_event.append(max(resumed[(ti.task_id, ti.map_index)] - job_end, 0.0))
    triggerers = {
        name: {
            "cpu_s": round(usage[name].cpu_seconds, 1),
            "cpu_above_idle_s": round(usage[name].cpu_seconds - idle.get(name, 0.0) * phase, 1),
            "peak_rss_mb": round(usage[name].peak_rss_bytes / 2**20),
        }
        for name in topology.triggerers
        if name in usage
    }
    result = {
        "tasks": count,
        "task states": dict(Counter(ti.state for ti in tis)),
        "wall_s": round(last_end - run_start.timestamp(), 1),
        "triggerers": triggerers,
        "triggerer_cpu_s": round(sum(t["cpu_s"] for t in triggerers.values()), 1),
        "triggerer_cpu_above_idle_s": round(sum(t["cpu_above_idle_s"] for t in triggerers.values()), 1),
        "workers_cpu_s": {name: round(usage[name].cpu_seconds, 1) for name in topology.workers if name in usage},
        "requests": sum(operations.values()),
        "writes": sum(n for op, n in operations.items() if is_write(op)),
        "requests_by_operation": dict(operations.most_common()),
        "requests_by_component": by_component,
        "job_end_to_task_end_s": spread(latencies),
        "job_end_to_trigger_event_s": spread(to_event),
        "last_deferral_after_s": round(max(deferred.values()) - run_start.timestamp(), 1) if deferred else None,
    }
    print(json.dumps({label: result}, indent=1), flush=True)
    return result


def table(results: dict[str, Any]) -> str:
    rows = [
        "| operator | tasks | wall time | triggerer CPU (each; above idle) | triggerer peak RSS (each) "
        "| worker CPU (each) | Batch requests (writes) | job end to task end, median / max |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, item in results["kinds"].items():
        triggerers = item["triggerers"].values()
        cpu = " + ".join(f"{t['cpu_s']:.1f}" for t in triggerers)
        rss = " / ".join(str(t["peak_rss_mb"]) for t in triggerers)
        workers = " + ".join(f"{v:.0f}" for v in item["workers_cpu_s"].values())
        latency = item["job_end_to_task_end_s"]
        rows.append(
            f"| {label} | {item['tasks']} | {item['wall_s']:.0f} s "
            f"| {cpu} s; {item['triggerer_cpu_above_idle_s']:.1f} s "
            f"| {rss} MB | {workers} s | {item['requests']} ({item['writes']}) "
            f"| {latency.get('median', '-')} / {latency.get('max', '-')} s |"
        )
    return "\n".join(rows)


def draw(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results["kinds"])
    short = [label.split(" ", 1)[1].split("(")[0] for label in labels]
    figures = {
        "triggerer CPU above idle (s)": [results["kinds"][k]["triggerer_cpu_above_idle_s"] for k in labels],
        "Batch API requests": [results["kinds"][k]["requests"] for k in labels],
        "wall time (s)": [results["kinds"][k]["wall_s"] for k in labels],
    }
    fig, axes = plt.subplots(1, len(figures), figsize=(12, 3.6))
    for axis, (title, values) in zip(axes, figures.items(), strict=True):
        colors = [{"polysync": "#2a7ab0", "airflow": "#999999"}.get(label.split()[0], "#c05a28") for label in labels]
        axis.bar(range(len(values)), values, color=colors)
        axis.set_xticks(range(len(values)), short, rotation=15, fontsize=8)
        axis.set_title(title, fontsize=10)
        for index, value in enumerate(values):
            axis.annotate(f"{value:g}", (index, value), ha="center", va="bottom", fontsize=8)
    fig.suptitle(
        "Production topology: 200 AWS / 100 Azure mapped jobs of 60 s, poll 30 s\n"
        "(blue: polysync; grey: Airflow's floor)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aws-tasks", type=int, default=200)
    parser.add_argument("--azure-tasks", type=int, default=100)
    parser.add_argument("--job-seconds", type=int, default=60)
    parser.add_argument("--poll-interval", type=int, default=30)
    parser.add_argument(
        "--kinds", nargs="+", choices=[dag_id for _l, dag_id, _c, _n in KINDS], help="DAGs to run, in this order"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    parser.add_argument("--redraw", type=Path, help="redraw the chart and reprint the table from this JSON")
    args = parser.parse_args()
    if args.redraw:
        results = json.loads(args.redraw.read_text())["benchmark"]
        draw(results, CHART)
        print(table(results))
        return
    settings = Settings(
        aws_tasks=args.aws_tasks,
        azure_tasks=args.azure_tasks,
        extra_env={
            "POLYSYNC_BENCH_AWS_TASKS": str(args.aws_tasks),
            "POLYSYNC_BENCH_AZURE_TASKS": str(args.azure_tasks),
            "POLYSYNC_BENCH_JOB_SECONDS": str(args.job_seconds),
            "POLYSYNC_BENCH_POLL_INTERVAL": str(args.poll_interval),
        },
    )
    started = time.monotonic()
    with Topology(ARTIFACTS, settings, dag_files=list(DAGS.glob("*.py"))) as topology:
        for _label, dag_id, _cloud, _count in KINDS:
            topology.cluster.wait_for_dag(dag_id)
        time.sleep(10)  # the components settle after the start
        meter = ResourceMeter(topology.cluster).start()
        time.sleep(IDLE_SECONDS)
        idle = {name: usage.cpu_seconds / IDLE_SECONDS for name, usage in meter.stop().items()}
        print(f"idle CPU per second: {json.dumps({k: round(v, 3) for k, v in idle.items()})}", flush=True)
        by_dag = {kind[1]: kind for kind in KINDS}
        chosen = [by_dag[dag_id] for dag_id in args.kinds] if args.kinds else list(KINDS)
        kinds = {
            label: run_kind(topology, label, dag_id, cloud, getattr(args, count), idle)
            for label, dag_id, cloud, count in chosen
        }
    results = {
        "settings": {
            "aws_tasks": args.aws_tasks,
            "azure_tasks": args.azure_tasks,
            "job_seconds": args.job_seconds,
            "poll_interval_s": args.poll_interval,
            "triggerers": settings.triggerers,
            "celery_workers": settings.workers,
            "worker_concurrency": settings.worker_concurrency,
            "machine": "2 cores, shared",
        },
        "idle_cpu_per_s": {name: round(rate, 4) for name, rate in idle.items()},
        "kinds": kinds,
        "azure_official": AZURE_OFFICIAL,
        "total_s": round(time.monotonic() - started),
    }
    print(table(results))
    if not args.no_write:
        write_json(RESULTS, "benchmark", results)
        draw(results, CHART)
        print(f"written: {RESULTS.relative_to(ROOT)}, {CHART.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
