//! `config check`: validate and print the effective configuration.

use super::{App, Run};
use crate::cli::ConfigCmd;
use crate::error::Result;
use crate::ownership::Ownership;

impl Run for ConfigCmd {
    fn run(&self, app: &App) -> Result<()> {
        match self {
            ConfigCmd::Check => {
                let cfg = app.config()?;
                // A database that is set but missing or damaged is a config error here;
                // `record` goes on without it.
                Ownership::check(&cfg)?;
                for w in cfg.warnings() {
                    eprintln!("f2b-mailguard: warning: {w}");
                }
                let origin = cfg
                    .file
                    .as_ref()
                    .map_or("built-in defaults (no config file)".to_owned(), |f| {
                        f.display().to_string()
                    });
                println!("# effective configuration from {origin}");
                print!("{}", cfg.render()?);
                Ok(())
            }
        }
    }
}
