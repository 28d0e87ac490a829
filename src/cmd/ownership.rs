//! `ownership update`: fetch the free ownership databases (see `ownership::update`).

use super::{App, Run};
use crate::cli::OwnershipCmd;
use crate::error::{Error, Result};
use crate::ownership::update;

impl Run for OwnershipCmd {
    fn run(&self, app: &App) -> Result<()> {
        match self {
            OwnershipCmd::Update => {
                let cfg = app.config()?;
                let report = update::run(&cfg)?;
                for line in &report.done {
                    println!("{line}");
                }
                println!("{}", update::attribution(cfg.ownership.source));
                if report.failed.is_empty() {
                    return Ok(());
                }
                for line in &report.failed {
                    eprintln!("f2b-mailguard: ownership update failed: {line}");
                }
                Err(Error::Exit(1))
            }
        }
    }
}
