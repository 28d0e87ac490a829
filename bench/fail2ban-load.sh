#!/bin/sh
# Mail log lines at fixed rates through a private, real fail2ban-server (Debian's
# package, the shipped filters, jails and actions, paths only changed) into
# f2b-mailguard, SQLite and a private PostgreSQL, the Python action and the command
# action: events written vs stored, lag written -> stored p50/p95/max, and the block of
# a botnet account crossing its threshold while the rest flows (bench/fail2ban-load.py).
#
#   nice bench/fail2ban-load.sh                 # the full matrix, 60 s per run
#   SECONDS_PER_RUN=20 RATES="200 500" STORES=sqlite ACTIONS=f2b_mailguard.py \
#       nice bench/fail2ban-load.sh
#
# The command action forks a shell and a process per ticket under Fail2ban's global
# lock; past about 200 lines/s it falls minutes behind, so by default it runs only at
# CMD_RATES. One JSON line per run on stdout.
# shellcheck shell=sh

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
need /usr/bin/fail2ban-server:fail2ban psql:postgresql-client

SECONDS_PER_RUN=${SECONDS_PER_RUN:-60}
RATES=${RATES:-50 200 500 1000}
CMD_RATES=${CMD_RATES:-50 200}
STORES=${STORES:-sqlite postgresql}
ACTIONS=${ACTIONS:-f2b_mailguard.py mailguard}
SETTLE=${SETTLE:-120}
# The stream path alone first: this many ticket lines piped into `stream`, RUNS times.
STREAM_TICKETS=${STREAM_TICKETS:-20000}
STREAM_RUNS=${STREAM_RUNS:-3}
PGBIN=/usr/lib/postgresql/15/bin

pg_up=false
stop_pg() {
    if $pg_up; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg/data" -m fast -w stop >/dev/null 2>&1 || true
        pg_up=false
    fi
}
trap 'stop_pg; cleanup' EXIT

# A private cluster: its own directory, a Unix socket there, no TCP.
start_pg() {
    mkdir -p "$W/pg"
    # The postgres user only passes through the scratch directory.
    chmod o+x "$W"
    chown postgres:postgres "$W/pg"
    chmod 700 "$W/pg"
    runuser -u postgres -- "$PGBIN/initdb" -A trust -U postgres --no-sync --no-instructions \
        -D "$W/pg/data" >/dev/null
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/log" \
        -o "-k $W/pg -h '' -p 5432" -w start >/dev/null
    pg_up=true
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)" >&2
echo "binary: $BIN" >&2
python3 bench/fail2ban-load.py --tickets "$STREAM_TICKETS" >"$W/tickets"
n=0
for store in $STORES; do
    if [ "$store" = postgresql ]; then start_pg; fi
    # Per event through `stream` alone (fresh database each run, the events of about
    # three minutes of the traffic below): milliseconds of wall time per ticket.
    # --batch 1: a transaction per ticket, as at low rates; 64: as under load.
    for batch in 1 64; do
        i=0
        while [ "$i" -lt "$STREAM_RUNS" ]; do
            i=$((i + 1))
            n=$((n + 1))
            mkdir -p "$W/run$n"
            if [ "$store" = postgresql ]; then
                runuser -u postgres -- "$PGBIN/createdb" -h "$W/pg" "mg$n"
                url="postgresql://postgres@/mg$n?host=$W/pg"
            else
                url="$W/run$n/mg.db"
            fi
            printf 'database = "%s"\nlocal_dir = "%s"\nserver_name = "bench"\n[actions]\nnotify = []\nblock = []\nlock = []\n' \
                "$url" "$W/run$n" >"$W/run$n/config.toml"
            "$BIN" --config "$W/run$n/config.toml" status >/dev/null
            t0=$(date +%s%N)
            "$BIN" --config "$W/run$n/config.toml" stream --batch "$batch" <"$W/tickets" >"$W/run$n/acks"
            t1=$(date +%s%N)
            stored=$(python3 -c 'import json,sys; print(sum(json.loads(l)["stored"] for l in open(sys.argv[1])))' "$W/run$n/acks")
            batches=$(wc -l <"$W/run$n/acks")
            echo "{\"stream_alone\": \"$store\", \"tickets\": $STREAM_TICKETS, \"stored\": $stored, \"batch\": $batch, \"batches\": $batches, \"ms_per_ticket\": $(python3 -c "print(round(($t1 - $t0) / 1e6 / $STREAM_TICKETS, 3))")}"
        done
    done
    for action in $ACTIONS; do
        rates=$RATES
        if [ "$action" = mailguard ]; then rates=$CMD_RATES; fi
        for rate in $rates; do
            n=$((n + 1))
            run="$W/run$n"
            if [ "$store" = postgresql ]; then
                db="mg$n"
                runuser -u postgres -- "$PGBIN/createdb" -h "$W/pg" "$db"
                url="postgresql://postgres@/$db?host=$W/pg"
            else
                url="$run/mg.db"
            fi
            python3 bench/fail2ban-load.py --bin "$BIN" --work "$run" --rate "$rate" \
                --seconds "$SECONDS_PER_RUN" --db "$url" --action "$action" --botnet \
                --settle "$SETTLE"
            echo "  load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
        done
    done
    if [ "$store" = postgresql ]; then stop_pg; fi
done
