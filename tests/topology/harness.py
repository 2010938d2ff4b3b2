"""The production topology on one machine: a private PostgreSQL 15 cluster, Redis, and Airflow 3.3 with the
CeleryExecutor (api-server, scheduler, dag-processor, two triggerers, two Celery workers), each its own
process group on 127.0.0.1, with the local AWS Batch and Azure Batch endpoints as the clouds.

Every component that calls a cloud (triggerers, workers) gets its own connection URL: a recording proxy in
front of the one local endpoint, so each request is known by who sent it and when (the endpoints' own
records stay the ground truth for jobs). Used by tests/topology and benchmarks/topology_bench.py.

    with Topology(Path("artifacts")) as topology:
        run_id = topology.cluster.trigger("polysync_topology_load", conf={"gate": "g1"})

Everything is stopped and removed at the end, also on failure: process groups killed, ``pg_ctl stop``,
``redis-cli shutdown``, temporary directories removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from polysync_airflow.ownership import TaskInstanceKey
from polysync_airflow.testing import FaultProxy, LocalAwsBatch, LocalAzureBatch
from polysync_airflow.testing.aws_batch import Job as AwsJob
from polysync_airflow.testing.connections import aws_connection_env, azure_connection_env
from tests.e2e.cluster import AirflowCluster, free_port, kill_session

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY_DAGS = ROOT / "tests" / "topology" / "dags"
# A job that runs until its gate file exists, then exits with the code it was given: the test decides
# when the jobs end and which fail. It looks every 2 s (a few hundred of them must not load the 2 cores).
GATED_JOB = "polysync-topology-gated"
GATED_COMMAND = "while [ ! -e 'Ref::gate' ]; do sleep 2; done; exit Ref::exit_code"
AZURE_GATED_COMMAND = "/bin/sh -c 'while [ ! -e \"$GATE\" ]; do sleep 2; done; exit ${EXIT_CODE:-0}'"
SETTINGS_MODULE = '''"""Written by tests/topology/harness.py: each component reports its own name as its host name."""
import os
import socket


def hostname() -> str:
    return os.environ.get("POLYSYNC_COMPONENT_HOSTNAME") or socket.getfqdn()
'''


def postgres_bin() -> Path:
    """Debian's PostgreSQL 15 programs (initdb and pg_ctl are not on PATH)."""
    listing = subprocess.run(["dpkg", "-L", "postgresql-15"], capture_output=True, text=True, check=False).stdout
    initdb = next((line for line in listing.splitlines() if line.endswith("/bin/initdb")), None)
    if initdb is None:
        raise RuntimeError("PostgreSQL 15 is not installed: apt-get install -y postgresql-15")
    return Path(initdb).parent


class PrivatePostgres:
    """A PostgreSQL cluster of its own in a temporary directory, on a free port of 127.0.0.1 (never the
    system cluster). PostgreSQL refuses to run as root, hence ``runuser -u postgres`` when we are root."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="polysync-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.bin = postgres_bin()
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/postgres"

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=airflow dbname=postgres"

    def _run(self, *argv: str, timeout: float = 120) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed ({result.returncode}): {result.stderr or result.stdout}")

    def start(self) -> PrivatePostgres:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        if not self.data.exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "airflow")
        self.resume()
        return self

    def resume(self) -> None:
        """Start the (stopped) server on its port; returns when it accepts connections."""
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.dir / "log"), "-o", options, "start"
        )
        self.running = True

    def pause(self) -> None:
        """Stop the server (fast shutdown: open sessions are cut), keeping its data."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.running = False

    def stop(self) -> None:
        try:
            if self.running:
                self.pause()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg2

        with (
            contextlib.closing(psycopg2.connect(self.dsn, connect_timeout=10)) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, params)
            return cursor.fetchall()


