"""``polysync-airflow sweep``: stop the jobs no task instance owns any more (the sweep itself is
``polysync_airflow/sweep.py``). The hooks are imported in the handlers (see ``__init__.py``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

SWEEP_HELP = "stop the Polysync jobs no task instance owns any more"
SWEEP_DESCRIPTION = (
    "Stop the Polysync jobs still queued or running whose task instance ended (success, failed, skipped, "
    "removed), whose DAG run is gone, or whose task instance's later try has a job of its own. Jobs of task "
    "instances that still run, wait or will retry, and jobs submitted with cancel_on_kill=False, are left alone. "
    "Task instance states are read through Airflow's REST API (--api-url); the token comes from the environment: "
    "POLYSYNC_AIRFLOW_API_TOKEN, or POLYSYNC_AIRFLOW_API_USERNAME and POLYSYNC_AIRFLOW_API_PASSWORD."
)


class PrintLog:
    """The sweep's log lines, one per job, on stdout (warnings on stderr)."""

    def info(self, msg: Any, /, *args: Any) -> None:
        print(msg % args if args else msg)

    def warning(self, msg: Any, /, *args: Any) -> None:
        print(msg % args if args else msg, file=sys.stderr)


def _sweep(args: argparse.Namespace, source: Any) -> int:
    from polysync_airflow.sweep import RestApiStates, sweep

    states = RestApiStates(
        args.api_url,
        token=os.environ.get("POLYSYNC_AIRFLOW_API_TOKEN"),
        username=os.environ.get("POLYSYNC_AIRFLOW_API_USERNAME"),
        password=os.environ.get("POLYSYNC_AIRFLOW_API_PASSWORD"),
    )
    verdicts = sweep([source], states, dry_run=args.dry_run, log=PrintLog())
    stops = sum(verdict.stop for verdict in verdicts)
    done = "would be stopped (dry run)" if args.dry_run else "stopped"
    print(f"{stops} job(s) {done}, {len(verdicts) - stops} left alone", file=sys.stderr)
    return 0


def sweep_aws(args: argparse.Namespace) -> int:
    from polysync_airflow.hooks.aws_batch import AwsBatchHook
    from polysync_airflow.sweep import AwsBatchJobs

    hook = AwsBatchHook(aws_conn_id=args.conn_id, region_name=args.region)
    return _sweep(args, AwsBatchJobs(hook, args.job_queue or []))


def sweep_azure(args: argparse.Namespace) -> int:
    from polysync_airflow.hooks.azure_batch import AzureBatchHook
    from polysync_airflow.sweep import AzureBatchJobs

    return _sweep(args, AzureBatchJobs(AzureBatchHook(args.conn_id)))
