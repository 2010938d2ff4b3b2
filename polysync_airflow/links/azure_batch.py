"""The Azure Batch run links, and how their URLs are built: from the connection's template, else the Azure portal's
page. A template that cannot be filled in falls back to the portal's page, with a warning; a link that needs
``subscription_id`` and ``resource_group`` where the connection has none is "" (no link), with a warning."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from polysync_airflow.links.base import PolysyncRunLink

if TYPE_CHECKING:
    from polysync_airflow.hooks.azure_batch import AzureBatchHook

DEFAULT_MONITOR_LINK_TEMPLATE = (
    "https://portal.azure.com/#resource/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
    "/providers/Microsoft.Batch/batchAccounts/{account}/jobs/{job_id}"
)
TASK_LINK_SUFFIX = "/tasks/{task_id}"


class AzureBatchJobLink(PolysyncRunLink):
    """The Azure portal page of the job created for the run."""

    name = "Azure Batch Job"

    @staticmethod
    def url(hook: AzureBatchHook, job_id: str) -> str:
        """The portal page of a job: the connection's ``monitor_link_template``, else the portal's."""
        template = hook.setting("monitor_link_template") or DEFAULT_MONITOR_LINK_TEMPLATE
        default = DEFAULT_MONITOR_LINK_TEMPLATE
        return _portal_url(hook, template, default, "monitor_link_template", f"job {job_id}", job_id=job_id)


class AzureBatchTaskLink(PolysyncRunLink):
    """The Azure portal page of the run's task (its state, exit code and files)."""

    name = "Azure Batch Task"

    @staticmethod
    def url(hook: AzureBatchHook, run_id: str) -> str:
        """The portal page of a run's task (``run_id`` = ``{jobId}/{taskId}``).

        ``task_link_template`` in the extra when set; otherwise the job link's template (``monitor_link_template``
        or the portal default) followed by ``/tasks/{task_id}``, which needs that template to end with
        ``{job_id}`` (the portal's form: ``.../batchAccounts/{account}/jobs/{job_id}/tasks/{task_id}``).
        """
        job_id, _, task_id = run_id.partition("/")
        template, setting = hook.setting("task_link_template"), "task_link_template"
        if not template:
            job_template = hook.setting("monitor_link_template") or DEFAULT_MONITOR_LINK_TEMPLATE
            if not job_template.endswith("{job_id}"):
                hook.log.warning(
                    "No Azure portal link for task %s: monitor_link_template of connection %s does not end with "
                    "{job_id}, so the task page cannot be derived from it; set 'task_link_template' in the extra.",
                    run_id,
                    hook.azure_batch_conn_id,
                )
                return ""
            template, setting = job_template + TASK_LINK_SUFFIX, "monitor_link_template"
        default = DEFAULT_MONITOR_LINK_TEMPLATE + TASK_LINK_SUFFIX
        return _portal_url(hook, template, default, setting, f"task {run_id}", job_id=job_id, task_id=task_id)


def _portal_url(hook: AzureBatchHook, template: str, default: str, setting: str, what: str, **ids: str) -> str:
    values = {
        "subscription_id": hook.setting("subscription_id"),
        "resource_group": hook.setting("resource_group"),
        "account": hook.account_name,
        **{name: quote(value, safe="") for name, value in ids.items()},
    }
    try:
        return _filled(hook, template, values, what)
    except (KeyError, IndexError, ValueError) as err:
        hook.log.warning(
            "%s %r in connection %s is not usable (%s); it may use %s. Using the Azure portal link instead.",
            setting,
            template,
            hook.azure_batch_conn_id,
            err,
            ", ".join(f"{{{name}}}" for name in values),
        )
    return _filled(hook, default, values, what)


def _filled(hook: AzureBatchHook, template: str, values: dict[str, str | None], what: str) -> str:
    """The template filled in, or "" (with a warning) where it needs a setting the connection does not have."""
    missing = [name for name in ("subscription_id", "resource_group") if f"{{{name}}}" in template and not values[name]]
    if missing:
        hook.log.warning(
            "No Azure portal link for %s: set %s in the extra of connection %s.",
            what,
            " and ".join(repr(name) for name in missing),
            hook.azure_batch_conn_id,
        )
        return ""
    return template.format(**values)
