"""``polysync-airflow discover`` (and ``airflow polysync discover``): list importable Batch job definitions and
write a starter DAG (``discover.py``). ``polysync-airflow sweep`` (and ``airflow polysync sweep``): stop the jobs no
task instance owns any more (``sweep.py``). This module holds the parser, ``main``, Airflow's ``cli`` entry and what
both commands share.

Only the standard library is imported at module level: Airflow imports this module to build its own CLI
(the provider's ``cli`` key), and ``--help`` must not wait for Airflow, boto3 or the Azure SDK. The hooks are
imported in the handlers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from polysync_airflow.cli.discover import DISCOVER_DESCRIPTION, DISCOVER_HELP, discover_aws, discover_azure
from polysync_airflow.cli.sweep import SWEEP_DESCRIPTION, SWEEP_HELP, sweep_aws, sweep_azure

DESCRIPTION = (
    "Polysync for Apache Airflow: list the Batch jobs that can be run and write a starter DAG; stop the jobs no "
    "task instance owns any more."
)


def expose_stored_connection(conn_id: str) -> None:
    """Outside a task, Airflow 3 hooks see only environment and secrets-backend connections. This command
    runs where Airflow is installed, so it also looks in the metadata database (Airflow core's lookup) and
    hands what it finds to the hooks of this process as an ``AIRFLOW_CONN_*`` variable."""
    name = f"AIRFLOW_CONN_{conn_id.upper()}"
    if name in os.environ:
        return
    try:
        from airflow.models.connection import Connection

        connection = Connection.get_connection_from_secrets(conn_id)
    except Exception:  # not there either (or no database): the hook's own lookup reports it
        return
    os.environ[name] = connection.as_json()


def describe_error(err: BaseException, conn_id: str) -> str:
    """One line a user can act on, for what stopped the command."""
    from botocore.exceptions import NoCredentialsError, NoRegionError

    if isinstance(err, NoRegionError):
        return (
            f"no AWS region for connection {conn_id!r}: pass --region or set region_name in the connection's extra "
            "(or AWS_DEFAULT_REGION)"
        )
    if isinstance(err, NoCredentialsError):
        return (
            f"no AWS credentials for connection {conn_id!r}: set the access key (login) and secret key (password) "
            "of the connection, or configure boto3's default credential chain"
        )
    response = getattr(err, "response", None)
    if type(err).__name__ == "HTTPStatusError" and response is not None:  # httpx: Airflow's REST API refused
        hint = (
            ": set POLYSYNC_AIRFLOW_API_TOKEN, or POLYSYNC_AIRFLOW_API_USERNAME and POLYSYNC_AIRFLOW_API_PASSWORD"
            if response.status_code in (401, 403)
            else ""
        )
        return f"Airflow's REST API answered {response.status_code} to {response.request.url}{hint}"
    if type(err).__name__ == "AirflowNotFoundException":  # raised by Airflow core or the task SDK, by name alike
        return (
            f"connection {conn_id!r} is not defined: add it (airflow connections add {conn_id} ...) or set "
            f"AIRFLOW_CONN_{conn_id.upper()}"
        )
    message = " ".join(str(err).split())  # Azure's messages span lines
    if type(err).__module__ == "builtins" and message:  # a bare KeyError or ValueError says little without its type
        return f"{type(err).__name__}: {message}"
    return message or type(err).__name__


def run(args: argparse.Namespace, handler: Callable[[argparse.Namespace], int]) -> int:
    """Run a command's handler; what goes wrong is one ``error:`` line on stderr and exit code 1."""
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Airflow 3.1 warns on stdout while reading a connection
            expose_stored_connection(args.conn_id)
        return handler(args)
    except Exception as err:
        print(f"error: {describe_error(err, args.conn_id)}", file=sys.stderr)
        return 1


@dataclass(frozen=True)
class Option:
    """One command-line option, shared by the standalone parser and Airflow's CLI (``airflow polysync``)."""

    name: str
    help: str
    default: str | None = None
    switch: bool = False  # takes no value
    repeat: bool = False  # may be given more than once (a list)

    def kwargs(self) -> dict[str, Any]:
        if self.switch:
            return {"help": self.help, "action": "store_true"}
        if self.repeat:
            return {"help": self.help, "action": "append"}
        return {"help": self.help, "default": self.default}


@dataclass(frozen=True)
class Platform:
    name: str
    help: str
    options: tuple[Option, ...]
    handler: Callable[[argparse.Namespace], int]


_JSON = Option("--json", "print JSON instead of one line per item", switch=True)
# What discover and sweep both take.
_AWS_CONN_ID = Option("--conn-id", "Airflow connection id (default: aws_default)", "aws_default")
_AWS_REGION = Option("--region", "AWS region (default: the connection's region_name)")
_AZURE_CONN_ID = Option("--conn-id", "Airflow connection id (default: azure_batch_default)", "azure_batch_default")
PLATFORMS = (
    Platform(
        "aws-batch",
        "ACTIVE job definitions, latest revision each",
        (
            _AWS_CONN_ID,
            _AWS_REGION,
            _JSON,
            Option("--dag-file", "write a DAG module with one task per job definition to this path"),
        ),
        discover_aws,
    ),
    Platform(
        "azure-batch",
        "jobs of the Batch account, usable as templates",
        (
            _AZURE_CONN_ID,
            _JSON,
            Option("--dag-file", "write a DAG module with one task per template job to this path"),
        ),
        discover_azure,
    ),
)


_DRY_RUN = Option("--dry-run", "print what would be stopped, and why, and stop nothing", switch=True)
_API_URL = Option(
    "--api-url",
    "Airflow's API server (default: AIRFLOW__API__BASE_URL, else http://localhost:8080)",
    os.environ.get("AIRFLOW__API__BASE_URL") or "http://localhost:8080",
)
SWEEP_PLATFORMS = (
    Platform(
        "aws-batch",
        "the Polysync jobs of the job queues an AWS connection reaches",
        (
            _AWS_CONN_ID,
            _AWS_REGION,
            Option(
                "--job-queue", "a job queue to sweep; repeat for more (default: every queue of the region)", repeat=True
            ),
            _DRY_RUN,
            _API_URL,
        ),
        sweep_aws,
    ),
    Platform(
        "azure-batch",
        "the Polysync jobs of an Azure Batch account",
        (
            _AZURE_CONN_ID,
            _DRY_RUN,
            _API_URL,
        ),
        sweep_azure,
    ),
)
COMMANDS = (
    ("discover", DISCOVER_HELP, DISCOVER_DESCRIPTION, PLATFORMS),
    ("sweep", SWEEP_HELP, SWEEP_DESCRIPTION, SWEEP_PLATFORMS),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polysync-airflow", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text, description, command_platforms in COMMANDS:
        command = commands.add_parser(name, help=help_text, description=description)
        platforms = command.add_subparsers(dest="platform", required=True)
        for platform in command_platforms:
            sub = platforms.add_parser(platform.name, help=platform.help, description=platform.help)
            for option in platform.options:
                sub.add_argument(option.name, **option.kwargs())
            sub.set_defaults(handler=platform.handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Airflow's INFO lines (Airflow 3.1 logs its alembic plugins on import) would bury our one answer; its
    # warnings still show. An explicit AIRFLOW__LOGGING__LOGGING_LEVEL wins.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    return run(args, args.handler)


def get_cli_commands() -> list[Any]:
    """``airflow polysync discover ...`` and ``airflow polysync sweep ...``: the provider's ``cli`` entry (read by
    Airflow 3.2 and later)."""
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand

    def action(name: str, platform: Platform) -> Callable[[argparse.Namespace], None]:
        def command(args: argparse.Namespace) -> None:
            code = run(args, platform.handler)
            if code:  # Airflow ignores a command's return value
                sys.exit(code)

        command.__name__ = f"{name}_{platform.name.replace('-', '_')}"
        return command

    groups = [
        GroupCommand(
            name=name,
            help=help_text,
            description=description,
            subcommands=[
                ActionCommand(
                    name=platform.name,
                    help=platform.help,
                    func=action(name, platform),
                    args=[Arg((option.name,), **option.kwargs()) for option in platform.options],
                )
                for platform in command_platforms
            ],
        )
        for name, help_text, description, command_platforms in COMMANDS
    ]
    return [GroupCommand(name="polysync", help=DESCRIPTION, subcommands=groups)]
