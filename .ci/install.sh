#!/usr/bin/env bash
# Installs everything the tests need on a fresh machine: Debian's redis-server,
# a venv with the test, lint and benchmark dependencies, and the extension,
# built once (release profile, abi3) by `pip install .`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "== installing redis-server (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq redis-server redis-tools >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi

echo "== installing ratekeeper and its test dependencies"
# The extension is compiled here and only here; lint and tests reuse it.
"$VENV/bin/python" -m pip install -q ".[test,lint,bench]"
