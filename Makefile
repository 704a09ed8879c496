# The two commands a newcomer needs: `make demo` (install everything, run the pipeline on sample data) and
# `make test`. Everything else is a convenience around ./spark-submit.sh and .venv.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CONF ?= conf/local.yaml

.PHONY: help setup demo redis test lint bench serve docs clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

setup: ## install venv, packages, Delta jars, redis-server and OpenBLAS (idempotent)
	@./scripts/setup.sh

demo: setup redis ## generate the sample, run the pipeline (ingest, als, content, blend, load into redis.url)
	./spark-submit.sh generate --conf-file $(CONF)
	./spark-submit.sh pipeline --conf-file $(CONF) --full
	./spark-submit.sh summary --conf-file $(CONF)
	@echo; echo "Next: make serve, then curl -s localhost:8000/v1/users/U0000001/recommendations | head -c 600"

redis: setup ## start the local redis-server (conf/redis.conf, data in data/redis) unless one is running
	@./scripts/redis.sh start

test: setup ## run the test suite (starts its own Redis on a loopback port)
	$(PY) -m pytest -q

lint: setup ## ruff and mypy (jobs, tests and bench for run-time errors only: pyproject.toml)
	$(VENV)/bin/ruff check recsys serving jobs tests bench
	$(VENV)/bin/mypy recsys serving jobs tests bench

bench: setup ## run the benchmarks under bench/ (minutes; prints figures)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

serve: setup redis ## run the API under gunicorn (the create_app factory, settings from serving.gunicorn_conf)
	RECSYS_CONF_FILE=$(CONF) $(VENV)/bin/gunicorn -c python:serving.gunicorn_conf --access-logfile - 'serving:create_app()'

docs: setup ## render the diagrams and regenerate docs/configuration.md and docs/api.md
	$(PY) scripts/render_diagrams.py
	$(PY) scripts/gen_config_docs.py
	$(PY) scripts/gen_api_docs.py

clean: ## remove generated data and build output (keeps .venv and .jars)
	rm -rf data build dist spark-warehouse
