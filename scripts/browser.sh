#!/usr/bin/env bash
# Install what the browser tests (tests/ui) need when it is missing: Debian's `chromium` package
# (Playwright's own browser download cannot reach its host here; the tests point Playwright at
# /usr/bin/chromium). Non-interactive; a no-op when chromium is already installed. Installs are
# serialized with the project's pip lock, since other jobs may install at the same time.
set -euo pipefail

LOCK=${AIAPP_INSTALL_LOCK:-/tmp/aiapp-pip.lock}
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "browser.sh: chromium is missing and apt-get is not available; browser tests will be skipped" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
  else
    echo "browser.sh: chromium is missing and we are not root; browser tests will be skipped" >&2
    exit 0
  fi
fi
run_locked() {
  if command -v flock >/dev/null 2>&1; then flock "$LOCK" "$@"; else "$@"; fi
}
echo "browser.sh: installing chromium"
export DEBIAN_FRONTEND=noninteractive
if ! { run_locked $SUDO apt-get update -qq && run_locked $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
  echo "browser.sh: could not install chromium; browser tests will be skipped" >&2
fi
