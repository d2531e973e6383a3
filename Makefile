# Two entry points for a newcomer: `make demo` and `make test`. Each builds .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,litellm,retrieval,redis,server,guardrails,multilingual,ragas,notebooks,ui-test,otel,langfuse
export AIAPP_HOME ?= $(CURDIR)/.aiapp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: setup services demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU torch first: any other torch spec pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

setup: $(BIN)/.installed

# What the tests use beside .venv, each installed only when missing and skipped (saying why) when it
# cannot be: redis-server and chromium (Debian packages), Arize Phoenix in its own .venv-phoenix/.
services:
	bash scripts/services.sh
	bash scripts/phoenix.sh

demo: setup
	bash scripts/demo.sh

test: setup services
	bash scripts/test.sh

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: setup
	for b in benchmarks/*.py; do $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .aiapp .pytest_cache .mypy_cache .ruff_cache
