#!/usr/bin/env bash
# Run the fast tier against the lowest version of every runtime dependency that
# pyproject.toml allows, so that each ">=" floor there is a version the code works with;
# with it the tests slow only for PostgreSQL (marked "postgresql"), for psycopg's floor.
# The pins are read from pyproject.toml on every run: they cannot drift from it.
# Usage: scripts/lowest.sh [more pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
# For the system packages: pyscard's floor has no wheel and builds with swig and PC/SC headers.
bash scripts/setup.sh
# A PostgreSQL for those tests (the one scripts/test.sh found, or one started until the end).
source scripts/postgres.sh

VENV=.venv-lowest
if [ ! -x "$VENV/bin/python" ]; then
    echo "lowest: creating $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi

# Runtime is the bare package and every extra but dev (the agent's, the controller's...).
EXTRAS=$("$VENV/bin/python" -c 'import tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
print(",".join(name for name in extras if name != "dev"))')

# Each runtime dependency pinned to its floor; one without a floor is refused, since
# nothing would then say which version a user may get.
"$VENV/bin/python" - >"$VENV/constraints-lowest.txt" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = [deps for name, deps in project["optional-dependencies"].items() if name != "dev"]
for dependency in sum(extras, project["dependencies"]):
    floor = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[[^]]*\])?.*?>=\s*([^,;\s]+)", dependency)
    if floor is None:
        sys.exit(f"lowest: {dependency!r} in pyproject.toml has no >= floor to test")
    print(f"{floor[1]}=={floor[2]}")
EOF

# The dev extra's tools at their usual versions, but not Ansible's: the slow tier alone uses
# them, and ansible-lint requires a newer cryptography than our floor, which it would lift.
"$VENV/bin/python" - >"$VENV/tools-lowest.txt" <<'EOF'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for tool in project["optional-dependencies"]["dev"]:
    if re.match(r"[A-Za-z0-9._-]+", tool)[0] not in {"ansible", "ansible-lint", project["name"]}:
        print(tool)
EOF

# Every run, not once: it takes seconds when all is in place, and it puts back at its floor
# a package that someone upgraded in this virtualenv by hand. The tools are resolved with
# the floors, so one that needs a newer runtime dependency fails the install loudly.
echo "lowest: installing cpsfleet[$EXTRAS] at its floors into $VENV"
"$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]" -r "$VENV/tools-lowest.txt" \
    -c "$VENV/constraints-lowest.txt"

# Not exec: scripts/postgres.sh's trap stops on exit a PostgreSQL it started.
"$VENV/bin/python" -m pytest -m "not slow or postgresql" -n 2 -q -p no:cacheprovider "$@"
