#!/usr/bin/env bash
# The test command (README, `make test`, .ci/run): lint, types, then the suite. Offline.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 LITELLM_LOCAL_MODEL_COST_MAP=True
export AIAPP_HOME="${AIAPP_HOME:-$(mktemp -d)}"
echo "== ruff"; $BIN/ruff check src tests benchmarks; $BIN/ruff format --check src tests benchmarks
echo "== mypy (strict, src/)"; $BIN/mypy
echo "== layers (import-linter contracts in pyproject.toml)"; $BIN/lint-imports --no-cache
echo "== prompts (files, labels, templates)"; $BIN/aiapp prompts check
echo "== pytest"; $BIN/python -m pytest "$@"
