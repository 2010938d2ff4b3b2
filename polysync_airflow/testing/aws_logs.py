"""The CloudWatch Logs protocol of the local AWS endpoint, over the log streams its jobs write.

CloudWatch Logs speaks JSON 1.1: ``POST /`` with ``X-Amz-Target: Logs_20140328.<Operation>``, answered as
``application/x-amz-json-1.1`` with errors as ``{"__type", "message"}`` (HTTP 400). Served on the AWS Batch
endpoint's own URL, so a boto3 ``logs`` client with that ``endpoint_url`` reads the jobs' output:
``GetLogEvents`` (AWS's paging tokens) and ``DeleteLogStream`` (for tests: a stream gone, as after its
retention expired).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from polysync_airflow.testing._http import Request, Response
from polysync_airflow.testing.aws_batch_model import AwsBatchModel

LOGS_TARGET_PREFIX = "Logs_20140328."
CONTENT_TYPE = "application/x-amz-json-1.1"
PAGE_LIMIT = 10000


class LogsError(Exception):
    """An error of the CloudWatch Logs API (HTTP 400 with its ``__type``, as AWS answers)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class LocalCloudWatchLogs:
    """The CloudWatch Logs operations over ``model.log_groups``."""

    def __init__(self, model: AwsBatchModel) -> None:
        self.model = model
        self.deny_reads = False
        """Tests: answer every read with ``AccessDeniedException``, as AWS does without ``logs:GetLogEvents``."""
        self._operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "GetLogEvents": self.get_log_events,
            "DeleteLogStream": self.delete_log_stream,
        }

    def dispatch(self, request: Request, operation: str) -> Response:
        handler = self._operations.get(operation) if request.method == "POST" else None
        if handler is None:
            return Response.json(
                400,
                {"__type": "UnknownOperationException", "message": f"Unknown operation {operation}"},
                **{"x-amzn-ErrorType": "UnknownOperationException"},
            )
        try:
            return Response.json(200, handler(request.json()), content_type=CONTENT_TYPE)
        except LogsError as exc:
            return Response.json(
                400,
                {"__type": exc.code, "message": str(exc)},
                content_type=CONTENT_TYPE,
                **{"x-amzn-ErrorType": exc.code},
            )
        except (KeyError, TypeError, ValueError) as exc:
            return Response.json(
                400, {"__type": "InvalidParameterException", "message": f"Invalid request: {exc}"}, CONTENT_TYPE
            )

    def _stream(self, body: dict[str, Any], action: str) -> list[dict[str, Any]]:
        group = body.get("logGroupName") or body.get("logGroupIdentifier")
        stream = body["logStreamName"]
        if not group:
            raise LogsError("InvalidParameterException", "Either logGroupName or logGroupIdentifier is required")
        if self.deny_reads:
            region, account = self.model.region, self.model.account
            arn = f"arn:aws:logs:{region}:{account}:log-group:{group}:log-stream:{stream}"
            raise LogsError(
                "AccessDeniedException",
                f"User: arn:aws:iam::{account}:user/polysync-local is not authorized to perform: "
                f"logs:{action} on resource: {arn} because no identity-based policy allows the logs:{action} action",
            )
        with self.model.lock:
            groups = self.model.log_groups
            if group not in groups:
                raise LogsError("ResourceNotFoundException", "The specified log group does not exist.")
            if stream not in groups[group]:
                raise LogsError("ResourceNotFoundException", "The specified log stream does not exist.")
            return groups[group][stream]

    def get_log_events(self, body: dict[str, Any]) -> dict[str, Any]:
        """GetLogEvents: one page of a stream. Tokens are ``f/<index>`` and ``b/<index>`` (AWS's form); without
        a token, ``startFromHead`` false (the default) gives the latest ``limit`` events."""
        with self.model.lock:
            events = [
                dict(e)
                for e in self._stream(body, "GetLogEvents")
                if e["timestamp"] >= body.get("startTime", 0)
                and ("endTime" not in body or e["timestamp"] < body["endTime"])
            ]
        limit = int(body.get("limit") or PAGE_LIMIT)
        if not 1 <= limit <= PAGE_LIMIT:
            raise LogsError("InvalidParameterException", f"limit must be between 1 and {PAGE_LIMIT}")
        token = body.get("nextToken")
        if token:
            direction, _, index = token.partition("/")
            if direction not in ("f", "b") or not index.isdigit():
                raise LogsError("InvalidParameterException", "The specified nextToken is invalid.")
            position = min(int(index), len(events))
            start, end = (position, position + limit) if direction == "f" else (position - limit, position)
        elif body.get("startFromHead"):
            start, end = 0, limit
        else:
            start, end = len(events) - limit, len(events)
        start, end = max(start, 0), min(end, len(events))
        return {
            "events": events[start:end],
            "nextForwardToken": f"f/{end:056d}",
            "nextBackwardToken": f"b/{start:056d}",
        }

    def delete_log_stream(self, body: dict[str, Any]) -> dict[str, Any]:
        self._stream(body, "DeleteLogStream")
        with self.model.lock:
            del self.model.log_groups[body["logGroupName"]][body["logStreamName"]]
        return {}
