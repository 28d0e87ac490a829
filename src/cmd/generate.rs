//! `generate man DIR | SHELL`: the man pages and completions, which build.rs generated
//! from the same clap definitions as the parser (so they cannot drift) and this binary
//! embeds. install.sh and packaging write them into place.
//! `generate fail2ban-backend [ROOT] [--stdout]`: writes
//! ROOT/etc/fail2ban/jail.d/mailguard-backend.local, the jails' log backend for the
//! system below ROOT (default /); install.sh and the package's postinst both run it, so
//! the choice is made in one place. The file is generated, not a conffile: it follows
//! the system (rsyslog installed later), but one the admin edited is kept.

use super::{App, Run};
use crate::cli::Generate;
use crate::doctor::jails::{self, Existing};
use crate::error::{Error, Result};
use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/generated.rs"));

impl Run for Generate {
    fn run(&self, _app: &App) -> Result<()> {
        if self.what == "fail2ban-backend" {
            let root = self.dir.as_deref().unwrap_or(std::path::Path::new("/"));
            let text = jails::backend_local_stamped(root);
            if self.stdout {
                return std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())
                    .map_err(|e| Error::io(std::path::Path::new("standard output"), e));
            }
            return write_backend(&root.join("etc/fail2ban").join(jails::BACKEND_LOCAL), &text);
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

/// Writes the backend file unless the admin edited the one in place, and says what it
/// chose (or why it kept the file) on standard output.
fn write_backend(path: &Path, text: &str) -> Result<()> {
    let choice = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# choice: "))
        .unwrap_or_default();
    match std::fs::read_to_string(path) {
        Ok(old) if old == text => {
            println!("{} unchanged: {choice}", path.display());
            return Ok(());
        }
        Ok(old) if jails::existing(&old) == Existing::Edited => {
            println!(
                "{} was edited, kept as it is (now generated: {choice}); to replace it: rm {} && f2b-mailguard generate fail2ban-backend",
                path.display(),
                path.display()
            );
            return Ok(());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // Written beside and renamed: Fail2ban never reads half a file.
    let mut tmp = tempfile::Builder::new()
        .prefix(".mailguard-backend.")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(|e| Error::io(tmp.path(), e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(path, e))?;
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    println!("{} written: {choice}", path.display());
    Ok(())
}
