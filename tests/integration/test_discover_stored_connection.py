"""`polysync-airflow discover` with a connection stored only in Airflow's metadata database."""

from __future__ import annotations

import json
import os

from polysync_airflow.cli import main
from polysync_airflow.testing.connections import aws_connection


def test_discover_finds_a_connection_stored_in_the_metadata_database(airflow_db, local_aws_batch, capsys):
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    stored = aws_connection(local_aws_batch)
    conn_id, variable = "polysync_db_only", "AIRFLOW_CONN_POLYSYNC_DB_ONLY"
    assert variable not in os.environ  # only the database knows it
    with create_session() as session:
        session.add(
            Connection(
                conn_id=conn_id,
                conn_type=stored["conn_type"],
                login=stored["login"],
                password=stored["password"],
                extra=json.dumps(stored["extra"]),
            )
        )
    try:
        assert main(["discover", "aws-batch", "--conn-id", conn_id, "--json"]) == 0
        names = {item["name"] for item in json.loads(capsys.readouterr().out)}
        assert "polysync-job" in names
        assert local_aws_batch.requests.count("describejobdefinitions") >= 1  # asked the local endpoint
    finally:
        os.environ.pop(variable, None)
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id == conn_id).delete()
