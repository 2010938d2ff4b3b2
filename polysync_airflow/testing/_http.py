"""HTTP plumbing of the local endpoints and the fault proxy: a loopback server on a free port in a background
thread, the request and response records the endpoints dispatch, a request log and injected faults."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Self


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, content_type: str = "application/json", **headers: str) -> Response:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": content_type, **headers})


LOST_ANSWER = Response(0)
"""For :meth:`LocalHttpEndpoint.fail_next`: carry the request out, then close the connection unanswered."""


@dataclass
class Request:
    method: str
    raw_path: str  # path and query exactly as sent, still percent-encoded
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.raw_path.partition("?")[0]

    @property
    def query(self) -> str:
        return self.raw_path.partition("?")[2]

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one small write per response part; avoid 40 ms delayed-ACK stalls
    server: _Server

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
        response = self.server.endpoint.injected_fault(request) or self.server.endpoint.dispatch(request)
        if response is LOST_ANSWER:  # carried out, but the client never hears back
            self.server.endpoint.dispatch(request)
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        body = b"" if self.command == "HEAD" else response.body
        if "Content-Length" not in response.headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog (5) overflows when many clients connect at once
    endpoint: LocalHttpEndpoint


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (a free port by default): ``with Server() as s: s.url``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None

    def _make_server(self, address: tuple[str, int]) -> ThreadingHTTPServer:  # pragma: no cover - overridden
        """A server bound to ``address`` whose handler can reach this object."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        assert self._server is not None, f"{type(self).__name__} not started"
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET address: (host, port)
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._server = self._make_server(self._address)
        threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalHttpEndpoint(LoopbackServer):
    """Base of the local endpoints: each request is recorded, then answered by :meth:`dispatch`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._log_lock = threading.Lock()
        self.requests: list[str] = []
        """One entry per request received (operation name or ``METHOD path``), for tests."""
        self._faults: list[tuple[str, re.Pattern[str], Response]] = []
        self.on_request: Callable[[str], None] | None = None
        """Called (in the server thread) with each entry before the request is answered."""

    def _make_server(self, address: tuple[str, int]) -> ThreadingHTTPServer:
        server = _Server(address, _Handler)
        server.endpoint = self
        return server

    def record(self, entry: str) -> None:
        with self._log_lock:
            self.requests.append(entry)
        if self.on_request is not None:
            self.on_request(entry)

    @staticmethod
    def read_seed(seed: str | Path | dict[str, Any] | None, default_file: str) -> dict[str, Any]:
        """Seed data: a dict, a JSON file path, or (None) the package's own sample file."""
        if isinstance(seed, dict):
            return seed
        if seed is None:
            return json.loads(resources.files("polysync_airflow.testing").joinpath(default_file).read_text())
        return json.loads(Path(seed).read_text())

    def fail_next(self, method: str, path_pattern: str, response: Response) -> None:
        """Answer the next ``method`` request whose path matches ``path_pattern`` (a regex) with ``response``.

        With :data:`LOST_ANSWER`, the request is carried out but its answer is lost (the connection closes).
        """
        with self._log_lock:
            self._faults.append((method, re.compile(path_pattern), response))

    def injected_fault(self, request: Request) -> Response | None:
        with self._log_lock:
            for fault in self._faults:
                method, pattern, response = fault
                if request.method == method and pattern.search(request.path):
                    self._faults.remove(fault)
                    what = "answer lost" if response is LOST_ANSWER else f"injected {response.status}"
                    self.requests.append(f"{method} {request.path} ({what})")
                    return response
        return None

    def dispatch(self, request: Request) -> Response:  # pragma: no cover - overridden
        raise NotImplementedError
