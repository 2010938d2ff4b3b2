"""Provider metadata for Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from polysync_airflow.version import __version__


def _text_field(label: str, description: str) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {"type": ["string", "null"]}}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "polysync-airflow",
        "name": "Polysync",
        "description": "Run Polysync jobs on AWS Batch and Azure Batch from Apache Airflow 3: deferrable operators, "
        "triggers, connection hooks and run links.",
        "version": __version__,
        "integrations": [
            {
                "integration-name": "Polysync AWS Batch",
                "external-doc-url": "https://docs.aws.amazon.com/batch/",
                "tags": ["aws"],
            },
            {
                "integration-name": "Polysync Azure Batch",
                "external-doc-url": "https://learn.microsoft.com/azure/batch/",
                "tags": ["azure"],
            },
            {
                "integration-name": "Polysync orphan sweep",
                "external-doc-url": "https://docs.aws.amazon.com/batch/latest/APIReference/API_TerminateJob.html",
                "tags": ["aws", "azure"],
            },
        ],
        "operators": [
            {
                "integration-name": "Polysync AWS Batch",
                "python-modules": ["polysync_airflow.operators.aws_batch"],
            },
            {
                "integration-name": "Polysync Azure Batch",
                "python-modules": ["polysync_airflow.operators.azure_batch"],
            },
            {
                "integration-name": "Polysync orphan sweep",
                "python-modules": ["polysync_airflow.operators.sweep"],
            },
        ],
        "hooks": [
            {
                "integration-name": "Polysync AWS Batch",
                "python-modules": ["polysync_airflow.hooks.aws_batch"],
            },
            {
                "integration-name": "Polysync Azure Batch",
                "python-modules": ["polysync_airflow.hooks.azure_batch"],
            },
        ],
        "triggers": [
            {
                "integration-name": "Polysync AWS Batch",
                "python-modules": ["polysync_airflow.triggers.aws_batch"],
            },
            {
                "integration-name": "Polysync Azure Batch",
                "python-modules": ["polysync_airflow.triggers.azure_batch"],
            },
        ],
        "extra-links": [
            "polysync_airflow.links.aws_batch.AwsBatchJobLink",
            "polysync_airflow.links.aws_batch.AwsBatchJobLogsLink",
            "polysync_airflow.links.azure_batch.AzureBatchJobLink",
            "polysync_airflow.links.azure_batch.AzureBatchTaskLink",
        ],
        # `airflow polysync discover` (Airflow 3.2+; Airflow 3.1 ignores this key: use `polysync-airflow discover`)
        "cli": ["polysync_airflow.cli.get_cli_commands"],
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
                    "default_job_queue": _text_field(
                        "Default job queue", "Queue used when the operator sets no job_queue (name or ARN)."
                    ),
                    "monitor_link_template": _text_field(
                        "Monitor link template",
                        "Optional URL of a job's console page; placeholders {region}, {job_id}.",
                    ),
                    "logs_link_template": _text_field(
                        "Logs link template",
                        "Optional URL of a job's log stream page; placeholders {region}, {log_group}, {log_stream}.",
                    ),
                    "region_name": _text_field("Region", "AWS region of the Batch queues, e.g. eu-west-1."),
                },
            },
            {
                "connection-type": "polysync_azure_batch",
                "hook-class-name": "polysync_airflow.hooks.azure_batch.AzureBatchHook",
                "hook-name": "Polysync Azure Batch",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "port"],
                    "relabeling": {"login": "Batch Account Name", "password": "Batch Account Access Key"},
                    "placeholders": {
                        "password": "leave empty to use Microsoft Entra ID (managed or workload identity)",
                    },
                },
                "conn-fields": {
                    "account_url": _text_field("Batch Account URL", "e.g. https://<account>.<region>.batch.azure.com"),
                    "subscription_id": _text_field("Subscription ID", "For the Azure portal links of jobs and tasks."),
                    "resource_group": _text_field("Resource group", "For the Azure portal links of jobs and tasks."),
                    "monitor_link_template": _text_field(
                        "Monitor link template",
                        "Optional URL of a job's page; placeholders {subscription_id}, {resource_group}, "
                        "{account}, {job_id}.",
                    ),
                    "task_link_template": _text_field(
                        "Task link template",
                        "Optional URL of a task's page; placeholders as above and {task_id}. Default: the job link "
                        "followed by /tasks/{task_id}.",
                    ),
                    "managed_identity_client_id": _text_field(
                        "Managed Identity Client ID", "Entra ID: the user-assigned managed identity to use."
                    ),
                    "workload_identity_tenant_id": _text_field(
                        "Workload Identity Tenant ID", "Entra ID: the tenant of the workload identity."
                    ),
                },
            },
        ],
    }
