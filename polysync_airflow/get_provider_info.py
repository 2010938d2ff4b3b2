"""Provider metadata for Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from polysync_airflow.version import __version__

_LINK_TEMPLATE_FIELD = {
    "label": "Monitor link template",
    "description": "Optional URL of a job's console page. Placeholders: {region} and {job_id}.",
    "schema": {"type": ["string", "null"]},
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "polysync-airflow",
        "name": "Polysync",
        "description": "Run Polysync jobs on AWS Batch from Apache Airflow 3: deferrable operators, "
        "triggers, connection hooks and run links.",
        "version": __version__,
        "integrations": [
            {
                "integration-name": "Polysync AWS Batch",
                "external-doc-url": "https://docs.aws.amazon.com/batch/",
                "tags": ["aws"],
            },
        ],
        "operators": [
            {
                "integration-name": "Polysync AWS Batch",
                "python-modules": ["polysync_airflow.operators.aws_batch"],
            },
        ],
        "hooks": [
            {
                "integration-name": "Polysync AWS Batch",
                "python-modules": ["polysync_airflow.hooks.aws_batch"],
            },
        ],
        "triggers": [
            {
                "integration-name": "Polysync AWS Batch",
                "python-modules": ["polysync_airflow.triggers.aws_batch"],
            },
        ],
        "extra-links": ["polysync_airflow.links.aws_batch.AwsBatchJobLink"],
        "connection-types": [
            {
                "connection-type": "polysync_aws_batch",
                "hook-class-name": "polysync_airflow.hooks.aws_batch.AwsBatchHook",
                "hook-name": "Polysync AWS Batch",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "port"],
                    "relabeling": {"login": "AWS Access Key ID", "password": "AWS Secret Access Key"},
                    "placeholders": {
                        "login": "optional: leave empty to use the default credential chain",
                        "extra": '{"region_name": "eu-west-1", "default_job_queue": "my-queue"}',
                    },
                },
                "conn-fields": {
                    "default_job_queue": {
                        "label": "Default job queue",
                        "description": "Queue used when the operator sets no job_queue (name or ARN).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "monitor_link_template": _LINK_TEMPLATE_FIELD,
                    "region_name": {
                        "label": "Region",
                        "description": "AWS region of the Batch queues, e.g. eu-west-1.",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            },
        ],
    }
