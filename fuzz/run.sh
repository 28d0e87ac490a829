#!/bin/sh
# Runs every fuzz target for SECS seconds each (default 60) with cargo-fuzz, which
# needs a nightly toolchain: `cargo install cargo-fuzz`, `rustup toolchain install nightly`.
# Not part of CI. A crash leaves its input under fuzz/artifacts/TARGET/; turn it into a
# regression test beside the parser's unit tests.
set -eu
cd "$(dirname "$0")"
SECS=${SECS:-60}
for target in user address cidr time config postqueue; do
    printf '%s: ' "$target"
    cargo +nightly fuzz run "$target" -- -max_total_time="$SECS" 2>&1 |
        grep -E '^(Done|#[0-9]+ *DONE)|SUMMARY|panicked' | tail -n 1
done
