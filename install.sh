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

  --prefix DIR    install the binary as DIR/bin/f2b-mailguard (default /usr/local)
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
# The prefix ends up in a Fail2ban config line and in a sed expression: keep it plain.
case "$PREFIX" in
    /*) ;;
    *) fail "--prefix must be an absolute path" ;;
esac
case "$PREFIX" in
    *[!A-Za-z0-9._/+-]*) fail "--prefix may only contain letters, digits and . _ / + -" ;;
esac

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$PREFIX/bin/f2b-mailguard
SHARE=$PREFIX/share/f2b-mailguard
# The README and docs/, where the man pages and doctor point.
DOC=$PREFIX/share/doc/f2b-mailguard
F2B=/etc/fail2ban
CONFIG=/etc/f2b-mailguard/config.toml
STATE=/var/lib/f2b-mailguard
MANIFEST=$SHARE/manifest
# The config exactly as this installer wrote it; an installed config that still equals
# it was never edited, so --uninstall may remove it.
PRISTINE=$SHARE/config.toml.installed

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
        $DRY_RUN || say "installed $dest"
    fi
    INSTALLED="$INSTALLED$2
"
}

# Fail2ban 0.10 brought the filter features the filters use (prefregex, <F-USER>,
# <ADDR>, F-ID tuples). Installing into DESTDIR (packaging) only warns: the target
# system is not this one.
fail2ban_check() {
    if ! command -v fail2ban-client >/dev/null 2>&1; then
        msg="Fail2ban is not installed. Install it first (Debian/Ubuntu: apt-get install fail2ban), then run ./install.sh again"
        if [ -n "$DESTDIR" ]; then say "warning: $msg"; return; fi
        fail "$msg"
    fi
    # "Fail2Ban v1.0.2" (older releases print "Fail2Ban v0.9.6" too): the first word
    # that looks like a version.
    version=$(fail2ban-client --version 2>/dev/null |
        awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^v?[0-9]+\.[0-9]/) { sub(/^v/, "", $i); print $i; exit } }')
    major=${version%%.*}
    minor=${version#*.}
    minor=${minor%%.*}
    case "$major:$minor" in
        *[!0-9:]* | :* | *:) fail "cannot read the Fail2ban version from 'fail2ban-client --version'" ;;
    esac
    if [ "$major" -eq 0 ] && [ "$minor" -lt 10 ]; then
        msg="Fail2ban $version is too old: 0.10 or later is needed (Debian 10+, Ubuntu 18.04+ ship it); upgrade it, then run ./install.sh again"
        if [ -n "$DESTDIR" ]; then say "warning: $msg"; return; fi
        fail "$msg"
    fi
    say "Fail2ban $version found"
}

# The default config: the repository's config.example.toml, or a minimal one.
default_config() {
    if [ -f "$HERE/config.example.toml" ]; then
        cat "$HERE/config.example.toml"
    else
        cat <<'EOF'
# f2b-mailguard configuration. Every setting has a default; see
# /usr/share/doc/f2b-mailguard/docs/configuration.md.
# database = "/var/lib/f2b-mailguard/mailguard.db"

# warn: report suspicious accounts only; enforce: also contain them.
mode = "warn"
EOF
    fi
}

uninstall() {
    manifest=$DESTDIR$MANIFEST
    [ -f "$manifest" ] || fail "nothing to uninstall: $manifest not found"
    config=$DESTDIR$CONFIG
    if [ -f "$config" ] && [ -f "$DESTDIR$PRISTINE" ] && cmp -s "$config" "$DESTDIR$PRISTINE"; then
        act rm -f "$config"
        $DRY_RUN || say "removed $config (never edited)"
        if ! $DRY_RUN; then rmdir "$DESTDIR/etc/f2b-mailguard" 2>/dev/null || true; fi
    elif [ -f "$config" ]; then
        say "kept $config (edited, or not installed by install.sh)"
    fi
    # Timers the admin enabled would point at removed units: stop them first.
    if [ -z "$DESTDIR" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        timers=$(sed -n 's|^/etc/systemd/system/\(f2b-mailguard-.*\.timer\)$|\1|p; s|^/etc/systemd/system/\(f2b-mailguard-follow\.service\)$|\1|p; s|^/etc/systemd/system/\(f2b-mailguard-policy\.service\)$|\1|p' "$manifest")
        for t in $timers; do
            act systemctl disable --now "$t" || true
        done
    fi
    while IFS= read -r path; do
        [ -n "$path" ] || continue
        act rm -f "$DESTDIR$path"
        $DRY_RUN || say "removed $DESTDIR$path"
    done <"$manifest"
    act rm -f "$manifest"
    if ! $DRY_RUN; then
        rmdir "$DESTDIR$SHARE" 2>/dev/null || true
        # The directories install put files in, if now empty (the completions', the
        # man pages', the docs'): an empty one left behind says nothing.
        for d in share/doc/f2b-mailguard/docs share/doc/f2b-mailguard \
            share/bash-completion/completions share/bash-completion \
            share/zsh/site-functions share/zsh share/fish/vendor_completions.d share/fish \
            share/man/man1; do
            rmdir "$DESTDIR$PREFIX/$d" 2>/dev/null || true
        done
    fi
    say "kept $DESTDIR$STATE (the database)"
    if [ -f "$DESTDIR$F2B/jail.d/mailguard.local" ]; then
        say "warning: $DESTDIR$F2B/jail.d/mailguard.local still enables mailguard jails;"
        say "         remove it, or Fail2ban will fail to load the missing filters"
    fi
    say "Reload Fail2ban: fail2ban-client reload"
}

if $UNINSTALL; then
    uninstall
    exit 0
fi

fail2ban_check

if [ -z "$BINARY" ]; then
    # shellcheck source=pkg/need-rust.sh
    . "$HERE/pkg/need-rust.sh"
    need_rust "$HERE" || fail "Rust too old or missing (the command above), or pass --binary PATH"
    host=$(rustc -vV | sed -n 's/^host: //p')
    # Static: no dynamic loader work at each start; Fail2ban starts it for every login.
    act env RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
        --target "$host" --manifest-path "$HERE/Cargo.toml"
    BINARY=$HERE/target/$host/release/f2b-mailguard
fi
$DRY_RUN || [ -x "$BINARY" ] || fail "$BINARY is not an executable file"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

install_file "$BINARY" "$BIN" 0755
for f in "$HERE"/fail2ban/filter.d/*.conf; do
    install_file "$f" "$F2B/filter.d/$(basename "$f")" 0644
done
install_file "$HERE/fail2ban/jail.d/mailguard.conf" "$F2B/jail.d/mailguard.conf" 0644

# The action calls the binary where it was installed.
sed "s|^binary = .*|binary = $BIN|" "$HERE/fail2ban/action.d/mailguard.conf" >"$tmp/action"
install_file "$tmp/action" "$F2B/action.d/mailguard.conf" 0644
# The Python action (the jails' default) has no .local: its default path is set here.
sed "s|^BINARY = .*|BINARY = \"$BIN\"|" "$HERE/fail2ban/action.d/f2b_mailguard.py" >"$tmp/pyaction"
install_file "$tmp/pyaction" "$F2B/action.d/f2b_mailguard.py" 0644

# systemd units, installed but not enabled: the admin chooses (see the next steps).
for f in "$HERE"/systemd/*; do
    [ -f "$f" ] || continue
    sed "s|/usr/local/bin/f2b-mailguard|$BIN|g" "$f" >"$tmp/unit"
    install_file "$tmp/unit" "/etc/systemd/system/$(basename "$f")" 0644
done

# The documentation the man pages point to.
if [ -f "$HERE/README.md" ]; then
    install_file "$HERE/README.md" "$PREFIX/share/doc/f2b-mailguard/README.md" 0644
fi
for f in "$HERE"/docs/*.md; do
    [ -f "$f" ] || continue
    install_file "$f" "$PREFIX/share/doc/f2b-mailguard/docs/$(basename "$f")" 0644
done

# Man pages (one per command) and shell completions, generated by the binary from its
# own argument definitions, so they always match it.
if $DRY_RUN; then
    say "would generate man pages and completions under $DESTDIR$PREFIX/share"
else
    install -d "$tmp/man"
    "$BINARY" generate man "$tmp/man"
    for page in "$tmp"/man/*.1; do
        install_file "$page" "$PREFIX/share/man/man1/$(basename "$page")" 0644
    done
    for shell in bash zsh fish; do
        case $shell in
            bash) dest=$PREFIX/share/bash-completion/completions/f2b-mailguard ;;
            zsh) dest=$PREFIX/share/zsh/site-functions/_f2b-mailguard ;;
            fish) dest=$PREFIX/share/fish/vendor_completions.d/f2b-mailguard.fish ;;
        esac
        "$BINARY" generate "$shell" >"$tmp/completion"
        install_file "$tmp/completion" "$dest" 0644
    done
fi

for f in "$HERE/README.md" "$HERE"/docs/*.md; do
    [ -f "$f" ] || continue
    case $f in
        "$HERE/README.md") install_file "$f" "$DOC/README.md" 0644 ;;
        *) install_file "$f" "$DOC/docs/$(basename "$f")" 0644 ;;
    esac
done

# The jails' log backend: the systemd journal for each jail whose log file is missing
# here (Debian 12 without rsyslog has no /var/log/mail.log, and one jail without its
# log keeps all of Fail2ban from starting). The binary decides, so that the package's
# postinst, running the same command, decides alike.
if $DRY_RUN; then
    say "would choose the jails' log backend in $DESTDIR$F2B/jail.d/mailguard-backend.local"
else
    # Writes the file (one the admin edited is kept) and says what it chose.
    "$BINARY" generate fail2ban-backend "${DESTDIR:-/}"
    INSTALLED="$INSTALLED$F2B/jail.d/mailguard-backend.local
"
fi

default_config >"$tmp/config"
if [ -e "$DESTDIR$CONFIG" ]; then
    say "kept $DESTDIR$CONFIG (exists)"
    # Still ours if an earlier run installed it: keep its pristine copy listed.
    if [ -f "$DESTDIR$PRISTINE" ]; then INSTALLED="$INSTALLED$PRISTINE
"; fi
else
    act install -D -m 0600 "$tmp/config" "$DESTDIR$CONFIG"
    $DRY_RUN || say "installed $DESTDIR$CONFIG"
    install_file "$tmp/config" "$PRISTINE" 0644
fi

if [ -d "$DESTDIR$STATE" ] && [ "$(stat -c %a "$DESTDIR$STATE")" = 700 ]; then
    say "unchanged $DESTDIR$STATE"
else
    act install -d -m 0700 "$DESTDIR$STATE"
    $DRY_RUN || say "installed $DESTDIR$STATE (0700)"
fi

printf '%s' "$INSTALLED" >"$tmp/manifest"
if [ -f "$DESTDIR$MANIFEST" ] && cmp -s "$tmp/manifest" "$DESTDIR$MANIFEST"; then
    :
else
    act install -D -m 0644 "$tmp/manifest" "$DESTDIR$MANIFEST"
fi

if $DRY_RUN; then
    say "dry run: nothing was changed"
    exit 0
fi

# An upgrade may migrate the database schema (rebuilding an index takes seconds on a
# large one): do it now rather than in the first `record` under Fail2ban's lock.
if [ -z "$DESTDIR" ]; then
    if "$BIN" --config "$CONFIG" status >/dev/null; then
        say "database schema up to date"
    else
        say "warning: could not open the database; see the error above"
    fi
fi

cat <<EOF

f2b-mailguard is installed. Next steps:
  1. Review $CONFIG (mode = "warn" reports only; "enforce" acts).
  2. Enable the jails for your logs in $F2B/jail.d/mailguard.local, e.g.
       [mailguard-smtp]
       enabled = true
       [mailguard-smtp-refused]
       enabled = true
     ($F2B/jail.d/mailguard-backend.local chose log files or the journal for them;
      see $F2B/jail.d/mailguard.conf; f2b-mailguard doctor checks Fail2ban can start)
  3. Reload Fail2ban:          fail2ban-client reload
  4. For the SASL block, on each SASL service (master.cf -o, not main.cf, which
     reaches port 25 too), before permit_sasl_authenticated:
       postconf -P 'submission/inet/smtpd_recipient_restrictions=check_sasl_access,lmdb:/etc/postfix/mailguard_sasl_access,permit_sasl_authenticated,reject'
       postfix reload
  5. Retry queued actions and prune old logins (units installed, not enabled):
       systemctl daemon-reload
       systemctl enable --now f2b-mailguard-actions.timer f2b-mailguard-prune.timer
     optionally f2b-mailguard-metrics.timer for node_exporter's textfile collector.
  6. Network owners (AS, country) from a free database, refreshed weekly:
       $BIN ownership update
       systemctl enable --now f2b-mailguard-ownership-update.timer
     (DB-IP Lite by default, CC BY 4.0: see docs/ownership-data.md)
  7. Watch:                    $BIN status   (monitoring: $BIN check)
EOF
