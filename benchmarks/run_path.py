"""The path of one deferred run through the package, measured (a script, not a test).

Runs one AWS Batch (or Azure Batch) run against the local endpoint the way Airflow does, without Airflow's
scheduler: ``execute`` until it defers, the trigger stored and loaded back, its ``run`` until the event, then
``execute_complete``. A profiler records every call from one module of the package into another (``testing/``
left out), and prints:

- the path: the package's modules in the order the run first enters each, with the call (the hop) that entered it;
- cross-module calls: every distinct caller -> callee pair between two modules, helpers included.

``tests/integration/test_run_path.py`` runs it for both platforms: their paths must mirror each other.

    .venv/bin/python benchmarks/run_path.py [--platform aws|azure] [--all]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, SimpleNamespace
from typing import Any

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="polysync-path-"))

PACKAGE = Path(importlib.util.find_spec("polysync_airflow").origin or "").parent  # type: ignore[union-attr]


def module_of(frame: FrameType | None) -> str | None:
    """The package module a frame runs in (``operators/base.py``), or None outside the package or in testing/."""
    if frame is None:
        return None
    path = Path(frame.f_code.co_filename)
    if not path.is_relative_to(PACKAGE) or path.is_relative_to(PACKAGE / "testing"):
        return None
    return str(path.relative_to(PACKAGE))


class CallRecorder:
    def __init__(self) -> None:
        self.calls: dict[tuple[str, str, str, str], None] = {}  # ordered set of (caller module, func, callee ...)

    def __call__(self, frame: FrameType, event: str, _arg: Any) -> None:
        if event != "call":
            return
        callee, caller = module_of(frame), module_of(frame.f_back)
        if callee and caller and callee != caller:
            key = (caller, frame.f_back.f_code.co_qualname, callee, frame.f_code.co_qualname)  # type: ignore[union-attr]
            self.calls.setdefault(key, None)


class Store:
    """Airflow 3.3's ``task_state_store`` for one task instance."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


def task_context(task: Any, run_id: str) -> dict[str, Any]:
    xcom: dict[str, Any] = {}
    ti = SimpleNamespace(
        dag_id="path",
        run_id=run_id,
        task_id=task.task_id,
        map_index=-1,
        try_number=1,
        xcom_push=lambda key, value: xcom.__setitem__(key, value),
        xcom_pull=lambda key, **_: xcom.get(key),
    )
    return {"ti": ti, "task_instance": ti, "task": task, "run_id": ti.run_id, "task_state_store": Store()}


def one_run(task: Any, run_id: str) -> dict[str, Any]:
    """``execute`` to the deferral, the trigger through its stored form, ``execute_complete``."""
    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # Airflow 3.1
        from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

    context = task_context(task, run_id)
    try:
        task.execute(context)
    except TaskDeferred as deferred:
        classpath, kwargs = deferred.trigger.serialize()
        module, _, name = classpath.rpartition(".")
        trigger = getattr(importlib.import_module(module), name)(**kwargs)
        method = deferred.method_name
    else:
        raise RuntimeError("the operator did not defer")

    async def first_event() -> Any:
        async for event in trigger.run():
            return event.payload

    return getattr(task, method)(context, asyncio.run(first_event()))


def aws_operators(stack: ExitStack) -> Callable[[], Any]:
    from polysync_airflow import AwsBatchJobOperator
    from polysync_airflow.testing import LocalAwsBatch
    from polysync_airflow.testing.connections import aws_connection_env

    endpoint = stack.enter_context(LocalAwsBatch(step_seconds=0.2))
    os.environ.update(aws_connection_env("aws_path", endpoint))
    return lambda: AwsBatchJobOperator(
        task_id="path", job_definition="polysync-job", aws_conn_id="aws_path", poll_interval=0.2
    )


def azure_operators(stack: ExitStack) -> Callable[[], Any]:
    from polysync_airflow import AzureBatchJobOperator
    from polysync_airflow.testing import LocalAzureBatch
    from polysync_airflow.testing.connections import azure_connection_env

    service = stack.enter_context(LocalAzureBatch(step_seconds=0.2))
    os.environ.update(azure_connection_env("azure_path", service))
    return lambda: AzureBatchJobOperator(
        task_id="path", template_job_id="polysync-template", azure_batch_conn_id="azure_path", poll_interval=0.2
    )


Call = tuple[str, str, str, str]
"""(caller module, caller function, callee module, callee function)"""


@dataclass
class RunPath:
    outcome: dict[str, Any]
    """The run's XCom return value."""
    calls: list[Call]
    """Every distinct call from one module of the package into another, in the order first made."""

    @property
    def hops(self) -> list[Call]:
        """The calls that enter a module the run has not been in yet (the first call's caller counts as entered)."""
        entered = set(self.calls[:1] and [self.calls[0][0]])
        hops = []
        for call in self.calls:
            if call[2] not in entered:
                entered.add(call[2])
                hops.append(call)
        return hops

    @property
    def modules(self) -> list[str]:
        return [self.calls[0][0], *(callee for _, _, callee, _ in self.hops)] if self.calls else []


def measure(platform: str) -> RunPath:
    """One run of ``platform`` (``aws`` or ``azure``) against its local endpoint, its calls recorded."""
    with ExitStack() as stack:
        make_operator = (aws_operators if platform == "aws" else azure_operators)(stack)
        one_run(make_operator(), "manual__warm")  # imports and service models load on the first run: not the path
        recorder = CallRecorder()
        operator = make_operator()
        sys.setprofile(recorder)
        try:
            outcome = one_run(operator, "manual__measured")
        finally:
            sys.setprofile(None)
    return RunPath(outcome, list(recorder.calls))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=("aws", "azure"), default="aws")
    parser.add_argument("--all", action="store_true", help="also list every cross-module call")
    args = parser.parse_args(argv)

    path = measure(args.platform)
    print(f"run {path.outcome['run_id']}: {path.outcome['status']}\n")
    print(f"path: {len(path.hops)} hops over {len(path.modules)} modules, from {path.modules[0]}:")
    for number, (caller, caller_func, callee, callee_func) in enumerate(path.hops, 1):
        print(f"  {number:2}. {caller}:{caller_func} -> {callee}:{callee_func}")
    print(f"\ncross-module calls: {len(path.calls)} distinct")
    if args.all:
        for caller, caller_func, callee, callee_func in path.calls:
            print(f"  {caller}:{caller_func} -> {callee}:{callee_func}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
