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
# Stop any worker an escalation started (by pid), then remove the scratch files.
trap 'pkill -f -- "--config.$W/" || true; rm -rf "$W"' EXIT
export F2B_MAILGUARD_CONFIG="$W/config.toml"
# The plain cases measure recording; no action is queued (the escalation case below does).
printf 'database = "%s/mg.db"\n[actions]\nnotify = []\nblock = []\nlock = []\n' "$W" > "$F2B_MAILGUARD_CONFIG"

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

# Escalation: an account with 5 networks in the window gets a 6th, so every run crosses
# the notify threshold, queues an action and starts the detached worker. --prepare puts
# the account back to ok before each run. The action (dovecot_kick with doveadm =
# /bin/true) is skipped at once by the worker, which then exits.
esc_cfg="$W/escalate.toml"
printf 'database = "%s/mg.db"\n[actions]\nnotify = ["dovecot_kick"]\n[dovecot]\ndoveadm = "/bin/true"\n' "$W" > "$esc_cfg"
sqlite3 "$W/mg.db" <<SQL
INSERT INTO users (name) VALUES ('escalate@example.com');
INSERT INTO events (user_id, ts_ms, source, ip, jail)
  SELECT id, $now_ms - 600000 + 1000 * n, 'smtp', '192.0.2.' || n, 'bench'
  FROM users, (SELECT 1 AS n UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5)
  WHERE name = 'escalate@example.com';
SQL
escalate="$BIN --config=$esc_cfg record --source=smtp --jail=bench --user=escalate@example.com --ip=198.18.0.6"
reset="sqlite3 -cmd '.timeout 5000' $W/mg.db \"UPDATE users SET level = 'ok', last_hit_ms = NULL WHERE name = 'escalate@example.com'\""
hyperfine -N --warmup 20 --runs "$((RUNS / 4))" --prepare "$reset" --export-json "$W/escalate.json" \
    -n "record that escalates (queues an action, starts the worker), $stored stored" "$escalate" >&2
queued=$(sqlite3 "$W/mg.db" "SELECT count(*) FROM actions")
echo "actions queued by the escalation runs: $queued" >&2

rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1; }
# The cases are command lines: split on purpose.
# shellcheck disable=SC2086
python3 - "$W/times.json" "$W/escalate.json" "$(rss /bin/true)" "$(rss $empty)" "$(rss $quiet)" "$(rss $busy)" "$(rss $escalate)" <<'PY'
import json, statistics, sys
data = json.load(open(sys.argv[1]))["results"] + json.load(open(sys.argv[2]))["results"]
rss = sys.argv[3:]
floor = statistics.median(data[0]["times"])
print("| case | median | p99 | x /bin/true | max RSS |")
print("|---|---|---|---|---|")
for r, kb in zip(data, rss):
    t = sorted(r["times"])
    med = statistics.median(t)
    p99 = t[min(len(t) - 1, int(len(t) * 0.99))]
    print(f"| {r['command']} | {med*1000:.2f} ms | {p99*1000:.2f} ms | {med/floor:.1f} | {kb} KiB |")
PY
