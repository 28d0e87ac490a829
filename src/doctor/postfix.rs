//! Postfix: is the SASL block map consulted where it counts (before
//! permit_sasl_authenticated, on every SASL-enabled smtpd), does the map type exist,
//! is the map built, and can a stolen account send as someone else?

use std::collections::HashMap;
use std::path::PathBuf;

use super::{Finding, Status};
use crate::actions::exec;
use crate::config::Config;

const AREA: &str = "postfix";

/// The smtpd restriction lists; a REJECT in any of them stops the message.
const LISTS: &[&str] = &[
    "smtpd_client_restrictions",
    "smtpd_helo_restrictions",
    "smtpd_sender_restrictions",
    "smtpd_relay_restrictions",
    "smtpd_recipient_restrictions",
    "smtpd_data_restrictions",
    "smtpd_end_of_data_restrictions",
];

const MISMATCH: &[&str] = &[
    "reject_sender_login_mismatch",
    "reject_authenticated_sender_login_mismatch",
    "reject_known_sender_login_mismatch",
];

struct Service {
    /// `submission/inet`, as postconf -P names it.
    key: String,
    overrides: HashMap<String, String>,
}

pub(super) fn postconf(cfg: &Config, args: &[&str]) -> Result<String, String> {
    let program: PathBuf = cfg.contain.postfix.postmap.with_file_name("postconf");
    let ran = exec::run(&program, args, None, cfg.contain.actions.command_timeout)?;
    if !ran.success() {
        return Err(ran.failure(&program));
    }
    Ok(String::from_utf8_lossy(&ran.stdout).into_owned())
}

/// `name = value` lines into a map.
pub(super) fn pairs(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| {
            l.split_once(" = ")
                .or_else(|| l.strip_suffix(" =").map(|n| (n, "")))
        })
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn tokens(list: &str) -> Vec<&str> {
    list.split([',', ' ', '\t', '\n'])
        .filter(|t| !t.is_empty())
        .collect()
}

pub fn check(cfg: &Config, out: &mut Vec<Finding>) {
    let mut names: Vec<&str> = vec![
        "mail_version",
        "smtpd_sasl_auth_enable",
        "smtpd_sender_login_maps",
    ];
    names.extend(LISTS);
    let main = match postconf(cfg, &[&["-x"][..], &names].concat()) {
        Ok(t) => pairs(&t),
        Err(e) => {
            out.push(Finding::warn(
                AREA,
                format!("postconf did not run ({e}): Postfix checks skipped"),
            ));
            return;
        }
    };
    out.push(Finding::ok(
        AREA,
        format!(
            "Postfix {}",
            main.get("mail_version").map_or("?", String::as_str)
        ),
    ));
    let p = &cfg.contain.postfix;
    let want_map = format!("{}:{}", p.map_type, p.sasl_map.display());

    match postconf(cfg, &["-m"]) {
        Ok(types) if types.lines().any(|t| t.trim() == p.map_type) => out.push(Finding::ok(
            AREA,
            format!("map type {} is available", p.map_type),
        )),
        Ok(_) => out.push(Finding::new(
            Status::Fail,
            AREA,
            format!("map type {} is not available (postconf -m)", p.map_type),
            Some(format!(
                "apt-get install postfix-{}   (or set [postfix] map_type = \"hash\")",
                p.map_type
            )),
        )),
        Err(e) => out.push(Finding::warn(AREA, e)),
    }

    // The smtpd services (postconf -M) and their -o overrides (postconf -P).
    let services: Vec<Service> = {
        let masters = postconf(cfg, &["-M"]).unwrap_or_default();
        let overrides = postconf(cfg, &["-P"]).unwrap_or_default();
        masters
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 8 && f[1] == "inet" && f[7] == "smtpd")
                    .then(|| format!("{}/{}", f[0], f[1]))
            })
            .map(|key| {
                let prefix = format!("{key}/");
                let overrides = pairs(&overrides)
                    .into_iter()
                    .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|p| (p.to_owned(), v)))
                    .collect();
                Service { key, overrides }
            })
            .collect()
    };
    let effective = |s: &Service, name: &str| -> String {
        let v = s
            .overrides
            .get(name)
            .cloned()
            .unwrap_or_else(|| main.get(name).cloned().unwrap_or_default());
        // `-o name=$other` refers to a main.cf parameter.
        match v.strip_prefix('$') {
            Some(other) => postconf(cfg, &["-x", "-h", other])
                .map(|t| t.trim().to_owned())
                .unwrap_or(v),
            None => v,
        }
    };
    let sasl: Vec<&Service> = services
        .iter()
        .filter(|s| effective(s, "smtpd_sasl_auth_enable") == "yes")
        .collect();
    if sasl.is_empty() {
        out.push(Finding::new(
            Status::Warn,
            AREA,
            "no smtpd service has smtpd_sasl_auth_enable = yes: nothing to block",
            Some("SMTP AUTH through Dovecot on the submission service (Dovecot's auth socket at /var/spool/postfix/private/auth first): postconf -e 'smtpd_sasl_type = dovecot' 'smtpd_sasl_path = private/auth' && postconf -P 'submission/inet/smtpd_sasl_auth_enable=yes' && postfix reload   (the whole recipe: docs/mail-stack.md in /usr/share/doc/f2b-mailguard or /usr/local/share/doc/f2b-mailguard)".into()),
        ));
    }
    for s in &sasl {
        out.push(placement(s, &effective, &want_map));
    }

    out.push(map_built(cfg, &want_map));

    let others: Vec<&Service> = services
        .iter()
        .filter(|s| effective(s, "smtpd_sasl_auth_enable") != "yes")
        .collect();
    out.extend(sasl_access_in_main(&sasl, &others, &main, &want_map));
    out.extend(sender_login(cfg, &sasl, &others, &effective, &main));
}

