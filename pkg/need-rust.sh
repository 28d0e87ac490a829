# shellcheck shell=sh
# Sourced by install.sh and tests/run. need_rust DIR: returns 1 after printing the
# exact command to run when cargo is missing or older than the rust-version in
# DIR/Cargo.toml (Debian 12's own cargo and rustc are 1.63, too old).
need_rust() {
    want=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' "$1/Cargo.toml")
    rustup_cmd="curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal && . \"\$HOME/.cargo/env\""
    if ! command -v cargo >/dev/null 2>&1; then
        printf '%s\n' "cargo not found: Rust $want or later is needed. Install it with rustup (as the user who builds; Debian 12's rustc 1.63 is too old):" \
            "  $rustup_cmd" >&2
        return 1
    fi
    # "cargo 1.89.0 (c24e10642 2025-06-23)" -> 1.89.0
    have=$(cargo --version 2>/dev/null | awk '{ print $2 }')
    oldest=$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n 1)
    if [ -n "$have" ] && [ "$oldest" = "$want" ]; then
        return 0
    fi
    if command -v rustup >/dev/null 2>&1; then
        fix="rustup update stable"
    else
        # Debian's cargo package: rustup's ~/.cargo/bin comes first in PATH once its
        # env file is read, so the old one may stay installed.
        fix=$rustup_cmd
    fi
    printf '%s\n' "$(command -v cargo) is Rust ${have:-of an unknown version}; $want or later is needed. Run:" \
        "  $fix" >&2
    return 1
}
