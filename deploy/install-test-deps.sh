#!/usr/bin/env bash
# Installs what the test suite needs and a fresh machine may lack (Debian packages):
# redis-server and redis-cli, and chromium and chromedriver (/usr/bin/chromium,
# /usr/bin/chromedriver) for the browser tests of the portal (ringpush-harness's `browser`),
# iproute2, iptables and curl for the three-region test (deploy/local/three-regions.sh), and
# faketime (libfaketime) for the chaos suite's connector whose clock is off (cli/tests/chaos.rs).
# Safe to run again: it installs only what is missing.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing ${missing[*]} (needed by the tests)" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "error: ${missing[*]} missing and not running as root; install them with apt-get" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
# The package starts a system redis on 6379; the tests start their own on free ports.
$sudo systemctl disable --now redis-server >/dev/null 2>&1 || true
