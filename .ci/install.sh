#!/usr/bin/env bash
# Installs everything the tests need on a fresh machine: Debian's redis-server,
# a venv with the test, lint and benchmark dependencies, and the extension,
# built once (release profile, abi3) by `pip install .`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

# The tests need a real redis-server; the demo does not (`make demo` skips it).
if [ "${RK_SKIP_REDIS:-0}" != "1" ] && { ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; }; then
    echo "== installing redis-server (Debian)"
    if [ "$(id -u)" != "0" ]; then
        echo "redis-server is missing and installing it needs root: run 'sudo apt-get install redis-server' first" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq redis-server redis-tools >/dev/null
fi

# The batch report's test opens the page in a real headless browser.
if [ "${RK_SKIP_CHROMIUM:-0}" != "1" ] && ! command -v chromium >/dev/null; then
    echo "== installing chromium (Debian)"
    if [ "$(id -u)" != "0" ]; then
        echo "chromium is missing and installing it needs root: run 'sudo apt-get install chromium' first" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi

echo "== installing ratekeeper and its test dependencies"
# The extension is compiled here and only here; lint and tests reuse it.
"$VENV/bin/python" -m pip install -q ".[test,lint,bench]"
