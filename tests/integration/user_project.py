"""A user's project in a temporary folder, tested with pytest in a fresh process against this package, as
a user's own test run would: the pytest plugin comes from the ``pytest11`` entry point, and no Airflow
setting of this test session leaks in."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def write_project(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def run_pytest(
    project: Path, *args: str, environment: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """``python -m pytest *args`` in ``project``; stdout and stderr are in the result."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(environment or {})
    installed = any(point.name == "polysync_airflow" for point in entry_points(group="pytest11"))
    plugin = [] if installed else ["-p", "polysync_airflow.testing.pytest_plugin"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *plugin, *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def outcome(result: subprocess.CompletedProcess[str]) -> str:
    """The run's output, for assertion messages."""
    return f"exit code {result.returncode}\n--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-3000:]}"
