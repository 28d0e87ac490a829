#!/bin/sh
# Detection quality on a seeded, labelled corpus (issue 6): generates two days of
# Postfix/Dovecot log with honest and compromised accounts (examples/scenario), runs
# the real fail2ban-regex with each shipped filter over it, feeds the merged logins to
# `f2b-mailguard ingest` (default thresholds, scratch database) and compares the
# result with the labels (examples/quality). Prints a Markdown table.
#
#   ./bench/quality.sh            # seed 1
#   ./bench/quality.sh 7          # another seed
#   DAYS=3 USERS=500 ./bench/quality.sh
#   CONFIG=my.toml ./bench/quality.sh    # other thresholds ([detection], [thresholds.*])
#
# Leaves the corpus and the intermediate files in bench/out/quality-SEED/.
set -eu
cd "$(dirname "$0")/.."

SEED=${1:-1}
DAYS=${DAYS:-2}
USERS=${USERS:-300}
OUT=${OUT:-bench/out/quality-$SEED}
# Fail2ban reads the year-less syslog times in the local time zone; the corpus is UTC.
TZ=UTC
LC_ALL=C
export TZ LC_ALL

if ! command -v fail2ban-regex >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends fail2ban >/dev/null
fi

cargo build --release --locked -q --bin f2b-mailguard --example scenario --example quality
BIN=$PWD/target/release/f2b-mailguard

rm -rf "$OUT"
mkdir -p "$OUT"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

t0=$(date +%s)
cargo run --release --locked -q --example scenario -- --seed "$SEED" --days "$DAYS" --users "$USERS" --out "$OUT"
t1=$(date +%s)

# A config dir as on a real install: the system's common.conf beside our filters.
mkdir -p "$W/filter.d"
cp /etc/fail2ban/filter.d/common.conf "$W/filter.d/"
cp fail2ban/filter.d/*.conf "$W/filter.d/"

# regex SOURCE FILTER[ARGS]: "TIME SOURCE USER ADDRESS" lines.
regex() {
    fail2ban-regex -o '<time> <F-USER> <ip>' "$OUT/mail.log" "$W/filter.d/$2" \
        | sed "s/^\\([^ ]*\\) /\\1 $1 /" > "$W/$1.txt"
}
regex smtp mailguard-postfix-sasl.conf &
p1=$!
regex imap 'mailguard-dovecot-login.conf[service=imap]' &
p2=$!
wait "$p1"
wait "$p2"
regex pop3 'mailguard-dovecot-login.conf[service=pop3]' &
p1=$!
# Bounces: the filter comes with issue 5; measured when it is there.
if [ -f fail2ban/filter.d/mailguard-postfix-bounce.conf ]; then
    regex bounces mailguard-postfix-bounce.conf
else
    echo "quality.sh: no fail2ban/filter.d/mailguard-postfix-bounce.conf; bounces not fed" >&2
fi
wait "$p1"
t2=$(date +%s)

# Each accepted message is also a call of the rate jail (the same Postfix line).
sed 's/^\([^ ]*\) smtp /\1 rate /' "$W/smtp.txt" > "$W/rate.txt"
# Merge by log time (stable: equal times keep the filters' order) into JSON lines, one
# record call each; the line number is the call's ticket id, so two messages of one
# second stay two, as the jails' ids keep them live.
cat "$W"/*.txt | sort -s -n -k1,1 \
    | sed -e 's/[\\"]/\\&/g' \
        -e 's/^\([^ ]*\) \([^ ]*\) \([^ ]*\) \([^ ]*\)$/{"time":\1,"user":"\3","ip":"\4","source":"\2"}/' \
    | awk '{ sub(/}$/, ",\"fid\":\"" NR "\"}"); print }' \
    > "$OUT/events.jsonl"

# Default thresholds; actions off (ingest never acts anyway). A CONFIG given adds to it.
printf 'database = "%s/live.db"\n' "$W" > "$W/config.toml"
if [ -n "${CONFIG:-}" ]; then
    grep -v '^database' "$CONFIG" >> "$W/config.toml"
fi
"$BIN" --config "$W/config.toml" --db "$W/scratch.db" ingest --json < "$OUT/events.jsonl" > "$OUT/ingest.json"
t3=$(date +%s)

echo "quality.sh: corpus $((t1 - t0)) s, fail2ban-regex $((t2 - t1)) s, ingest $((t3 - t2)) s" >&2
cargo run --release --locked -q --example quality -- --dir "$OUT"
