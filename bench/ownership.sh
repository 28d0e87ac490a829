#!/bin/sh
# What an ASN database costs, on a realistically large one built from real ranges:
# `record` with and without `[ownership] asn_database` beside /bin/true (opening the
# mapped file), and `status USER` of an account with NETS networks of real addresses
# with and without it (opening + NETS lookups), interleaved; then `config check` (which
# walks the whole file, as doctor does).
#
#   ./bench/ownership.sh                      # RUNS=1000, NETS=1000
#   RUNS=100 ./bench/ownership.sh             # a quick check
#
# The data: the npm package @ip-location-db/asn (CC BY 4.0 / RouteViews, with known data
# bugs: fine for timing, not for production), fetched with `npm pack` into the scratch
# directory at bench time and turned into a GeoLite2-ASN-schema .mmdb with Debian's
# libmaxmind-db-writer-perl. Nothing fetched is kept.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

RUNS=${RUNS:-1000}
NETS=${NETS:-1000}
need npm
perl -MMaxMind::DB::Writer::Tree -e 1 2>/dev/null ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libmaxmind-db-writer-perl >/dev/null

echo "fetching @ip-location-db/asn..." >&2
(cd "$W" && npm pack --silent @ip-location-db/asn >/dev/null && tar xzf ip-location-db-asn-*.tgz)
csv4=$W/package/asn-ipv4.csv
csv6=$W/package/asn-ipv6.csv
mmdb=$W/asn.mmdb
start=$(date +%s)
perl - "$mmdb" "$csv4" "$csv6" <<'PERL'
use strict;
use warnings;
use MaxMind::DB::Writer::Tree;
my ( $out, @csv ) = @ARGV;
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version               => 6,
    record_size              => 32,
    database_type            => 'GeoLite2-ASN',
    languages                => ['en'],
    description              => { en => 'bench: @ip-location-db/asn' },
    map_key_type_callback    => sub { $_[0] eq 'autonomous_system_number' ? 'uint32' : 'utf8_string' },
    # As the vendors' files: IPv4 answers for ::ffff:a.b.c.d; ranges inside 2001::/32
    # and 2002::/16 are then refused, and skipped below.
    alias_ipv6_to_ipv4       => 1,
    remove_reserved_networks => 0,
);
my ( $ranges, $skipped ) = ( 0, 0 );
for my $file (@csv) {
    open my $in, '<:encoding(UTF-8)', $file or die "$file: $!\n";
    while ( my $line = <$in> ) {
        chomp $line;
        # first,last,asn,"organisation" (quotes doubled inside)
        my ( $first, $last, $asn, $org ) = $line =~ /^([^,]+),([^,]+),(\d+),(.*)$/ or next;
        $org =~ s/^"(.*)"$/$1/;
        $org =~ s/""/"/g;
        my $ok = eval {
            $tree->insert_range( $first, $last,
                { autonomous_system_number => $asn + 0, autonomous_system_organization => $org } );
            1;
        };
        $ok ? $ranges++ : $skipped++;
    }
}
open my $fh, '>:raw', $out or die "$out: $!\n";
$tree->write_tree($fh);
close $fh or die "$out: $!\n";
print STDERR "$ranges ranges written, $skipped refused (aliased IPv6)\n";
PERL
size=$(du -m "$mmdb" | cut -f 1)
echo "built $mmdb ($size MB) in $(($(date +%s) - start)) s" >&2

# An account with NETS networks, each the first address of a range spread over both
# files (4 in 5 IPv4), so every lookup walks the tree to a real record.
db=$W/mg.db
plain=$W/plain.toml
owned=$W/owned.toml
config "$db" >"$plain"
{ config "$db"; printf '[ownership]\nasn_database = "%s"\n' "$mmdb"; } >"$owned"
F2B_MAILGUARD_CONFIG=$plain "$BIN" status >/dev/null
python3 - "$csv4" "$csv6" "$NETS" <<'PY' >"$W/nets.sql"
import sys
v4 = [l.split(",", 1)[0] for l in open(sys.argv[1], encoding="utf-8")]
v6 = [l.split(",", 1)[0] for l in open(sys.argv[2], encoding="utf-8")]
n = int(sys.argv[3])
picks = v4[:: max(1, len(v4) // (n * 4 // 5))][: n * 4 // 5] + v6[:: max(1, len(v6) // (n - n * 4 // 5))][: n - n * 4 // 5]
print("BEGIN; INSERT INTO users (name) VALUES ('owners@example.com');")
for i, ip in enumerate(picks):
    print(f"INSERT INTO events (user_id, ts_ms, source, ip, jail) SELECT id, strftime('%s','now') * 1000 - {i} * 1000, 'smtp', '{ip}', 'bench' FROM users WHERE name = 'owners@example.com';")
print("COMMIT;")
PY
sqlite3 "$db" <"$W/nets.sql"
nets=$(F2B_MAILGUARD_CONFIG=$owned "$BIN" status --json owners@example.com | python3 -c 'import json,sys; n=json.load(sys.stdin)["networks"]; k=sum(x["asn"] is not None for x in n); print(len(n), "networks,", k, "with an owner")')
echo "owners@example.com: $nets" >&2

# Each record case writes its own database: right after another process's commit to
# the same file, the second writer waited (+1.2 ms in a first version of this bench).
config "$W/rec-plain.db" >"$W/rec-plain.toml"
{ config "$W/rec-owned.db"; printf '[ownership]\nasn_database = "%s"\n' "$mmdb"; } >"$W/rec-owned.toml"
rec="$BIN record --source=smtp --jail=bench --user=a@example.com --ip=203.0.113.9"
set -- \
    -n "record, no ownership database" "$rec --config=$W/rec-plain.toml" \
    -n "record, ASN database configured ($size MB)" "$rec --config=$W/rec-owned.toml"
beside_true 50 "$W/record.json" "$@"
RUNS=$((RUNS / 10))
set -- \
    -n "status USER ($nets), no database" "$BIN --config=$plain status owners@example.com" \
    -n "status USER, ASN database: $NETS lookups" "$BIN --config=$owned status owners@example.com" \
    -n "config check with the ASN database (walks the file)" "$BIN --config=$owned config check"
beside_true 3 "$W/status.json" "$@"
table "$W/record.json" "$W/status.json"
