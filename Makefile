# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make demo   runs the example DAGs against the local endpoints and prints each task's result
#   make test   runs the linter and the whole test suite (the real-Airflow end-to-end suite included)
#   make e2e    runs only the end-to-end suite
#   make bench  measures our triggers and operator against the official providers'
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
UV_VERSION := 0.13.9
BOOT := $(VENV)/.installed

.PHONY: demo test e2e bench browser lint lock clean topology topology-short topology-bench topology-services
export SE_OFFLINE := true

$(BOOT): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip sync --quiet --python $(VENV)/bin/python requirements.lock
	$(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python --no-deps -e .
	touch $(BOOT)

demo: $(BOOT)
	$(VENV)/bin/python scripts/demo.py

lint: $(BOOT)
	$(VENV)/bin/ruff check polysync_airflow tests example_dags scripts benchmarks
	$(VENV)/bin/ruff format --check polysync_airflow tests example_dags scripts benchmarks

test: lint browser
	$(VENV)/bin/python -m pytest -q

e2e: $(BOOT) browser
	$(VENV)/bin/python -m pytest -q -m e2e tests/e2e

# Our triggers against the official ones (about 10 minutes; writes docs/img/performance.png), and submit-to-defer.
bench: $(BOOT)
	$(VENV)/bin/python benchmarks/trigger_polling.py
	$(VENV)/bin/python benchmarks/submit_to_defer.py

# Debian's Chromium and its driver for the UI check (no browser download by a test tool).
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; \
	fi

# Re-pin every dependency after changing pyproject.toml.
lock: $(BOOT)
	$(VENV)/bin/uv pip compile --quiet pyproject.toml --extra test --extra bench --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .demo

# The production topology (tests/topology): a private PostgreSQL 15 cluster, Redis, CeleryExecutor with two
# workers, two triggerers, all on 127.0.0.1. `topology` runs the scenarios with 200 AWS + 100 Azure mapped
# tasks and writes docs/topology.json; `topology-short` (20 + 10, about 9 minutes) is the CI variant;
# `topology-bench` measures our operators against the official ones there (about 25 minutes).
topology: $(BOOT) topology-services
	POLYSYNC_TOPOLOGY=long $(VENV)/bin/python -m pytest -q -rxX tests/topology

topology-short: $(BOOT) topology-services
	POLYSYNC_TOPOLOGY=short $(VENV)/bin/python -m pytest -q -rxX tests/topology

topology-bench: $(BOOT) topology-services
	$(VENV)/bin/python benchmarks/topology_bench.py

# Debian's PostgreSQL 15 (only its programs are used: the harness runs a cluster of its own) and redis-server.
topology-services:
	@if [ ! -x /usr/lib/postgresql/15/bin/initdb ] || ! command -v redis-server >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q postgresql-15 redis-server; \
	fi
