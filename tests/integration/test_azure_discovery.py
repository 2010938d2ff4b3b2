"""Discovery: the Batch jobs usable as templates across pages, and the `polysync-airflow discover azure-batch`
command."""

from __future__ import annotations

import json

from polysync_airflow.hooks.azure_batch import AzureBatchHook
from polysync_airflow.testing.dags import load_dag


def test_discovery_follows_every_page(local_azure_batch, polysync_azure_conn, capsys, tmp_path):
    from polysync_airflow.cli import main

    for i in range(12):
        local_azure_batch.add_job(
            {"id": f"template-{i:02d}", "displayName": f"Template {i}", "poolInfo": {"poolId": "polysync-pool"}}
        )
    local_azure_batch.page_size = 5
    templates = AzureBatchHook(polysync_azure_conn).list_job_templates()
    assert len(templates) == 15
    assert (
        templates[3].id == "template-00"
        and templates[3].display_name == "Template 0"
        and templates[3].state == "active"
    )
    pages = [r for r in local_azure_batch.requests if r == "GET /jobs"]
    assert len(pages) == 3

    capsys.readouterr()  # what the hook logged above (Airflow 3.1 warns on stdout about the conn type)
    assert main(["discover", "azure-batch", "--conn-id", polysync_azure_conn, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {"id": "template-11", "display_name": "Template 11", "state": "active"} in printed

    dag_file = tmp_path / "azure_templates.py"
    assert main(["discover", "azure-batch", "--conn-id", polysync_azure_conn, "--dag-file", str(dag_file)]) == 0
    tasks = load_dag(dag_file, "azure_templates").tasks
    assert len(tasks) == 15 and {t.template_job_id for t in tasks} >= {"polysync-template", "template-05"}
