#!/usr/bin/env bash
# System packages the test suite needs and pip cannot provide: PostgreSQL's server (the
# ecom_ingest postgres store runs against a private throwaway cluster) and Debian's
# Chromium (the dashboard is tested in a real headless browser; no browser download).
# Idempotent: installs only what is missing. Needs root or sudo.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv)

if [ ${#need[@]} -eq 0 ]; then
    echo "install-test-deps: everything is already installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-test-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "install-test-deps: done"
