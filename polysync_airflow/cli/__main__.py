"""``python -m polysync_airflow.cli``: the same as the ``polysync-airflow`` command."""

import sys

from polysync_airflow.cli import main

sys.exit(main())
