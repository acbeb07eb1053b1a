# verihook: the targets the README names.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCK := requirements/dev.lock
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)

.PHONY: venv lock run test check lint fuzz bench chaos demo clean
CHAOS_DELIVERIES ?= 3000
TEST_WORKERS ?= auto

## venv: .venv with exactly the versions of requirements/dev.lock (hash-checked), then verihook
## itself, editable. The ranges in pyproject.toml stay for people who embed verihook.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-*; touch $(STAMP)

venv: $(STAMP)

## run: start receiver + worker (+ scheduler) on BIND (default 127.0.0.1:8000; `make run
## BIND=127.0.0.1:8001` for another port), embedded SQLite and Redis
BIND ?= 127.0.0.1:8000
run: venv
	$(VENV)/bin/verihook up --bind $(BIND)

## test: the whole suite on SQLite and PostgreSQL with a real Redis (and promtool for the alert
## rules: .ci/install-promtool installs Debian's prometheus package when run as root; nginx for
## the slow-client tests: .ci/install-nginx, Debian's nginx package, likewise), shared
## out over TEST_WORKERS pytest-xdist workers (default: one per CPU; each has its own database
## and redis-server; TEST_WORKERS=0: one process). The process-stack modules (PROCESS_MODULES in
## tests/conftest.py) run on one worker, one at a time. About 4 minutes on 2 CPUs.
test: venv
	.ci/install-promtool || echo "promtool is not installed: the alert-rule tests skip"
	.ci/install-nginx || echo "nginx is not installed: the slow-client tests behind nginx skip"
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

## check: the fast loop, under a minute (about 45 s): ruff (lint and format), the import
## contracts (ARCHITECTURE.md), mypy --strict ([tool.mypy] in pyproject.toml; incremental,
## .mypy_cache), then the tests marked
## `unit` (pure core and unit tests: ordering, signatures, status parsers, settings, terminal
## escaping, deploy files; no PostgreSQL, Redis or child process). `make test` runs the unit
## tests too, and mypy (tests/test_types.py).
check: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -m unit $(PYTEST_ARGS)

## chaos: the chaos tests at full size (a short form of each is part of `make test`)
chaos: venv
	VERIHOOK_CHAOS_DELIVERIES=$(CHAOS_DELIVERIES) $(PY) -m pytest -s tests/test_chaos.py \
		tests/test_leader.py tests/test_process_chaos.py $(PYTEST_ARGS)

## fuzz: 10,000 generated requests per inbound endpoint and per API fuzz test (about 17 minutes
## inbound and 10 for the API, extrapolated from 1,000 per API test in 55 s; `make test` runs 60)
fuzz: venv
	VERIHOOK_FUZZ_EXAMPLES=10000 $(PY) -m pytest tests/test_fuzz.py tests/test_api_fuzz.py \
		-k sqlite --timeout=0 \
		--hypothesis-show-statistics $(PYTEST_ARGS)

## demo: the demo of reconciliation under chaos (a few hundred sessions, real processes)
demo: venv
	$(VENV)/bin/verihook demo

## bench: every benchmark (about 29 minutes on 2 CPUs; not part of `make test`); results in
## bench/results/. A backlog of a million events (about 18 minutes more):
##   $(PY) -m bench.drain_backlog --backend postgresql --backlog 1000000
bench: venv
	command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(PY) -m bench.ingest --backend postgresql --seconds 10 --repeat 3
	$(PY) -m bench.ingest --backend sqlite --seconds 10 --repeat 3
	$(PY) -m bench.ingest_tail --backend sqlite --rate-from bench/results/ingest_sqlite.json
	$(PY) -m bench.e2e --backend postgresql --rate-from bench/results/ingest_postgresql.json \
		--seconds 20 --json bench/results/e2e_postgresql_half.json
	$(PY) -m bench.profile_ingest --backend postgresql > bench/results/ingest_profile_postgresql.txt
	$(PY) -m bench.profile_ingest --backend sqlite > bench/results/ingest_profile_sqlite.txt
	$(PY) -m pip install -q py-spy
	$(PY) -m bench.spy_ingest --backend postgresql --server plain
	$(PY) -m bench.spy_ingest --backend postgresql --server shipped
	$(PY) -m bench.spy_ingest --backend sqlite --server shipped
	$(PY) -m bench.wal_per_delivery --deliveries 2000 --repeat 3 --what-if
	$(PY) -m bench.store_step --backend sqlite --what-if
	$(PY) -m bench.store_step --backend postgresql --what-if
	$(PY) -m bench.apply_throughput --backend postgresql --events 20000 --workers 2
	$(PY) -m bench.drain_backlog --backend postgresql --backlog 10000 100000 --explain
	$(PY) -m bench.drain_backlog --backend sqlite --backlog 10000 100000
	$(PY) -m bench.reconcile --backend postgresql --open 100000 --due 200
	$(PY) -m bench.import_memory
	$(PY) -m bench.cli_startup
	$(PY) -m bench.report

## lock: refresh the lock files from pyproject.toml (uv; keeps the pinned versions that still
## fit, `make lock UPGRADE=1` moves every pin to the newest release), then run `make test`
lock: venv
	$(PY) -m pip install -q uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes \
		$(if $(UPGRADE),--upgrade) -q -o requirements/dev.lock
	$(VENV)/bin/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes \
		$(if $(UPGRADE),--upgrade) -q -o requirements/prod.lock

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis .mypy_cache test-artifacts
