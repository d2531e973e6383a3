#!/usr/bin/env bash
# Install the local services the test suite uses when they are missing (CI, `.ci/run`).
# Today: redis-server (Debian package; tests start it themselves on a free port, with no persistence).
# Non-interactive and quiet; a no-op when everything is already installed.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "services.sh: redis-server is missing and apt-get is not available; Redis tests will be skipped" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
  else
    echo "services.sh: redis-server is missing and we are not root; Redis tests will be skipped" >&2
    exit 0
  fi
fi
echo "services.sh: installing redis-server"
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }; then
  echo "services.sh: could not install redis-server; Redis tests will be skipped" >&2
fi
