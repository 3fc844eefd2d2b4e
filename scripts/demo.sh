#!/usr/bin/env bash
# The demo: the whole fleet on one machine. A Mosquitto of its own on loopback,
# four virtual readers on a real pcscd holding a doctor's valid CPS3, a nurse's
# CPS4 expiring in 10 days, an expired CPS3 and a Vitale card; the agent daemon
# and the controller; then what the controller knows and flags, and each professional's
# next step (docs/roster-sample.csv as the roster), with 12 synthetic workstations
# played by `cpsfleet sim fleet` around them; the dashboard on 127.0.0.1:8080 (or a free
# port if 8080 is taken), signed in with the user name admin (or none) and the demo's
# password: random, made on the first run and kept in $CPSFLEET_DEMO_HOME (by default
# ~/.local/state/cpsfleet-demo), so that every run prints the same. In a terminal it
# keeps running until Ctrl-C, which stops everything it started. It speaks as cpsfleet
# does: French unless the locale (or CPSFLEET_LANG) is English.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

cpsfleet=.venv/bin/cpsfleet
spoken=$(.venv/bin/python -c 'import os; from cpsfleet import i18n; print(i18n.choose(environ=os.environ))')
# say FRENCH ENGLISH: the demo's own lines, in the language cpsfleet speaks.
say() { if [ "$spoken" = fr ]; then echo "$1"; else echo "$2"; fi; }

home=${CPSFLEET_DEMO_HOME:-${XDG_STATE_HOME:-$HOME/.local/state}/cpsfleet-demo}
mkdir -p "$home" && chmod 700 "$home"
if [ ! -s "$home/dashboard-password" ]; then
    (umask 077; .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(15))' >"$home/dashboard-password.new")
    mv "$home/dashboard-password.new" "$home/dashboard-password"
fi
password=$(head -n 1 "$home/dashboard-password")
password_hash=$("$cpsfleet" controller dashboard-secret --password-stdin <<<"$password" | grep '^password_hash = ')

work=$(mktemp -d /tmp/cpsfleet-demo.XXXXXX)
pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
user root
log_dest file $work/mosquitto.log
CONF
mosquitto -c "$work/mosquitto.conf" 2>>"$work/mosquitto.log" &
pids+=($!)

"$cpsfleet" sim examples "$work/cards" >/dev/null
# In English whatever the locale: the script waits for its "pcscd running" line.
"$cpsfleet" --lang en sim readers --count 4 >"$work/readers.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q "pcscd running" "$work/readers.log" && break; sleep 0.2; done
grep -q "pcscd running" "$work/readers.log" || { cat "$work/readers.log"; exit 1; }

reader_port=35963
for card in doctor-cps3 nurse-cps4 expired-cps3 vitale; do
    "$cpsfleet" sim card "$work/cards/$card.toml" --port "$reader_port" >/dev/null 2>&1 &
    pids+=($!)
    reader_port=$((reader_port + 1))
done

dashboard_port=8080
if ! .venv/bin/python -c 'import socket, sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' "$dashboard_port" 2>/dev/null; then
    dashboard_port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
cat >"$work/controller.toml" <<CONF
broker = "mqtt://127.0.0.1:$port"
database = "$work/fleet.db"
evaluate_every = 5

[dashboard]
listen = "127.0.0.1:$dashboard_port"
$password_hash
CONF
cat >"$work/agent.toml" <<CONF
broker = "mqtt://127.0.0.1:$port"
site = "Lyon Part-Dieu"
host_id = "ws-lyon-07"
interval = 60
splay = 0
will_delay = 10
CONF
"$cpsfleet" controller run --config "$work/controller.toml" 2>"$work/controller.log" &
pids+=($!)
"$cpsfleet" agent run --config "$work/agent.toml" 2>"$work/agent.log" &
pids+=($!)

say "Mosquitto sur 127.0.0.1:$port, 4 lecteurs virtuels, 4 cartes, agent et contrôleur démarrés." \
    "Mosquitto on 127.0.0.1:$port, 4 virtual readers, 4 cards, agent and controller started."
"$cpsfleet" sim fleet --broker "mqtt://127.0.0.1:$port" --agents 12 --seed 20261127 --once
query=("--database" "$work/fleet.db")
for _ in $(seq 60); do
    "$cpsfleet" controller cards "${query[@]}" --json 2>/dev/null | grep -q 10452278 && break
    sleep 0.5
done
sleep 1
"$cpsfleet" controller roster import docs/roster-sample.csv "${query[@]}" >/dev/null
for command in hosts cards findings alerts readiness forecast; do
    echo
    echo "\$ cpsfleet controller $command"
    "$cpsfleet" controller "$command" "${query[@]}"
done
echo
echo "\$ cpsfleet controller rescan ws-lyon-07"
"$cpsfleet" controller rescan ws-lyon-07 --config "$work/controller.toml" --timeout 30

echo
say "Tableau de bord : http://127.0.0.1:$dashboard_port/ (JSON sous /api/v1, Prometheus sur /metrics)" \
    "Dashboard: http://127.0.0.1:$dashboard_port/ (JSON under /api/v1, Prometheus at /metrics)"
say "  nom d'utilisateur : admin (ou laissez-le vide)" \
    "  user name: admin (or leave it empty)"
say "  mot de passe : $password (gardé dans $home/dashboard-password)" \
    "  password: $password (kept in $home/dashboard-password)"
if [ -t 0 ]; then
    say "En marche ; essayez 'cpsfleet controller findings --database $work/fleet.db' ailleurs. Ctrl-C arrête tout." \
        "Running; try 'cpsfleet controller findings --database $work/fleet.db' elsewhere. Ctrl-C stops it all."
    wait
fi
