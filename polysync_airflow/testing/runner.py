"""The local job runner both local endpoints share: real subprocesses, real exit codes, real output.

It knows nothing of AWS or Azure words: the platforms' life cycles (``aws_batch_lifecycle.py``,
``azure_batch_lifecycle.py``) decide which states a job shows; the runner starts processes, captures
stdout/stderr to files, enforces a time limit and kills on request.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ProcessOutcome:
    exit_code: int
    killed: bool
    timed_out: bool
    stdout_path: Path
    stderr_path: Path


class LocalJobRunner:
    """Runs commands for local jobs; one work directory per run, every process killable by key."""

    def __init__(self, workdir: str | os.PathLike[str] | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="polysync-local-"))
        self._lock = threading.Lock()
        self._processes: dict[str, subprocess.Popen] = {}
        self._killed: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def spawn(self, target: Callable[[], None], name: str) -> None:
        """Run a job's life cycle in a daemon thread the runner waits for on shutdown."""
        thread = threading.Thread(target=target, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def run_dir(self, key: str) -> Path:
        path = self.workdir / key.replace("/", "_").replace(":", "_")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def output(self, key: str) -> tuple[str, str]:
        """(stdout, stderr) of the last process run for ``key``: "" for a stream it has not written."""
        run_dir = self.run_dir(key)
        stdout, stderr = (run_dir / name for name in ("stdout.txt", "stderr.txt"))
        return (stdout.read_text() if stdout.exists() else "", stderr.read_text() if stderr.exists() else "")

    def run_process(
        self,
        key: str,
        command: Sequence[str] | str,
        env: Mapping[str, str],
        timeout: float | None = None,
    ) -> ProcessOutcome:
        """Run one command to its end (blocking); ``command`` as a string runs through ``sh -c``."""
        run_dir = self.run_dir(key)
        stdout_path, stderr_path = run_dir / "stdout.txt", run_dir / "stderr.txt"
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(run_dir), **env}
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            with self._lock:
                if key in self._killed or self._stopping.is_set():
                    return ProcessOutcome(143, True, False, stdout_path, stderr_path)
                try:
                    proc = subprocess.Popen(
                        argv, stdout=out, stderr=err, env=full_env, cwd=run_dir, start_new_session=True
                    )
                except OSError as exc:
                    err.write(f"cannot start {argv[0]}: {exc}\n".encode())
                    return ProcessOutcome(127, False, False, stdout_path, stderr_path)
                self._processes[key] = proc
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                self._signal(proc)
                proc.wait()
            with self._lock:
                self._processes.pop(key, None)
                killed = key in self._killed
        code = proc.returncode
        if code < 0:  # killed by a signal: report it the way a container runtime does
            code = 128 - code
        return ProcessOutcome(code, killed, timed_out, stdout_path, stderr_path)

    def kill(self, key: str) -> bool:
        """Kill the process of ``key`` (now, or as soon as it would start). True if one was running."""
        with self._lock:
            self._killed.add(key)
            proc = self._processes.get(key)
        if proc is None:
            return False
        self._signal(proc)
        return True

    @staticmethod
    def _signal(proc: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)

    def shutdown(self) -> None:
        """Kill every process, wait for the job threads, and remove the work directory if ours."""
        self._stopping.set()
        with self._lock:
            processes = list(self._processes.values())
            threads = list(self._threads)
        for proc in processes:
            self._signal(proc)
        for thread in threads:
            thread.join(timeout=5)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def stopping(self) -> threading.Event:
        return self._stopping
