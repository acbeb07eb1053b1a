# verihook: the targets the README names.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: venv run test check lint fuzz bench chaos demo clean
CHAOS_DELIVERIES ?= 3000
TEST_WORKERS ?= auto

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*; touch $(STAMP)

venv: $(STAMP)

## run: start receiver + worker (+ scheduler) on 127.0.0.1:8000, embedded SQLite and Redis
run: venv
	$(VENV)/bin/verihook up

## test: the whole suite on SQLite and PostgreSQL with a real Redis (and promtool for the alert
## rules: .ci/install-promtool installs Debian's prometheus package when run as root), shared
## out over TEST_WORKERS pytest-xdist workers (default: one per CPU; each has its own database
## and redis-server; TEST_WORKERS=0: one process). The process-stack modules (PROCESS_MODULES in
## tests/conftest.py) run on one worker, one at a time. About 4 minutes on 2 CPUs.
test: venv
	.ci/install-promtool || echo "promtool is not installed: the alert-rule tests skip"
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

## check: the fast loop, well under a minute: ruff, then the tests marked `unit` (pure core and
## unit tests: ordering, signatures, status parsers, settings, terminal escaping, deploy files;
## no PostgreSQL, Redis or child process), after the import contracts of docs/ARCHITECTURE.md.
## `make test` runs the unit tests too.
check: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -m unit $(PYTEST_ARGS)

## chaos: the chaos tests at full size (a short form of each is part of `make test`)
chaos: venv
	VERIHOOK_CHAOS_DELIVERIES=$(CHAOS_DELIVERIES) $(PY) -m pytest -s tests/test_chaos.py \
		tests/test_leader.py tests/test_process_chaos.py $(PYTEST_ARGS)

## fuzz: 10,000 generated requests per inbound endpoint (about 17 minutes; `make test` runs 60)
fuzz: venv
	VERIHOOK_FUZZ_EXAMPLES=10000 $(PY) -m pytest tests/test_fuzz.py -k sqlite --timeout=0 \
		--hypothesis-show-statistics $(PYTEST_ARGS)

## demo: the demo of reconciliation under chaos (a few hundred sessions, real processes)
demo: venv
	$(VENV)/bin/verihook demo

## bench: every benchmark (about 25 minutes on 2 CPUs; not part of `make test`); results in
## bench/results/. A backlog of a million events (about 30 minutes more):
##   $(PY) -m bench.drain_backlog --backend postgresql --backlog 1000000
bench: venv
	command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(PY) -m bench.ingest --backend postgresql --seconds 10 --repeat 3
	$(PY) -m bench.ingest --backend sqlite --seconds 10 --repeat 3
	$(PY) -m bench.e2e --backend postgresql --rate-from bench/results/ingest_postgresql.json \
		--seconds 20 --json bench/results/e2e_postgresql_half.json
	$(PY) -m bench.profile_ingest --backend postgresql > bench/results/ingest_profile_postgresql.txt
	$(PY) -m bench.profile_ingest --backend sqlite > bench/results/ingest_profile_sqlite.txt
	$(PY) -m bench.wal_per_delivery --deliveries 2000 --repeat 3 --what-if
	$(PY) -m bench.apply_throughput --backend postgresql --events 20000 --workers 2
	$(PY) -m bench.drain_backlog --backend postgresql --backlog 10000 100000 --explain
	$(PY) -m bench.drain_backlog --backend sqlite --backlog 10000 100000
	$(PY) -m bench.reconcile --backend postgresql --open 100000 --due 200
	$(PY) -m bench.import_memory
	$(PY) -m bench.cli_startup
	$(PY) -m bench.report

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis test-artifacts
