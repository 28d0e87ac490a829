# Shared set-up of the bench/ scripts; sourced, not run:
#   # shellcheck source=bench/lib.sh
#   . "$(dirname "$0")/lib.sh"
# Gives: the repository as working directory, the tools, $BIN (the binary as
# install.sh builds it), $W (a scratch directory removed on exit, with every process
# started from it), and the helpers below. BIN=PATH times that binary instead of
# building one (e.g. to compare two builds on the same data).
# shellcheck shell=sh

set -eu
cd "$(dirname "$0")/.."

USERS=${USERS:-5000}

# Tools, installed from Debian if missing: `need TOOL[:PACKAGE]...`.
need() {
    missing=
    for want in "$@"; do
        tool=${want%%:*}
        package=${want#*:}
        if [ "$tool" = time ]; then tool=/usr/bin/time; fi
        command -v "$tool" >/dev/null 2>&1 || missing="$missing $package"
    done
    if [ -n "$missing" ]; then
        echo "installing$missing..." >&2
        # Word splitting of the package list is intended.
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null
    fi
}
# hyperfine (timing of the parallel and escalation cases), time (peak RSS), sqlite3 (bulk
# fill), python3 (interleaved timing, statistics).
need hyperfine time sqlite3 python3

# The same build install.sh ships: release, static, so no dynamic loader work at start.
host=$(rustc -vV | sed -n 's/^host: //p')
if [ -z "${BIN:-}" ]; then
    echo "building (release, static)..." >&2
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -q --target "$host"
    BIN=$PWD/target/$host/release/f2b-mailguard
fi
export BIN

W=$(mktemp -d "${TMPDIR:-/tmp}/mailguard-bench.XXXXXX")
# Every process a bench starts runs with a config or database under $W (a detached
# run-actions worker too): stop those, by pid, then remove the scratch files.
cleanup() {
    for pid in $(pgrep -f -- "$W/" || true); do
        if [ "$pid" != "$$" ]; then kill "$pid" 2>/dev/null || true; fi
    done
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A config for database $1, with every action off (the plain cases measure recording).
config() {
    printf 'database = "%s"\n[actions]\nnotify = []\nblock = []\nlock = []\n' "$1"
}

now_ms=$(($(date +%s) * 1000))
DAY_MS=86400000

# fill DB EVENTS: a database of EVENTS logins, the shape every bench uses:
# * USERS accounts user1..userN@example.com, logins spread evenly over the last 29 days
#   (inside the default retention, so nothing is pruned while timing) up to a minute
#   ago, in time order like a live database; each account sees ~3 networks an hour;
# * heavy@example.com: HEAVY of those logins (default EVENTS / 50: 200,000 of 10 M),
#   IMAP and SMTP from 500 addresses, each used for a stretch of 400 logins;
# * user1@example.com: 15 more networks in the last hour (the busy account);
# * 20 accounts at notify, with their level change (status lists them, with why).
# The binary creates the schema; sqlite3 then fills it with the events indexes dropped
# and recreates them with the schema's own SQL (sorting once beats 10 M index inserts).
fill() {
    db=$1
    events=$2
    heavy=${HEAVY:-$((events / 50))}
    F2B_MAILGUARD_CONFIG=/dev/null "$BIN" --db "$db" status >/dev/null
    [ "$events" -gt 0 ] || return 0
    echo "filling $events logins ($USERS accounts, $heavy of them for heavy@example.com)..." >&2
    start=$(date +%s)
    # Every k-th login is the heavy account's.
    if [ "$heavy" -gt 0 ]; then k=$((events / heavy)); else k=$((events + 1)); fi
    span_ms=$((29 * DAY_MS))
    end_ms=$((now_ms - 60000))
    indexes=$(sqlite3 "$db" "SELECT sql || ';' FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL")
    drops=$(sqlite3 "$db" "SELECT 'DROP INDEX ' || name || ';' FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL")
    sqlite3 "$db" <<SQL
PRAGMA synchronous = OFF;
PRAGMA cache_size = -1000000;
BEGIN;
$drops
INSERT INTO users (name)
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $USERS)
  SELECT 'user' || i || '@example.com' FROM n;
INSERT INTO users (name) VALUES ('heavy@example.com');
INSERT INTO events (user_id, ts_ms, source, ip, jail)
  WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $events - 1),
  -- h: the heavy account's; j: its number among the other logins; b: heavy's address.
  m(i, h, j, b) AS (SELECT i, i % $k = 0 AND i / $k < $heavy, i - min(i / $k + 1, $heavy),
                           i / $k / 400 % 500 FROM n)
  SELECT CASE WHEN h THEN $USERS + 1 ELSE 1 + (j % $USERS) END,
         $end_ms - (($events - 1 - i) * $span_ms / $events),
         CASE WHEN i % 4 = 0 THEN 'imap' ELSE 'smtp' END,
         CASE WHEN h THEN '198.18.' || (b / 250) || '.' || (b % 250 + 1)
              ELSE '198.' || (51 + (j / 62500) % 4) || '.' || ((j / 250) % 250) || '.' || (j % 250 + 1) END,
         'bench'
  FROM m;
-- The busy account: 15 networks in the last hour, so each record evaluates a full window.
INSERT INTO events (user_id, ts_ms, source, ip, jail)
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 15)
  SELECT 1, $now_ms - i * 60000 - 7, 'smtp', '203.0.113.' || i, 'bench' FROM n;