/// check_sasl_access in a main.cf list reaches every smtpd service that does not
/// override that list, port 25 too, where there is no SASL: Postfix then logs
/// "restriction `check_sasl_access' ignored: no SASL support" for each message. It
/// belongs in the SASL services' -o overrides (master.cf).
fn sasl_access_in_main(
    sasl: &[&Service],
    others: &[&Service],
    main: &HashMap<String, String>,
    want_map: &str,
) -> Option<Finding> {
    let (list, port25) = LISTS.iter().find_map(|l| {
        let value = main.get(*l)?;
        tokens(value).contains(&"check_sasl_access").then_some(())?;
        let s = others.iter().find(|s| !s.overrides.contains_key(*l))?;
        Some((*l, *s))
    })?;
    let kept: Vec<&str> = {
        let t = tokens(main.get(list).map_or("", String::as_str));
        let mut kept = Vec::new();
        let mut skip_map = false;
        for x in t {
            if skip_map {
                skip_map = false;
            } else if x == "check_sasl_access" {
                skip_map = true;
            } else {
                kept.push(x);
            }
        }
        kept
    };
    let overrides: Vec<String> = sasl
        .iter()
        .filter(|s| !s.overrides.contains_key(list))
        .map(|s| {
            format!(
                "'{}/smtpd_recipient_restrictions=check_sasl_access,{want_map},permit_sasl_authenticated,reject'",
                s.key
            )
        })
        .collect();
    let mut fix = String::new();
    if !overrides.is_empty() {
        fix.push_str(&format!("postconf -P {} && ", overrides.join(" ")));
    }
    fix.push_str(&format!(
        "postconf -e '{list} = {}' && postfix reload",
        kept.join(", ")
    ));
    Some(Finding::new(
        Status::Warn,
        AREA,
        format!(
            "check_sasl_access is in main.cf's {list}, so {} (no SASL) runs it too: Postfix logs \"restriction `check_sasl_access' ignored: no SASL support\" for its mail; it belongs in the SASL services' -o overrides (master.cf)",
            port25.key
        ),
        Some(fix),
    ))
}

/// Are senders tied to their login on the SASL services, and only there? In main.cf
/// the mismatch check also reaches port 25, where Postfix logs "restriction ...
/// ignored: no SASL support" for every client: it belongs in the submission
/// services' -o overrides (master.cf).
fn sender_login(
    cfg: &Config,
    sasl: &[&Service],
    others: &[&Service],
    effective: &dyn Fn(&Service, &str) -> String,
    main: &HashMap<String, String>,
) -> Option<Finding> {
    const LIST: &str = "smtpd_sender_restrictions";
    const CHECK: &str = "reject_authenticated_sender_login_mismatch";
    let has_mismatch = |v: &str| tokens(v).iter().any(|t| MISMATCH.contains(t));
    // main.cf lists with the check that a service without SASL inherits.
    let noisy: Vec<(&str, &Service)> = LISTS
        .iter()
        .filter(|l| has_mismatch(main.get(**l).map_or("", String::as_str)))
        .filter_map(|l| {
            others
                .iter()
                .find(|s| !s.overrides.contains_key(*l))
                .map(|s| (*l, *s))
        })
        .collect();
    let tied = |s: &Service| {
        !effective(s, "smtpd_sender_login_maps").is_empty()
            && LISTS.iter().any(|l| has_mismatch(&effective(s, l)))
    };
    if noisy.is_empty() && sasl.iter().all(|s| tied(s)) {
        // Without a SASL service the warning above says all there is.
        return (!sasl.is_empty()).then(|| Finding::ok(AREA, "senders are tied to their login on the SASL services (smtpd_sender_login_maps + reject_*_sender_login_mismatch)"));
    }
    // The -o overrides for every SASL service: the check first, then what it has now.
    let p = &cfg.contain.postfix;
    let dir = p
        .sasl_map
        .parent()
        .unwrap_or(std::path::Path::new("/etc/postfix"));
    let new_map = format!("{}:{}", p.map_type, dir.join("sender_login").display());
    let mut args = Vec::new();
    let mut needs_map = false;
    for s in sasl {
        if effective(s, "smtpd_sender_login_maps").is_empty() {
            needs_map = true;
            args.push(format!("'{}/smtpd_sender_login_maps={new_map}'", s.key));
        }
        let current = effective(s, LIST);
        let rest = tokens(&current)
            .into_iter()
            .filter(|t| !MISMATCH.contains(t));
        let value: Vec<&str> = std::iter::once(CHECK).chain(rest).collect();
        args.push(format!("'{}/{LIST}={}'", s.key, value.join(",")));
    }
    let mut fix = String::new();
    if needs_map {
        fix.push_str(&format!(
            "fill {} (one line per address: ADDRESS LOGIN) and postmap {new_map}, then: ",
            dir.join("sender_login").display()
        ));
    }
    fix.push_str(&format!("postconf -P {}", args.join(" ")));
    for (list, _) in &noisy {
        let kept: Vec<&str> = tokens(main.get(*list).map_or("", String::as_str))
            .into_iter()
            .filter(|t| !MISMATCH.contains(t))
            .collect();
        fix.push_str(&format!(" && postconf -e '{list} = {}'", kept.join(", ")));
    }
    fix.push_str(" && postfix reload");
    let message = match noisy.first() {
        Some((list, s)) => format!(
            "main.cf's {list} checks the sender against the login on {} too, which has no SASL: Postfix logs \"restriction ... ignored: no SASL support\" for every client there; the check belongs in the SASL services' -o overrides",
            s.key
        ),
        None => format!("a stolen account may send as any address: no smtpd_sender_login_maps with {CHECK} on {}", sasl.iter().filter(|s| !tied(s)).map(|s| s.key.as_str()).collect::<Vec<_>>().join(", ")),
    };
    Some(Finding::new(Status::Warn, AREA, message, Some(fix)))
}

