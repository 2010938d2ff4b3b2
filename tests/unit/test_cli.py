"""The discover command's parsers (standalone and Airflow's), its help texts, imports and error lines."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from airflow.exceptions import AirflowNotFoundException
from botocore.exceptions import NoRegionError

from polysync_airflow.cli import PLATFORMS, SWEEP_PLATFORMS, build_parser, describe_error, get_cli_commands


def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """A parser and all its sub-parsers."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += parsers(sub)
    return found


def help_texts(parser: argparse.ArgumentParser) -> list[str]:
    texts = [parser.description or "", parser.format_help()]
    return texts + [action.help or "" for action in parser._actions]


def airflow_help_texts(commands) -> list[str]:
    texts = []
    for command in commands:
        texts += [command.help, command.description or ""]
        texts += [arg.kwargs.get("help", "") for arg in getattr(command, "args", ())]
        texts += airflow_help_texts(getattr(command, "subcommands", ()))
    return texts


def test_help_is_plain_text():
    texts = [text for parser in parsers(build_parser()) for text in help_texts(parser)]
    texts += airflow_help_texts(get_cli_commands())
    assert not [text for text in texts if "`" in text or ":class:" in text or ":meth:" in text]


def test_the_help_commands_import_neither_airflow_nor_the_sdks():
    """--help must not wait for Airflow, boto3 or the Azure SDK: only the handlers import them."""
    script = (
        "import sys, contextlib, io\n"
        "from polysync_airflow.cli import main\n"
        "for argv in (['--help'], ['discover', '--help'], ['discover', 'aws-batch', '--help'], ['sweep', '--help']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'airflow', 'boto3', 'botocore', 'azure'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_airflow_polysync_discover_mirrors_the_standalone_command():
    (polysync,) = get_cli_commands()
    discover, sweep = polysync.subcommands
    assert (polysync.name, discover.name, sweep.name) == ("polysync", "discover", "sweep")
    airflow_options = {command.name: sorted(arg.flags for arg in command.args) for command in discover.subcommands}
    assert airflow_options == {p.name: sorted((o.name,) for o in p.options) for p in PLATFORMS}
    sweep_options = {command.name: sorted(arg.flags for arg in command.args) for command in sweep.subcommands}
    assert sweep_options == {p.name: sorted((o.name,) for o in p.options) for p in SWEEP_PLATFORMS}

    airflow_parser = argparse.ArgumentParser()
    for arg in next(c for c in discover.subcommands if c.name == "aws-batch").args:
        arg.add_to_parser(airflow_parser)
    standalone = build_parser().parse_args(["discover", "aws-batch"])
    assert vars(airflow_parser.parse_args([])) == {
        name: value for name, value in vars(standalone).items() if name not in ("command", "platform", "handler")
    }


def test_sweep_options(monkeypatch):
    aws = build_parser().parse_args(["sweep", "aws-batch", "--job-queue", "q1", "--job-queue", "q2", "--dry-run"])
    assert (aws.conn_id, aws.job_queue, aws.dry_run) == ("aws_default", ["q1", "q2"], True)
    azure = build_parser().parse_args(["sweep", "azure-batch", "--api-url", "http://airflow:8080"])
    assert (azure.conn_id, azure.dry_run, azure.api_url) == ("azure_batch_default", False, "http://airflow:8080")


def test_defaults():
    aws = build_parser().parse_args(["discover", "aws-batch"])
    azure = build_parser().parse_args(["discover", "azure-batch", "--json"])
    assert (aws.conn_id, aws.region, aws.json, aws.dag_file) == ("aws_default", None, False, None)
    assert (azure.conn_id, azure.json) == ("azure_batch_default", True)


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            NoRegionError(),
            "no AWS region for connection 'aws_nightly': pass --region or set region_name in the connection's "
            "extra (or AWS_DEFAULT_REGION)",
        ),
        (
            AirflowNotFoundException("The conn_id `aws_nightly` isn't defined"),
            "connection 'aws_nightly' is not defined: add it (airflow connections add aws_nightly ...) or set "
            "AIRFLOW_CONN_AWS_NIGHTLY",
        ),
        (ValueError("a\n  b"), "ValueError: a b"),
        (RuntimeError(), "RuntimeError"),
    ],
    ids=["no-region", "no-connection", "multi-line", "no-message"],
)
def test_error_lines(error, line):
    assert describe_error(error, "aws_nightly") == line
