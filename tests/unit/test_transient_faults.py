"""Which service faults are retried, and for how long (pure logic, with the SDKs' real exception types)."""

from __future__ import annotations

import logging

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from polysync_airflow.run_watch import MAX_BACKOFF_SECONDS, PollingSettings, RunWatch, backoff_seconds
from polysync_airflow.status import RunState, RunStatus
from polysync_airflow.statuses import aws_batch, azure_batch

AWS, AZURE, BOTH = (
    [aws_batch.is_transient],
    [azure_batch.is_transient],
    [aws_batch.is_transient, azure_batch.is_transient],
)


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
    ("err", "platforms"),
    [
        (client_error("ThrottlingException", 400), AWS),
        (client_error("TooManyRequestsException", 429), AWS),
        (client_error("SomethingNew", 429), AWS),
        (client_error("InternalServerError", 500), AWS),
        (client_error("ServiceUnavailable", 503), AWS),
        (EndpointConnectionError(endpoint_url="http://x"), AWS),
        (ReadTimeoutError(endpoint_url="http://x"), AWS),
        (ConnectionResetError(), BOTH),
        (TimeoutError(), BOTH),
        (ServiceRequestError("connection refused"), AZURE),
        (azure_error(HttpResponseError, 503), AZURE),
        (azure_error(HttpResponseError, 429), AZURE),
    ],
    ids=lambda e: type(e).__name__ if isinstance(e, BaseException) else "",
)
def test_faults_that_heal_are_transient(err, platforms):
    for is_transient in platforms:
        assert is_transient(err)


@pytest.mark.parametrize(
    ("err", "platforms"),
    [
        (client_error("AccessDeniedException", 403), AWS),
        (client_error("ClientException", 400), AWS),
        (client_error("UnrecognizedClientException", 403), AWS),
        (azure_error(HttpResponseError, 403), AZURE),
        (azure_error(ResourceNotFoundError, 404), AZURE),
        (ValueError("bad"), BOTH),
    ],
    ids=lambda e: type(e).__name__ if isinstance(e, BaseException) else "",
)
def test_faults_that_cannot_heal_are_not(err, platforms):
    for is_transient in platforms:
        assert not is_transient(err)


def test_each_platform_leaves_the_others_errors_alone():
    assert not aws_batch.is_transient(azure_error(HttpResponseError, 503))
    assert not azure_batch.is_transient(client_error("ThrottlingException", 400))


def watch(window: float = 600, poll: float = 30) -> RunWatch:
    settings = PollingSettings(poll_interval=poll, unknown_grace_period=120, outage_window=window)
    return RunWatch("run-1", logging.getLogger("test.transient"), settings, aws_batch.is_transient)


def test_transient_faults_back_off_exponentially_with_jitter_and_a_cap():
    """A worker polling every 30 s retries 1 s after a fault, doubling up to 60 s (run_watch.watch_in_worker)."""
    w = watch()
    delays = []
    for i in range(12):
        assert w.poll_failed(client_error("ThrottlingException", 400), now=float(i)) is None
        delays.append(backoff_seconds(w.failures, first=min(w.settings.poll_interval, 1.0)))
    assert all(0.5 * min(2**i, 60) <= d <= min(2**i, 60) for i, d in enumerate(delays))
    assert max(delays) <= MAX_BACKOFF_SECONDS


def test_the_shared_poller_backs_off_from_the_poll_interval():
    """In the triggerer the first retry waits the poll interval, then doubles up to 60 s (or the interval)."""
    for interval in (0.05, 5, 30, 120):
        delays = [backoff_seconds(failures, first=interval) for failures in range(1, 12)]
        cap = max(interval, MAX_BACKOFF_SECONDS)
        assert all(0.5 * min(interval * 2**i, cap) <= d <= min(interval * 2**i, cap) for i, d in enumerate(delays))


def test_the_run_fails_only_after_the_outage_window_naming_the_last_error():
    w = watch(window=600)
    assert w.poll_failed(ConnectionResetError("reset"), now=0.0) is None
    assert w.poll_failed(client_error("ServiceUnavailable", 503), now=599.0) is None
    final = w.poll_failed(ReadTimeoutError(endpoint_url="http://batch"), now=600.0)
    assert final is not None and final.status is RunStatus.FAILED
    assert "did not answer" in final.message and "ReadTimeoutError" in final.message and "3 attempts" in final.message


def test_a_good_answer_resets_the_outage():
    w = watch(window=600)
    w.poll_failed(ConnectionResetError(), now=0.0)
    w.observe(RunState("run-1", RunStatus.RUNNING, "", native_status="RUNNING"), now=500.0)
    assert w.poll_failed(ConnectionResetError(), now=700.0) is None  # a new outage starts at 700


def test_faults_that_cannot_heal_fail_at_once():
    final = watch().poll_failed(client_error("AccessDeniedException", 403), now=0.0)
    assert final is not None and final.status is RunStatus.FAILED
    assert "retrying cannot help" in final.message and "AccessDeniedException" in final.message