fn placement(s: &Service, effective: &dyn Fn(&Service, &str) -> String, want_map: &str) -> Finding {
    let mut after_permit = None;
    let mut other_map = None;
    for list in LISTS {
        let value = effective(s, list);
        let t = tokens(&value);
        let Some(i) = t.iter().position(|x| *x == "check_sasl_access") else {
            continue;
        };
        let map = t.get(i + 1).copied().unwrap_or("");
        if map != want_map {
            other_map = Some(format!("{list} consults {map}"));
            continue;
        }
        match t.iter().position(|x| *x == "permit_sasl_authenticated") {
            Some(p) if p < i => after_permit = Some(*list),
            _ => {
                let place = if s.overrides.contains_key(*list) {
                    "its -o override in master.cf"
                } else {
                    "main.cf"
                };
                return Finding::ok(
                    AREA,
                    format!(
                        "{}: {list} consults {want_map} before permitting SASL users (set in {place})",
                        s.key
                    ),
                );
            }
        }
    }
    let fix = Some(format!(
        "postconf -P '{}/smtpd_recipient_restrictions=check_sasl_access,{want_map},permit_sasl_authenticated,reject'   (or put check_sasl_access {want_map} first in main.cf's smtpd_recipient_restrictions)",
        s.key
    ));
    let message = match (after_permit, other_map) {
        (Some(list), _) => format!(
            "{}: check_sasl_access comes after permit_sasl_authenticated in {list}, so a blocked account is permitted before the block is read",
            s.key
        ),
        (None, Some(other)) => format!("{}: {other}, not {want_map}", s.key),
        (None, None) => format!("{}: check_sasl_access {want_map} is in no restriction list: the SASL block has no effect", s.key),
    };
    Finding::new(Status::Fail, AREA, message, fix)
}

fn map_built(cfg: &Config, want_map: &str) -> Finding {
    let p = &cfg.contain.postfix;
    let ext = match p.map_type.as_str() {
        "hash" => "db",
        other => other,
    };
    let mut db = p.sasl_map.clone().into_os_string();
    db.push(format!(".{ext}"));
    let fix = Some(format!(
        "touch {0} && postmap {want_map}",
        p.sasl_map.display()
    ));
    let modified = |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    match (
        modified(&p.sasl_map),
        modified(PathBuf::from(&db).as_path()),
    ) {
        (Some(src), Some(built)) if built >= src => {
            Finding::ok(AREA, format!("{want_map} is built and current"))
        }
        (Some(_), Some(_)) => Finding::new(
            Status::Fail,
            AREA,
            format!("{want_map}: the built map is older than its source"),
            Some(format!("postmap {want_map}")),
        ),
        (Some(_), None) => Finding::new(
            Status::Fail,
            AREA,
            format!("{want_map} was never built with postmap"),
            fix,
        ),
        (None, _) => Finding::new(
            Status::Fail,
            AREA,
            format!(
                "{} does not exist: Postfix cannot open the map",
                p.sasl_map.display()
            ),
            fix,
        ),
    }
}
