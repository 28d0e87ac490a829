#!/bin/sh
# f2b-mailguard on a shared PostgreSQL store, against a private PostgreSQL 15
# started here (initdb in $W, Unix socket only, default durability: fsync on):
# 1. `record` beside /bin/true, with 0 and EVENTS logins stored, for a quiet account
#    and one with NETWORKS (20,000) networks in the window (RECORD_ONLY=1: this alone);
# 1b. the same through PgBouncer in session pooling, beside the direct connection
#    (and BEFORE=PATH, another build, for a paired before/after);
# 2. where one record's time goes, from the server's log of RUNS_LOG runs
#    (log_connections, log_disconnections, log_min_duration_statement = 0);
# 3. WRITERS writers recording at once: logins/s and the per-process p99;
# 4. `status` (the overview) with STATUS_EVENTS logins stored, and the plan of its
#    window query.
#
#   ./bench/postgres.sh                                     # the figures in BENCHMARKS.md
#   EVENTS=100000 STATUS_EVENTS=1000000 RUNS=50 ./bench/postgres.sh   # a quick check
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

EVENTS=${EVENTS:-1000000}
STATUS_EVENTS=${STATUS_EVENTS:-10000000}
RUNS=${RUNS:-500}
RUNS_LOG=${RUNS_LOG:-100}
WRITERS=${WRITERS:-4}
PER_WRITER=${PER_WRITER:-500}
need psql:postgresql-client-15 runuser:util-linux
pg_start
sql() { psql -X -q -A -t -v ON_ERROR_STOP=1 -U postgres -h "$pg" -d "$1" -c "$2"; }

# db NAME: a database and a config for it; prints the config's path.
db() {
    sql postgres "CREATE DATABASE $1" >/dev/null
    mkdir -p "$W/local-$1"
    printf 'database = "postgresql://postgres@/%s?host=%s"\nlocal_dir = "%s"\nserver_name = "bench"\n[actions]\nnotify = []\nblock = []\nlock = []\n' \
        "$1" "$pg" "$W/local-$1" >"$W/$1.toml"
    # The binary creates the schema.
    "$BIN" --config "$W/$1.toml" status >/dev/null
    echo "$W/$1.toml"
}

# pg_fill DB EVENTS: lib.sh's shape (USERS accounts, logins evenly over the last 29
# days up to a minute ago), made by PostgreSQL itself, with the events indexes dropped
# during the insert and rebuilt from the schema's own definitions.
pg_fill() {
    [ "$2" -gt 0 ] || return 0
    echo "filling $2 logins into $1..." >&2
    start=$(date +%s)
    end_ms=$((now_ms - 60000))
    span_ms=$((29 * DAY_MS))
    indexes=$(sql "$1" "SELECT string_agg(indexdef, '; ') FROM pg_indexes WHERE tablename = 'events' AND indexname <> 'events_pkey'")
    drops=$(sql "$1" "SELECT string_agg('DROP INDEX ' || indexname, '; ') FROM pg_indexes WHERE tablename = 'events' AND indexname <> 'events_pkey'")
    sql "$1" "$drops" >/dev/null
    sql "$1" "
INSERT INTO users (name) SELECT 'user' || i || '@example.com' FROM generate_series(1, $USERS) i;
SET maintenance_work_mem = '512MB';
INSERT INTO events (user_id, ts_ms, source, ip, jail, server)
  SELECT 1 + i % $USERS, $end_ms - ($2 - 1 - i) * $span_ms / $2,
         CASE WHEN i % 4 = 0 THEN 'imap' ELSE 'smtp' END,
         '198.' || (51 + (i / 62500) % 4) || '.' || ((i / 250) % 250) || '.' || (i % 250 + 1),
         'bench', 'bench'
  FROM generate_series(0, $2 - 1) i;
$indexes;
UPDATE users SET level = 'notify', last_hit_ms = $now_ms - 600000 WHERE id % 250 = 10;
INSERT INTO level_changes (user_id, ts_ms, from_level, to_level, enforced, reason, actor)
  SELECT id, $now_ms - 600000, 'ok', 'notify', false, 'smtp: 6 networks in 1h (threshold 5)', 'detector'
  FROM users WHERE level = 'notify';
UPDATE users u SET last_seen_ms = m FROM (SELECT user_id, max(ts_ms) m FROM events GROUP BY user_id) e WHERE e.user_id = u.id;" >/dev/null
    sql "$1" "VACUUM ANALYZE" >/dev/null
    echo "filled in $(($(date +%s) - start)) s: $(sql "$1" "SELECT count(*) FROM events") logins" >&2
}

