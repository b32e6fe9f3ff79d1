#!/usr/bin/env bash
# rustfmt, clippy, ruff, mypy --strict and stubtest (the stubs cannot drift
# from the compiled module).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
BIN="$VENV/bin"

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy -D warnings"
cargo clippy -q --all-targets -- -D warnings
cargo clippy -q --all-targets --no-default-features -- -D warnings
echo "== ruff"
"$BIN/ruff" check python tests bench
"$BIN/ruff" format --check python tests bench
echo "== mypy --strict"
"$BIN/mypy" --strict python/
echo "== stubtest"
"$BIN/python" -m mypy.stubtest ratekeeper._core --allowlist .ci/stubtest-allowlist
