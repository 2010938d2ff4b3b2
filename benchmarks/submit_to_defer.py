"""Submit-to-defer time of our AWS operator against the official BatchOperator (a script, not a test).

Each sample builds a fresh operator (a worker runs each task in a new process, so hooks and clients are
new too) and times ``execute`` from its start until it raises ``TaskDeferred``, against the local AWS
endpoint, counting the requests each submission makes. Prints JSON and a table.

    .venv/bin/python benchmarks/submit_to_defer.py [--samples 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from types import SimpleNamespace

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="polysync-bench-"))


def context(run_id: str) -> dict:
    ti = SimpleNamespace(
        dag_id="bench", run_id=run_id, task_id="submit", map_index=-1, try_number=1, xcom_push=lambda **_: None
    )
    return {"ti": ti, "task_instance": ti, "run_id": run_id}


def ours(conn_id: str):
    from polysync_airflow.operators.aws_batch import AwsBatchJobOperator

    return AwsBatchJobOperator(task_id="submit", job_definition="polysync-job", aws_conn_id=conn_id)


def official(conn_id: str):
    from airflow.providers.amazon.aws.operators.batch import BatchOperator

    return BatchOperator(
        task_id="submit",
        job_name="bench",
        job_definition="polysync-job",
        job_queue="polysync-default",
        aws_conn_id=conn_id,
        deferrable=True,
    )


def sample(make, conn_id: str, endpoint, samples: int) -> dict:
    from airflow.sdk.exceptions import TaskDeferred

    times, requests = [], []
    for _ in range(samples):
        operator = make(conn_id)
        before = len(endpoint.requests)
        start = time.perf_counter()
        try:
            operator.execute(context(f"manual__{uuid.uuid4()}"))
        except TaskDeferred:
            pass
        else:
            raise RuntimeError(f"{type(operator).__name__} did not defer")
        times.append(time.perf_counter() - start)
        requests.append(len(endpoint.requests) - before)
    ordered = sorted(times)
    return {
        "median_ms": round(statistics.median(times) * 1000, 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
        "requests_per_submit": statistics.median(requests),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args(argv)

    from polysync_airflow.testing import LocalAwsBatch
    from polysync_airflow.testing.connections import aws_connection_env

    with LocalAwsBatch(step_seconds=60) as endpoint:  # jobs stay queued: only submission is measured
        os.environ.update(aws_connection_env("aws_bench", endpoint))
        sample(ours, "aws_bench", endpoint, 2)  # warm the service models and imports for both sides
        sample(official, "aws_bench", endpoint, 2)
        results = {
            "polysync AwsBatchJobOperator": sample(ours, "aws_bench", endpoint, args.samples),
            "amazon BatchOperator": sample(official, "aws_bench", endpoint, args.samples),
        }
    print(json.dumps({"samples": args.samples, "results": results}, indent=2))
    print(f"\n{'operator':32} {'median ms':>10} {'p90 ms':>8} {'requests':>9}")
    for name, row in results.items():
        print(f"{name:32} {row['median_ms']:>10} {row['p90_ms']:>8} {row['requests_per_submit']:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
