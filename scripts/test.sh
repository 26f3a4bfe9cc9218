#!/usr/bin/env bash
# The one command that runs the whole test suite on a fresh Debian machine.
# Arguments narrow the run (see scripts/run-tests.mjs): scripts/test.sh identity cli
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

# True when something accepts TCP connections on 127.0.0.1:$1 within one second.
answers() {
  timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Suites for the real database engines and broker run only when their server is
# reachable; without them they skip, so a bare machine still passes.
if [ -z "${NUBO_TEST_POSTGRES_URL:-}" ] && answers 5432; then
  export NUBO_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres
fi
if [ -z "${NUBO_TEST_MYSQL_URL:-}" ] && answers 3306; then
  export NUBO_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test
fi
if [ -z "${NUBO_TEST_RABBIT_URL:-}" ] && answers 5672; then
  export NUBO_TEST_RABBIT_URL=rabbit://guest:guest@127.0.0.1:5672/
fi

exec node scripts/run-tests.mjs "$@"
