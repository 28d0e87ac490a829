#!/bin/sh
# WRITERS `record` processes at a time on one database with EVENTS logins stored:
# Fail2ban's own jails (or several Fail2ban instances) calling in parallel. Each
# writer is a hyperfine run of RUNS records of its own account (a new login each:
# no --time, so "now" in milliseconds); they all start together.
#
#   ./bench/parallel.sh                               # 4 writers x 2000, 1 M stored
#   EVENTS=100000 RUNS=200 ./bench/parallel.sh         # a quick check
#
# Prints a Markdown table: logins/s over the whole run, per-process median and p99
# under contention, failed processes, and whether every login was stored.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

EVENTS=${EVENTS:-1000000}
RUNS=${RUNS:-2000}
WRITERS=${WRITERS:-4}

db=$W/mg.db
filled "$db" "$EVENTS"
before=$(sqlite3 "$db" "SELECT count(*) FROM events")

echo "$WRITERS writers x $RUNS records..." >&2
start=$(date +%s%N)
pids=
i=1
while [ "$i" -le "$WRITERS" ]; do
    # -i: a failed record is counted below, not a reason to stop.
    hyperfine -N -i --warmup 0 --runs "$RUNS" --style none --export-json "$W/writer-$i.json" \
        -n "writer $i" \
        "$BIN record --source=smtp --jail=bench --user=writer$i@example.com --ip=203.0.113.$i" \
        >"$W/writer-$i.log" 2>&1 &
    pids="$pids $!"
    i=$((i + 1))
done
status=0
for pid in $pids; do
    wait "$pid" || status=1
done
end=$(date +%s%N)
[ "$status" -eq 0 ] || { cat "$W"/writer-*.log >&2; exit 1; }
after=$(sqlite3 "$db" "SELECT count(*) FROM events")
rss "record, $WRITERS writers" "$BIN" record --source=smtp --jail=bench --user=writer0@example.com --ip=203.0.113.99

python3 - "$((end - start))" "$((after - before))" "$WRITERS" "$RUNS" "$(grouped "$before")" \
    "$(tail -n 1 "$W/rss.tsv" | cut -f 2)" "$W"/writer-*.json <<'PY'
import json, statistics, sys
ns, stored, writers, runs, before, kb = sys.argv[1:7]
results = [json.load(open(f))["results"][0] for f in sys.argv[7:]]
times = sorted(t for r in results for t in r["times"])
failed = sum(1 for r in results for c in r["exit_codes"] if c != 0)
total = int(writers) * int(runs)
secs = int(ns) / 1e9
p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
print("| writers x records | stored before | wall time | logins/s | median | p99 | max | failed | stored | peak RSS |")
print("|---|---|---|---|---|---|---|---|---|---|")
print(f"| {writers} x {runs} | {before} | {secs:.2f} s | {total / secs:,.0f} "
      f"| {statistics.median(times)*1000:.2f} ms | {p99*1000:.2f} ms | {times[-1]*1000:.2f} ms "
      f"| {failed} | {int(stored):,} of {total:,} | {kb} KiB |")
PY
