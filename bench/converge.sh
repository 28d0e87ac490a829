#!/bin/sh
# Wall time of `run-actions` on a server whose queue holds QUEUED messages, with
# nothing contained (the timer's usual minute) and with one account blocked (each run
# lists the queue and reads who submitted every message not on hold), beside /bin/true.
#
#   ./bench/converge.sh                          # 0, 1,000 and 10,000 queued
#   QUEUED="0 1000" RUNS=10 ./bench/converge.sh   # a quick check
#
# The queue is a private Postfix's (no listener, outbound mail deferred), started to
# move the messages into its deferred queue and stopped before the timing.
# Prints a Markdown table for BENCHMARKS.md.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
need postfix:postfix

QUEUED=${QUEUED:-0 1000 10000}
RUNS=${RUNS:-20}

# Postfix daemons (user postfix) must reach their directories under the scratch one.
chmod 711 "$W"
pf=$W/postfix
mkdir -p "$pf/etc" "$pf/spool" "$pf/data"
chown postfix "$pf/data"
cat >"$pf/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $pf/spool
data_directory = $pf/data
maillog_file = $pf/postfix.log
maillog_file_prefixes = $pf
myhostname = mail.example.test
mydestination =
inet_interfaces = loopback-only
master_service_disable = inet
relayhost = [127.0.0.1]:9
defer_transports = smtp
EOF
cp /etc/postfix/master.cf "$pf/etc/master.cf"
postconf -c "$pf/etc" -F '*/*/chroot = n'
postfix -c "$pf/etc" check
trap 'postfix -c "$pf/etc" stop >/dev/null 2>&1 || true; cleanup' EXIT
: >"$pf/etc/map"
postmap "lmdb:$pf/etc/map"
export MAIL_CONFIG="$pf/etc"

export F2B_MAILGUARD_CONFIG="$W/config.toml"
# Nothing contained, then one account blocked: mode enforce, actions on, the map and the
# hold in the private Postfix; no mail (no action queued but the map and hold).
cat >"$F2B_MAILGUARD_CONFIG" <<EOF
database = "$W/state/mg.db"
mode = "enforce"
[actions]
notify = []
block = ["sasl_block", "hold_queue"]
[postfix]
sasl_map = "$pf/etc/map"
EOF

beside_true 1 "$W/idle.json" -n "run-actions, nothing contained, queue empty" "$BIN run-actions"
table "$W/idle.json"
: >"$W/rss.tsv"

# One account blocked by a burst of 11 networks; its map and hold applied here.
t=$(($(date +%s) - 300))
for i in $(seq 0 10); do
    "$BIN" record --source=smtp --jail=bench --user=victim@example.com \
        --ip="198.51.$((100 + i)).7" --time="$((t + i)).0"
done
"$BIN" run-actions >/dev/null

queued=0
for want in $QUEUED; do
    echo "queueing $want messages..." >&2
    # Not the blocked account's: nothing gets held, so every run reads them all.
    postfix -c "$pf/etc" start 2>/dev/null
    while [ "$queued" -lt "$want" ]; do
        printf 'Subject: bench\n\nhello\n' | sendmail -f "sender$((queued % 50))@example.com" friend@remote.example  2>/dev/null
        queued=$((queued + 1))
    done
    until [ "$(postqueue -j | grep -c '"queue_name": "deferred"')" -ge "$want" ]; do sleep 1; done
    postfix -c "$pf/etc" stop 2>/dev/null
    # The first run reads every new message once (timed apart); later runs read none.
    start=$(date +%s%N)
    "$BIN" run-actions >/dev/null
    echo "first run-actions after queueing: $((($(date +%s%N) - start) / 1000000)) ms" >&2
    echo
    beside_true 1 "$W/converge-$want.json" -n "run-actions, 1 account blocked, $want queued" "$BIN run-actions"
    table "$W/converge-$want.json"
    : >"$W/rss.tsv"
done
