"""A fault-injecting loopback HTTP proxy to put between the SDK clients and a local endpoint.

With a fixed seed it answers a set share of requests with what a flaky cloud service sends: throttling
(AWS: 400 ``ThrottlingException`` or 429 ``TooManyRequestsException``; Azure: 429 ``TooManyRequests``),
500, 503, a connection reset (RST, before forwarding; or after forwarding, for reads only) or a delay;
every other request is forwarded unchanged (method, path and query, headers including ``Host``, body)
and its answer relayed. Error bodies use each platform's wire format: AWS REST-JSON ``__type`` with
``x-amzn-ErrorType``, Azure Batch's top-level ``code``/``message`` body.

    with FaultProxy(endpoint.url, fault_rate=0.3, seed=7) as proxy:
        ...  # point the connection's endpoint_url / account_url at proxy.url
        proxy.counts  # Counter: requests, passed, and one key per fault kind
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

from polysync_airflow.testing._http import LoopbackServer

FAULT_KINDS = ("throttle", "500", "503", "reset", "reset_after", "delay")
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
_Answer = tuple[int, dict[str, str], bytes]
_AWS_ERRORS = {  # kind -> (status, __type, message)
    "throttle": (400, "ThrottlingException", "Rate exceeded"),
    "throttle_429": (429, "TooManyRequestsException", "Too Many Requests"),
    "500": (500, "ServerException", "Internal server error"),
    "503": (503, "ServiceUnavailableException", "Service unavailable"),
}
_AZURE_ERRORS = {  # kind -> (status, code, message)
    "throttle": (429, "TooManyRequests", "The server is receiving too many requests. Please retry later."),
    "500": (500, "InternalError", "The server encountered an internal error. Please retry the request."),
    "503": (503, "ServerBusy", "The server is currently unable to receive requests. Please retry your request."),
}


def _is_aws(headers: Any) -> bool:
    return (headers.get("Authorization") or "").startswith("AWS4-") or "X-Amz-Date" in headers


def _is_read(method: str, path: str, aws: bool) -> bool:
    """Safe to send twice: GET/HEAD, or an AWS Describe*/List* call."""
    operation = path.partition("?")[0].rstrip("/").rsplit("/", 1)[-1].lower()
    return method in ("GET", "HEAD") or (aws and operation.startswith(("describe", "list")))


def _aws_error(status: int, code: str, message: str) -> _Answer:
    body = json.dumps({"__type": code, "message": message}).encode()
    return status, {"Content-Type": "application/json", "x-amzn-ErrorType": code}, body


def _azure_error(status: int, code: str, message: str) -> _Answer:
    body = {
        "odata.metadata": "https://local/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
        "code": code,
        "message": {"lang": "en-US", "value": f"{message}\nRequestId:{uuid.uuid4()}"},
    }
    return status, {"Content-Type": "application/json;odata=minimalmetadata"}, json.dumps(body).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server
    _upstream: http.client.HTTPConnection | None = None

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind, error = self.server.proxy.decide(self.command, self.path, self.headers)
        if error is not None:
            return self._answer(*error)
        if kind == "reset":
            return self._reset()
        if kind == "delay":
            time.sleep(self.server.proxy.delay)
        answer = self._forward(body)
        return self._reset() if kind == "reset_after" else self._answer(*answer)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def _forward(self, body: bytes) -> _Answer:
        if self._upstream is None:  # one kept-alive upstream connection per client connection
            self._upstream = http.client.HTTPConnection(*self.server.proxy.upstream, timeout=60)
        self._upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                self._upstream.putheader(name, value)
        self._upstream.endheaders(body or None)
        response = self._upstream.getresponse()
        data = response.read()
        return response.status, {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}, data

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response_only(status)  # a relayed answer has its own Server and Date
        if not any(name.lower() == "date" for name in headers):
            self.send_header("Date", self.date_time_string())
        for name, value in headers.items():
            self.send_header(name, value)
        if not any(name.lower() == "content-length" for name in headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _reset(self) -> None:
        """Drop the connection with an RST (SO_LINGER 0), without an answer."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # the socket's file descriptor closes with its last reference
        self.connection.close()

    def finish(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # hundreds of clients connect at once; a full backlog stalls them for seconds
    proxy: FaultProxy


class FaultProxy(LoopbackServer):
    """A threaded loopback reverse proxy to ``upstream_url`` that faults ``fault_rate`` of the requests.

    Each request draws from ``random.Random(seed)``: pass, or one of ``kinds`` (equally likely). ``delay``
    is how long a delayed request waits before it is forwarded. ``counts`` holds ``requests``,
    ``passed`` and one key per fault kind (``reset_after`` turns into ``reset`` for a request that is not
    a read: GET/HEAD, or an AWS Describe*/List* call, which are safe to send twice).
    """

    def __init__(
        self,
        upstream_url: str,
        fault_rate: float = 0.3,
        seed: int | None = 0,
        delay: float = 0.3,
        kinds: Sequence[str] = FAULT_KINDS,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {FAULT_KINDS}, not {list(kinds)}")
        parsed = urlparse(upstream_url)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.fault_rate, self.delay, self.kinds = fault_rate, delay, tuple(kinds)
        self.counts: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    @property
    def faults(self) -> int:
        with self._lock:
            return self.counts["requests"] - self.counts["passed"]

    def decide(self, method: str, path: str, headers: Any) -> tuple[str | None, _Answer | None]:
        """The fate of one request, counted: (None, None) to pass it on, else (kind, error answer or None)."""
        aws = _is_aws(headers)
        with self._lock:
            kind = self._random.choice(self.kinds) if self._random.random() < self.fault_rate else None
            if kind == "reset_after" and not _is_read(method, path, aws):
                kind = "reset"
            if kind == "throttle" and aws and self._random.random() < 0.5:
                kind = "throttle_429"
            self.counts["requests"] += 1
            self.counts[kind or "passed"] += 1
        if kind in _AWS_ERRORS:
            return kind, (_aws_error(*_AWS_ERRORS[kind]) if aws else _azure_error(*_AZURE_ERRORS[kind]))
        return kind, None

    def _make_server(self, address: tuple[str, int]) -> ThreadingHTTPServer:
        server = _Server(address, _Handler)
        server.proxy = self
        return server
