#!/usr/bin/env bash
# `make test`'s test runs: the whole suite on SQLite, then again on PostgreSQL when a server answers at
# VIPBOT_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres; see tests/pg.py), else it
# says why that run was skipped. Both runs happen even when the first fails; the exit status is non-zero when
# either failed (or, with VIPBOT_TEST_REQUIRE_POSTGRES=1 as in CI, when no server answers). Extra arguments go
# to both pytest runs.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

run() {  # run ENGINE ARGS...: the suite on ENGINE, timed
    local engine=$1 started status
    shift
    started=$SECONDS
    VIPBOT_TEST_ENGINE=$engine "$VENV/bin/pytest" -n 2 "$@"
    status=$?
    echo "=== $engine: $([ "$status" -eq 0 ] && echo passed || echo "FAILED (exit $status)") in $((SECONDS - started)) s"
    return "$status"
}

echo "=== vipbot tests on SQLite"
run sqlite "$@"
sqlite=$?
if why=$("$VENV/bin/python" -m tests.pg); then
    echo "=== vipbot tests on PostgreSQL ($why)"
    run postgresql "$@"
    postgres=$?
    postgres_said=$([ "$postgres" -eq 0 ] && echo passed || echo FAILED)
else
    postgres=0
    postgres_said="skipped: $why; point VIPBOT_TEST_POSTGRES_URL at a server where the tests may create databases"
    if [ "${VIPBOT_TEST_REQUIRE_POSTGRES:-}" = 1 ]; then  # CI: a server that is down fails the run
        postgres=1
        postgres_said="FAILED: VIPBOT_TEST_REQUIRE_POSTGRES=1 but $why"
    fi
    echo "=== PostgreSQL run $postgres_said"
fi
echo "=== SQLite $([ "$sqlite" -eq 0 ] && echo passed || echo FAILED); PostgreSQL $postgres_said"
[ "$sqlite" -eq 0 ] && [ "$postgres" -eq 0 ]
