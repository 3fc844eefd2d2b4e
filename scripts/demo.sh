#!/usr/bin/env bash
# The demo: four virtual readers on a real pcscd, four simulated cards (a doctor's
# CPS3, a nurse's CPS4 about to expire, an expired CPS3, a Vitale card), then the
# agent's inventory, as an administrator reads it and as the agent publishes it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

work=$(mktemp -d /tmp/cpsfleet-demo.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cpsfleet=.venv/bin/cpsfleet
"$cpsfleet" sim examples "$work/cards" >/dev/null
"$cpsfleet" sim readers --count 4 >"$work/readers.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q "pcscd running" "$work/readers.log" && break; sleep 0.2; done
cat "$work/readers.log"
grep -q "pcscd running" "$work/readers.log" || exit 1

port=35963
for card in doctor-cps3 nurse-cps4 expired-cps3 vitale; do
    "$cpsfleet" sim card "$work/cards/$card.toml" --port "$port" >/dev/null 2>&1 &
    pids+=($!)
    port=$((port + 1))
done
sleep 2

echo
echo "\$ cpsfleet agent scan --site Demo"
"$cpsfleet" agent scan --site Demo || echo "(exit code $?: problems found, as expected with an expired card)"
echo
echo "\$ cpsfleet agent scan --json | head -40"
"$cpsfleet" agent scan --site Demo --json | head -40 || true
