"""A real Airflow 3 on this machine for end-to-end tests: api-server, scheduler, dag-processor and
triggerer as separate processes (LocalExecutor, SQLite by default), bound to 127.0.0.1 on free ports.

The components, the executor and the metadata database are parameters: the production topology
(tests/topology) runs two triggerers and two Celery workers on PostgreSQL with the same class.

Each component runs in its own session and is stopped by its own process group at the end, whatever
happened; each writes its log to ``<home>/components/<name>.log`` for the failure report.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
HEALTH_CHECKS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session_pids(session_id: int) -> list[int]:
    """Every live process of a session (a component and all it started, however deep)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # the fields after the command's closing parenthesis: state ppid pgrp session ...
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:  # it ended meanwhile
                continue
            if int(fields[3]) == session_id:
                pids.append(int(entry.name))
    return pids


def kill_session(session_id: int) -> None:
    """SIGKILL a session's process group and any of its processes that left the group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(session_id, signal.SIGKILL)
    for pid in session_pids(session_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class AirflowCluster:
    """``components`` maps a name (its log file) to the ``airflow`` arguments that start it;
    ``component_env`` adds environment variables for one component (a port or a hostname of its own).
    Without ``sql_alchemy_conn`` the metadata database is SQLite in ``home``."""

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        extra_env: dict[str, str],
        *,
        components: Mapping[str, Sequence[str]] | None = None,
        component_env: Mapping[str, Mapping[str, str]] | None = None,
        executor: str = "LocalExecutor",
        sql_alchemy_conn: str | None = None,
        parallelism: int = 4,
    ) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.components = {name: [name] for name in COMPONENTS} if components is None else dict(components)
        self.component_env = dict(component_env or {})
        self.sql_alchemy_conn = sql_alchemy_conn
        database = (
            {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn}
            if sql_alchemy_conn
            else {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
                # SQLite allows one writer at a time: wait for the lock up to 60 s instead of sqlite3's 5 s
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "polysync_e2e_settings.CONNECT_ARGS",
            }
        )
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            # Its own config and database (below), never the ones the pytest process points at (the throw-away
            # home of tests/conftest.py): a real scheduler and triggerer there would clean up the tests' rows.
            "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            **database,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(home), os.environ.get("PYTHONPATH")])),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            # only the runs a test triggers: no scheduled runs competing for the 2 cores
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            **extra_env,
        }
        self.airflow = str(Path(sys.executable).parent / "airflow")

    def log_path(self, component: str) -> Path:
        return self.home / "components" / f"{component}.log"

    def start(self, timeout: float = 180) -> None:
        (self.home / "components").mkdir(parents=True, exist_ok=True)
        (self.home / "polysync_e2e_settings.py").write_text('CONNECT_ARGS = {"timeout": 60}\n')
        migrate = subprocess.run([self.airflow, "db", "migrate"], env=self.env, capture_output=True, timeout=300)
        if migrate.returncode != 0:
            tail = migrate.stderr.decode(errors="replace")[-3000:] or migrate.stdout.decode(errors="replace")[-3000:]
            raise RuntimeError(f"airflow db migrate exited with {migrate.returncode}:\n{tail}")
        for component in self.components:
            self.start_component(component)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.health()
            if health and all((health.get(name) or {}).get("status") == "healthy" for name in HEALTH_CHECKS):
                return
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"airflow {name} exited with {process.returncode}; see {self.log_path(name)}")
            time.sleep(1)
        raise TimeoutError(f"Airflow was not healthy within {timeout} s: {self.health()}")

    def start_component(self, component: str) -> None:
        log = open(self.log_path(component), "ab")  # noqa: SIM115 - kept open for the process's life
        self.processes[component] = subprocess.Popen(
            [self.airflow, *self.components[component]],
            env={**self.env, **self.component_env.get(component, {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop_component(self, component: str, timeout: float = 45) -> None:
        process = self.processes.pop(component, None)
        if process is None:
            return
        try:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            kill_session(process.pid)  # the component's children (executor workers, task processes) too
            process.wait()

    def kill_component(self, component: str) -> None:
        """SIGKILL the component and everything it started, as a machine that dies; it is not restarted."""
        process = self.processes.pop(component)
        kill_session(process.pid)
        process.wait()

    def signal_component(self, component: str, signum: int) -> None:
        """Send ``signum`` to every process of the component (SIGSTOP/SIGCONT: a machine that stalls)."""
        for pid in self.pids(component):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def pids(self, component: str) -> list[int]:
        """The live processes of a running component (itself and all it started)."""
        process = self.processes.get(component)
        return session_pids(process.pid) if process is not None and process.poll() is None else []

    def exited(self) -> list[str]:
        """The components that have exited by themselves."""
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def stop(self) -> None:
        for component in list(self.processes):
            self.stop_component(component)

    def restart_triggerer(self, timeout: float = 120, component: str = "triggerer") -> float:
        """Stop the triggerer (SIGTERM, as a deployment does) and start a new one; returns how long it took.

        Returns once the new triggerer's job heartbeats: a stopped triggerer's job ends, so the new one
        takes over its triggers at once.
        """
        started = time.monotonic()
        self.stop_component(component)
        stopped_at = datetime.now(UTC)
        self.start_component(component)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            beat = ((self.health() or {}).get("triggerer") or {}).get("latest_triggerer_heartbeat")
            if beat and datetime.fromisoformat(beat.replace("Z", "+00:00")) > stopped_at:
                return time.monotonic() - started
            process = self.processes[component]
            if process.poll() is not None:
                log = self.log_path(component)
                raise RuntimeError(f"airflow triggerer exited with {process.returncode}; see {log}")
            time.sleep(0.5)
        raise TimeoutError(f"the new triggerer did not heartbeat within {timeout} s: {self.health()}")

    def health(self) -> dict[str, Any] | None:
        try:
            return self.api("GET", "/api/v2/monitor/health")
        except (OSError, ValueError):
            return None

    def api(self, method: str, path: str, body: Any = None, accept: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": accept},
        )
        for attempt in range(5):
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    payload = response.read()
                return json.loads(payload) if payload else None
            except urllib.error.HTTPError as err:
                if err.code < 500 or attempt == 4:  # a 5xx here is SQLite being busy: ask again
                    raise AssertionError(f"{method} {path} -> {err.code}: {err.read()[:500]!r}") from None
                time.sleep(1)
        raise AssertionError("unreachable")

    # -- conveniences ------------------------------------------------------------------------------------

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api("GET", f"/api/v2/dags/{dag_id}")
                return
            except AssertionError:
                time.sleep(1)
        raise TimeoutError(f"DAG {dag_id} was not parsed within {timeout} s")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        self.wait_for_dag(dag_id)
        self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        # a logical date, as a scheduled run has: the example DAGs template {{ ds }}
        body: dict[str, Any] = {"logical_date": datetime.now(UTC).isoformat()}
        if conf is not None:
            body["conf"] = conf
        return self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"]

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")

    def watch_task(self, dag_id: str, run_id: str, task_id: str, until: set[str], timeout: float = 180) -> list[str]:
        """Poll a task instance's state until it is one of ``until``; returns every state seen, in order."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.task_instance(dag_id, run_id, task_id).get("state")
            if not seen or seen[-1] != state:
                seen.append(state)
            if state in until:
                return seen
            time.sleep(0.3)
        raise TimeoutError(f"{dag_id}.{task_id} stayed in {seen[-1]!r} (seen {seen}) for {timeout} s")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(0.5)
        raise TimeoutError(f"DAG run {dag_id} {run_id} did not finish within {timeout} s")

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, containing: str = "", timeout: float = 30
    ) -> str:
        """The try's whole log; with ``containing``, read again until it holds that text or ``timeout`` passes (the
        task's state is reported before its worker's last lines reach the log)."""
        deadline = time.monotonic() + timeout
        while True:
            log = self._task_log(dag_id, run_id, task_id, try_number)
            if containing in log or time.monotonic() >= deadline:
                return log
            time.sleep(1)

    def _task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        payload = self.api(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}?full_content=true"
        )
        content = payload.get("content", "")
        if isinstance(content, list):  # structured log lines: keep every field (the error detail too)
            return "\n".join(json.dumps(item) if isinstance(item, dict) else str(item) for item in content)
        return str(content)

    def trigger_logs(self, dag_id: str, run_id: str, task_id: str) -> list[Path]:
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return sorted(folder.glob("attempt=*.log.trigger.*.log"))
