#!/usr/bin/env bash
# Install what cpsfleet needs on Debian 12, as root, idempotently:
# system packages (pcscd, vpcd, OpenSC, Mosquitto, build tools for pyscard, promtool) and
# the project's virtualenv in .venv with the development tools.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    python3 python3-venv python3-dev gcc swig libpcsclite-dev
    pcscd vsmartcard-vpcd pcsc-tools opensc debootstrap rpm
    mosquitto mosquitto-clients procps chromium
)

# promtool, for the tests of monitoring/prometheus, comes with Debian's prometheus, whose
# server must not run here: it is installed with services kept from starting, then disabled.
# So is PostgreSQL, which scripts/postgres.sh starts for the tests where none answers.
SERVER_PACKAGES=(prometheus postgresql)

missing() {
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || echo "$package"
    done
}

apt_install() {
    echo "setup: installing $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "$@"
}

mapfile -t absent < <(missing "${APT_PACKAGES[@]}")
if ((${#absent[@]})); then
    apt_install "${absent[@]}"
fi

mapfile -t absent < <(missing "${SERVER_PACKAGES[@]}")
if ((${#absent[@]})); then
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt_install "${absent[@]}"
    if command -v systemctl >/dev/null; then
        systemctl disable --now "${absent[@]}" >/dev/null 2>&1 || true
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi
stamp=.venv/.cpsfleet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing cpsfleet and its development tools into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch "$stamp"
fi
