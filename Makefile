# The front door. `make demo` and `make test` are the two commands a fresh machine needs.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
# Local state (Dagster's instance and the embedded store) in .dagster_home: the product's own
# default too (store/database.py), so a plain shell in the checkout reads the same store.
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: demo test ui lint validate check format bench bench-device-history services browser install dagster-home clean

## demo: install, start a seeded Golioth emulator, sync it through Dagster on SQLite, print figures
demo: install dagster-home
	$(BIN)/sync-pipelines demo

## test: install, make sure PostgreSQL is up, run the whole suite (SQLite and Postgres)
test: install services
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider

## ui: the Dagster UI and daemon over this repo's workspace (http://127.0.0.1:3000), with every
## provider's local peer running and registered (organization `local`, UI_DEVICES devices each);
## the peers stop when dagster dev does
UI_DEVICES ?= 50
UI_PEERS_ENV := $(or $(SYNC_HOME),$(DAGSTER_HOME))/local-peers.env
ui: install dagster-home
	@rm -f '$(UI_PEERS_ENV)'; \
	$(BIN)/sync-pipelines peers up --devices $(UI_DEVICES) --env-file '$(UI_PEERS_ENV)' & peers=$$!; \
	trap 'kill -TERM $$peers 2>/dev/null; wait $$peers' EXIT; trap 'exit 130' INT TERM; \
	i=0; until test -f '$(UI_PEERS_ENV)'; do \
		kill -0 $$peers 2>/dev/null || { echo "local peers failed to start" >&2; exit 1; }; \
		i=$$((i + 1)); test $$i -le 120 || { echo "local peers not up after 120 s" >&2; exit 1; }; \
		sleep 1; done; \
	set -a; . '$(UI_PEERS_ENV)'; set +a; \
	SYNC_LOG_IN_RUNS=dagster $(BIN)/dagster dev -w workspace.yaml

## bench: our inventory sync vs dlt's rest_api source (10k, 100k devices), ours alone at 1M,
## observability on/off at 100k and the per-run fixed cost (bench/dlt_comparison.py,
## bench/sync_overhead.py). Quick: make bench BENCH_QUICK=1, or set the BENCH_* sizes.
ifdef BENCH_QUICK
BENCH_SIZES ?= 2000 10000
BENCH_SOLO_SIZES ?= 50000
BENCH_REPEAT ?= 1
BENCH_OBS_SIZE ?= 10000
endif
BENCH_SIZES ?= 10000 100000
BENCH_SOLO_SIZES ?= 1000000
BENCH_REPEAT ?= 3
BENCH_OBS_SIZE ?= 100000
BENCH_TIMEOUT_S ?= 900
bench: install services
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,bench]' -e ./peers
	$(BIN)/python bench/dlt_comparison.py --sizes $(BENCH_SIZES) --solo-sizes $(BENCH_SOLO_SIZES) \
		--repeat $(BENCH_REPEAT) --timeout-s $(BENCH_TIMEOUT_S)
	$(BIN)/python bench/sync_overhead.py --size $(BENCH_OBS_SIZE) --repeat $(BENCH_REPEAT)

## bench-device-history: the devices' history (device_changes) — a 100k-device re-sync with 10 %
## changed, history on vs off (the sync, and the write path alone), and the device page's reads
## at 10M history rows (bench/device_history.py; private Postgres servers, a few minutes each)
bench-device-history: install
	$(BIN)/python bench/device_history.py write --devices 100000 --repeat 5
	$(BIN)/python bench/device_history.py resync --devices 100000 --repeat 3
	$(BIN)/python bench/device_history.py page --rows 10000000 --requests 50

## lint: ruff's lint rules and formatting, checked (`make format` fixes what it can)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## validate: Dagster loads the code location and validates every definition (a throwaway instance)
validate: install
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && touch "$$tmp/dagster.yaml" && \
		DAGSTER_HOME="$$tmp" $(BIN)/dagster definitions validate -w workspace.yaml

## check: what CI runs — lint, validate, then the whole suite
check: lint validate test

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml peers/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]' -e ./peers
	touch $@

dagster-home:
	mkdir -p $(DAGSTER_HOME)
	ln -sf $(CURDIR)/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

## services: start the local PostgreSQL, Mosquitto and RabbitMQ the tests use, if they are down;
## install chromium for the browser tests if it is missing
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; echo "PostgreSQL did not start" >&2; exit 1
	@$(BIN)/python -c "import socket; socket.create_connection(('127.0.0.1', 1883), 2)" 2>/dev/null \
		|| mosquitto -d -c /etc/mosquitto/mosquitto.conf
	@for i in $$(seq 1 30); do $(BIN)/python -c "import socket; socket.create_connection(('127.0.0.1', 1883), 2)" 2>/dev/null && exit 0; sleep 1; done; echo "Mosquitto did not start" >&2; exit 1
	@$(BIN)/python -c "import socket; socket.create_connection(('127.0.0.1', 5672), 2)" 2>/dev/null \
		|| rabbitmq-server -detached
	@for i in $$(seq 1 60); do $(BIN)/python -c "import socket; socket.create_connection(('127.0.0.1', 5672), 2)" 2>/dev/null && exit 0; sleep 1; done; echo "RabbitMQ did not start" >&2; exit 1
	@command -v chromium >/dev/null || $(MAKE) --no-print-directory browser

## browser: Debian's chromium for the browser tests (Playwright drives it; its own download can't work here)
browser:
	command -v chromium >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
		|| { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; }

clean:
	rm -rf $(VENV) $(DAGSTER_HOME) .pytest_cache
