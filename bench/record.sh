#!/bin/sh
# Wall time of one `record` process (what Fail2ban waits for under its global lock),
# with EVENTS logins already stored, beside /bin/true on the same machine in the same run.
#
#   ./bench/record.sh                 # 1,000,000 stored logins, 1000 runs per case
#   EVENTS=10000000 ./bench/record.sh
#
# Prints a Markdown table (median, p99, max RSS) for BENCHMARKS.md.
set -eu
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-1000000}
RUNS=${RUNS:-1000}
USERS=${USERS:-5000}

if ! command -v hyperfine >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q hyperfine >/dev/null
fi
# The same build install.sh ships: static, so no dynamic loader work at each start.
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -q --target "$host"
BIN=$PWD/target/$host/release/f2b-mailguard

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
export F2B_MAILGUARD_CONFIG="$W/config.toml"
printf 'database = "%s/mg.db"\n' "$W" > "$F2B_MAILGUARD_CONFIG"

now_ms=$(($(date +%s) * 1000))
# Let the binary create the schema, then fill it in bulk: USERS accounts, EVENTS logins
# spread over the last 29 days (inside retention, so nothing is pruned while timing).
"$BIN" record --source=smtp --jail=bench --user=seed@example.com --ip=192.0.2.1
span_ms=$((29 * 86400 * 1000))
echo "filling $EVENTS logins for $USERS accounts..." >&2
sqlite3 "$W/mg.db" <<SQL
PRAGMA synchronous = OFF;
BEGIN;
INSERT INTO users (name)
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $USERS)
  SELECT 'user' || i || '@example.com' FROM n;
INSERT OR IGNORE INTO events (user_id, ts_ms, source, ip, jail)
  WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $EVENTS - 1)
  SELECT 2 + (i % $USERS),
         $now_ms - 3600000 - (i * $span_ms / $EVENTS),
         CASE i % 4 WHEN 0 THEN 'imap' ELSE 'smtp' END,
         '198.' || (51 + (i / 62500) % 4) || '.' || ((i / 250) % 250) || '.' || (i % 250 + 1),
         'bench'
  FROM n;
-- A busy account: 15 networks in the last hour, so each record evaluates a full window.
INSERT INTO events (user_id, ts_ms, source, ip, jail)
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 15)
  SELECT 2, $now_ms - i * 60000, 'smtp', '203.0.113.' || i, 'bench' FROM n;
COMMIT;
SQL
stored=$(sqlite3 "$W/mg.db" "SELECT count(*) FROM events")
echo "stored: $stored logins" >&2

# No --time: each run is a new login at "now" (milliseconds), never a duplicate.
quiet="$BIN record --source=smtp --jail=bench --user=user4000@example.com --ip=203.0.113.200"
busy="$BIN record --source=smtp --jail=bench --user=user1@example.com --ip=203.0.113.201"
fresh_cfg="$W/fresh.toml"
printf 'database = "%s/fresh.db"\n' "$W" > "$fresh_cfg"
empty="$BIN --config=$fresh_cfg record --source=smtp --jail=bench --user=a@example.com --ip=203.0.113.9"

hyperfine -N --warmup 50 --runs "$RUNS" --export-json "$W/times.json" \
    -n "/bin/true" "/bin/true" \
    -n "record, empty database" "$empty" \
    -n "record, quiet account, $stored stored" "$quiet" \
    -n "record, busy account (15 networks in window), $stored stored" "$busy" >&2

rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1; }
# The cases are command lines: split on purpose.
# shellcheck disable=SC2086
python3 - "$W/times.json" "$(rss /bin/true)" "$(rss $empty)" "$(rss $quiet)" "$(rss $busy)" <<'PY'
import json, statistics, sys
data = json.load(open(sys.argv[1]))["results"]
rss = sys.argv[2:]
floor = statistics.median(data[0]["times"])
print("| case | median | p99 | x /bin/true | max RSS |")
print("|---|---|---|---|---|")
for r, kb in zip(data, rss):
    t = sorted(r["times"])
    med = statistics.median(t)
    p99 = t[min(len(t) - 1, int(len(t) * 0.99))]
    print(f"| {r['command']} | {med*1000:.2f} ms | {p99*1000:.2f} ms | {med/floor:.1f} | {kb} KiB |")
PY
