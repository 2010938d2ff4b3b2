"""Canary: the secrets of a connection never show up in anything a run leaves behind.

Every test puts fresh, unique secrets (the canaries) into the connections: the AWS secret access key and
session token (in an ``aws`` connection's password and extra, and in a ``polysync_aws_batch``
connection's extra), the Azure Batch shared key (in an ``azure_batch`` and a ``polysync_azure_batch``
connection). The local endpoints really authenticate with them: the Azure service checks every SharedKey
signature against the canary key, and the AWS endpoint is wrapped here to check every SigV4 signature
against the canary secret and the session token header against the canary token, so a run that gets
anywhere has used the canaries on the wire.

Each run (through ``dag.test()``: success, failure, cancel by deadline or by a user outside Airflow,
credentials refused at the start, access refused while the run is watched; deferred and in the worker)
is then searched for the canaries: stdout and stderr (task and trigger logs, failure tracebacks), every
Python log record at DEBUG, every row of every table of the metadata DB (XComs with the result and the
monitor link, trigger rows and their decrypted kwargs, rendered template fields, task instance rows
with the trigger's event), the files under AIRFLOW_HOME, the request bodies sent to the service and
the jobs' own output. ``dag.test()`` does not mask secrets, so the output is searched raw; a ``***``
is reported too, as the sign that a masker hid something. Each search also checks it found what it
should (the job id in the logs, the link, the trigger row...), so it cannot pass on empty input, and
one test plants leaks on purpose to show they are caught.

One exception is tolerated and kept narrow: botocore itself logs the signed request at DEBUG
(``botocore.auth`` "CanonicalRequest", ``botocore.endpoint`` "Sending http request"), and that
includes the ``X-Amz-Security-Token`` header, so the session token (only) shows in those third-party
DEBUG records. The secret access key must not appear even there.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from polysync_airflow import AwsBatchJobOperator, AzureBatchJobOperator
from polysync_airflow.operators.base import SubmittedRun
from polysync_airflow.testing._http import Request, Response
from polysync_airflow.testing.aws_batch import LocalAwsBatch
from polysync_airflow.testing.azure_batch import LocalAzureBatch
from polysync_airflow.testing.connections import aws_connection, azure_connection, conn_env_name
from tests.integration.helpers import run_single_task

pytestmark = pytest.mark.usefixtures("airflow_db")

FAST = {"poll_interval": 0.1}
MASKED = "***"  # what Airflow's secrets masker prints instead of a secret it knows
ACCESS_KEY_ID = "AKIAPOLYSYNCCANARY01"  # an id, not a secret
AWS_CONN = {"aws": "aws_canary", "polysync": "polysync_aws_canary"}
AZURE_CONN = {"azure_batch": "azure_canary", "polysync": "polysync_azure_canary"}
TOLERATED_LOGGERS = ("botocore.auth", "botocore.endpoint")  # see the module docstring


# -- canaries and where to look for them ---------------------------------------------------------------


@dataclass(frozen=True)
class Canary:
    name: str
    value: str

    @property
    def core(self) -> str:
        """The unique part: finding it anywhere (whole or cut short) is a leak."""
        return self.value[-40:-8]


def aws_canary(name: str) -> Canary:
    return Canary(name, f"CANARY{name.replace('_', '')}{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}")


def azure_canary_key() -> Canary:
    """A valid base64 account key (the service decodes it) made only of letters and digits."""
    value = f"CANARYazureKey{uuid.uuid4().hex}{uuid.uuid4().hex[:10]}"
    assert len(value) % 4 == 0 and base64.b64decode(value, validate=True)
    return Canary("azure_shared_key", value)


@dataclass
class Evidence:
    """Named texts gathered after a run: each one is searched for the canaries."""

    sources: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, text: str) -> None:
        self.sources[name] = self.sources.get(name, "") + text + "\n"

    def __getitem__(self, name: str) -> str:
        return self.sources.get(name, "")


def _cell(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    return str(value)


def collect_evidence(capsys: Any, caplog: Any, dag_id: str, wire: WireLog, job_dirs: list[Path]) -> Evidence:
    from airflow import settings
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import inspect, select, text

    evidence = Evidence()
    captured = capsys.readouterr()
    evidence.add("stdout", captured.out)
    evidence.add("stderr", captured.err)

    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    for record in caplog.records:
        tolerated = record.levelno <= logging.DEBUG and record.name.startswith(TOLERATED_LOGGERS)
        name = "logging (botocore DEBUG)" if tolerated else "logging"
        evidence.add(name, f"{formatter.format(record)} {record.__dict__!r}")

    with create_session() as session:
        for table in inspect(settings.engine).get_table_names():
            for row in session.execute(text(f'SELECT * FROM "{table}"')):
                evidence.add(f"db:{table}", " | ".join(_cell(value) for value in row))
        for trigger in session.scalars(select(Trigger)):
            evidence.add("trigger kwargs (decrypted)", f"{trigger.id} {trigger.classpath} {trigger.kwargs!r}")

    evidence.add("xcom values (XComModel)", json.dumps(xcom_rows(dag_id), default=str))
    evidence.add("rendered template fields (RenderedTaskInstanceFields)", json.dumps(rendered_fields(dag_id)))

    home = Path(os.environ["AIRFLOW_HOME"])
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        evidence.add(f"file:{path.relative_to(home)}", path.read_bytes().decode("latin-1"))
    for job_dir in job_dirs:
        for path in sorted(p for p in job_dir.rglob("*") if p.is_file()):
            evidence.add("job output files", path.read_bytes().decode("latin-1"))
    for request in wire.snapshot():
        evidence.add("request bodies sent to the service", f"{request.method} {request.raw_path} {_cell(request.body)}")
    return evidence


def find_leaks(evidence: Evidence, canaries: list[Canary]) -> tuple[list[str], list[str]]:
    """(leaks, tolerated): one line per canary per source where it shows, with some context."""
    leaks, tolerated = [], []
    for source, text in evidence.sources.items():
        for canary in canaries:
            start = text.find(canary.core)
            if start < 0:
                continue
            context = text[max(0, start - 150) : start + 100]
            for c in canaries:
                context = context.replace(c.value, f"<{c.name}>").replace(c.core, f"<{c.name}>")
            line = f"{canary.name} in {source}: ...{context!r}..."
            if source == "logging (botocore DEBUG)" and canary.name == "aws_session_token":
                tolerated.append(line)
            else:
                leaks.append(line)
        if MASKED in text and not source.startswith(("db:serialized_dag", "db:dag_code", "file:")):
            start = text.find(MASKED)
            leaks.append(
                f"the secrets masker hid something in {source}: ...{text[max(0, start - 150) : start + 50]!r}..."
            )
    return leaks, tolerated


def assert_no_leak(evidence: Evidence, canaries: list[Canary]) -> None:
    leaks, _tolerated = find_leaks(evidence, canaries)
    assert not leaks, "secret canaries leaked:\n" + "\n".join(leaks)


# -- the wire -------------------------------------------------------------------------------------------


class WireLog:
    """Every request the endpoint received, with its answer's status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.statuses: list[tuple[str, int]] = []

    def add(self, request: Request, status: int) -> None:
        with self._lock:
            self.requests.append(request)
            self.statuses.append((f"{request.method} {request.path}", status))

    def snapshot(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def count(self, status: int) -> int:
        with self._lock:
            return sum(1 for _, s in self.statuses if s == status)


_SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


def sigv4_refusal(request: Request, base_url: str, secret_key: str, session_token: str) -> Response | None:
    """None if the request is signed with these credentials (as AWS checks it), else AWS's 403 answer."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    def refuse(code: str, message: str) -> Response:
        return Response.json(403, {"__type": code, "message": message}, **{"x-amzn-ErrorType": code})

    headers = {name.lower(): value for name, value in request.headers.items()}
    match = _SIGV4.match(headers.get("authorization", ""))
    if match is None or match["key"] != ACCESS_KEY_ID:
        return refuse("UnrecognizedClientException", "The security token included in the request is invalid.")
    if headers.get("x-amz-security-token") != session_token:
        return refuse("UnrecognizedClientException", "The security token included in the request is invalid.")
    signed = match["signed"].split(";")
    aws_request = AWSRequest(
        method=request.method,
        url=base_url + request.raw_path,
        data=request.body,
        headers={name: headers[name] for name in signed if name in headers},
    )
    aws_request.context["timestamp"] = headers.get("x-amz-date", "")
    signer = SigV4Auth(Credentials(match["key"], secret_key, session_token), match["service"], match["region"])
    expected = signer.signature(signer.string_to_sign(aws_request, signer.canonical_request(aws_request)), aws_request)
    if not hmac.compare_digest(expected, match["signature"]):
        return refuse(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.",
        )
    return None


def access_denied(action: str) -> Response:
    code = "AccessDeniedException"
    message = f"User: arn:aws:iam::123456789012:user/polysync is not authorized to perform: batch:{action}"
    return Response.json(403, {"__type": code, "message": message}, **{"x-amzn-ErrorType": code})


def azure_auth_failed() -> Response:
    return Response.json(
        403,
        {
            "code": "AuthenticationFailed",
            "message": {"lang": "en-US", "value": "Server failed to authenticate the request."},
        },
        "application/json;odata=minimalmetadata",
    )


# -- fixtures ---------------------------------------------------------------------------------------------


@dataclass
class AwsSetup:
    endpoint: LocalAwsBatch
    secret: Canary
    token: Canary
    wire: WireLog
    accepted_secret: str
    deny_describe_after_submit: bool = False

    @property
    def canaries(self) -> list[Canary]:
        return [self.secret, self.token]


@pytest.fixture
def aws(local_aws_batch: LocalAwsBatch, monkeypatch: pytest.MonkeyPatch) -> AwsSetup:
    """The local AWS endpoint checking SigV4 against the canaries, and two connections holding them."""
    secret, token = aws_canary("aws_secret_access_key"), aws_canary("aws_session_token")
    setup = AwsSetup(local_aws_batch, secret, token, WireLog(), accepted_secret=secret.value)
    serve = local_aws_batch.dispatch
    submitted = threading.Event()

    def dispatch(request: Request) -> Response:
        response = sigv4_refusal(request, local_aws_batch.url, setup.accepted_secret, token.value)
        denied = setup.deny_describe_after_submit and submitted.is_set() and request.path.endswith("/describejobs")
        if response is None and denied:
            response = access_denied("DescribeJobs")
        if response is None:
            response = serve(request)
            if request.path.endswith("/submitjob") and response.status == 200:
                submitted.set()
        setup.wire.add(request, response.status)
        return response

    monkeypatch.setattr(local_aws_batch, "dispatch", dispatch)
    plain = aws_connection(local_aws_batch, aws_session_token=token.value)
    plain.update(login=ACCESS_KEY_ID, password=secret.value)
    own_type = aws_connection(
        local_aws_batch,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=secret.value,
        aws_session_token=token.value,
    )
    own_type.update(conn_type="polysync_aws_batch", login=None, password=None)
    monkeypatch.setenv(conn_env_name(AWS_CONN["aws"]), json.dumps(plain))
    monkeypatch.setenv(conn_env_name(AWS_CONN["polysync"]), json.dumps(own_type))
    return setup


@dataclass
class AzureSetup:
    endpoint: LocalAzureBatch
    key: Canary
    wire: WireLog
    deny_task_reads_after_submit: bool = False

    @property
    def canaries(self) -> list[Canary]:
        return [self.key]


def azure_setup(monkeypatch: pytest.MonkeyPatch, service_key: str | None) -> Iterator[AzureSetup]:
    key = azure_canary_key()
    with LocalAzureBatch(key=service_key or key.value) as endpoint:
        setup = AzureSetup(endpoint, key, WireLog())
        serve = endpoint.dispatch
        submitted = threading.Event()

        def dispatch(request: Request) -> Response:
            task_read = request.method == "GET" and re.search(r"^/jobs/[^/]+/tasks/[^/]+$", request.path)
            if setup.deny_task_reads_after_submit and submitted.is_set() and task_read:
                response = azure_auth_failed()  # the key was revoked or rotated after the submission
            else:
                response = serve(request)
                if request.method == "POST" and response.status == 201 and request.path.endswith("/tasks"):
                    submitted.set()
            setup.wire.add(request, response.status)
            return response

        monkeypatch.setattr(endpoint, "dispatch", dispatch)
        for conn_type, conn_id in (("azure_batch", AZURE_CONN["azure_batch"]), ("polysync", AZURE_CONN["polysync"])):
            settings = azure_connection(
                endpoint, key=key.value, conn_type="polysync_azure_batch" if conn_type == "polysync" else conn_type
            )
            monkeypatch.setenv(conn_env_name(conn_id), json.dumps(settings))
        yield setup


@pytest.fixture
def azure(monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureSetup]:
    """A local Azure Batch service whose account key is the canary, and two connections holding it."""
    yield from azure_setup(monkeypatch, service_key=None)


@pytest.fixture
def azure_other_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureSetup]:
    """The connections hold the canary key; the service wants another one (a wrong or rotated key)."""
    other = base64.b64encode(b"the-key-the-service-really-wants-0123").decode()
    yield from azure_setup(monkeypatch, service_key=other)


@pytest.fixture(autouse=True)
def debug_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


# -- helpers for the checks that the search found something --------------------------------------------


def xcom_rows(dag_id: str) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return {row.key: row.value for row in session.query(XComModel).filter(XComModel.dag_id == dag_id)}


def rendered_fields(dag_id: str) -> list[dict[str, Any]]:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from airflow.utils.session import create_session

    with create_session() as session:
        return [row.rendered_fields for row in session.query(RTIF).filter(RTIF.dag_id == dag_id)]


def trigger_kwargs_for(run_id: str) -> list[dict[str, Any]]:
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session

    with create_session() as session:
        found = [trigger.kwargs for trigger in session.query(Trigger)]
    return [kwargs for kwargs in found if run_id in json.dumps(kwargs, default=str)]


def check_found_content(
    evidence: Evidence, ti: Any, run_id: str | None, deferrable: bool, template_value: str, endpoint_url: str
) -> None:
    """The search saw real content: if it did not, an empty pass would prove nothing."""
    logs = evidence["stdout"]
    assert ti.task_id in logs and ti.dag_id in logs, "the task's log is not in the captured stdout"
    host = endpoint_url.removeprefix("http://")
    assert host in evidence["logging"] + evidence["logging (botocore DEBUG)"], "no library log record was captured"
    assert ti.dag_id in evidence["db:task_instance"] and ti.dag_id in evidence["db:dag_run"]
    (fields,) = rendered_fields(ti.dag_id)
    assert template_value in json.dumps(fields) and template_value in evidence["db:rendered_task_instance_fields"]
    assert evidence["request bodies sent to the service"].strip(), "no request reached the service"
    if run_id is None:
        return
    assert run_id in logs, "the job id is not in the task log"
    xcoms = xcom_rows(ti.dag_id)
    links = [value for key, value in xcoms.items() if key.startswith("_link_")]
    assert links and run_id.split("/")[0] in json.dumps(links), "the monitor link XCom was not found"
    assert run_id.split("/")[0] in evidence["db:xcom"]
    if deferrable:
        assert trigger_kwargs_for(run_id), "no trigger row for the run"
        assert run_id in evidence["trigger kwargs (decrypted)"] and run_id in evidence["db:trigger"]


# -- AWS Batch ---------------------------------------------------------------------------------------------

AWS_SCENARIOS = [
    pytest.param("success", True, "aws", id="success-deferred-aws_conn"),
    pytest.param("success", False, "polysync", id="success-in_worker-polysync_conn"),
    pytest.param("failure", True, "polysync", id="failure-deferred-polysync_conn"),
    pytest.param("failure", False, "aws", id="failure-in_worker-aws_conn"),
    pytest.param("timeout", True, "aws", id="cancel_at_deadline-deferred-aws_conn"),
    pytest.param("timeout", False, "polysync", id="cancel_at_deadline-in_worker-polysync_conn"),
    pytest.param("cancelled", True, "polysync", id="cancelled_by_user-deferred-polysync_conn"),
    pytest.param("bad_credentials", True, "aws", id="credentials_refused-aws_conn"),
    pytest.param("bad_credentials", True, "polysync", id="credentials_refused-polysync_conn"),
    pytest.param("access_denied", True, "polysync", id="access_denied_while_watching-deferred-polysync_conn"),
    pytest.param("access_denied", False, "aws", id="access_denied_while_watching-in_worker-aws_conn"),
]


def terminate_when_running(endpoint: LocalAwsBatch) -> threading.Thread:
    def run() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for job in list(endpoint.jobs.values()):
                if job.status == "RUNNING":
                    endpoint.terminate_job({"jobId": job.job_id, "reason": "Terminated by an operator"})
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(("scenario", "deferrable", "conn"), AWS_SCENARIOS)
def test_aws_batch_run_leaks_no_secret(
    scenario: str, deferrable: bool, conn: str, aws: AwsSetup, capsys, caplog
) -> None:
    parameters: dict[str, Any] = {"seconds": 0.2, "message": "canary-run"}
    extra: dict[str, Any] = {}
    helper = None
    if scenario == "failure":
        parameters.update(exit_code=3, seconds=0)
    elif scenario == "timeout":
        parameters["seconds"] = 60
        extra["execution_timeout"] = timedelta(seconds=2)
    elif scenario == "cancelled":
        parameters["seconds"] = 30
        helper = terminate_when_running(aws.endpoint)
    elif scenario == "bad_credentials":
        aws.accepted_secret = aws_canary("the_secret_aws_really_wants").value
    elif scenario == "access_denied":
        aws.deny_describe_after_submit = True

    dag_run, ti = run_single_task(
        AwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=AWS_CONN[conn],
        parameters=parameters,
        deferrable=deferrable,
        **FAST,
        **extra,
    )
    if helper is not None:
        helper.join()
    jobs = list(aws.endpoint.jobs.values())
    evidence = collect_evidence(capsys, caplog, ti.dag_id, aws.wire, [aws.endpoint.runner.workdir])

    # the run went the way the scenario says, and the canaries were what authenticated it
    logs = evidence["stdout"]
    if scenario == "bad_credentials":
        assert ti.state == "failed" and jobs == []
        assert "InvalidSignatureException" in logs
        assert aws.wire.count(403) >= 1 and aws.wire.count(200) == 0
        run_id = None
    else:
        (job,) = jobs
        run_id = job.job_id
        assert aws.wire.count(200) >= 2, "the endpoint accepted no request signed with the canary secret"
        expected = {
            "success": ("success", f"Run {run_id} succeeded"),
            "failure": ("failed", f"Run {run_id} failed: Essential container in task exited"),
            "timeout": ("failed", f"Run {run_id} timed out" if deferrable else f"Cancelling run {run_id}"),
            "cancelled": ("failed", f"Run {run_id} was cancelled: Terminated by an operator"),
            "access_denied": ("failed", "AccessDeniedException"),
        }[scenario]
        assert (ti.state, dag_run.state) == (expected[0], expected[0])
        assert expected[1] in logs
        if scenario == "success":
            assert xcom_rows(ti.dag_id)["return_value"]["run_id"] == run_id
        if scenario == "timeout":
            assert aws.endpoint.wait_for_job(run_id, timeout=15).status == "FAILED"
            assert "terminatejob" in aws.endpoint.requests
    check_found_content(evidence, ti, run_id, deferrable, "polysync-job", aws.endpoint.url)
    assert_no_leak(evidence, aws.canaries)


def test_aws_trigger_built_by_the_operator_serializes_no_secret(aws: AwsSetup) -> None:
    from airflow.models.trigger import Trigger

    operator = AwsBatchJobOperator(task_id="job", job_definition="polysync-job", aws_conn_id=AWS_CONN["aws"])
    trigger = operator.make_trigger(SubmittedRun("job-1234", "Polysync-x", "https://example/job-1234"), time.time())
    classpath, kwargs = trigger.serialize()
    text = json.dumps([classpath, kwargs], default=str)
    stored = Trigger(classpath=classpath, kwargs=kwargs)
    evidence = Evidence({"trigger.serialize()": text, "trigger row": f"{stored.encrypted_kwargs} {stored.kwargs!r}"})
    assert "job-1234" in text and AWS_CONN["aws"] in text and "job-1234" in evidence["trigger row"]
    assert_no_leak(evidence, aws.canaries)


# -- Azure Batch -------------------------------------------------------------------------------------------

AZURE_SCENARIOS = [
    pytest.param("success", True, "azure_batch", id="success-deferred-azure_batch_conn"),
    pytest.param("success", False, "polysync", id="success-in_worker-polysync_conn"),
    pytest.param("failure", True, "polysync", id="failure-deferred-polysync_conn"),
    pytest.param("failure", False, "azure_batch", id="failure-in_worker-azure_batch_conn"),
    pytest.param("timeout", True, "azure_batch", id="cancel_at_deadline-deferred-azure_batch_conn"),
    pytest.param("timeout", False, "polysync", id="cancel_at_deadline-in_worker-polysync_conn"),
    pytest.param("access_denied", True, "polysync", id="auth_fails_while_watching-deferred-polysync_conn"),
    pytest.param("access_denied", False, "azure_batch", id="auth_fails_while_watching-in_worker-azure_batch_conn"),
]


def created_jobs(endpoint: LocalAzureBatch) -> list[Any]:
    return [job for job in endpoint.jobs.values() if not job.id.startswith("polysync-template")]


@pytest.mark.parametrize(("scenario", "deferrable", "conn"), AZURE_SCENARIOS)
def test_azure_batch_run_leaks_no_secret(
    scenario: str, deferrable: bool, conn: str, azure: AzureSetup, capsys, caplog
) -> None:
    parameters: dict[str, Any] = {"SECONDS_TO_RUN": 0.2, "RUN_DATE": "{{ ds }}"}
    extra: dict[str, Any] = {}
    if scenario == "failure":
        parameters.update(EXIT_CODE=7, SECONDS_TO_RUN=0)
    elif scenario == "timeout":
        parameters["SECONDS_TO_RUN"] = 60
        extra["execution_timeout"] = timedelta(seconds=2)
    elif scenario == "access_denied":
        azure.deny_task_reads_after_submit = True

    dag_run, ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id=AZURE_CONN[conn],
        parameters=parameters,
        deferrable=deferrable,
        **FAST,
        **extra,
    )
    (job,) = created_jobs(azure.endpoint)
    run_id = f"{job.id}/polysync"
    evidence = collect_evidence(capsys, caplog, ti.dag_id, azure.wire, [azure.endpoint.runner.workdir])

    logs = evidence["stdout"]
    assert azure.wire.count(201) >= 2, "the service accepted no request signed with the canary key"
    expected = {
        "success": ("success", f"Run {run_id} succeeded"),
        "failure": ("failed", f"Run {run_id} failed: The task exited with an exit code representing a failure"),
        "timeout": ("failed", f"Run {run_id} timed out" if deferrable else f"Cancelling run {run_id}"),
        "access_denied": ("failed", "AuthenticationFailed"),
    }[scenario]
    assert (ti.state, dag_run.state) == (expected[0], expected[0])
    assert expected[1] in logs
    if scenario == "failure":
        assert "failing with exit code 7" in logs  # the stderr tail made it into the task log
    if scenario == "success":
        assert xcom_rows(ti.dag_id)["return_value"]["run_id"] == run_id
    if scenario == "timeout":
        assert azure.endpoint.wait_for_job(job.id, timeout=15).state == "completed"
        assert any(r.endswith("/terminate") for r in azure.endpoint.requests)
    check_found_content(evidence, ti, run_id, deferrable, "polysync-template", azure.endpoint.url)
    assert_no_leak(evidence, azure.canaries)


@pytest.mark.parametrize("conn", ["azure_batch", "polysync"])
def test_azure_batch_refused_key_leaks_no_secret(conn: str, azure_other_key: AzureSetup, capsys, caplog) -> None:
    dag_run, ti = run_single_task(
        AzureBatchJobOperator,
        template_job_id="polysync-template",
        azure_batch_conn_id=AZURE_CONN[conn],
        parameters={"SECONDS_TO_RUN": 0},
        **FAST,
    )
    evidence = collect_evidence(
        capsys, caplog, ti.dag_id, azure_other_key.wire, [azure_other_key.endpoint.runner.workdir]
    )
    assert (ti.state, dag_run.state) == ("failed", "failed")
    assert created_jobs(azure_other_key.endpoint) == []
    assert azure_other_key.wire.count(403) >= 1 and azure_other_key.wire.count(201) == 0
    assert f"Azure Batch did not accept the credentials of connection '{AZURE_CONN[conn]}'" in evidence["stdout"]
    check_found_content(evidence, ti, None, True, "polysync-template", azure_other_key.endpoint.url)
    assert_no_leak(evidence, azure_other_key.canaries)


def test_azure_trigger_built_by_the_operator_serializes_no_secret(azure: AzureSetup) -> None:
    from airflow.models.trigger import Trigger

    operator = AzureBatchJobOperator(
        task_id="job", template_job_id="polysync-template", azure_batch_conn_id=AZURE_CONN["azure_batch"]
    )
    run = SubmittedRun("polysync-1234/polysync", "polysync-1234", "https://example/polysync-1234")
    classpath, kwargs = operator.make_trigger(run, time.time()).serialize()
    text = json.dumps([classpath, kwargs], default=str)
    stored = Trigger(classpath=classpath, kwargs=kwargs)
    evidence = Evidence({"trigger.serialize()": text, "trigger row": f"{stored.encrypted_kwargs} {stored.kwargs!r}"})
    assert "polysync-1234/polysync" in text and AZURE_CONN["azure_batch"] in text
    assert "polysync-1234" in evidence["trigger row"]
    assert_no_leak(evidence, azure.canaries)


# -- the search itself ---------------------------------------------------------------------------------------


class LeakyAwsBatchJobOperator(AwsBatchJobOperator):
    """Does what a real operator must never do, to show that the search catches it."""

    def execute(self, context: Any) -> Any:
        credentials = self.hook.get_credentials()
        self.log.info("Signing with %s", credentials.secret_key)
        print(f"session token starts {credentials.token[:-8]}")  # cut short: a masker would miss it
        context["ti"].xcom_push(key="debug", value={"token": credentials.token})
        return super().execute(context)


def test_the_search_catches_an_operator_that_leaks(aws: AwsSetup, capsys, caplog) -> None:
    dag_run, ti = run_single_task(
        LeakyAwsBatchJobOperator,
        job_definition="polysync-job",
        aws_conn_id=AWS_CONN["aws"],
        parameters={"seconds": 0},
        deferrable=False,
        **FAST,
    )
    assert dag_run.state == "success"
    evidence = collect_evidence(capsys, caplog, ti.dag_id, aws.wire, [aws.endpoint.runner.workdir])
    leaks, _tolerated = find_leaks(evidence, aws.canaries)
    assert any(line.startswith("aws_session_token in db:xcom:") for line in leaks), leaks
    assert any(line.startswith("aws_session_token in stdout:") for line in leaks), leaks
    assert any(line.startswith("aws_secret_access_key in stdout:") for line in leaks), leaks
    assert any(line.startswith("aws_session_token in file:airflow.db") for line in leaks), leaks


def test_the_search_finds_a_planted_canary() -> None:
    """A canary planted in any source, whole or cut short, or masked by Airflow, is reported."""
    canary = aws_canary("aws_secret_access_key")
    for text in (f"x {canary.value} y", f"key={canary.value[:-8]}", f"key=...{canary.core}"):
        leaks, _ = find_leaks(Evidence({"db:xcom": text}), [canary])
        assert leaks and leaks[0].startswith("aws_secret_access_key in db:xcom")
    leaks, _ = find_leaks(Evidence({"stdout": "password=***"}), [canary])
    assert leaks and "masker" in leaks[0]
    token = aws_canary("aws_session_token")
    leaks, tolerated = find_leaks(Evidence({"logging (botocore DEBUG)": token.value}), [canary, token])
    assert (leaks, len(tolerated)) == ([], 1)
    leaks, _ = find_leaks(Evidence({"logging (botocore DEBUG)": canary.value}), [canary, token])
    assert leaks