# medians JSON: each command's median and p95 of a hyperfine export, on stderr.
medians() {
    python3 - "$1" <<'PY'
import json, statistics, sys
for r in json.load(open(sys.argv[1]))["results"]:
    t = sorted(r["times"])
    p95 = t[min(len(t) - 1, int(len(t) * 0.95))]
    print(f"{r['command']}: median {statistics.median(t)*1000:.2f} ms, p95 {p95*1000:.2f} ms", file=sys.stderr)
PY
}

# 1. record beside /bin/true.
empty=$(db empty)
full=$(db stored)
pg_fill stored "$EVENTS"
many_networks_sql postgres | psql -X -q -v ON_ERROR_STOP=1 -U postgres -h "$pg" -d stored >/dev/null
sql stored "ANALYZE events" >/dev/null
stored=$(grouped "$EVENTS")
rec="record --source=smtp --jail=bench"
beside_true 20 "$W/record.json" \
    -n "record (PostgreSQL), empty database" "$BIN --config $empty $rec --user=a@example.com --ip=203.0.113.9" \
    -n "record (PostgreSQL), quiet account, $stored stored" "$BIN --config $full $rec --user=user4000@example.com --ip=203.0.113.200" \
    -n "record (PostgreSQL), account with $(grouped "$NETWORKS") networks in window, $stored stored" "$BIN --config $full $rec --user=spread@example.com --ip=203.0.113.202"
medians "$W/record.json"
# RECORD_ONLY=1: section 1 alone (the many-networks comparison).
[ -z "${RECORD_ONLY:-}" ] || exit 0

# 1b. The same record through PgBouncer (Debian's pgbouncer) in session pooling, as a
# mail server would run it beside record: each record is still a client session of
# its own, but PgBouncer hands it a backend that is already started, authenticated
# and has the tables' catalog entries cached. BEFORE=PATH adds another build of the
# binary (the one before a change), direct, to the same interleaved runs.
need pgbouncer
bouncer=$W/bouncer
mkdir "$bouncer"
chown postgres:postgres "$bouncer"
printf '"postgres" ""\n' >"$bouncer/users.txt"
cat >"$bouncer/pgbouncer.ini" <<EOF
[databases]
* = host=$pg
[pgbouncer]
listen_addr =
unix_socket_dir = $bouncer
listen_port = 6432
auth_type = trust
auth_file = $bouncer/users.txt
pool_mode = session
default_pool_size = 8
logfile = $bouncer/log
pidfile = $bouncer/pid
EOF
as_pg pgbouncer -d -q "$bouncer/pgbouncer.ini"
trap 'kill "$(cat "$bouncer/pid" 2>/dev/null)" 2>/dev/null || true; pg_stop; cleanup' EXIT
# through_bouncer CONFIG: the same config, connecting through PgBouncer; prints its path.
through_bouncer() {
    out=${1%.toml}-pooled.toml
    sed "s|?host=$pg\"|?host=$bouncer\&port=6432\"|" "$1" >"$out"
    grep -q "port=6432" "$out" || { echo "$out: no port" >&2; exit 1; }
    echo "$out"
}
pooled=$(through_bouncer "$full")
set -- -n "record (PostgreSQL), quiet account, $stored stored" \
    "$BIN --config $full $rec --user=user4000@example.com --ip=203.0.113.200" \
    -n "record (PostgreSQL via PgBouncer), quiet account, $stored stored" \
    "$BIN --config $pooled $rec --user=user4002@example.com --ip=203.0.113.202"
