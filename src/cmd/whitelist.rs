//! `whitelist add|list|remove`: networks that never count. Database entries are managed
//! here; entries from the config file and the built-in ranges are listed, not edited.

use serde::Serialize;

use super::{text, user_arg, App, Run};
use crate::cli::Whitelist;
use crate::detect::whitelist::{builtin, BUILTIN};
use crate::error::{Error, Result};
use crate::model::WhitelistEntry;
use crate::model::{Cidr, Label, SaslUser, Timestamp};
use crate::store;

#[derive(Serialize)]
struct Entry {
    cidr: String,
    /// `null` for every account.
    user: Option<SaslUser>,
    /// `database`, `config` or `builtin`.
    origin: &'static str,
    note: Option<String>,
    added: Option<f64>,
}

impl Run for Whitelist {
    fn run(&self, app: &App) -> Result<()> {
        match self {
            Whitelist::Add { cidr, user, note } => {
                let cidr = Cidr::parse("CIDR", cidr)?;
                let user = user_arg("user", user.as_deref())?;
                let note = note
                    .as_deref()
                    .map(|n| Label::parse("note", text("note", Some(n))?))
                    .transpose()?;
                let cfg = app.config()?;
                let mut store = store::open(&cfg)?;
                let fresh = store.whitelist_add(&WhitelistEntry {
                    cidr,
                    user: user.clone(),
                    note: note.map(|n| n.as_str().to_owned()),
                    added: Timestamp::now(),
                })?;
                println!(
                    "{} {cidr} for {}",
                    if fresh { "added" } else { "updated" },
                    scope(user.as_ref())
                );
                Ok(())
            }
            Whitelist::Remove { cidr, user } => {
                let cidr = Cidr::parse_any("CIDR", cidr)?;
                let user = user_arg("user", user.as_deref())?;
                let cfg = app.config()?;
                if let Some(key) = config_key(&cfg, &cidr, user.as_ref()) {
                    let file = cfg
                        .file
                        .as_ref()
                        .map(|f| f.display().to_string())
                        .unwrap_or_default();
                    return Err(Error::Usage(format!(
                        "{cidr} is set in {file} ({key}); edit it there"
                    )));
                }
                if cfg.detection.whitelist_builtin && builtin().any(|b| b == cidr) {
                    return Err(Error::Usage(format!(
                        "{cidr} is on the whitelist built in (not routable from the Internet) \
                         and cannot be removed; detection.whitelist_builtin = false in the \
                         config drops every built-in range"
                    )));
                }
                let mut store = store::open(&cfg)?;
                if !store.whitelist_remove(&cidr, user.as_ref())? {
                    let elsewhere = elsewhere(&list(&cfg, store.whitelist()?), &cidr);
                    return Err(Error::Usage(format!(
                        "{cidr} is not on the whitelist for {}{elsewhere}",
                        scope(user.as_ref())
                    )));
                }
                println!("removed {cidr} for {}", scope(user.as_ref()));
                Ok(())
            }
            Whitelist::List { json } => {
                let cfg = app.config()?;
                let mut store = store::open(&cfg)?;
                let entries = list(&cfg, store.whitelist()?);
                if *json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&entries).unwrap_or_default()
                    );
                } else {
                    print_table(&entries);
                }
                Ok(())
            }
        }
    }
}

fn scope(user: Option<&SaslUser>) -> String {
    user.map_or_else(|| "every account".to_owned(), |u| u.shown().into_owned())
}

/// A hint for a remove that found nothing: the accounts `cidr` is whitelisted for.
fn elsewhere(entries: &[Entry], cidr: &Cidr) -> String {
    let cidr = cidr.to_string();
    let scopes: Vec<String> = entries
        .iter()
        .filter(|e| e.cidr == cidr)
        .map(|e| match &e.user {
            Some(u) => format!("--user {}", u.shown()),
            None => "every account (no --user)".to_owned(),
        })
        .collect();
    if scopes.is_empty() {
        String::new()
    } else {
        format!("; it is for {}", scopes.join(", "))
    }
}

/// Where in the config file this entry comes from, if it does.
fn config_key(cfg: &crate::config::Config, cidr: &Cidr, user: Option<&SaslUser>) -> Option<String> {
    match user {
        None => cfg
            .detection
            .whitelist
            .contains(cidr)
            .then(|| "detection.whitelist".to_owned()),
        Some(u) => cfg
            .users
            .get(u)
            .filter(|p| p.whitelist.contains(cidr))
            .map(|_| format!("users.\"{u}\".whitelist")),
    }
}

fn list(cfg: &crate::config::Config, db: Vec<WhitelistEntry>) -> Vec<Entry> {
    let mut out: Vec<Entry> = db
        .into_iter()
        .map(|e| Entry {
            cidr: e.cidr.to_string(),
            user: e.user,
            origin: "database",
            note: e.note,
            added: Some(e.added.secs_f64()),
        })
        .collect();
    let from_config = |cidr: &Cidr, user: Option<&SaslUser>| Entry {
        cidr: cidr.to_string(),
        user: user.cloned(),
        origin: "config",
        note: None,
        added: None,
    };
    out.extend(cfg.detection.whitelist.iter().map(|c| from_config(c, None)));
    for (user, policy) in &cfg.users {
        out.extend(policy.whitelist.iter().map(|c| from_config(c, Some(user))));
    }
    if cfg.detection.whitelist_builtin {
        out.extend(BUILTIN.iter().map(|c| Entry {
            cidr: (*c).to_owned(),
            user: None,
            origin: "builtin",
            note: Some("not routable from the Internet (detection.whitelist_builtin)".into()),
            added: None,
        }));
    }
    out
}

fn print_table(entries: &[Entry]) {
    println!("{:<22} {:<24} {:<9} NOTE", "CIDR", "ACCOUNT", "ORIGIN");
    for e in entries {
        let user = e
            .user
            .as_ref()
            .map_or("(all)".to_owned(), |u| u.shown().into_owned());
        println!(
            "{:<22} {:<24} {:<9} {}",
            e.cidr,
            user,
            e.origin,
            crate::model::display::shown(e.note.as_deref().unwrap_or(""))
        );
    }
}
