#!/bin/sh
# Installs f2b-mailguard: the binary, the Fail2ban filters, action and jails, a default
# config (never overwriting one), and the state directory. Run ./install.sh --help.
set -eu

PREFIX=/usr/local
BINARY=
DRY_RUN=false
UNINSTALL=false
DESTDIR=${DESTDIR:-}

usage() {
    cat <<'EOF'
Usage: ./install.sh [--prefix DIR] [--binary PATH] [--dry-run] [--uninstall]

  --prefix DIR    install the binary under DIR/bin (default /usr/local)
  --binary PATH   install this prebuilt binary instead of building one with cargo
  --dry-run       print what would be done, change nothing
  --uninstall     remove what an earlier install put in place; keeps the database
                  and a config you edited
Environment: DESTDIR=/some/root installs below that root (for packaging and tests).
Running it twice changes nothing the second time.
EOF
}

fail() {
    printf 'install.sh: %s\n' "$*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || fail "--prefix needs a directory"; PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#*=}; shift ;;
        --binary) [ $# -ge 2 ] || fail "--binary needs a path"; BINARY=$2; shift 2 ;;
        --binary=*) BINARY=${1#*=}; shift ;;
        --dry-run) DRY_RUN=true; shift ;;
        --uninstall) UNINSTALL=true; shift ;;
        -h | --help) usage; exit 0 ;;
        *) printf 'install.sh: unknown option %s (see --help)\n' "$1" >&2; exit 2 ;;
    esac
done
case "$PREFIX" in /*) ;; *) fail "--prefix must be an absolute path" ;; esac

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$PREFIX/bin/f2b-mailguard
SHARE=$PREFIX/share/f2b-mailguard
F2B=/etc/fail2ban
CONFIG=/etc/f2b-mailguard/config.toml
STATE=/var/lib/f2b-mailguard
MANIFEST=$SHARE/manifest

say() { printf '%s\n' "$*"; }

# Runs a command, or only shows it with --dry-run.
act() {
    if $DRY_RUN; then
        say "would run: $*"
    else
        "$@"
    fi
}

# Installed paths (without DESTDIR), one per line, for the manifest.
INSTALLED=

# install_file SRC PATH MODE: copies SRC to DESTDIR/PATH unless it is already there
# with the same content and mode, so a second run changes nothing.
install_file() {
    src=$1 dest=$DESTDIR$2 mode=$3
    if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then
        say "unchanged $dest"
    else
        act install -D -m "$mode" "$src" "$dest"
        say "installed $dest"
    fi
    INSTALLED="$INSTALLED$2
"
}

fail2ban_check() {
    if ! command -v fail2ban-client >/dev/null 2>&1; then
        msg="Fail2ban is not installed. Install it first: apt-get install fail2ban"
        if [ -n "$DESTDIR" ]; then say "warning: $msg"; return; fi
        fail "$msg"
    fi
    version=$(fail2ban-client --version 2>/dev/null | sed -n 's/.*[^0-9.]\([0-9][0-9]*\.[0-9][0-9]*\)[0-9.]*.*/\1/p' | head -n 1)
    major=${version%%.*}
    minor=${version#*.}
    case "$major$minor" in *[!0-9]* | "") fail "cannot read the Fail2ban version from 'fail2ban-client --version'" ;; esac
    if [ "$major" -eq 0 ] && [ "$minor" -lt 10 ]; then
        fail "Fail2ban $version is too old: 0.10 or later is needed (Debian 11, Ubuntu 20.04 and later ship it)"
    fi
    say "Fail2ban $version found"
}

uninstall() {
    manifest=$DESTDIR$MANIFEST
    [ -f "$manifest" ] || fail "nothing to uninstall: $manifest not found"
    # Before the manifest's files go: the pristine copy tells an edited config apart.
    config=$DESTDIR$CONFIG
    if [ -f "$config" ] && cmp -s "$config" "$DESTDIR$SHARE/config.example.toml"; then
        act rm -f "$config"
        say "removed $config (never edited)"
        act rmdir "$DESTDIR/etc/f2b-mailguard" 2>/dev/null || true
    elif [ -f "$config" ]; then
        say "kept $config (edited)"
    fi
    while IFS= read -r path; do
        [ -n "$path" ] || continue
        act rm -f "$DESTDIR$path"
        say "removed $DESTDIR$path"
    done <"$manifest"
    act rm -f "$DESTDIR$SHARE/config.example.toml" "$manifest"
    act rmdir "$DESTDIR$SHARE" 2>/dev/null || true
    say "kept $DESTDIR$STATE (the database)"
    say "Reload Fail2ban: fail2ban-client reload"
}

