#!/bin/sh
# Detection quality on a seeded, labelled corpus: generates 14 days of
# Postfix/Dovecot log with honest and compromised accounts and the synthetic owner of
# every client address (examples/scenario), runs the real fail2ban-regex with each
# shipped filter over it, feeds the merged logins to `f2b-mailguard ingest` (default
# thresholds, scratch database) and compares the result with the labels
# (examples/quality). Prints a Markdown table per run: without an ownership database,
# and with asn.mmdb and country.mmdb built from the corpus's owners.csv when the
# binary's `config check` accepts `[ownership]` (a binary built without the
# ownership lookup skips that run and says so).
#
#   ./bench/quality.sh            # seed 1
#   ./bench/quality.sh 2          # another seed (the benchmarks use 1, 2 and 3)
#   DAYS=2 USERS=100 ./bench/quality.sh
#   CONFIG=my.toml ./bench/quality.sh    # other thresholds ([detection], [thresholds.*])
#   MAILGUARD=../other/target/release/f2b-mailguard ./bench/quality.sh   # another build
#
# Leaves the corpus, the databases and the reports in bench/out/quality-SEED/.
set -eu
cd "$(dirname "$0")/.."

SEED=${1:-1}
DAYS=${DAYS:-14}
USERS=${USERS:-300}
OUT=${OUT:-bench/out/quality-$SEED}
# Fail2ban reads the year-less syslog times in the local time zone; the corpus is UTC.
TZ=UTC
LC_ALL=C
export TZ LC_ALL

if ! command -v fail2ban-regex >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends fail2ban >/dev/null
fi
if ! perl -MMaxMind::DB::Writer::Tree -e 1 2>/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        libmaxmind-db-writer-perl >/dev/null
fi

cargo build --release --locked -q --bin f2b-mailguard --example scenario --example quality
BIN=${MAILGUARD:-$PWD/target/release/f2b-mailguard}

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
regex bounces mailguard-postfix-bounce.conf
wait "$p1"
t2=$(date +%s)

# Each accepted message is also a call of the rate jail (the same Postfix line).
sed 's/^\([^ ]*\) smtp /\1 rate /' "$W/smtp.txt" > "$W/rate.txt"
# Merge by log time (stable: equal times keep the filters' order) into JSON lines, one
# record call each; the line number is the call's ticket id, so two messages of one
# second stay two, as the jails' ids keep them live. (awk's sub() here took a minute.)
cat "$W"/*.txt | sort -s -n -k1,1 \
    | sed -e 's/[\\"]/\\&/g' \
        -e 's/^\([^ ]*\) \([^ ]*\) \([^ ]*\) \([^ ]*\)$/{"time":\1,"user":"\3","ip":"\4","source":"\2"}/' \
    | awk '{ print substr($0, 1, length($0) - 1) ",\"fid\":\"" NR "\"}" }' \
    > "$OUT/events.jsonl"

# The owners as MaxMind databases in the free ones' schemas (GeoLite2-ASN and
# -Country), built at run time from owners.csv; unowned rows stay out.
cat > "$W/mmdb.pl" <<'PERL'
use strict;
use warnings;
use MaxMind::DB::Writer::Tree;
my ( $csv, $asn_out, $country_out ) = @ARGV;
my %types = (
    autonomous_system_number       => 'uint32',
    autonomous_system_organization => 'utf8_string',
    country                        => 'map',
    iso_code                       => 'utf8_string',
);
my %tree;
for my $type ( 'GeoLite2-ASN', 'GeoLite2-Country' ) {
    $tree{$type} = MaxMind::DB::Writer::Tree->new(
        ip_version            => 6,
        record_size           => 24,
        database_type         => $type,
        languages             => ['en'],
        description           => { en => 'f2b-mailguard quality corpus (synthetic)' },
        map_key_type_callback => sub { $types{ $_[0] } },
        alias_ipv6_to_ipv4    => 1,
    );
}
open my $in, '<', $csv or die "$csv: $!\n";
<$in>;
while ( my $line = <$in> ) {
    chomp $line;
    my ( $first, $last, $asn, $org, $country ) =
      $line =~ /^([^,]*),([^,]*),([^,]*),"?([^"]*)"?,([^,]*)$/
      or die "owners.csv: $line\n";
    next if $asn eq '';
    $tree{'GeoLite2-ASN'}->insert_range( $first, $last,
        { autonomous_system_number => $asn, autonomous_system_organization => $org } );
    $tree{'GeoLite2-Country'}->insert_range( $first, $last, { country => { iso_code => $country } } );
}
for ( [ 'GeoLite2-ASN', $asn_out ], [ 'GeoLite2-Country', $country_out ] ) {
    open my $fh, '>:raw', $_->[1] or die "$_->[1]: $!\n";
    $tree{ $_->[0] }->write_tree($fh);
    close $fh or die "$_->[1]: $!\n";
}
PERL
perl "$W/mmdb.pl" "$OUT/owners.csv" "$OUT/asn.mmdb" "$OUT/country.mmdb"

# Default thresholds; actions off (ingest never acts anyway). A CONFIG given adds to it.
printf 'database = "%s/live.db"\n' "$W" > "$W/config.toml"
if [ -n "${CONFIG:-}" ]; then
    grep -v '^database' "$CONFIG" >> "$W/config.toml"
fi
# The admin whitelisted the office NAT (the newsletter_office class sends through it).
NAT=$(sed -n 's/.*"office_nat": "\([^"]*\)".*/\1/p' "$OUT/scenario.json")
if [ -n "$NAT" ]; then
    if grep -q '^\[detection\]' "$W/config.toml"; then
        sed -i "/^\[detection\]/a whitelist = [\"$NAT/32\"]" "$W/config.toml"
    else
        printf '\n[detection]\nwhitelist = ["%s/32"]\n' "$NAT" >> "$W/config.toml"
    fi
fi
cp "$W/config.toml" "$W/config-asn.toml"
printf '\n[ownership]\nasn_database = "%s"\ncountry_database = "%s"\n' \
    "$PWD/$OUT/asn.mmdb" "$PWD/$OUT/country.mmdb" >> "$W/config-asn.toml"

"$BIN" --config "$W/config.toml" --db "$W/scratch.db" ingest --json < "$OUT/events.jsonl" > "$OUT/ingest.json"
# A binary without the ownership lookup (an older commit, for comparison) refuses
# `[ownership]` as an unknown key: the run with owners is skipped.
with_asn=no
if "$BIN" --config "$W/config-asn.toml" config check >/dev/null 2>"$W/check.txt"; then
    with_asn=yes
    "$BIN" --config "$W/config-asn.toml" --db "$W/scratch-asn.db" ingest --json \
        < "$OUT/events.jsonl" > "$OUT/ingest-asn.json"
fi
t3=$(date +%s)

echo "quality.sh: corpus $((t1 - t0)) s, fail2ban-regex $((t2 - t1)) s, mmdb and ingest $((t3 - t2)) s" >&2
echo "## Without an ownership database"
echo
cargo run --release --locked -q --example quality -- --dir "$OUT" --ingest ingest.json
echo
echo "## With asn.mmdb and country.mmdb (the corpus's owners)"
echo
if [ "$with_asn" = yes ]; then
    cargo run --release --locked -q --example quality -- --dir "$OUT" --ingest ingest-asn.json
else
    echo "Not run: this f2b-mailguard's \`config check\` refuses [ownership] ($(head -n 1 "$W/check.txt"))."
fi
