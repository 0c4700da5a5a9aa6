# fleetml: `make demo` runs the main job on embedded defaults, `make test` runs the tests.
# Both create .venv with the machine's python3 when it is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

export FLEETML_HOME ?= $(CURDIR)/.fleetml
export DAGSTER_HOME ?= $(FLEETML_HOME)/dagster_home
export GX_ANALYTICS_ENABLED := false
export RAY_AUTH_MODE := disabled
export PYTHONUNBUFFERED := 1

.PHONY: install demo test dev stack fuzz benchmarks clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: deploy/local/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deploy/local/dagster.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m pipelines.demo

test: install
	$(BIN)/python -m pytest

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The fuzz tests of every parser of untrusted input, 100x longer than in `make test` and freshly random
# (minutes); hypothesis prints the inputs run per test and any failing example it found.
fuzz: install
	FLEETML_FUZZ_SCALE=$${FLEETML_FUZZ_SCALE:-100} $(BIN)/python -m pytest -m fuzz -p no:cacheprovider --hypothesis-show-statistics -q

# The production-like stack on 127.0.0.1 (S3, PostgreSQL, Ray head, Spark standalone) until Ctrl-C.
stack: install
	$(BIN)/python -m stack

benchmarks: install
	$(BIN)/python benchmarks/load_time.py
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/edge_latency.py
	$(BIN)/python benchmarks/sensor_tick.py
	$(BIN)/python benchmarks/stores.py
	$(BIN)/python benchmarks/ingest_scale.py

clean:
	rm -rf .fleetml .pytest_cache
