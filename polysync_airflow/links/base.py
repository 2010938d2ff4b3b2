"""Run links: the monitor URL, stored when the job is submitted so the UI shows it while it runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import TaskInstanceKey


class PolysyncRunLink(BaseOperatorLink):
    """Reads the finished URL from the link's own XCom key (``_link_<ClassName>``).

    The operator writes that key right after submitting; Airflow's ``finalize`` reads it back through
    :meth:`get_link` after each worker run, so the same row serves the UI during and after the run.
    """

    name: ClassVar[str]

    @classmethod
    def persist(cls, context: Context, url: str) -> None:
        context["ti"].xcom_push(key=cls().xcom_key, value=url)

    @classmethod
    def stored_url(cls, context: Context) -> str:
        return context["ti"].xcom_pull(key=cls().xcom_key) or ""

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(key=self.xcom_key, ti_key=ti_key) or ""