class PrivateRedis:
    """Debian's redis-server on a free loopback port, nothing saved to disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server (make topology does)")
        argv = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while self._cli("ping") != "PONG":
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start (exit code {self.process.poll()})")
            time.sleep(0.1)
        return self

    def _cli(self, *command: str) -> str:
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), *command], capture_output=True, text=True, timeout=10, check=False
        )
        return result.stdout.strip()

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._cli("shutdown", "nosave")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_session(self.process.pid)
            self.process.wait()
        self.process = None


def operation_of(method: str, path: str, headers: Any) -> str:
    """A request's API operation, named the same way for the endpoint's log and the proxies'."""
    target = headers.get("X-Amz-Target") or headers.get("x-amz-target") or ""
    if target:  # CloudWatch Logs (JSON protocol)
        return f"logs:{target.rpartition('.')[2]}"
    path = unquote(path.partition("?")[0])
    if (headers.get("Authorization") or "").startswith("AWS4-"):
        if path.startswith("/v1/tags/"):
            return "TagResource" if method == "POST" else "ListTagsForResource"
        return AWS_OPERATIONS.get(path.rstrip("/").rsplit("/", 1)[-1].lower(), path)
    # Azure Batch: the method and the path with every id replaced
    words = {"jobs", "tasks", "pools", "nodes", "files", "terminate", "jobschedules", "disable", "enable"}
    parts = [part if part in words else "{id}" for part in path.strip("/").split("/")]
    return f"{method} /{'/'.join(parts)}"


AWS_OPERATIONS = {
    name.lower(): name
    for name in (
        "SubmitJob",
        "DescribeJobs",
        "TerminateJob",
        "CancelJob",
        "ListJobs",
        "DescribeJobDefinitions",
        "RegisterJobDefinition",
        "DescribeJobQueues",
    )
}
WRITES = ("SubmitJob", "TerminateJob", "CancelJob", "TagResource", "POST ", "PUT ", "PATCH ", "DELETE ")


def is_write(operation: str) -> bool:
    return operation.startswith(WRITES)


def canonical_operation(endpoint: str, entry: str) -> str:
    """An entry of an endpoint's own request log, named as :func:`operation_of` names it."""
    if endpoint == "aws":
        names = {**AWS_OPERATIONS, "tagresource": "TagResource", "listtagsforresource": "ListTagsForResource"}
        return names.get(entry, entry)
    method, _, path = entry.partition(" ")
    return operation_of(method, path, {})


class RecordingAwsBatch(LocalAwsBatch):
    """The local AWS endpoint, also recording which job each TerminateJob/CancelJob named, and when."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stops: list[tuple[float, str]] = []

    def terminate_job(self, body: dict[str, Any]) -> dict[str, Any]:
        self.stops.append((time.time(), str(body.get("jobId"))))
        return super().terminate_job(body)

    def cancel_job(self, body: dict[str, Any]) -> dict[str, Any]:
        self.stops.append((time.time(), str(body.get("jobId"))))
        return super().cancel_job(body)


class RecordingProxy(FaultProxy):
    """A transparent proxy (no faults) that records each request's time and operation."""

    def __init__(self, upstream_url: str, name: str) -> None:
        super().__init__(upstream_url, fault_rate=0.0)
        self.name = name
        self.log: list[tuple[float, str]] = []
        self._log_lock = threading.Lock()

    def decide(self, method: str, path: str, headers: Any) -> tuple[str | None, Any]:
        with self._log_lock:
            self.log.append((time.time(), operation_of(method, path, headers)))
        return super().decide(method, path, headers)

    def operations(self, since: float = 0.0, until: float = float("inf")) -> Counter[str]:
        with self._log_lock:
            return Counter(operation for moment, operation in self.log if since <= moment < until)

    def times(self, operation: str, since: float = 0.0, until: float = float("inf")) -> list[float]:
        with self._log_lock:
            return [moment for moment, op in self.log if op == operation and since <= moment < until]


