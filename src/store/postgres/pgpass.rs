//! libpq's password file, which the Rust client does not read: `PGPASSFILE`, or
//! `~/.pgpass`, lines of `host:port:database:user:password` with `*` for any value
//! and `\` escaping `:` and `\`. Used when the URL names no password, so the config
//! file can hold none. Ignored, as libpq does, when others can read it.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use postgres::config::Host;

/// The file libpq would read.
fn path() -> Option<PathBuf> {
    match std::env::var_os("PGPASSFILE") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => crate::passwd::home().map(|h| h.join(".pgpass")),
    }
}

/// The password for `cfg`'s first host, port, database and user, if a line gives one.
pub(super) fn password_for(cfg: &postgres::Config) -> Option<String> {
    let file = path()?;
    let meta = std::fs::metadata(&file).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "f2b-mailguard: warning: {} is readable by others and not used (chmod 0600 it)",
            file.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(&file).ok()?;
    let user = cfg.get_user()?;
    // libpq's defaults: the host "localhost" for a Unix socket, port 5432, the
    // database named after the user.
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_owned(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432).to_string();
    let db = cfg.get_dbname().unwrap_or(user);
    lookup(&text, [host.as_str(), &port, db, user])
}

/// The first line whose four fields match `want` (or are `*`), as libpq reads them.
fn lookup(text: &str, want: [&str; 4]) -> Option<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(fields)
        .find(|f| {
            f[..4]
                .iter()
                .zip(want)
                .all(|(got, w)| got == "*" || got == w)
        })
        .map(|mut f| f.swap_remove(4))
}

/// The five fields of a line, unescaped; None for a line with fewer.
fn fields(line: &str) -> Option<Vec<String>> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.last_mut()?.extend(chars.next()),
            ':' if out.len() < 5 => out.push(String::new()),
            c => out.last_mut()?.push(c),
        }
    }
    (out.len() == 5).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_match_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    other:5432:mg:mg:wrong\n\
                    db.example.org:*:mailguard:mg:pa\\:ss\\\\word:tail\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            lookup(text, ["db.example.org", "5432", "mailguard", "mg"]).as_deref(),
            Some("pa:ss\\word:tail")
        );
        assert_eq!(
            lookup(text, ["localhost", "5432", "x", "y"]).as_deref(),
            Some("fallback")
        );
        assert_eq!(lookup("h:1:d:u\n", ["h", "1", "d", "u"]), None);
    }
}
