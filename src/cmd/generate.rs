//! `generate man DIR | SHELL`: the man pages and completions, from the same clap
//! definitions as the parser, so they cannot drift. install.sh writes them into place.
//! `generate fail2ban-backend [ROOT]`: jail.d/mailguard-backend.local for the system
//! below ROOT (default /), the jails' log backend (install.sh and the package's
//! postinst both run it, so the choice is made in one place).

use clap::CommandFactory;

use super::{App, Run};
use crate::cli::{Cli, Generate};
use crate::error::{Error, Result};

impl Run for Generate {
    fn run(&self, _app: &App) -> Result<()> {
        let mut cmd = Cli::command();
        if self.what == "fail2ban-backend" {
            let root = self.dir.as_deref().unwrap_or(std::path::Path::new("/"));
            let text = crate::doctor::jails::backend_local(root);
            return std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())
                .map_err(|e| Error::io(std::path::Path::new("standard output"), e));
        }
        if self.what == "man" {
            // One page per command: f2b-mailguard.1, f2b-mailguard-record.1, ...
            let dir = self
                .dir
                .as_deref()
                .ok_or_else(|| Error::Usage("generate man needs a directory".into()))?;
            return clap_mangen::generate_to(cmd, dir).map_err(|e| Error::io(dir, e));
        }
        let shell: clap_complete::Shell = self.what.parse().map_err(|_| {
            Error::Usage(format!(
                "{:?} is not man, fail2ban-backend, bash, zsh, fish, elvish or powershell",
                self.what
            ))
        })?;
        clap_complete::generate(shell, &mut cmd, "f2b-mailguard", &mut std::io::stdout());
        Ok(())
    }
}
