"""Local endpoints for testing Polysync DAGs offline (installed with the ``test`` extra).

``LocalAwsBatch`` speaks the AWS Batch REST-JSON protocol on 127.0.0.1 and really runs each job's
command in a local process; ``LocalAzureBatch`` speaks the Azure Batch REST API (SharedKey-checked) and
runs each task's command line. ``FaultProxy`` sits in front of either and, with a fixed seed, answers a
share of the requests with throttling, 5xx, connection resets or delays. Use them as context managers,
or through the pytest fixtures this package registers (``local_aws_batch``, ``polysync_connect_aws``,
``polysync_aws_conn``, the Azure ones alike, and the opt-in ``polysync_airflow_home`` /
``polysync_airflow_db``: see :mod:`polysync_airflow.testing.pytest_plugin`).

Layout of the emulators (as moto keeps models apart from responses), the same for both platforms:

- ``aws_batch.py`` / ``azure_batch.py``: the protocol and the endpoint class (routing, request parsing,
  answer bodies, paging, errors on the wire; Azure's SharedKey check); ``aws_logs.py``: CloudWatch Logs.
- ``*_batch_model.py``: the state and the operations, with the platform's rules and error messages.
- ``*_batch_lifecycle.py``: how a job (AWS) or task (Azure) runs: states, pace, processes, ending early.
- ``*_batch_resources.py``: the records (job, queue, definition; job, task) and how the platform shows them.
- shared: ``_emulator.py`` (model and endpoint bases: runner, lock, pace, waiting, stopping), ``_http.py``
  (loopback server, request log, injected faults), ``runner.py`` (local processes and their output).
"""

from polysync_airflow.testing.aws_batch import LocalAwsBatch
from polysync_airflow.testing.azure_batch import LocalAzureBatch
from polysync_airflow.testing.fault_proxy import FaultProxy
from polysync_airflow.testing.runner import LocalJobRunner

__all__ = ["FaultProxy", "LocalAwsBatch", "LocalAzureBatch", "LocalJobRunner"]
