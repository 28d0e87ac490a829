//! `doctor [--json] [--send-test-mail]`: the set-up checklist. Exit 0 when nothing
//! fails or warns (notes do not count), 1 when something warns, 2 when something
//! fails. A config that does not load is one failure: the other checks still run.

use super::{App, Run};
use crate::cli::Doctor;
use crate::doctor::{self, Options, Status, WorkerPaths};
use crate::error::{Error, Result};
use crate::store;

impl Run for Doctor {
    fn run(&self, app: &App) -> Result<()> {
        let (cfg, config_error) = match app.config() {
            Ok(cfg) => (cfg, None),
            Err(e) => (
                crate::config::Config::default(),
                Some(crate::error::one_line(&e)),
            ),
        };
        // The system's paths, unless a test points doctor elsewhere.
        let mut worker = WorkerPaths::default();
        if let Some(d) = std::env::var_os("F2B_MAILGUARD_SYSTEMD_DIR") {
            worker.systemd_dir = d.into();
        }
        if let Some(d) = std::env::var_os("F2B_MAILGUARD_CRON_DIR") {
            worker.cron_dir = d.into();
        }
        if let Some(d) = std::env::var_os("F2B_MAILGUARD_SYSTEMD_RUNNING") {
            worker.systemd_running = d.into();
        }
        let opts = Options {
            send_test_mail: self.send_test_mail,
            config_error,
            worker,
        };
        let findings = if opts.config_error.is_some() {
            doctor::run(&cfg, None, None, &opts)
        } else {
            match store::open(&cfg) {
                Ok(mut s) => doctor::run(&cfg, Some(s.as_mut()), None, &opts),
                Err(e) => doctor::run(&cfg, None, Some(crate::error::one_line(&e)), &opts),
            }
        };
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&findings).unwrap_or_default()
            );
        } else {
            for f in &findings {
                println!("{:<5} {:<9} {}", f.status.as_str(), f.area, f.message);
                if let Some(fix) = &f.fix {
                    println!("{:<15} fix: {fix}", "");
                }
            }
        }
        let worst = findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Ok);
        Err(Error::Exit(match worst {
            Status::Ok | Status::Note => 0,
            Status::Warn => 1,
            Status::Fail => 2,
        }))
    }
}
