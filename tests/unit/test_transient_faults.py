"""Which service faults are retried, and for how long (pure logic, with the SDKs' real exception types)."""

from __future__ import annotations

import logging

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from polysync_airflow.polling import MAX_BACKOFF_SECONDS, RunWatch, is_transient
from polysync_airflow.status import RunState, RunStatus


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


class _Response:
    def __init__(self, status: int) -> None:
        self.status_code, self.reason, self.headers = status, "r", {}

    def text(self) -> str:
        return ""


def azure_error(cls, status: int):
    return cls(message="m", response=_Response(status))


@pytest.mark.parametrize(
    "err",
    [
        client_error("ThrottlingException", 400),
        client_error("TooManyRequestsException", 429),
        client_error("SomethingNew", 429),
        client_error("InternalServerError", 500),
        client_error("ServiceUnavailable", 503),
        EndpointConnectionError(endpoint_url="http://x"),
        ReadTimeoutError(endpoint_url="http://x"),
        ConnectionResetError(),
        TimeoutError(),
        ServiceRequestError("connection refused"),
        azure_error(HttpResponseError, 503),
        azure_error(HttpResponseError, 429),
    ],
    ids=lambda e: type(e).__name__,
)
def test_faults_that_heal_are_transient(err):
    assert is_transient(err)


@pytest.mark.parametrize(
    "err",
    [
        client_error("AccessDeniedException", 403),
        client_error("ClientException", 400),
        client_error("UnrecognizedClientException", 403),
        azure_error(HttpResponseError, 403),
        azure_error(ResourceNotFoundError, 404),
        ValueError("bad"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_faults_that_cannot_heal_are_not(err):
    assert not is_transient(err)


def watch(window: float = 600, poll: float = 30) -> RunWatch:
    return RunWatch("run-1", 120, logging.getLogger("test.transient"), window, poll)


def test_transient_faults_back_off_exponentially_with_jitter_and_a_cap():
    w = watch()
    delays = [w.poll_failed(client_error("ThrottlingException", 400), now=float(i))[1] for i in range(12)]
    assert all(0.5 * min(2**i, 60) <= d <= min(2**i, 60) for i, d in enumerate(delays))
    assert max(delays) <= MAX_BACKOFF_SECONDS


def test_the_run_fails_only_after_the_outage_window_naming_the_last_error():
    w = watch(window=600)
    assert w.poll_failed(ConnectionResetError("reset"), now=0.0)[0] is None
    assert w.poll_failed(client_error("ServiceUnavailable", 503), now=599.0)[0] is None
    final, _ = w.poll_failed(ReadTimeoutError(endpoint_url="http://batch"), now=600.0)
    assert final is not None and final.status is RunStatus.FAILED
    assert "did not answer" in final.message and "ReadTimeoutError" in final.message and "3 attempts" in final.message


def test_a_good_answer_resets_the_outage():
    w = watch(window=600)
    w.poll_failed(ConnectionResetError(), now=0.0)
    w.observe(RunState("run-1", RunStatus.RUNNING, "", native_status="RUNNING"), now=500.0)
    assert w.poll_failed(ConnectionResetError(), now=700.0)[0] is None  # a new outage starts at 700


def test_faults_that_cannot_heal_fail_at_once():
    final, delay = watch().poll_failed(client_error("AccessDeniedException", 403), now=0.0)
    assert final is not None and final.status is RunStatus.FAILED and delay == 0
    assert "retrying cannot help" in final.message and "AccessDeniedException" in final.message
