"""Run links: the monitor URL, stored when the job is submitted so the UI shows it while it runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import TaskInstanceKey

URLS_OF_THIS_RUN = "_polysync_link_urls"
"""The operator attribute holding ``{xcom_key: url}`` for the links whose stored value this worker run knows."""


class PolysyncRunLink(BaseOperatorLink):
    """Reads the finished URL from the link's own XCom key (``_link_<ClassName>``).

    The operator writes that key right after submitting; Airflow's ``finalize`` reads it back through
    :meth:`get_link` after each worker run, so the same row serves the UI during and after the run.

    Airflow's XCom lookup logs an ERROR ("XCom not found") for a key never written, and ``finalize`` looks up
    every link, also one a run has no URL for (yet). So the operator remembers what it stored or read in
    this worker run (:meth:`start_try`, :meth:`persist`, :meth:`stored_url`), and :meth:`get_link` asks the
    XCom store only for a link it does not know: one written by an earlier run of the same try, before it
    deferred, which ``finalize`` of that run always wrote (possibly empty).
    """

    name: ClassVar[str]

    @staticmethod
    def start_try(context: Context) -> None:
        """A try starts with none of the task's links stored: Airflow clears its XComs when a try starts."""
        task = context.get("task")
        if task is not None:
            links = [link for link in task.operator_extra_links if isinstance(link, PolysyncRunLink)]
            setattr(task, URLS_OF_THIS_RUN, {link.xcom_key: "" for link in links})

    @classmethod
    def persist(cls, context: Context, url: str) -> None:
        key = cls().xcom_key
        context["ti"].xcom_push(key=key, value=url)
        _remember(context, key, url)

    @classmethod
    def stored_url(cls, context: Context) -> str:
        key = cls().xcom_key
        ti = context["ti"]
        # This task instance's own value: without map_indexes, Airflow 3.3 pulls the key of every map index
        # of a mapped task (a list, which finalize would store back as this link: it grows with every run).
        url = ti.xcom_pull(key=key, task_ids=ti.task_id, map_indexes=ti.map_index) or ""
        _remember(context, key, url)
        return url

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        known = getattr(operator, URLS_OF_THIS_RUN, None) or {}
        if self.xcom_key in known:
            return known[self.xcom_key]
        return XCom.get_value(key=self.xcom_key, ti_key=ti_key) or ""


def _remember(context: Context, key: str, url: str) -> None:
    task = context.get("task")
    if task is not None:
        # A new dict, never an update in place: copies of an operator made for execution share attributes.
        setattr(task, URLS_OF_THIS_RUN, {**(getattr(task, URLS_OF_THIS_RUN, None) or {}), key: url})
