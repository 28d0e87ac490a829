#!/bin/sh
# Wall time of one `record` process (what Fail2ban waits for under its global lock),
# with 0, 1 M and 10 M logins already stored, beside /bin/true (the floor of any
# process Fail2ban starts) timed in the same hyperfine call: for a quiet account, a
# busy one and one with NETWORKS (20,000) networks in the window, the runs interleaved.
#
#   ./bench/record.sh                              # 0, 1 M and 10 M stored, 1000 runs
#   SIZES="0 100000" RUNS=100 ./bench/record.sh     # a quick check
#   ASN=/path/asn.mmdb ./bench/record.sh             # + the quiet account with it configured
#
# Prints a Markdown table (median, p99, max, x /bin/true, peak RSS) for BENCHMARKS.md.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

SIZES=${SIZES:-0 1000000 10000000}
RUNS=${RUNS:-1000}

jsons=
for events in $SIZES; do
    db=$W/mg-$events.db
    cfg=$W/record-$events.toml
    config "$db" >"$cfg"
    fill "$db" "$events"
    stored=$(grouped "$(sqlite3 "$db" "SELECT count(*) FROM events")")
    # No --time: each run is a new login at "now" (milliseconds), never a duplicate.
    rec="$BIN --config=$cfg record --source=smtp --jail=bench"
    if [ "$events" -eq 0 ]; then
        set -- -n "record, empty database" "$rec --user=a@example.com --ip=203.0.113.9"
    else
        many_networks_sql sqlite | sqlite3 "$db"
        if [ -n "${ASN:-}" ]; then
            { config "$db"; printf '[ownership]\nasn_database = "%s"\n' "$ASN"; } >"$cfg.asn"
            set -- -n "record, quiet account, ASN database configured, $stored stored" \
                "$BIN --config=$cfg.asn record --source=smtp --jail=bench --user=user4001@example.com --ip=203.0.113.199"
        else
            set --
        fi
        set -- "$@" \
            -n "record, quiet account, $stored stored" \
            "$rec --user=user4000@example.com --ip=203.0.113.200" \
            -n "record, busy account (15 networks in window), $stored stored" \
            "$rec --user=user1@example.com --ip=203.0.113.201" \
            -n "record, account with $(grouped "$NETWORKS") networks in window, $stored stored" \
            "$rec --user=spread@example.com --ip=203.0.113.202"
    fi
    beside_true 50 "$W/record-$events.json" "$@"
    jsons="$jsons $W/record-$events.json"

    [ "$events" -gt 0 ] || continue
    # Escalation: an account with 5 networks in the window gets a 6th, so every run
    # crosses the notify threshold, writes the level change, queues an action and starts
    # the detached worker. --prepare puts the account back to ok before each run. The
    # action (dovecot_kick with doveadm = /bin/true) is skipped at once by the worker,
    # which then exits.
    esc_cfg=$W/escalate-$events.toml
    printf 'database = "%s"\n[actions]\nnotify = ["dovecot_kick"]\n[dovecot]\ndoveadm = "/bin/true"\n' "$db" >"$esc_cfg"
    sqlite3 "$db" <<SQL
INSERT INTO users (name) VALUES ('escalate@example.com');
INSERT INTO events (user_id, ts_ms, source, ip, jail)
  SELECT id, $now_ms - 600000 + 1000 * n, 'smtp', '192.0.2.' || n, 'bench'
  FROM users, (SELECT 1 AS n UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5)
  WHERE name = 'escalate@example.com';
SQL
    name="record that escalates (queues an action, starts the worker), $stored stored"
    escalate="$BIN --config=$esc_cfg record --source=smtp --jail=bench --user=escalate@example.com --ip=198.19.0.6"
    reset="sqlite3 -cmd '.timeout 5000' $db \"UPDATE users SET level = 'ok', last_hit_ms = NULL WHERE name = 'escalate@example.com'\""
    hyperfine -N --warmup 20 --runs "$((RUNS / 4))" --prepare "$reset" \
        --export-json "$W/escalate-$events.json" -n "$name" "$escalate" >&2
    jsons="$jsons $W/escalate-$events.json"
    sh -c "$reset"
    # shellcheck disable=SC2086
    rss "$name" $escalate
    queued=$(sqlite3 "$db" "SELECT count(*) FROM actions")
    echo "actions queued by the escalation runs: $queued" >&2
    # The next size gets a fresh database; this one can go (10 M take ~1.5 GB).
    sleep 1
    rm -f "$db" "$db-wal" "$db-shm"
done

# shellcheck disable=SC2086
table $jsons