if $UNINSTALL; then
    uninstall
    exit 0
fi

fail2ban_check

if [ -z "$BINARY" ]; then
    command -v cargo >/dev/null 2>&1 || fail "cargo not found: install Rust (https://rustup.rs) or pass --binary PATH"
    host=$(rustc -vV | sed -n 's/^host: //p')
    # Static: no dynamic loader work at each start; Fail2ban starts it for every login.
    act env RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
        --target "$host" --manifest-path "$HERE/Cargo.toml"
    BINARY=$HERE/target/$host/release/f2b-mailguard
fi
$DRY_RUN || [ -x "$BINARY" ] || fail "$BINARY is not an executable file"

install_file "$BINARY" "$BIN" 0755
for f in "$HERE"/fail2ban/filter.d/*.conf; do
    install_file "$f" "$F2B/filter.d/$(basename "$f")" 0644
done
install_file "$HERE/fail2ban/jail.d/mailguard.conf" "$F2B/jail.d/mailguard.conf" 0644

# The action calls the binary where it was installed.
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
sed "s|^binary = .*|binary = $BIN|" "$HERE/fail2ban/action.d/mailguard.conf" >"$tmp"
install_file "$tmp" "$F2B/action.d/mailguard.conf" 0644

# systemd units, installed but not enabled: the admin chooses (see the next steps).
for f in "$HERE"/systemd/*; do
    sed "s|/usr/local/bin/f2b-mailguard|$BIN|g" "$f" >"$tmp"
    install_file "$tmp" "/etc/systemd/system/$(basename "$f")" 0644
done

# The pristine default config, kept to tell an edited config from an untouched one.
install_file "$HERE/config.example.toml" "$SHARE/config.example.toml" 0644
if [ -e "$DESTDIR$CONFIG" ]; then
    say "kept $DESTDIR$CONFIG (exists)"
else
    act install -D -m 0600 "$HERE/config.example.toml" "$DESTDIR$CONFIG"
    say "installed $DESTDIR$CONFIG"
fi

if [ -d "$DESTDIR$STATE" ] && [ "$(stat -c %a "$DESTDIR$STATE")" = 700 ]; then
    say "unchanged $DESTDIR$STATE"
else
    act install -d -m 0700 "$DESTDIR$STATE"
    say "installed $DESTDIR$STATE (0700)"
fi

if $DRY_RUN; then
    say "dry run: nothing was changed"
    exit 0
fi
printf '%s' "$INSTALLED" >"$tmp"
if ! { [ -f "$DESTDIR$MANIFEST" ] && cmp -s "$tmp" "$DESTDIR$MANIFEST"; }; then
    install -D -m 0644 "$tmp" "$DESTDIR$MANIFEST"
fi

cat <<EOF

f2b-mailguard is installed. Next steps:
  1. Review $CONFIG (mode = "warn" reports only; "enforce" acts).
  2. Enable the jails for your logs in $F2B/jail.d/mailguard.local, e.g.
       [mailguard-smtp]
       enabled = true
     (see $F2B/jail.d/mailguard.conf for log paths and the journal backend)
  3. Reload Fail2ban:          fail2ban-client reload
  4. For the SASL block, add to Postfix's main.cf, before permit_sasl_authenticated:
       check_sasl_access lmdb:/etc/postfix/mailguard_sasl_access
  5. Retry queued actions and prune old logins (units installed, not enabled):
       systemctl daemon-reload
       systemctl enable --now f2b-mailguard-actions.timer f2b-mailguard-prune.timer
     optionally f2b-mailguard-metrics.timer for node_exporter's textfile collector.
  6. Watch:                    f2b-mailguard status   (monitoring: f2b-mailguard check)
EOF
