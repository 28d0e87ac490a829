#!/bin/sh
# Wall time of the `record` that finds N logins waiting in the spool (kept while the
# config was broken: 50 accounts, 20 networks each) and stores them all before its
# own, and the WAL file's size after it. `record_wait` is raised (where the binary
# knows the key) so that one call drains everything.
#
#   ./bench/drain.sh                       # N=1000, 10 runs
#   BIN=/path/to/other/f2b-mailguard N=1000 RUNS=5 ./bench/drain.sh
#
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

N=${N:-1000}
RUNS=${RUNS:-10}

db=$W/mg.db
cfg=$W/drain.toml
printf 'record_wait = "1s"\n' >"$W/probe.toml"
if "$BIN" --config="$W/probe.toml" config check >/dev/null 2>&1; then
    printf 'record_wait = "10m"\n' >"$cfg"
fi
config "$db" >>"$cfg"
rec="$BIN --config=$cfg record --source=smtp --jail=bench"
$rec --user=seed@example.com --ip=192.0.2.1
bad=$W/broken.toml
printf 'database = "%s"\nmode = "enforc"\n' "$db" >"$bad"
echo "spooling $N logins..." >&2
t0=$((now_ms / 1000 - N))
i=0
while [ "$i" -lt "$N" ]; do
    "$BIN" --config="$bad" record --source=smtp --jail=bench \
        --user="u$((i % 50))@example.com" --ip="198.18.$((i / 250)).$((i % 250 + 1))" \
        --time="$((t0 + i))" 2>/dev/null
    i=$((i + 1))
done
[ "$(wc -l <"$db.spool")" -eq "$N" ] || { echo "spool holds $(wc -l <"$db.spool")" >&2; exit 1; }
sqlite3 "$db" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
mkdir "$W/saved"
cp "$db" "$db.spool" "$W/saved/"
restore="cp $W/saved/mg.db $W/saved/mg.db.spool $W/ && rm -f $db-wal $db-shm"
hyperfine -N --warmup 1 --runs "$RUNS" --prepare "sh -c '$restore'" \
    -n "record draining $N spooled logins" \
    "$rec --user=bob@example.com --ip=203.0.113.50" >&2
sh -c "$restore"
$rec --user=bob@example.com --ip=203.0.113.50
echo "after one drain: $(wc -l <"$db.spool") spooled, $(sqlite3 "$db" "SELECT count(*) FROM events") stored, WAL $(stat -c %s "$db-wal" 2>/dev/null || echo 0) bytes"