$indexes
-- Flagged accounts, as detection leaves them.
UPDATE users SET level = 'notify', last_hit_ms = $now_ms - 600000 WHERE id % 250 = 10;
INSERT INTO level_changes (user_id, ts_ms, from_level, to_level, enforced, reason, actor)
  SELECT id, $now_ms - 600000, 'ok', 'notify', 0, 'smtp: 6 networks in 1h (threshold 5)', 'detector'
  FROM users WHERE level = 'notify';
UPDATE users SET last_seen_ms = (SELECT max(ts_ms) FROM events WHERE user_id = users.id);
COMMIT;
SQL
    # Flush the fill to disk now, not during the timed runs.
    sync
    echo "filled in $(($(date +%s) - start)) s: $(sqlite3 "$db" "SELECT count(*) FROM events") logins stored" >&2
}

# filled DB EVENTS: fill DB EVENTS, and a config for it exported as
# F2B_MAILGUARD_CONFIG for every run of the binary.
filled() {
    export F2B_MAILGUARD_CONFIG="$W/config.toml"
    config "$1" >"$F2B_MAILGUARD_CONFIG"
    fill "$1" "$2"
}

# NETWORKS logins of spread@example.com, each from a network of its own (80 /24s in as
# many /16s, 198.18.0.0/24 to 198.97.0.0/24, as a botnet's: outside the built-in
# whitelist),
# over the last 20 minutes of log time (so all stay in the 1 h window for 40 minutes):
# the account a botnet logs in to. Its first record rises to lock (in the warm-up);
# each later one is the case Fail2ban meets all along. The SQL for SQLite and for
# PostgreSQL (`many_networks_sql sqlite|postgres`).
NETWORKS=${NETWORKS:-20000}
many_networks_sql() {
    if [ "$1" = sqlite ]; then
        now="CAST(strftime('%s', 'now') AS INTEGER) * 1000"
        series="WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $NETWORKS - 1) SELECT"
        from="FROM n"
        server=
        server_value=
    else
        now="(extract(epoch FROM now()) * 1000)::bigint"
        series="SELECT"
        from="FROM generate_series(0::bigint, $NETWORKS - 1) i"
        server=", server"
        server_value=", 'bench'"
    fi
    cat <<SQL
INSERT INTO users (name) VALUES ('spread@example.com');
INSERT INTO events (user_id, ts_ms, source, ip, jail$server)
  $series (SELECT id FROM users WHERE name = 'spread@example.com'),
         $now - 1200000 + i * 1200000 / $NETWORKS, 'smtp',
         '198.' || (18 + i % 80) || '.0.' || (1 + i / 80), 'bench'$server_value
  $from;
SQL
}

# rss NAME CMD...: peak resident memory of one run of CMD, in KiB, noted for `table`
# under NAME (hyperfine's name of the same command).
rss() {
    name=$1
    shift
    kb=$(/usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1)
    printf '%s\t%s\n' "$name" "$kb" >>"$W/rss.tsv"
}

# beside_true WARMUP JSON -n NAME CMD...: each case RUNS times beside /bin/true, the
# runs interleaved (true, case 1, case 2, true, case 1, ...) so that the VM's drift,
# which moves /bin/true by half within minutes here, hits every case alike and the
# ratios hold. Each run is one posix_spawn (no shell) with stdio on /dev/null, timed
# to its exit; a non-zero exit stops the bench. WARMUP rounds first, not kept. The
# times go to JSON in hyperfine's export shape; then the peak RSS of each, for `table`.
beside_true() {
    warmup=$1
    json=$2
    shift 2
    python3 - "$warmup" "$RUNS" "$json" /bin/true /bin/true "$@" <<'PY'
import json, os, shlex, statistics, sys, time
warmup, runs, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
args = [a for a in sys.argv[4:] if a != "-n"]
cases = [(args[i], shlex.split(args[i + 1])) for i in range(0, len(args), 2)]
null = os.open(os.devnull, os.O_RDWR)
stdio = [(os.POSIX_SPAWN_DUP2, null, fd) for fd in (0, 1, 2)]
def run(name, argv):
    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=stdio)
    _, status = os.waitpid(pid, 0)
    took = time.perf_counter() - start
    if status != 0:
        sys.exit(f"{name}: exit status {os.waitstatus_to_exitcode(status)}")
    return took
