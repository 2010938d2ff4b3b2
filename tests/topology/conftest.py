"""The production topology (tests/topology/harness.py), started once for the scenarios.

The scenarios run only when ``POLYSYNC_TOPOLOGY`` is ``short`` (CI: 20 AWS + 10 Azure mapped tasks) or
``long`` (200 + 100); ``make topology-short`` and ``make topology`` set it. Otherwise they are skipped, so
a plain ``pytest`` stays as it was. The long variant writes its results into docs/topology.json.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.topology.harness import ROOT, Settings, Topology, write_json

ARTIFACTS = ROOT / "tests" / "topology" / "artifacts"
VARIANTS = {"short": (20, 10), "long": (200, 100)}
VARIANT = os.environ.get("POLYSYNC_TOPOLOGY", "")
RESULTS: dict[str, dict[str, Any]] = {}
"""Scenario name -> its figures (runs, jobs, submits, terminates, latencies...), printed at the end."""
_topology: Topology | None = None
_started = time.monotonic()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "topology: runs against the production topology (PostgreSQL, Redis, Celery, two triggerers)"
    )
    if VARIANT and VARIANT not in VARIANTS:
        raise pytest.UsageError(f"POLYSYNC_TOPOLOGY={VARIANT!r}: must be one of {', '.join(VARIANTS)} (or unset)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if VARIANT:
        return
    skip = pytest.mark.skip(reason="needs POLYSYNC_TOPOLOGY=short|long (make topology-short, make topology)")
    for item in items:
        if "topology" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def topology() -> Iterator[Topology]:
    global _topology
    aws_tasks, azure_tasks = VARIANTS[VARIANT]
    settings = Settings(aws_tasks=aws_tasks, azure_tasks=azure_tasks)
    started = time.monotonic()
    with Topology(ARTIFACTS, settings) as running:
        _topology = running
        RESULTS["topology"] = {"variant": VARIANT, "started in s": round(time.monotonic() - started, 1)}
        try:
            yield running
        finally:
            _topology = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """On a failure, put the end of each Airflow component's log into the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _topology is not None:
        for component in _topology.cluster.components:
            path = _topology.cluster.log_path(component)
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-30:]
                report.sections.append((f"airflow {component} log (last 30 lines)", "\n".join(tail)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    RESULTS.setdefault("topology", {})["total run time in s"] = round(time.monotonic() - _started, 1)
    write = terminalreporter.write_line
    write("")
    write(f"Production topology ({VARIANT}): scenario results")
    for name, figures in RESULTS.items():
        write(f"  {name}: " + ", ".join(f"{key} {value}" for key, value in figures.items()))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"results-{VARIANT}.json").write_text(json.dumps(RESULTS, indent=2, default=str) + "\n")
    if VARIANT == "long":
        write_json(ROOT / "docs" / "topology.json", "scenarios", RESULTS)
    write(f"  (JSON: {Path(ARTIFACTS / f'results-{VARIANT}.json').relative_to(ROOT)})")
