#!/usr/bin/env bash
# Set up (idempotently), then run every check: ruff, mypy, and the whole pytest suite
# against a real pcscd with vpcd readers, started and stopped by the tests themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# Only one pcscd can run on a machine: a system one (socket-activated under systemd)
# is paused for the tests and started again afterwards.
paused=""
if [ -d /run/systemd/system ] && systemctl is-active --quiet pcscd.socket pcscd.service 2>/dev/null; then
    paused=yes
    systemctl stop pcscd.socket pcscd.service
fi
trap 'if [ -n "$paused" ]; then systemctl start pcscd.socket; fi' EXIT

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
