#!/usr/bin/env bash
# Set up (idempotently), then run every check: ruff, mypy, the fast tier on the lowest
# allowed versions of the dependencies (scripts/lowest.sh), and the whole pytest suite
# against a real pcscd with vpcd readers, started and stopped by the tests themselves, and a
# real PostgreSQL (scripts/postgres.sh: the one answering on 127.0.0.1, or one it starts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

source scripts/pcscd-pause.sh
source scripts/postgres.sh

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# The fast tier against the lowest version of every dependency pyproject.toml allows.
bash scripts/lowest.sh
.venv/bin/python -m pytest "$@"
