#!/usr/bin/perl
# Writes a small MaxMind DB (.mmdb) test fixture with Debian's libmaxmind-db-writer-perl:
#   perl write-mmdb.pl SPEC.json OUT.mmdb
# SPEC: {"database_type": "GeoLite2-ASN", "build_epoch": 1795417200,
#        "types": {"autonomous_system_number": "uint32", ...},
#        "networks": [["203.0.113.0/24", {"autonomous_system_number": 64500, ...}], ...]}
# Used by tests/support/mmdb.rs and the unit tests of src/ownership/.
use strict;
use warnings;
use JSON::PP;
use MaxMind::DB::Writer::Tree;

my ( $spec_file, $out ) = @ARGV;
open my $in, '<:raw', $spec_file or die "$spec_file: $!\n";
my $spec  = JSON::PP->new->utf8->decode( do { local $/; <$in> } );
my %types = %{ $spec->{types} };
my $tree  = MaxMind::DB::Writer::Tree->new(
    ip_version            => 6,
    record_size           => 24,
    database_type         => $spec->{database_type},
    languages             => ['en'],
    description           => { en => 'f2b-mailguard test fixture' },
    map_key_type_callback => sub { $types{ $_[0] } // die "no type for key $_[0]\n" },
    # IPv4 data answers for ::ffff:a.b.c.d too, as in the vendors' files. The price:
    # networks inside 2001::/32 and 2002::/16 are refused, so fixtures use 2a00::/12.
    alias_ipv6_to_ipv4       => 1,
    # Fixtures use the documentation ranges, which the writer drops by default.
    remove_reserved_networks => 0,
);
# An old build_epoch makes a stale database (doctor warns past 60 days).
$tree->_set_build_epoch( $spec->{build_epoch} );
for my $n ( @{ $spec->{networks} } ) {
    $tree->insert_network( $n->[0], $n->[1] );
}
open my $fh, '>:raw', $out or die "$out: $!\n";
$tree->write_tree($fh);
close $fh or die "$out: $!\n";
