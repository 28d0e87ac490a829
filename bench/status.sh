#!/bin/sh
# Wall time of `status` (the overview, as text and JSON) and `status USER` (an account
# with many stored logins, and a quiet one) with EVENTS logins stored, beside /bin/true.
#
#   ./bench/status.sh                          # 10 M stored, 100 runs per case
#   EVENTS=1000000 RUNS=20 ./bench/status.sh    # a quick check
#
# Prints a Markdown table (median, p99, max, x /bin/true, peak RSS) for BENCHMARKS.md.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

EVENTS=${EVENTS:-10000000}
RUNS=${RUNS:-100}

db=$W/mg.db
filled "$db" "$EVENTS"
stored=$(grouped "$(sqlite3 "$db" "SELECT count(*) FROM events")")
heavy=$(grouped "$(sqlite3 "$db" "SELECT count(*) FROM events WHERE user_id = (SELECT id FROM users WHERE name = 'heavy@example.com')")")
quiet=$(grouped "$(sqlite3 "$db" "SELECT count(*) FROM events WHERE user_id = (SELECT id FROM users WHERE name = 'user4000@example.com')")")
window=$(grouped "$(sqlite3 "$db" "SELECT count(*) FROM events WHERE ts_ms > $now_ms - 3600000")")
echo "stored: $stored logins, $window in the last hour; heavy@example.com $heavy, user4000@example.com $quiet" >&2

set -- \
    -n "status, $stored stored ($window in the window)" "$BIN status" \
    -n "status --json, $stored stored" "$BIN status --json" \
    -n "status USER, account with $heavy logins" "$BIN status heavy@example.com" \
    -n "status --json USER, account with $heavy logins" "$BIN status --json heavy@example.com" \
    -n "status USER, account with $quiet logins" "$BIN status user4000@example.com"
beside_true 3 "$W/status.json" "$@"

table "$W/status.json"
