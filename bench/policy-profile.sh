#!/bin/sh
# Where the policy service's time goes on PostgreSQL: runs one load of
# bench/policy.sh against a private PostgreSQL 15 with pg_stat_statements and WAL
# timing on, and prints per statement calls and time, commits and WAL syncs, wait
# events sampled every 20 ms, CPU time of the service and of PostgreSQL, and the
# service threads' run-queue delay (schedstat).
#
#   BIN=... LOAD=... RATE=1000 SECONDS_EACH=10 KIND=postfix|dovecot|mixed [WRITERS=8] [PERF=1] \
#       ./bench/policy-profile.sh
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

RATE=${RATE:-1000}
SECONDS_EACH=${SECONDS_EACH:-10}
ACCOUNTS=${ACCOUNTS:-1000}
KIND=${KIND:-postfix}
KEY=bench-key
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pg_start
printf "shared_preload_libraries = 'pg_stat_statements'\ntrack_wal_io_timing = on\ntrack_io_timing = on\n" >>"$pg/data/postgresql.conf"
as_pg "$PGBIN/pg_ctl" -D "$pg/data" -l "$pg/log" -o "-k $pg -h ''" -w restart >/dev/null
q() { as_pg psql -X -q -A -h "$pg" -U postgres -d bench -c "$1"; }
as_pg psql -X -q -h "$pg" -U postgres -c "CREATE DATABASE bench" >/dev/null
q "CREATE EXTENSION pg_stat_statements" >/dev/null
mkdir -p "$W/local-pg"
printf 'database = "postgresql://postgres@/bench?host=%s"\nlocal_dir = "%s"\nserver_name = "bench"\n[actions]\nnotify = []\nblock = []\nlock = []\n' \
    "$pg" "$W/local-pg" >"$W/pg.toml"
"$BIN" --config "$W/pg.toml" status >/dev/null
DPORT=$(port)
SOCK=$W/policy-$DPORT.sock
cp "$W/pg.toml" "$W/serve.toml"
printf '[policy]\nenabled = true\ndovecot_listen = "127.0.0.1:%s"\ndovecot_api_key = "%s"\npostfix_listen = "unix:%s"\npostfix_group = "root"\nwriters = %s\n' \
    "$DPORT" "$KEY" "$SOCK" "${WRITERS:-8}" >>"$W/serve.toml"
"$BIN" --config "$W/serve.toml" serve 2>>"$W/serve.log" &
SERVE=$!
until [ -S "$SOCK" ]; do sleep 0.1; done
sleep 1
q "SELECT pg_stat_statements_reset(); SELECT pg_stat_reset(); SELECT pg_stat_reset_shared('wal')" >/dev/null
cpu() { # utime+stime ticks of the service, and of this cluster's processes
    s=$(awk '{print $14+$15}' "/proc/$SERVE/stat")
    pm=$(head -1 "$pg/data/postmaster.pid")
    p=$(for q in "$pm" $(ps -o pid= --ppid "$pm"); do awk '{print $14+$15}' "/proc/$q/stat" 2>/dev/null; done | awk '{t+=$1} END {print t+0}')
    echo "$s $p"
}
# per thread name: run-queue delay (ns), CPU (ticks)
rq() { for t in /proc/"$SERVE"/task/*; do printf '%s %s %s\n' "$(cat "$t/comm")" "$(cut -d' ' -f2 "$t/schedstat")" "$(awk '{print $14+$15}' "$t/stat")"; done | awk '{d[$1]+=$2; c[$1]+=$3} END {for (k in d) print k, d[k], c[k]}' | sort; }
rq >"$W/rq0"
c0=$(cpu)
( end=$(( $(date +%s) + SECONDS_EACH )); while [ "$(date +%s)" -lt "$end" ]; do
    q "SELECT coalesce(wait_event_type,'CPU')||':'||coalesce(wait_event,'-') FROM pg_stat_activity WHERE datname='bench' AND state='active' AND pid<>pg_backend_pid()" 2>/dev/null
    sleep 0.02; done >"$W/waits" ) &
SAMPLER=$!
# PERF=1: where the service's own CPU goes.
if [ -n "${PERF:-}" ]; then perf record -q -g -p "$SERVE" -o "$W/perf.data" -- sleep "$SECONDS_EACH" >/dev/null 2>&1 & fi
case $KIND in
postfix) "$LOAD" --postfix "unix:$SOCK" --rate "$RATE" --seconds "$SECONDS_EACH" --accounts "$ACCOUNTS" ;;
dovecot) "$LOAD" --dovecot "127.0.0.1:$DPORT" --key "$KEY" --rate $((RATE / 3)) --seconds "$SECONDS_EACH" --accounts "$ACCOUNTS" ;;
mixed) "$LOAD" --postfix "unix:$SOCK" --dovecot "127.0.0.1:$DPORT" --key "$KEY" --dovecot-share 30 \
        --rate $((RATE * 100 / 160)) --seconds "$SECONDS_EACH" --accounts "$ACCOUNTS" ;;
esac
c1=$(cpu)
wait "$SAMPLER" || true
echo "-- CPU seconds during the run (service, PostgreSQL): $(echo "$c0 $c1" | awk '{printf "%.1f %.1f", ($3-$1)/100, ($4-$2)/100}')"
echo "-- the service's threads by name: run-queue delay ms, CPU s (since start; the connections' threads start with the run)"
rq | awk '{printf "%-20s %8.0f %6.2f\n", $1, $2/1e6, $3/100}'
echo "-- commits, WAL"
q "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname='bench'"
q "SELECT wal_records, wal_write, wal_sync, round(wal_sync_time::numeric,0) AS sync_ms, round(wal_write_time::numeric,0) AS write_ms FROM pg_stat_wal"
echo "-- statements (calls, total ms, mean ms)"
q "SELECT calls, round(total_exec_time::numeric,0), round(mean_exec_time::numeric,3), left(regexp_replace(query,'\s+',' ','g'),110) FROM pg_stat_statements ORDER BY calls DESC LIMIT 30"
echo "-- wait events sampled (active backends)"
sort "$W/waits" | uniq -c | sort -rn | head -15
if [ -n "${PERF:-}" ]; then
    sleep 1
    echo "-- the service's CPU by symbol (perf, self)"
    perf report -i "$W/perf.data" --no-children --stdio --sort sym 2>/dev/null | grep -v '^#' | grep '%' | head -40
fi
kill "$SERVE"; wait "$SERVE" 2>/dev/null || true
echo "-- service log"; cat "$W/serve.log"
