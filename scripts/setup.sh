#!/usr/bin/env bash
# Prepares a checkout to run: system packages, Node packages, compiled output.
# Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh

# npm writes node_modules/.package-lock.json after every install: when the lockfile is
# newer than it (or it is missing), the installed tree may not match the lockfile.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # Native modules (better-sqlite3, bcrypt) build here with node-gyp.
  npm ci --no-audit --no-fund
fi

# The TypeScript build takes about a second, so always run it rather than guess staleness.
npm run --silent build
