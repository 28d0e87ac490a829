//! Password reset: a random password from the OS, hashed as `{SSHA512}` (what
//! iRedMail and Dovecot default to on Linux), written by a pluggable backend. The
//! password itself is never logged, stored or mailed.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use base64::Engine as _;
use sha2::{Digest, Sha512};

use super::{exec, Outcome};
use crate::config::{Config, PasswordBackend};
use crate::files::write_atomically;
use crate::model::SaslUser;

const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

/// `len` characters from an unambiguous alphabet, by rejection sampling (no modulo bias).
pub fn generate(len: usize) -> std::io::Result<String> {
    let limit = 256 - 256 % ALPHABET.len();
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes(len * 2)? {
            if (b as usize) < limit && out.len() < len {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

/// `{SSHA512}` = base64(SHA-512(password ‖ salt) ‖ salt), as `doveadm pw -s SSHA512`.
pub fn ssha512(password: &str, salt: &[u8]) -> String {
    let mut h = Sha512::new();
    h.update(password.as_bytes());
    h.update(salt);
    let mut raw = h.finalize().to_vec();
    raw.extend_from_slice(salt);
    format!(
        "{{SSHA512}}{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Why no backend can set `user`'s password, if none can: there is no backend, or a
/// name starting with `-` in an argument of its own would reach the `command` program
/// as an option, unless the template ends the options with `--` first.
fn refusal(cfg: &Config, user: &SaslUser) -> Option<String> {
    let argv = match &cfg.contain.password {
        PasswordBackend::None => {
            return Some(
                "password not reset: no password backend configured ([password] backend); \
                 refused, and no retry will change that (reset this password by hand)"
                    .into(),
            )
        }
        PasswordBackend::Command(argv) => argv,
        PasswordBackend::DovecotPasswdFile(_) => return None,
    };
    if !user.as_str().starts_with('-') {
        return None;
    }
    let args = argv.get(1..).unwrap_or_default();
    let ended = args.iter().position(|a| a == "--");
    let exposed = args
        .iter()
        .position(|a| a.starts_with("{user}"))
        .is_some_and(|i| ended.is_none_or(|e| e > i));
    exposed.then(|| {
        format!(
            "password not reset: {user:?} begins with '-', so {} would read it as an option; \
             refused, and no retry will change that (put \"--\" before \"{{user}}\" in \
             [password] command if the program takes it, or reset this password by hand)",
            argv.first().map_or("", String::as_str)
        )
    })
}

/// Sets a new random password for `user` through the configured backend; refused
/// where no retry can succeed (see `refusal`).
pub fn reset(cfg: &Config, user: &SaslUser) -> Outcome {
    if let Some(why) = refusal(cfg, user) {
        return Outcome::Refused(why);
    }
    match set_password(cfg, user) {
        Ok(done) => Outcome::Done(done),
        Err(e) => Outcome::Failed(e),
    }
}

fn set_password(cfg: &Config, user: &SaslUser) -> Result<String, String> {
    let len = cfg.contain.password_length as usize;
    let password = generate(len).map_err(|e| format!("/dev/urandom: {e}"))?;
    let salt = random_bytes(8).map_err(|e| format!("/dev/urandom: {e}"))?;
    let hash = ssha512(&password, &salt);
    match &cfg.contain.password {
        // `reset` refused it already.
        PasswordBackend::None => Err("no password backend configured ([password] backend)".into()),
        PasswordBackend::Command(argv) => {
            let args: Vec<String> = argv[1..]
                .iter()
                .map(|a| a.replace("{user}", user.as_str()))
                .collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let program = Path::new(&argv[0]);
            // Password and hash on stdin, never in argv (visible in ps).
            let input = format!("{password}\n{hash}\n");
            let ran = exec::run(
                program,
                &args,
                Some(input.as_bytes()),
                cfg.contain.actions.command_timeout,
            )?;
            if !ran.success() {
                return Err(ran.failure(program));
            }
            Ok(format!(
                "new {len}-character password set by {}",
                program.display()
            ))
        }
        PasswordBackend::DovecotPasswdFile(file) => {
            set_in_passwd_file(file, user, &hash)?;
            Ok(format!(
                "new {len}-character password set in {}",
                file.display()
            ))
        }
    }
}

/// Replaces the password field of `user`'s line in a Dovecot passwd-file
/// (`user:{SCHEME}hash:uid:gid:...`), keeping every other field, the file's owner and mode.
fn set_in_passwd_file(file: &Path, user: &SaslUser, hash: &str) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", file.display());
    let text = fs::read_to_string(file).map_err(err)?;
    let meta = fs::metadata(file).map_err(err)?;
    let mut found = false;
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        match line.split_once(':') {
            Some((name, rest)) if name == user.as_str() => {
                found = true;
                let tail = rest.split_once(':').map_or("", |(_, t)| t);
                out.push_str(name);
                out.push(':');
                out.push_str(hash);
                if !tail.is_empty() || rest.contains(':') {
                    out.push(':');
                    out.push_str(tail);
                }
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    if !found {
        return Err(format!("{} has no line for {user}", file.display()));
    }
    write_atomically(
        file,
        out.as_bytes(),
        meta.mode() & 0o7777,
        Some((meta.uid(), meta.gid())),
    )
    .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_like_names_need_a_double_dash_first() {
        let mut cfg = Config::default();
        let user = |u: &str| SaslUser::parse(u).unwrap();
        let with = |cfg: &mut Config, argv: &[&str]| {
            cfg.contain.password =
                PasswordBackend::Command(argv.iter().map(|a| a.to_string()).collect());
        };
        assert!(
            refusal(&cfg, &user("x@example.test")).is_some(),
            "no backend"
        );
        with(&mut cfg, &["/bin/setpw", "{user}"]);
        assert!(refusal(&cfg, &user("-x@example.test")).is_some());
        assert!(refusal(&cfg, &user("x@example.test")).is_none());
        with(&mut cfg, &["/bin/setpw", "--", "{user}"]);
        assert!(refusal(&cfg, &user("-x@example.test")).is_none());
        with(&mut cfg, &["/bin/setpw", "{user}", "--"]);
        assert!(refusal(&cfg, &user("-x@example.test")).is_some());
        with(&mut cfg, &["/bin/setpw", "--user={user}"]);
        assert!(refusal(&cfg, &user("-x@example.test")).is_none());
    }

    #[test]
    fn passwords_are_long_and_varied() {
        let a = generate(24).unwrap();
        let b = generate(24).unwrap();
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
    }

    #[test]
    fn ssha512_matches_doveadm_layout() {
        // 64-byte digest + salt, base64: what `doveadm pw -t` verifies.
        let h = ssha512("secret", b"salt");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(h.trim_start_matches("{SSHA512}"))
            .unwrap();
        assert_eq!(raw.len(), 68);
        assert_eq!(&raw[64..], b"salt");
        assert_eq!(&raw[..64], Sha512::digest(b"secretsalt").as_slice());
    }
}
