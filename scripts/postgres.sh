# Sourced by the scripts whose tests or benchmarks use PostgreSQL, after scripts/setup.sh
# (which installs Debian's postgresql, kept from starting). It exports CPSFLEET_TEST_POSTGRES,
# the URL of a login role that may create databases (the tests make one per test).
# - CPSFLEET_TEST_POSTGRES already set: that server is used as it is, nothing else is done.
# - A PostgreSQL answering on 127.0.0.1:$CPSFLEET_PG_PORT (5432 by default) is used.
# - Else the local cluster configured on that port (Debian's 15/main on 5432) is started, or a
#   cluster of our own (cpsfleet_<port>) is created there first; it is stopped on exit.
# The role, cpsfleet_test with the password cpsfleet_test, is made over the local socket as
# the postgres user: its password matters where 127.0.0.1 asks for one (Debian's scram).
if [ -z "${CPSFLEET_TEST_POSTGRES:-}" ]; then
    pg_port=${CPSFLEET_PG_PORT:-5432}
    pg_started=""

    pg_answers() {
        pg_isready -q -h 127.0.0.1 -p "$pg_port"
    }

    pg_as_postgres() {
        (cd / && runuser -u postgres -- "$@")
    }

    # "<version> <name>" of the cluster configured on our port, or of a new one made for it.
    pg_cluster() {
        local found
        found=$(pg_lsclusters --no-header | awk -v port="$pg_port" '$3 == port {print $1, $2; exit}')
        if [ -z "$found" ]; then
            found="$(ls /usr/lib/postgresql | sort -n | tail -n 1) cpsfleet_$pg_port"
            echo "postgres: creating the cluster $found on port $pg_port" >&2
            pg_createcluster $found -p "$pg_port" >/dev/null
        fi
        echo "$found"
    }

    if ! command -v pg_ctlcluster >/dev/null; then
        echo "postgres: Debian's postgresql is not installed: run scripts/setup.sh" >&2
        exit 1
    fi
    if ! pg_answers; then
        pg_started=$(pg_cluster)
        # What ran before (scripts/pcscd-pause.sh's trap) still runs on exit, after the stop;
        # its command is unquoted in a function, whose "set --" leaves the caller's arguments.
        pg_previous_trap=$(trap -p EXIT)
        pg_unquote_trap() {
            eval "set -- $pg_previous_trap"
            pg_previous_trap=${3:-}
        }
        pg_unquote_trap
        trap "pg_ctlcluster --skip-systemctl-redirect $pg_started stop; $pg_previous_trap" EXIT
        echo "postgres: starting the cluster $pg_started on port $pg_port" >&2
        pg_ctlcluster --skip-systemctl-redirect $pg_started start
        if ! pg_answers; then
            echo "postgres: the cluster $pg_started does not answer on 127.0.0.1:$pg_port" >&2
            exit 1
        fi
    fi

    pg_as_postgres psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -p "$pg_port" -d postgres <<'EOF'
do $$ begin
    if not exists (select from pg_roles where rolname = 'cpsfleet_test') then
        create role cpsfleet_test;
    end if;
end $$;
alter role cpsfleet_test login createdb password 'cpsfleet_test';
EOF
    export CPSFLEET_TEST_POSTGRES="postgresql://cpsfleet_test:cpsfleet_test@127.0.0.1:$pg_port/postgres"
fi
echo "postgres: the tests use $CPSFLEET_TEST_POSTGRES" >&2
