#!/usr/bin/env bash
# Install the Debian packages the test suite uses when they are missing (`make services`, `make test`,
# `.ci/run`): redis-server (tests start it themselves on a free port, with no persistence) and
# chromium (the browser tests of `aiapp ui` point Playwright at /usr/bin/chromium, since Playwright's
# own browser download cannot reach its host here). Non-interactive and quiet; a no-op when both are
# there; tests that need a missing one are skipped, saying why. apt runs under the project's install
# lock, since other jobs may install at the same time.
set -euo pipefail

LOCK=${AIAPP_INSTALL_LOCK:-/tmp/aiapp-pip.lock}
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
{ command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; } || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "services.sh: ${missing[*]} missing and apt-get is not available; the tests that need them will be skipped" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
  else
    echo "services.sh: ${missing[*]} missing and we are not root; the tests that need them will be skipped" >&2
    exit 0
  fi
fi
locked() {
  if command -v flock >/dev/null 2>&1; then flock "$LOCK" "$@"; else "$@"; fi
}
echo "services.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { locked $SUDO apt-get update -qq && locked $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
  echo "services.sh: could not install ${missing[*]}; the tests that need them will be skipped" >&2
fi
