#!/usr/bin/env bash
# Install Arize Phoenix (a real OpenTelemetry backend, SQLite by default) into its OWN virtualenv,
# .venv-phoenix/ beside .venv/, so its many dependencies never meet aiapp's. The export tests
# (tests/tracing/test_phoenix_export.py) start `.venv-phoenix/bin/phoenix serve` on 127.0.0.1 and
# skip, saying why, when it is missing. Non-interactive and quiet; a no-op when already installed.
# Override the interpreter with PHOENIX_PYTHON=..., the version with PHOENIX_VERSION=...
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="${PHOENIX_VERSION:-20.26.1}"
VENV=".venv-phoenix"
PY="${PHOENIX_PYTHON:-python3}"

if [ -x "$VENV/bin/phoenix" ] && "$VENV/bin/python" -c "import phoenix, sys; sys.exit(0 if phoenix.__version__ == '$VERSION' else 1)" 2>/dev/null; then
  exit 0
fi
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "phoenix.sh: $PY not found; the Phoenix export tests will be skipped" >&2
  exit 0
fi
echo "phoenix.sh: installing arize-phoenix==$VERSION into $VENV"
# (grep drops pip's notes about local index folders that do not exist on this machine)
if ! { "$PY" -m venv "$VENV" && "$VENV/bin/pip" install -q --disable-pip-version-check "arize-phoenix==$VERSION" \
    2> >(grep -v "^WARNING: Location '" >&2); }; then
  echo "phoenix.sh: could not install arize-phoenix; the Phoenix export tests will be skipped" >&2
  exit 0
fi
