//! The hot path: Fail2ban runs this once per new (user, address) pair and waits for it
//! under its global action lock. No network, no external command, one transaction.

use super::{text, App, Run};
use crate::actions;
use crate::cli::Record;
use crate::detect::{self, Whitelist};
use crate::error::{Invalid, Result};
use crate::model::{ClientAddr, Label, LogTime, SaslUser, Source};
use crate::store::{self, LoginEvent, Verdict};

impl Record {
    /// Validates every field before anything is opened, so bad input writes nothing.
    fn event(&self) -> Result<LoginEvent, Invalid> {
        let source = Source::parse(text("source", self.source.as_deref())?)?;
        let jail = Label::parse("jail", text("jail", self.jail.as_deref())?)?;
        if jail.as_str().is_empty() {
            return Err(Invalid::new("jail", "is empty"));
        }
        let user = SaslUser::parse(text("user", self.user.as_deref())?)?;
        let addr = ClientAddr::parse(text("ip", self.ip.as_deref())?)?;
        let time = match self.time.as_deref() {
            Some(t) => LogTime::parse("time", text("time", Some(t))?)?,
            None => LogTime::now(),
        };
        let fid = match self.fid.as_deref() {
            Some(f) => Some(Label::parse("fid", text("fid", Some(f))?)?),
            None => None,
        };
        Ok(LoginEvent {
            time,
            source,
            user,
            addr,
            jail,
            fid,
        })
    }
}

impl Run for Record {
    fn run(&self, app: &App) -> Result<()> {
        let event = self.event()?;
        let cfg = app.config()?;
        let mut store = store::open(&cfg)?;
        let recorded = store.record(&event, cfg.detection.window, &mut |ev| {
            let whitelist = Whitelist::new(&cfg, ev.user, ev.whitelist);
            let eval = detect::evaluate(&cfg, ev.user, ev.seen, &whitelist);
            let (state, transition) = detect::decide(&cfg, ev.state, &eval, ev.at);
            let actions = transition
                .as_ref()
                .map(|t| actions::plan(&cfg, t))
                .unwrap_or_default();
            Verdict {
                state,
                transition,
                actions,
                mail_cooldown: cfg.contain.mail.cooldown,
            }
        })?;
        if recorded.queued > 0 {
            // Mail, postmap, postsuper, doveadm: never under Fail2ban's lock.
            actions::worker::spawn(app.config_path.as_deref(), app.db.as_deref());
        }
        Ok(())
    }
}