def _process_stat(pid: int) -> tuple[float, int] | None:
    """(CPU seconds of the process and of its reaped children, RSS bytes), None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # after the command: state(0) ... utime(11) stime(12) cutime(13) cstime(14) ... rss(21, in pages)
    cpu = sum(int(fields[index]) for index in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")
    return cpu, int(fields[21]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class ComponentUsage:
    cpu_seconds: float = 0.0
    peak_rss_bytes: int = 0


class ResourceMeter:
    """Samples each component's process tree once a second: CPU seconds used between ``start`` and ``stop``,
    and peak RSS (the largest sum over the tree at one sample).

    The CPU of a tree at a moment is the sum over its live processes of their own and their reaped
    children's times: a process that ends moves its time into its parent's, so the sum only grows (Airflow's
    components reap their children). A component started again is a new tree, counted from zero.
    """

    def __init__(self, cluster: AirflowCluster, interval: float = 1.0) -> None:
        self.cluster, self.interval = cluster, interval
        self._first: dict[tuple[str, int], float] = {}  # (component, session) -> CPU at its first sample
        self._last: dict[tuple[str, int], float] = {}
        self._peak: dict[str, int] = {}
        self._started = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> ResourceMeter:
        self._first.clear()
        self._last.clear()
        self._peak.clear()
        self._started = False
        self.sample()
        self._started = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ResourceMeter", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        with self._lock:
            for name, process in list(self.cluster.processes.items()):
                stats = [stat for pid in self.cluster.pids(name) if (stat := _process_stat(pid)) is not None]
                if not stats:
                    continue
                tree = (name, process.pid)
                total = sum(cpu for cpu, _rss in stats)
                # a tree that exists when measuring starts counts from there; one started later from zero
                self._first.setdefault(tree, total if not self._started else 0.0)
                self._last[tree] = total
                if self._started:
                    self._peak[name] = max(self._peak.get(name, 0), sum(rss for _cpu, rss in stats))

    def stop(self) -> dict[str, ComponentUsage]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        usage: dict[str, ComponentUsage] = {}
        for (name, _session), last in self._last.items():
            item = usage.setdefault(name, ComponentUsage())
            item.cpu_seconds += last - self._first[(name, _session)]
        for name, peak in self._peak.items():
            usage.setdefault(name, ComponentUsage()).peak_rss_bytes = peak
        return usage


@dataclass
class Settings:
    triggerers: int = 2
    workers: int = 2
    worker_concurrency: int = 8
    poll_interval: float = 5.0
    aws_tasks: int = 20
    azure_tasks: int = 10
    health_check_threshold: int = 10
    task_heartbeat_timeout: int = 30
    job_step_seconds: float = 2.0
    extra_env: dict[str, str] = field(default_factory=dict)


class Topology:
    """Start with ``with Topology(artifacts, settings) as topology:``; see the module docstring."""

    def __init__(
        self, artifacts: Path, settings: Settings | None = None, dag_files: Sequence[Path] | None = None
    ) -> None:
        """``dag_files``: the DAG files to load (default: the example DAGs and tests/topology/dags)."""
        self.artifacts = artifacts
        self.settings = settings or Settings()
        default_dags = [*(ROOT / "example_dags").glob("*.py"), *TOPOLOGY_DAGS.glob("*.py")]
        self.dag_files = default_dags if dag_files is None else list(dag_files)
        self.home = Path(tempfile.mkdtemp(prefix="polysync-topology-"))
        self.gates = self.home / "gates"
        self.timeline: list[tuple[float, str, str]] = []  # (time, endpoint, operation) of every cloud request
        self._timeline_lock = threading.Lock()
        self._stack = contextlib.ExitStack()
        self.events: list[tuple[float, str]] = []  # what the tests did to the topology, for the report
        self.aws: RecordingAwsBatch
        self.azure: LocalAzureBatch
        self.postgres: PrivatePostgres
        self.redis: PrivateRedis
        self.cluster: AirflowCluster
        self.proxies: dict[tuple[str, str], RecordingProxy] = {}  # (component, "aws" | "azure") -> proxy

    # -- start and stop ------------------------------------------------------------------------------------

    def __enter__(self) -> Topology:
        try:
            self._start()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _start(self) -> None:
        s = self.settings
        dags = self.home / "dags"
        dags.mkdir()
        self.gates.mkdir()
        for dag_file in self.dag_files:
            shutil.copy(dag_file, dags / dag_file.name)
        stack = self._stack
        stack.callback(shutil.rmtree, self.home, True)
        # Jobs take a few seconds to start, as real ones do (see the README, "Known Airflow limits").
        self.aws = stack.enter_context(RecordingAwsBatch(step_seconds=s.job_step_seconds))
        self.azure = stack.enter_context(LocalAzureBatch(step_seconds=s.job_step_seconds))
        self.aws.register_job_definition(
            {
                "jobDefinitionName": GATED_JOB,
                "parameters": {"exit_code": "0", "gate": "/nonexistent"},
                "containerProperties": {"command": ["/bin/sh", "-c", GATED_COMMAND]},
            }
        )
        for name, endpoint in (("aws", self.aws), ("azure", self.azure)):
            endpoint.on_request = self._recorder(name)
        triggerers = [f"triggerer-{i}" for i in range(1, s.triggerers + 1)]
        workers = [f"celery-{i}" for i in range(1, s.workers + 1)]
        component_env: dict[str, dict[str, str]] = {}
        for component in (*triggerers, *workers):
            aws_proxy = stack.enter_context(RecordingProxy(self.aws.url, component))
            azure_proxy = stack.enter_context(RecordingProxy(self.azure.url, component))
            self.proxies[(component, "aws")], self.proxies[(component, "azure")] = aws_proxy, azure_proxy
            component_env[component] = {
                "POLYSYNC_COMPONENT_HOSTNAME": component,
                # the same connections, through this component's own recording proxy
                **aws_connection_env("aws_default", _At(aws_proxy.url, self.aws)),
                **azure_connection_env("azure_batch_default", _At(azure_proxy.url, self.azure)),
            }
        self.postgres = PrivatePostgres()
        stack.callback(self.postgres.stop)
        self.postgres.start()
        self.redis = PrivateRedis()
        stack.callback(self.redis.stop)
        self.redis.start()
        airflow_home = self.home / "airflow"
        airflow_home.mkdir()
        (airflow_home / "polysync_topology_settings.py").write_text(SETTINGS_MODULE)
        components: dict[str, list[str]] = {
            "api-server": ["api-server"],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
        }
        for name in triggerers:
            components[name] = ["triggerer", "--skip-serve-logs"]
        for name in workers:
            components[name] = [
                "celery",
                "worker",
                "--queues",
                "default",
                "--concurrency",
                str(s.worker_concurrency),
                "--celery-hostname",
                f"{name}@%h",
                "--pid",
                str(airflow_home / f"{name}.pid"),
                "--skip-serve-logs",
            ]
        env = {
            **aws_connection_env("aws_default", self.aws),
            **azure_connection_env("azure_batch_default", self.azure),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "polysync_topology_settings.hostname",
            "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://airflow@127.0.0.1:{self.postgres.port}/postgres",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(s.health_check_threshold),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(s.task_heartbeat_timeout),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "POLYSYNC_EXAMPLE_POLL_INTERVAL": "2",
            "POLYSYNC_TOPOLOGY_GATES": str(self.gates),
            "POLYSYNC_TOPOLOGY_POLL_INTERVAL": str(s.poll_interval),
            "POLYSYNC_TOPOLOGY_AWS_TASKS": str(s.aws_tasks),
            "POLYSYNC_TOPOLOGY_AZURE_TASKS": str(s.azure_tasks),
            **s.extra_env,
        }
        self.cluster = AirflowCluster(
            airflow_home,
            dags,
            env,
            components=components,
            component_env=component_env,
            executor="CeleryExecutor",
            sql_alchemy_conn=self.postgres.url,
            parallelism=32,
        )
        stack.callback(self._keep_logs)
        stack.callback(self.cluster.stop)
        self.cluster.start(timeout=300)

    def _stop(self) -> None:
        self._stack.close()

    def _keep_logs(self) -> None:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        for component in self.cluster.components:
            if self.cluster.log_path(component).exists():
                shutil.copy(self.cluster.log_path(component), self.artifacts / f"{component}.log")
        if (self.postgres.dir / "log").exists():
            shutil.copy(self.postgres.dir / "log", self.artifacts / "postgres.log")
        # the task and trigger logs (one file per try and triggerer), for what a scenario did not say
        shutil.rmtree(self.artifacts / "logs", ignore_errors=True)
        if (self.cluster.home / "logs").exists():
            shutil.copytree(self.cluster.home / "logs", self.artifacts / "logs")

    def _recorder(self, endpoint: str):
        def record(entry: str) -> None:
            with self._timeline_lock:
                self.timeline.append((time.time(), endpoint, entry))

        return record

    # -- components ----------------------------------------------------------------------------------------

    @property
    def triggerers(self) -> list[str]:
        return [name for name in self.cluster.components if name.startswith("triggerer-")]

    @property
    def workers(self) -> list[str]:
        return [name for name in self.cluster.components if name.startswith("celery-")]

    def note(self, what: str) -> None:
        self.events.append((time.time(), what))

    def revive(self) -> list[str]:
        """Start again every component that exited by itself (as a process supervisor would); their names."""
        exited = self.cluster.exited()
        for name in exited:
            self.cluster.stop_component(name)
            self.cluster.start_component(name)
            self.note(f"{name} had exited; started again")
        return exited

    def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.cluster.health() or {}
            healthy = all((health.get(k) or {}).get("status") == "healthy" for k in ("metadatabase", "scheduler"))
            if healthy and self.live_triggerers() == set(self.triggerers):
                return
            time.sleep(1)
        raise TimeoutError(f"the topology was not healthy within {timeout} s: {self.cluster.health()}")

    def live_triggerers(self, within: float | None = None) -> set[str]:
        """Triggerer components whose job heartbeat is fresh (within the health-check threshold)."""
        seconds = self.settings.health_check_threshold if within is None else within
        rows = self.db(
            "SELECT hostname FROM job WHERE job_type = 'TriggererJob' AND end_date IS NULL"
            " AND latest_heartbeat > now() - make_interval(secs => %s)",
            seconds,
        )
        return {row[0] for row in rows}

    # -- the metadata database (read only) -----------------------------------------------------------------

    def db(self, sql: str, *params: Any, timeout: float = 120) -> list[tuple[Any, ...]]:
        """A query on the metadata database, asked again while PostgreSQL is down or restarting."""
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.postgres.query(sql, *params)
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def task_instances(self, dag_id: str, run_id: str) -> list[TI]:
        rows = self.db(
            "SELECT task_id, map_index, state, try_number, start_date, end_date, hostname"
            " FROM task_instance WHERE dag_id = %s AND run_id = %s ORDER BY task_id, map_index",
            dag_id,
            run_id,
        )
        return [TI(dag_id, run_id, *row) for row in rows]

    def trigger_holders(self, dag_id: str, run_id: str) -> dict[tuple[str, int], str | None]:
        """(task_id, map_index) -> the triggerer component its trigger is assigned to, for deferred tasks."""
        rows = self.db(
            "SELECT ti.task_id, ti.map_index, j.hostname FROM task_instance ti"
            " JOIN trigger t ON ti.trigger_id = t.id LEFT JOIN job j ON t.triggerer_id = j.id"
            " WHERE ti.dag_id = %s AND ti.run_id = %s AND ti.state = 'deferred'",
            dag_id,
            run_id,
        )
        return {(task_id, map_index): holder for task_id, map_index, holder in rows}

    def wait_for_states(self, dag_id: str, run_id: str, states: set[str], count: int, timeout: float = 600) -> list[TI]:
        """Wait until ``count`` task instances of the run are in one of ``states``."""
        deadline = time.monotonic() + timeout
        while True:
            tis = self.task_instances(dag_id, run_id)
            if sum(ti.state in states for ti in tis) >= count:
                return tis
            if time.monotonic() > deadline:
                seen = Counter(ti.state for ti in tis)
                raise TimeoutError(
                    f"{dag_id} {run_id}: {count} task instances not in {states} after {timeout} s: {seen}"
                )
            time.sleep(2)

    # -- what the clouds saw -------------------------------------------------------------------------------

    def open_gate(self, gate: str) -> float:
        """Let every job of the runs started with ``conf={"gate": gate}`` end; returns when."""
        (self.gates / gate).touch()
        return time.time()

    def aws_jobs_of(self, ti: TI) -> list[Any]:
        name = f"Polysync-{ti.key.uuid}"
        return sorted((job for job in list(self.aws.jobs.values()) if job.name == name), key=lambda j: j.created_at)

    def azure_jobs_of(self, ti: TI) -> list[Any]:
        prefix = f"polysync-{ti.key.uuid.hex}-"
        return sorted(
            (job for key, job in list(self.azure.jobs.items()) if key.startswith(prefix)), key=lambda j: j.created
        )

    def jobs_of(self, ti: TI, cloud: str | None = None) -> list[Any]:
        """The jobs the task instance submitted (every try), oldest first; ``cloud`` defaults from the task id."""
        aws = cloud == "aws" if cloud else ti.task_id.startswith("aws")
        return self.aws_jobs_of(ti) if aws else self.azure_jobs_of(ti)

    def job_outcome(self, job: Any) -> str | None:
        """``succeeded``, ``failed``, ``cancelled`` (terminated by Polysync), or None while it runs."""
        if isinstance(job, AwsJob):
            if job.status not in ("SUCCEEDED", "FAILED"):
                return None
            if job.status_reason == "Cancelled by Polysync":
                return "cancelled"
            return "succeeded" if job.status == "SUCCEEDED" else "failed"
        if job.state != "completed":
            return None
        task = job.tasks.get("polysync")
        if task is None:
            return "failed"
        if (task.failure_info or {}).get("code") == "TaskEnded":
            return "cancelled"
        return "succeeded" if task.exit_code == 0 and not task.failure_info else "failed"

    def job_end(self, job: Any) -> float | None:
        """When the job ended (epoch seconds), as the endpoint recorded it."""
        if isinstance(job, AwsJob):
            return job.stopped_at / 1000 if job.stopped_at else None
        task = job.tasks.get("polysync")
        ended = (task.ended if task is not None else None) or job.ended
        return ended.timestamp() if ended else None

    def terminates(self, since: float = 0.0) -> list[tuple[float, str, str]]:
        """Every request that stops a job (AWS TerminateJob/CancelJob, Azure task or job terminate, job delete)."""
        return [
            (moment, endpoint, entry)
            for moment, endpoint, entry in list(self.timeline)
            if moment >= since and _is_terminate(entry)
        ]

    def stops_of(self, job: Any) -> int:
        """How often Polysync was asked to stop this job: AWS TerminateJob/CancelJob naming it; Azure task
        terminates (a cancel terminates the task, then the job)."""
        if isinstance(job, AwsJob):
            return sum(1 for _moment, job_id in list(self.aws.stops) if job_id == job.job_id)
        entry = f"POST /jobs/{job.id}/tasks/polysync/terminate"
        return sum(1 for _moment, endpoint, seen in list(self.timeline) if endpoint == "azure" and seen == entry)

    def submits(self, since: float = 0.0) -> int:
        return sum(
            1
            for moment, endpoint, entry in list(self.timeline)
            if moment >= since and (entry == "submitjob" or (endpoint == "azure" and entry == "POST /jobs"))
        )

    def requests_by_component(self, since: float, until: float) -> dict[str, Counter[str]]:
        result: dict[str, Counter[str]] = {}
        for (component, _cloud), proxy in self.proxies.items():
            result.setdefault(component, Counter()).update(proxy.operations(since, until))
        return result


class _At:
    """An endpoint seen at another URL (its recording proxy), for the connection helpers."""

    def __init__(self, url: str, endpoint: Any) -> None:
        self.url = url
        self._endpoint = endpoint

    def __getattr__(self, name: str) -> Any:
        return getattr(self._endpoint, name)


def _is_terminate(entry: str) -> bool:
    if entry in ("terminatejob", "canceljob") or entry.startswith("DELETE /jobs/"):
        return True
    return entry.startswith("POST /jobs/") and entry.endswith("/terminate")


@dataclass
class TI:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    state: str | None
    try_number: int
    start_date: datetime | None
    end_date: datetime | None
    hostname: str | None

    @property
    def key(self) -> TaskInstanceKey:
        return TaskInstanceKey(self.dag_id, self.run_id, self.task_id, self.map_index, self.try_number)

    @property
    def ended_at(self) -> float | None:
        return self.end_date.astimezone(UTC).timestamp() if self.end_date else None


def write_json(path: Path, key: str, value: Any) -> None:
    """Merge ``{key: value}`` into the JSON file at ``path`` (scenario results and the benchmark share one)."""
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


@contextlib.contextmanager
def topology(artifacts: Path, settings: Settings | None = None) -> Iterator[Topology]:
    with Topology(artifacts, settings) as started:
        yield started
