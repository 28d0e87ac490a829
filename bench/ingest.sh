#!/bin/sh
# The backtest recipe of docs/commands.md on a large generated Postfix log: `fail2ban-regex`
# with the shipped filter, then `f2b-mailguard ingest` on its output. Events/s and peak
# RSS of each step.
#
#   ./bench/ingest.sh                      # 1,500,000 log lines
#   LINES=100000 ./bench/ingest.sh         # a quick check
#
# The log: LINES successful SASL submissions, 2.5 a second (1.5 M: 7 days), in syslog format,
# by USERS accounts (each from 3 home addresses), and 1 line in 100 from 10 accounts
# taken over by a botnet (a new address each time, in bursts of 20 logins on one
# account), so ingest also escalates.
# Prints a Markdown table for BENCHMARKS.md.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
need fail2ban-regex:fail2ban

LINES=${LINES:-1500000}

log=$W/mail.log
echo "generating $LINES log lines..." >&2
awk -v n="$LINES" -v users="$USERS" -v start="$(($(date +%s) - LINES * 2 / 5 - 86400))" 'BEGIN {
    span = n * 0.4
    for (i = 0; i < n; i++) {
        t = start + int(i * span / n)
        if (t != last) { stamp = strftime("%b %e %H:%M:%S", t); last = t }
        if (i % 100 == 0) {
            u = "victim" (int(i / 2000) % 10) "@example.com"
            ip = "203.0." (int(i / 100) % 250) "." (int(i / 25000) % 250 + 1)
        } else {
            k = i % users
            u = "user" k "@example.com"
            ip = "198." (51 + k % 4) "." (int(k / 4) % 250) "." (int(i / users) % 3 + 1)
        }
        printf "%s mx postfix/submission/smtpd[%d]: %010X: client=unknown[%s], sasl_method=PLAIN, sasl_username=%s\n",
            stamp, 1000 + i % 30000, 655360 + i, ip, u
    }
}' >"$log"

# The filter as installed: ours, beside Fail2ban's common.conf.
mkdir "$W/filter.d"
cp /etc/fail2ban/filter.d/common.conf "$W/filter.d/"
cp fail2ban/filter.d/mailguard-postfix-sasl.conf "$W/filter.d/"

echo "fail2ban-regex..." >&2
/usr/bin/time -f '%e %M' -o "$W/regex.time" \
    fail2ban-regex -o '<time> <F-USER> <ip>' "$log" "$W/filter.d/mailguard-postfix-sasl.conf" \
    >"$W/logins.txt"
matched=$(wc -l <"$W/logins.txt")

echo "ingest..." >&2
export F2B_MAILGUARD_CONFIG="$W/config.toml"
config "$W/live.db" >"$F2B_MAILGUARD_CONFIG"
/usr/bin/time -f '%e %M' -o "$W/ingest.time" \
    "$BIN" --db "$W/scratch.db" ingest <"$W/logins.txt" >"$W/ingest.out" 2>"$W/ingest.err"
cat "$W/ingest.err" >&2
flagged=$(grep -c '@' "$W/ingest.out" || true)
own=$(sed -n 's/.*ingested [0-9]* events in \([0-9.]*\) s.*/\1/p' "$W/ingest.err")

python3 - "$LINES" "$matched" "$flagged" "$own" "$W/regex.time" "$W/ingest.time" <<'PY'
import sys
lines, matched, flagged, own = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
def read(path):
    secs, kb = open(path).read().split()[-2:]
    return float(secs), kb
regex, ingest = read(sys.argv[5]), read(sys.argv[6])
print("| step | input | output | wall time | events/s | peak RSS |")
print("|---|---|---|---|---|---|")
print(f"| fail2ban-regex (shipped filter) | {lines:,} log lines | {matched:,} logins "
      f"| {regex[0]:.2f} s | {lines / regex[0]:,.0f} | {regex[1]} KiB |")
print(f"| f2b-mailguard ingest | {matched:,} logins | {flagged} accounts flagged "
      f"| {ingest[0]:.2f} s | {matched / ingest[0]:,.0f} | {ingest[1]} KiB |")
if own:
    print(f"\n(ingest's own count, without process start and the final report: "
          f"{own} s, {matched / float(own):,.0f} logins/s)")
PY
