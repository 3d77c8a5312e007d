#!/usr/bin/env bash
# A throwaway PostgreSQL server on a free loopback port, for the tests.
#
#   eval "$(scripts/postgres.sh start)"   # prints the exports that point the tests at it
#   scripts/postgres.sh stop              # stops it and deletes its data
#
# Installs Debian's postgresql package (through apt) when its server is
# missing. The server trusts loopback connections as user `zkfarm`, runs with
# fsync off (its data is thrown away) and logs to its directory. It also
# speaks TLS, with a certificate for 127.0.0.1 from a throwaway CA whose
# certificate ZKFARM_POSTGRES_CA names, for the tests of TLS to the store.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# PostgreSQL refuses to run as root; as root, run it as the package's user.
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
start)
    bin="$(pg_bin)"
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
        echo "PostgreSQL's server not found; installing postgresql with apt" >&2
        apt_install postgresql
        bin="$(pg_bin)"
    fi
    dir="$(mktemp -d "${TMPDIR:-/tmp}/zkfarm-pg.XXXXXX")"
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    # A CA and a server certificate signed by it (the server's key must
    # belong to the server's user and be private).
    (
        cd "$dir"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3 \
            -subj /CN=zkfarm-test-ca >/dev/null 2>&1
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 >/dev/null 2>&1
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 3 \
            -extfile ext >/dev/null 2>&1
        chmod 600 server.key
        if [ "$(id -u)" -eq 0 ]; then chown postgres: server.key server.crt; fi
    )
    if ! as_postgres "$bin/initdb" -D "$dir/data" -U zkfarm --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        exit 1
    fi
    as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=400 -c ssl=on \
            -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key" start >&2
    echo "export ZKFARM_POSTGRES_URL=postgres://zkfarm@127.0.0.1:$port/postgres"
    echo "export ZKFARM_POSTGRES_DIR=$dir"
    echo "export ZKFARM_POSTGRES_CA=$dir/ca.crt"
    ;;
stop)
    dir="${2:-${ZKFARM_POSTGRES_DIR:-}}"
    if [ -z "$dir" ] || [ ! -d "$dir/data" ]; then
        echo "usage: scripts/postgres.sh stop [DIR] (or set ZKFARM_POSTGRES_DIR)" >&2
        exit 2
    fi
    as_postgres "$(pg_bin)/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
*)
    echo "usage: scripts/postgres.sh start|stop [DIR]" >&2
    exit 2
    ;;
esac
