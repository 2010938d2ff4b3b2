# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make demo   runs the example DAGs against the local endpoints and prints each task's result
#   make test   what CI runs: lint, types (mypy), the whole suite (real-Airflow e2e included) on the main lock,
#               the unit and dag.test suites on Airflow 3.1 and 3.2, the production topology's short scenarios
#               (PostgreSQL, Redis, Celery, two triggerers), and a clean install of the wheel
#   make e2e    runs only the end-to-end suite
#   make compat runs the unit and dag.test suites on Airflow 3.1 (Python 3.13) and 3.2 (Python 3.12)
#   make wheel  builds the wheel and sdist and installs the wheel, without any lock, into a clean venv
#   make bench  measures our triggers and operator against the official providers'
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
BOOT := $(VENV)/.installed
# pyenv's Pythons are not all on PATH (only its global one is); find them where pyenv keeps them.
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
find_python = $(firstword $(wildcard $(PYENV_ROOT)/versions/$(1).*/bin/python$(1)) $(shell command -v python$(1)))

.PHONY: demo test suite typecheck e2e compat compat-3.1 compat-3.2 wheel bench browser lint lock clean \
	topology topology-short topology-bench topology-services
export SE_OFFLINE := true

$(BOOT): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip sync --quiet --python $(VENV)/bin/python requirements.lock
	$(UV) pip install --quiet --python $(VENV)/bin/python --no-deps -e .
	touch $(BOOT)

demo: $(BOOT)
	$(VENV)/bin/python scripts/demo.py

lint: $(BOOT)
	$(VENV)/bin/ruff check polysync_airflow tests example_dags scripts benchmarks
	$(VENV)/bin/ruff format --check polysync_airflow tests example_dags scripts benchmarks

# Lint and types first (they fail fast), then the long suites two at a time (they mostly wait on local jobs and
# on Airflow's own pacing; four at once loaded 2 cores enough to flake timing-sensitive checks), then the wheel.
test: lint typecheck browser topology-services $(BOOT)
	$(MAKE) -j2 --output-sync=target suite topology-short
	$(MAKE) compat
	$(MAKE) wheel

# The whole suite on the main lock, with the package's line coverage printed at the end.
suite: $(BOOT) browser
	$(VENV)/bin/python -m pytest -q --cov=polysync_airflow --cov-report=term:skip-covered

typecheck: $(BOOT)
	$(VENV)/bin/mypy

e2e: $(BOOT) browser
	$(VENV)/bin/python -m pytest -q -m e2e tests/e2e

# Older Airflow minors, each from its own lock resolved as of that release (what its constraints file
# would give), with the package installed as a user installs it (not editable; pytest's append import
# mode keeps the checkout's copy from shadowing it).
.venv-airflow%/.installed: locks/airflow%.lock pyproject.toml $(BOOT)
	$(UV) venv --quiet --allow-existing --python $(call find_python,$(COMPAT_PY_$*)) .venv-airflow$*
	$(UV) pip sync --quiet --python .venv-airflow$*/bin/python locks/airflow$*.lock
	touch $@

COMPAT_PY_-3.1 := 3.13
COMPAT_PY_-3.2 := 3.12
# Everything but the 200-run fault-injection suite (trigger logic only; Airflow plays no part in it).
COMPAT_TESTS := tests/unit tests/integration --ignore=tests/integration/test_fault_injection.py

# The two minors side by side: their tests mostly wait on local jobs.
compat:
	$(MAKE) -j2 --output-sync=target compat-3.1 compat-3.2

# A static pattern rule: make looks no pattern rule up for a .PHONY target.
compat-3.1 compat-3.2: compat-%: .venv-airflow-%/.installed
	$(UV) pip install --quiet --python .venv-airflow-$*/bin/python --no-deps --reinstall-package polysync-airflow .
	.venv-airflow-$*/bin/pytest -q --import-mode=append $(COMPAT_TESTS)

# The wheel and sdist, and the wheel alone in a clean venv (no lock, no dev tools): it imports, registers
# with Airflow and answers its CLI; then the wheel's resolution beside each supported Airflow and Python.
wheel: $(BOOT)
	rm -rf dist .venv-wheel
	$(VENV)/bin/python -m build --quiet --outdir dist .
	$(UV) venv --quiet --python $(PYTHON) .venv-wheel
	$(UV) pip install --quiet --python .venv-wheel/bin/python dist/*.whl
	cd /tmp && $(CURDIR)/.venv-wheel/bin/python -c "import polysync_airflow, polysync_airflow.operators.aws_batch, polysync_airflow.operators.azure_batch; print('imported', polysync_airflow.__version__)"
	home=$$(mktemp -d) && cd /tmp && AIRFLOW_HOME=$$home $(CURDIR)/.venv-wheel/bin/airflow providers list \
		| grep polysync-airflow; status=$$?; rm -rf $$home; exit $$status
	cd /tmp && $(CURDIR)/.venv-wheel/bin/polysync-airflow --help > /dev/null
	UV=$(UV) scripts/resolution_matrix.sh

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

# Re-pin every dependency after changing pyproject.toml. The main lock is today's newest; each older
# Airflow's lock is resolved as of its release day (as its constraints file was), letting through only
# azure-batch 15.1 (released later; the package needs its API).
lock: $(BOOT)
	$(UV) pip compile --quiet pyproject.toml --group dev --python-version 3.11 -o requirements.lock
	$(UV) pip compile --quiet pyproject.toml locks/airflow-3.1.in --group test-tools --python-version 3.13 \
		--exclude-newer 2026-03-12T00:00:00Z --exclude-newer-package azure-batch=2026-05-02T00:00:00Z \
		-o locks/airflow-3.1.lock
	$(UV) pip compile --quiet pyproject.toml locks/airflow-3.2.in --group test-tools --python-version 3.12 \
		--exclude-newer 2026-05-30T00:00:00Z -o locks/airflow-3.2.lock

clean:
	rm -rf $(VENV) .venv-airflow-3.1 .venv-airflow-3.2 .venv-wheel dist .demo

# The production topology (tests/topology): a private PostgreSQL 15 cluster, Redis, CeleryExecutor with two
# workers, two triggerers, all on 127.0.0.1. `topology` runs the scenarios with 200 AWS + 100 Azure mapped
# tasks and writes docs/topology.json; `topology-short` (20 + 10, about 8 minutes) is the CI variant;
# `topology-bench` measures our operators against the official ones there (about 15 minutes).
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
