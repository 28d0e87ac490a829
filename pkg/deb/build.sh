#!/bin/sh
# Builds the Debian package target/debian/f2b-mailguard_VERSION_ARCH.deb with cargo-deb:
# the static release binary (as install.sh builds it), then what the binary generates
# for the package (man pages, completions) and the files that name its path (the
# Fail2ban action, the systemd units), then `cargo deb --no-build`, which reads
# [package.metadata.deb] in Cargo.toml. Arguments go to cargo deb, e.g.
#   pkg/deb/build.sh --deb-revision 2
# `pkg/deb/build.sh --binary` builds the static binary only (tests/run starts it early).
# Installs cargo-deb (a build tool, not a dependency) with cargo when it is missing.
set -eu
cd "$(dirname "$0")/../.."

# The cargo-deb release this packaging is written and tested against.
CARGO_DEB_VERSION=3.8.0

if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

host=$(rustc -vV | sed -n 's/^host: //p')
# Static, as install.sh builds it: Fail2ban starts the binary for every login, and a
# static one skips the dynamic loader. --target keeps the flag off build scripts and
# proc macros, which must stay dynamic.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$host"
if [ "${1:-}" = "--binary" ]; then
    exit 0
fi
bin=${CARGO_TARGET_DIR:-target}/$host/release/f2b-mailguard

# The assets Cargo.toml names under target/deb-assets, generated afresh.
out=target/deb-assets
rm -rf "$out"
mkdir -p "$out/man" "$out/completions" "$out/action.d" "$out/systemd"
"$bin" generate man "$out/man"
"$bin" generate bash >"$out/completions/f2b-mailguard"
"$bin" generate zsh >"$out/completions/_f2b-mailguard"
"$bin" generate fish >"$out/completions/f2b-mailguard.fish"
# The package installs the binary as /usr/bin/f2b-mailguard (install.sh: PREFIX/bin).
sed 's|^binary = .*|binary = /usr/bin/f2b-mailguard|' fail2ban/action.d/mailguard.conf \
    >"$out/action.d/mailguard.conf"
sed 's|^BINARY = .*|BINARY = "/usr/bin/f2b-mailguard"|' fail2ban/action.d/f2b_mailguard.py \
    >"$out/action.d/f2b_mailguard.py"
for f in systemd/*; do
    sed 's|/usr/local/bin/f2b-mailguard|/usr/bin/f2b-mailguard|g' "$f" >"$out/systemd/$(basename "$f")"
done

cargo deb --no-build --locked --target "$host" "$@"
