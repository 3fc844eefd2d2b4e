#!/usr/bin/env bash
# Install what cpsfleet needs on Debian 12, as root, idempotently:
# system packages (pcscd, vpcd, OpenSC, Mosquitto, build tools for pyscard) and
# the project's virtualenv in .venv with the development tools.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    python3 python3-venv python3-dev gcc swig libpcsclite-dev
    pcscd vsmartcard-vpcd pcsc-tools opensc debootstrap rpm
    mosquitto mosquitto-clients procps chromium
)

missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
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