times = {name: [] for name, _ in cases}
for n in range(warmup + runs):
    for name, argv in cases:
        t = run(name, argv)
        if n >= warmup:
            times[name].append(t)
for name, _ in cases:
    print(f"{name}: median {statistics.median(times[name]) * 1000:.2f} ms", file=sys.stderr)
with open(out, "w") as f:
    json.dump({"results": [{"command": name, "times": times[name]} for name, _ in cases]}, f)
PY
    rss /bin/true /bin/true
    while [ $# -gt 0 ]; do
        # The case is a command line: split on purpose.
        # shellcheck disable=SC2086
        rss "$2" $3
        shift 3
    done
}


# table JSON...: one Markdown table of the JSON exports (beside_true's, hyperfine's), in
# order: median, p99, max and peak RSS (from `rss`) of each command, and its median over
# that of the last "/bin/true" before it (timed in the same interleaved run).
table() {
    python3 - "$W/rss.tsv" "$@" <<'PY'
import json, os, statistics, sys
rss_file, files = sys.argv[1], sys.argv[2:]
rss = {}
if os.path.exists(rss_file):
    for line in open(rss_file):
        name, kb = line.rstrip("\n").split("\t")
        rss[name] = kb
print("| case | runs | median | p99 | max | x /bin/true | peak RSS |")
print("|---|---|---|---|---|---|---|")
floor = None
for f in files:
    for r in json.load(open(f))["results"]:
        t = sorted(r["times"])
        med = statistics.median(t)
        if r["command"] == "/bin/true":
            floor = med
        p99 = t[min(len(t) - 1, int(len(t) * 0.99))]
        ratio = f"{med / floor:.1f}" if floor else "-"
        kb = rss.get(r["command"], "?")
        print(f"| {r['command']} | {len(t)} | {med*1000:.2f} ms | {p99*1000:.2f} ms "
              f"| {t[-1]*1000:.2f} ms | {ratio} | {kb} KiB |")
PY
}

# grouped N: N with thousands separators (10000000 -> 10,000,000).
grouped() { printf '%s' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }

# The machine, for the heading of a results section.
machine() {
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
    sqlite=$(strings "$BIN" 2>/dev/null | grep -m 1 -E '^20[0-9]{2}-[0-9]{2}-[0-9]{2} [0-9:]{8} [0-9a-f]{40,}' | cut -c 1-19 || true)
    lock=$(grep -A 1 '^name = "libsqlite3-sys"' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
    hdr=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path "*/libsqlite3-sys-$lock/sqlite3/sqlite3.h" 2>/dev/null | head -n 1)
    version=$( [ -n "$hdr" ] && sed -n 's/^#define SQLITE_VERSION *"\(.*\)"/\1/p' "$hdr" || echo "?")
    fs=$(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $2 }')
    echo "Machine: $cpu, $(nproc) cores, $mem RAM, $fs scratch, $(sed -n 's/^PRETTY_NAME="\(.*\)"/\1/p' /etc/os-release), kernel $(uname -r), $(rustc -V | cut -d ' ' -f 1-2), SQLite $version ($sqlite, bundled), $(hyperfine --version); $(date -u '+%Y-%m-%d %H:%M UTC')."
}

# A private PostgreSQL 15 in $W/pg ($pg), Unix socket only, default durability (fsync
# on); `as_pg CMD` runs as its owner, `pg_stop` stops it (also on exit).
pg_start() {
    need runuser:util-linux
    PGBIN=/usr/lib/postgresql/15/bin
    [ -x "$PGBIN/initdb" ] || need "$PGBIN/initdb:postgresql-15"
    # The cluster belongs to `postgres` (initdb refuses root): $W must let it in.
    chmod 711 "$W"
    pg=$W/pg
    mkdir "$pg"
    chown postgres:postgres "$pg"
    chmod 700 "$pg"
    as_pg "$PGBIN/initdb" -A trust -U postgres --no-instructions -D "$pg/data" >/dev/null
    as_pg "$PGBIN/pg_ctl" -D "$pg/data" -l "$pg/log" -o "-k $pg -h ''" -w start >/dev/null
    trap 'pg_stop; cleanup' EXIT
}
as_pg() { runuser -u postgres -- "$@"; }
pg_stop() { as_pg "$PGBIN/pg_ctl" -D "$pg/data" -m fast -w stop >/dev/null 2>&1 || true; }
