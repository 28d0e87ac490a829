//! `generate man DIR | SHELL`: the man pages and completions, which build.rs generated
//! from the same clap definitions as the parser (so they cannot drift) and this binary
//! embeds. install.sh and packaging write them into place.
//! `generate fail2ban-backend [ROOT]`: jail.d/mailguard-backend.local for the system
//! below ROOT (default /), the jails' log backend (install.sh and the package's
//! postinst both run it, so the choice is made in one place).

use super::{App, Run};
use crate::cli::Generate;
use crate::error::{Error, Result};

include!(concat!(env!("OUT_DIR"), "/generated.rs"));

impl Run for Generate {
    fn run(&self, _app: &App) -> Result<()> {
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
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            for (name, page) in MAN_PAGES {
                let path = dir.join(name);
                std::fs::write(&path, page).map_err(|e| Error::io(&path, e))?;
            }
            return Ok(());
        }
        let (_, script) = COMPLETIONS
            .iter()
            .find(|(shell, _)| *shell == self.what)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{:?} is not man, fail2ban-backend, bash, zsh, fish, elvish or powershell",
                    self.what
                ))
            })?;
        print!("{script}");
        Ok(())
    }
}
