#!/bin/sh
# The in-band policy service (`serve`) under load, as Postfix and Dovecot talk to it:
# examples/policy_load speaks both protocols on loopback at a fixed rate over kept
# connections and prints each kind of request's answer time (p50/p99/p99.9/max).
# Every Postfix request is an END-OF-MESSAGE that is counted; a Dovecot login is its
# allow, allow-after-auth (recorded, answered after its own judgement) and report.
# 1. SQLite: Postfix alone at RATE requests/s, Dovecot alone at RATE requests/s
#    (RATE/3 logins/s), both together (70/30);
# 2. the same on a private PostgreSQL 15 (Unix socket, fsync on), the service keeping
#    its connections (8 writers and one listening).
#
#   ./bench/policy.sh                     # the figures in BENCHMARKS.md
#   RATE=1000 SECONDS_EACH=5 ./bench/policy.sh
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

RATE=${RATE:-1000}
SECONDS_EACH=${SECONDS_EACH:-20}
ACCOUNTS=${ACCOUNTS:-1000}
KEY=bench-key
# LOAD=PATH: a load generator already built.
if [ -z "${LOAD:-}" ]; then
    cargo build --release --locked -q --example policy_load
    LOAD=$PWD/target/release/examples/policy_load
fi

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# serve CONFIG: starts the service with CONFIG plus a [policy] table, waits for it.
serve() {
    DPORT=$(port)
    SOCK=$W/policy-$DPORT.sock
    cp "$1" "$W/serve.toml"
    printf '[policy]\nenabled = true\ndovecot_listen = "127.0.0.1:%s"\ndovecot_api_key = "%s"\npostfix_listen = "unix:%s"\npostfix_group = "root"\n' \
        "$DPORT" "$KEY" "$SOCK" >>"$W/serve.toml"
    "$BIN" --config "$W/serve.toml" serve 2>>"$W/serve.log" &
    SERVE=$!
    i=0
    until [ -S "$SOCK" ] && python3 -c "import socket; socket.create_connection(('127.0.0.1',$DPORT))" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 100 ] || { cat "$W/serve.log"; exit 1; }
        sleep 0.1
    done
}

stop() { kill "$SERVE"; wait "$SERVE" 2>/dev/null || true; }

loads() {
    echo "-- Postfix alone, $RATE requests/s"
    "$LOAD" --postfix "unix:$SOCK" --rate "$RATE" --seconds "$SECONDS_EACH" --accounts "$ACCOUNTS"
    echo "-- Dovecot alone, $RATE requests/s ($((RATE / 3)) logins/s)"
    "$LOAD" --dovecot "127.0.0.1:$DPORT" --key "$KEY" --rate $((RATE / 3)) --seconds "$SECONDS_EACH" --accounts "$ACCOUNTS"
    echo "-- both, 70 % messages / 30 % logins, $RATE requests/s"
    "$LOAD" --postfix "unix:$SOCK" --dovecot "127.0.0.1:$DPORT" --key "$KEY" --dovecot-share 30 \
        --rate $((RATE * 100 / 160)) --seconds "$SECONDS_EACH" --accounts "$ACCOUNTS"
}

echo "== SQLite"
config "$W/sqlite/mailguard.db" >"$W/sqlite.toml"
serve "$W/sqlite.toml"
loads
stop

echo "== PostgreSQL 15"
pg_start
as_pg psql -X -q -h "$pg" -U postgres -c "CREATE DATABASE bench" >/dev/null
mkdir -p "$W/local-pg"
printf 'database = "postgresql://postgres@/bench?host=%s"\nlocal_dir = "%s"\nserver_name = "bench"\n[actions]\nnotify = []\nblock = []\nlock = []\n' \
    "$pg" "$W/local-pg" >"$W/pg.toml"
"$BIN" --config "$W/pg.toml" status >/dev/null
serve "$W/pg.toml"
loads
stop
echo "spooled (SQLite, PostgreSQL): $(cat "$W"/sqlite/*.spool 2>/dev/null | wc -l), $(cat "$W"/local-pg/*.spool 2>/dev/null | wc -l); service log:"
cat "$W/serve.log"
