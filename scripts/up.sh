#!/usr/bin/env bash
# The one command that brings the all-in-one cloud up on a fresh machine.
# Extra arguments go to `nubo up`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

exec bin/nubo up --data-dir "${NUBO_DATA_DIR:-$HOME/.nubo}" --host "${NUBO_HOST:-127.0.0.1}" --port "${NUBO_PORT:-5000}" "$@"