if [ -n "${BEFORE:-}" ]; then
    set -- "$@" -n "record (PostgreSQL), quiet account, $stored stored, before" \
        "$BEFORE --config $full $rec --user=user4003@example.com --ip=203.0.113.203"
fi
beside_true 20 "$W/pooled.json" "$@"
medians "$W/pooled.json"

# 2. Where the time goes: the server's log of RUNS_LOG records, phase by phase.
for setting in "log_connections = on" "log_disconnections = on" \
    "log_min_duration_statement = 0" "log_line_prefix = '%m [%p] '"; do
    sql postgres "ALTER SYSTEM SET $setting" >/dev/null
done
sql postgres "SELECT pg_reload_conf()" >/dev/null
: >"$pg/log.mark"
from=$(wc -c <"$pg/log")
i=0
walls=
while [ "$i" -lt "$RUNS_LOG" ]; do
    a=$(date +%s%N)
    # $rec is a command line: split on purpose.
    # shellcheck disable=SC2086
    "$BIN" --config "$full" $rec --user=user4001@example.com --ip=203.0.113.201 >/dev/null
    b=$(date +%s%N)
    walls="$walls $(((b - a) / 1000))"
    i=$((i + 1))
done
sql postgres "ALTER SYSTEM RESET ALL" >/dev/null
sql postgres "SELECT pg_reload_conf()" >/dev/null
tail -c +"$((from + 1))" "$pg/log" >"$W/phases.log"
[ -z "${KEEP_LOG:-}" ] || cp "$W/phases.log" "$KEEP_LOG"
python3 - "$W/phases.log" "$walls" <<'PY'
import re, statistics, sys
from datetime import datetime
log, walls = sys.argv[1], [int(w) / 1000 for w in sys.argv[2].split()]
line = re.compile(r"^(\S+ \S+) \S+ \[(\d+)\] (.*)$")
sessions = {}
for raw in open(log):
    m = line.match(raw.rstrip("\n"))
    if not m:
        continue
    ts = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() * 1000
    s = sessions.setdefault(m.group(2), {"lines": []})
    s["lines"].append((ts, m.group(3)))
phases = {k: [] for k in ("backend start + auth", "authorized to schema check", "schema check", "schema check to START",
                          "transaction (START..COMMIT)", "of which statements in the server", "of which COMMIT (WAL flush)",
                          "after COMMIT to disconnect", "session (connect..disconnect)")}
for s in sessions.values():
    L = s["lines"]
    def at(pred):
        return next((t for t, msg in L if pred(msg)), None)
    recv = at(lambda m: "connection received" in m)
    auth = at(lambda m: "connection authorized" in m)
    schema = max((t for t, m in L if "mailguard_schema" in m), default=None)
    begin = at(lambda m: m.endswith("statement: START TRANSACTION"))
    commit = at(lambda m: m.endswith("statement: COMMIT"))
    disc = at(lambda m: "disconnection" in m)
    if None in (recv, auth, schema, begin, commit, disc):
        continue
    # Each duration line is logged at the statement's end, with its duration.
    dur = lambda m: float(re.search(r"duration: ([0-9.]+) ms", m).group(1))
    begin_dur = next(dur(m) for t, m in L if m.endswith("statement: START TRANSACTION"))
    schema_dur = sum(dur(m) for t, m in L if "mailguard_schema" in m and "duration:" in m)
    in_tx = [dur(m) for t, m in L if begin <= t <= commit and "duration:" in m]
    phases["backend start + auth"].append(auth - recv)
    phases["authorized to schema check"].append(schema - schema_dur - auth)
    phases["schema check"].append(schema_dur)
    phases["schema check to START"].append(begin - begin_dur - schema)
    phases["transaction (START..COMMIT)"].append(commit - begin + begin_dur)
    phases["of which COMMIT (WAL flush)"].append(next(dur(m) for t, m in L if m.endswith("statement: COMMIT")))
    phases["of which statements in the server"].append(sum(in_tx) + begin_dur)
    phases["after COMMIT to disconnect"].append(disc - commit)
    phases["session (connect..disconnect)"].append(disc - recv)
