#!/bin/sh
# Where the server's time goes when `stream` stores tickets into PostgreSQL: a private
# PostgreSQL 15 with pg_stat_statements (planning tracked), TICKETS of
# bench/fail2ban-load.py's ticket lines piped into one `stream --batch BATCH`, then
# wall ms per ticket and the statements by time spent planning and executing them.
#
#   nice bench/pg-statements.sh                     # 10,000 tickets, batches of 64
#   BIN=PATH TICKETS=5000 BATCH=1 nice bench/pg-statements.sh
# shellcheck shell=sh

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
need psql:postgresql-client
TICKETS=${TICKETS:-10000}
BATCH=${BATCH:-64}
PGBIN=/usr/lib/postgresql/15/bin

# A private cluster: its own directory, a Unix socket there, no TCP.
chmod o+x "$W"
mkdir -p "$W/pg" "$W/local"
chown postgres:postgres "$W/pg"
chmod 700 "$W/pg"
runuser -u postgres -- "$PGBIN/initdb" -A trust -U postgres --no-sync --no-instructions \
    -D "$W/pg/data" >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/log" \
    -o "-k $W/pg -h '' -p 5432 -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on" \
    -w start >/dev/null
trap 'runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg/data" -m fast -w stop >/dev/null 2>&1; cleanup' EXIT
sql() { psql -X -q -h "$W/pg" -U postgres -d mg -P pager=off -c "$1"; }
runuser -u postgres -- "$PGBIN/createdb" -h "$W/pg" mg
sql "CREATE EXTENSION pg_stat_statements" >/dev/null
printf 'database = "postgresql://postgres@/mg?host=%s"\nlocal_dir = "%s"\nserver_name = "bench"\n[actions]\nnotify = []\nblock = []\nlock = []\n' \
    "$W/pg" "$W/local" >"$W/config.toml"
"$BIN" --config "$W/config.toml" status >/dev/null
python3 bench/fail2ban-load.py --tickets "$TICKETS" >"$W/tickets"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
sql "SELECT pg_stat_statements_reset()" >/dev/null
t0=$(date +%s%N)
"$BIN" --config "$W/config.toml" stream --batch "$BATCH" <"$W/tickets" >"$W/acks"
t1=$(date +%s%N)
echo "tickets: $TICKETS, batches: $(wc -l <"$W/acks"), ms per ticket: $(python3 -c "print(round(($t1 - $t0) / 1e6 / $TICKETS, 3))")"
sql "SELECT calls, round(total_plan_time::numeric) AS plan_ms, round(total_exec_time::numeric) AS exec_ms,
            rows, left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS statement
     FROM pg_stat_statements ORDER BY total_plan_time + total_exec_time DESC LIMIT 12"
