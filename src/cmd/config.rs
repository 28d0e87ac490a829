//! `config check`: validate and print the effective configuration.

use super::{App, Run};
use crate::cli::ConfigCmd;
use crate::error::Result;

impl Run for ConfigCmd {
    fn run(&self, app: &App) -> Result<()> {
        match self {
            ConfigCmd::Check => {
                let cfg = app.config()?;
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
                print!("{}", cfg.render());
                Ok(())
            }
        }
    }
}