n = len(phases["session (connect..disconnect)"])
print(f"| phase ({n} records, server log) | median | p95 |")
print("|---|---|---|")
def row(name, v):
    v = sorted(v)
    print(f"| {name} | {statistics.median(v):.2f} ms | {v[int(len(v) * 0.95)]:.2f} ms |")
row("whole process (wall, logging on)", walls)
for k, v in phases.items():
    row(k, v)
stmts = sorted({re.sub(r"^.*?(statement|execute [^:]*|parse [^:]*|bind [^:]*): ", "", m)[:60]
                for t, m in next(iter(sessions.values()))["lines"] if "duration:" in m})
print(f"\nstatements of one record: {len(stmts)} distinct", file=sys.stderr)
PY

# 3. Parallel writers: WRITERS at once, PER_WRITER records each, their own accounts;
# straight to PostgreSQL, then through PgBouncer.
par=$(db parallel)
pg_fill parallel "$EVENTS"
par_pooled=$(through_bouncer "$par")
# writers CONFIG NAME: the run's table row; accounts NAME1@ ... NAMEn@example.com.
writers() {
    echo "$WRITERS writers x $PER_WRITER records ($2)..." >&2
    start=$(date +%s%N)
    pids=
    i=1
    while [ "$i" -le "$WRITERS" ]; do
        hyperfine -N --warmup 0 --runs "$PER_WRITER" --style none --export-json "$W/$2-$i.json" \
            -n "$2 $i" "$BIN --config $1 $rec --user=$2$i@example.com --ip=203.0.113.$i" \
            >"$W/$2-$i.log" 2>&1 &
        pids="$pids $!"
        i=$((i + 1))
    done
    for p in $pids; do wait "$p"; done
    end=$(date +%s%N)
    got=$(sql parallel "SELECT count(*) FROM events WHERE jail = 'bench' AND user_id IN (SELECT id FROM users WHERE name LIKE '$2%')")
    python3 - "$((end - start))" "$got" "$WRITERS" "$PER_WRITER" "$2" "$W/$2"-*.json <<'PY'
import json, statistics, sys
ns, got, writers, per, name = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
t = sorted(x for f in sys.argv[6:] for x in json.load(open(f))["results"][0]["times"])
print(f"| {writers} writers x {per} records, {name} | {got} stored of {writers * per} | {got / (ns / 1e9):.0f} logins/s "
      f"| median {statistics.median(t)*1000:.2f} ms | p99 {t[int(len(t) * 0.99)]*1000:.2f} ms |")
PY
}
writers "$par" direct
writers "$par_pooled" pooled
# Its pool holds backends on `stored` and `parallel`, which step 4 drops.
kill "$(cat "$bouncer/pid")"

# 4. status with STATUS_EVENTS stored.
sql postgres "DROP DATABASE stored" >/dev/null
sql postgres "DROP DATABASE parallel" >/dev/null
big=$(db big)
pg_fill big "$STATUS_EVENTS"
window=$(sql big "SELECT count(*) FROM events WHERE ts_ms > $now_ms - 3600000")
echo "EXPLAIN of the overview's window query:" >&2
sql big "EXPLAIN (ANALYZE, BUFFERS) SELECT u.name, e.source, e.ip, e.ts_ms, e.count FROM events e
  JOIN users u ON u.id = e.user_id WHERE e.ts_ms > $now_ms - 3600000 AND e.ts_ms <= $now_ms AND e.ts_ms > u.count_from_ms" >&2
beside_true 3 "$W/status.json" \
    -n "status (PostgreSQL), $(grouped "$STATUS_EVENTS") stored ($(grouped "$window") in the window)" "$BIN --config $big status" \
    -n "status --json (PostgreSQL), $(grouped "$STATUS_EVENTS") stored" "$BIN --config $big status --json"

table "$W/record.json" "$W/status.json"
