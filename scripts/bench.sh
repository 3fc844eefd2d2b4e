#!/usr/bin/env bash
# The scale benchmark (see docs/benchmarks.md): set up, then measure the controller's ingest
# beside a raw baseline, its latency, a whole-fleet evaluation over 50,000 hosts and its
# memory, a reconnect storm of 10,000 agents, and the agent's scan time, memory and CPU.
# Everything it starts (Mosquitto, pcscd with virtual readers, the controller, the agent)
# runs on this machine and is stopped at the end. Arguments go to `python -m tests.bench`
# (e.g. --only ingest,latency, --json results.json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

source scripts/pcscd-pause.sh
source scripts/postgres.sh

.venv/bin/python -m tests.bench "$@"
