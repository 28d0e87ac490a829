//! The in-band policy service: Dovecot's auth policy and Postfix's policy delegation
//! (see `crate::policy`), run by systemd as one long-lived process.

use std::sync::Arc;
use std::time::Duration;

use super::{App, Run};
use crate::actions;
use crate::cli::Serve;
use crate::config::Config;
use crate::error::{one_line, Result};
use crate::ownership::Ownership;
use crate::policy::{Listeners, Service, Writer};
use crate::store;

impl Run for Serve {
    fn run(&self, app: &App) -> Result<()> {
        let cfg = Arc::new(app.config()?);
        for w in cfg.warnings() {
            eprintln!("f2b-mailguard serve: warning: {w}");
        }
        // Bound first: a wrong address or a taken port fails at once, under systemd's eye.
        let listeners = Listeners::bind(&cfg)?;
        let owners = Arc::new(Ownership::open_or_warn(&cfg));
        let writers = if cfg.database.sqlite().is_some() {
            1
        } else {
            cfg.policy.writers as usize
        };
        let (svc, queues) = Service::new(cfg.clone(), owners.clone(), writers)?;
        // The worker processes started on a level rise are never waited for: the
        // kernel reaps them.
        // SAFETY: setting a signal's disposition to SIG_IGN touches no memory of ours.
        unsafe {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
        }
        let (config_path, db) = (app.config_path.clone(), app.db_arg.clone());
        let on_queued: Arc<dyn Fn() + Send + Sync> =
            Arc::new(move || actions::worker::spawn(config_path.as_deref(), db.as_deref()));
        for (i, jobs) in queues.into_iter().enumerate() {
            let writer = Writer {
                cfg: cfg.clone(),
                owners: owners.clone(),
                state: svc.state.clone(),
                stats: svc.stats.clone(),
                on_queued: on_queued.clone(),
                refreshes: i == 0,
            };
            std::thread::Builder::new()
                .name(format!("policy-writer-{i}"))
                .spawn(move || writer.run(jobs))
                .map_err(|e| {
                    crate::error::Error::External(format!("cannot start a writer: {e}"))
                })?;
        }
        if cfg.database.sqlite().is_none() {
            let (cfg, svc) = (cfg.clone(), svc.clone());
            let _ = std::thread::Builder::new()
                .name("policy-listen".into())
                .spawn(move || hear_changes(&cfg, &svc));
        }
        eprintln!("f2b-mailguard serve: {}", describe(&cfg));
        svc.serve(listeners)
    }
}

/// Another server's level changes on a shared database reach the answers at once
/// (PostgreSQL's LISTEN, as `run-actions --follow` hears them); the writer's
/// periodic refresh covers the time the connection is down.
fn hear_changes(cfg: &Config, svc: &Service) {
    let retry = Duration::from_millis(cfg.policy.refresh.millis().unsigned_abs());
    loop {
        let heard = store::open(cfg).and_then(|mut s| {
            if s.listen()? {
                loop {
                    if s.wait_change(Duration::from_secs(30))? {
                        svc.refresh();
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = heard {
            eprintln!(
                "f2b-mailguard serve: not hearing other servers' level changes: {}",
                one_line(&e)
            );
        }
        std::thread::sleep(retry);
    }
}

fn describe(cfg: &Config) -> String {
    let p = &cfg.policy;
    let mut parts = Vec::new();
    if let Some(a) = p.dovecot_listen {
        parts.push(format!("Dovecot auth policy on http://{a}/"));
    }
    if let Some(l) = &p.postfix_listen {
        parts.push(format!("Postfix policy on {l}"));
    }
    format!(
        "serving {} ({} mode)",
        parts.join(" and "),
        cfg.mode.as_str()
    )
}
