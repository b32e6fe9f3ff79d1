#!/usr/bin/env bash
# The whole test suite: the pure Rust core (cargo test) and pytest against
# real servers. Starts its own redis-server on a free loopback port (unless
# RATEKEEPER_REDIS_URL is given) and stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"

echo "== cargo test (pure core)"
cargo test -q --no-default-features

redis_dir=""
cleanup() {
    # Never changes the exit status: the tests' result is what counts.
    if [ -n "$redis_dir" ] && [ -f "$redis_dir/redis.pid" ]; then
        pid=$(cat "$redis_dir/redis.pid")
        kill "$pid" 2>/dev/null || true
        # Wait until it is gone: it writes its log while shutting down.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    if [ -n "$redis_dir" ]; then
        rm -rf "$redis_dir" 2>/dev/null || true
    fi
}
trap cleanup EXIT

if [ -z "${RATEKEEPER_REDIS_URL:-}" ]; then
    redis_dir=$(mktemp -d)
    port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --daemonize yes --pidfile "$redis_dir/redis.pid" --dir "$redis_dir" \
        --logfile "$redis_dir/redis.log"
    for _ in $(seq 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    export RATEKEEPER_REDIS_URL="redis://127.0.0.1:$port/0"
    echo "== redis-server on $RATEKEEPER_REDIS_URL"
fi

echo "== pytest"
set +e
"$PY" -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$status"
