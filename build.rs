//! Generates the man pages and shell completions from the clap definitions in
//! src/cli.rs, at build time, so clap_mangen and clap_complete are not part of the
//! binary; `f2b-mailguard generate` writes out what this embedded (see
//! src/cmd/generate.rs). Everything goes into OUT_DIR.

use std::fmt::Write as _;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

#[path = "src/cli.rs"]
#[allow(dead_code)]
mod cli;

const BIN: &str = "f2b-mailguard";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo::rerun-if-changed=src/cli.rs");
    println!("cargo::rerun-if-changed=build.rs");
    let out = std::env::var_os("OUT_DIR").ok_or("OUT_DIR not set by cargo")?;
    let out = Path::new(&out);

    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    clap_mangen::generate_to(cli::Cli::command(), &man)?;
    let mut pages: Vec<String> = std::fs::read_dir(&man)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    pages.sort();

    let mut code = String::from(
        "/// Man pages: (file name, roff).\npub const MAN_PAGES: &[(&str, &str)] = &[\n",
    );
    for page in &pages {
        writeln!(
            code,
            "    ({page:?}, include_str!(concat!(env!(\"OUT_DIR\"), \"/man/{page}\"))),"
        )?;
    }
    code.push_str("];\n/// Completion scripts: (shell, script).\npub const COMPLETIONS: &[(&str, &str)] = &[\n");
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cli::Cli::command(), BIN, &mut script);
        let mut script = String::from_utf8(script)?;
        if shell == Shell::Bash {
            script = fix_bash(&script);
        }
        let file = format!("completion.{shell}");
        std::fs::write(out.join(&file), script)?;
        writeln!(
            code,
            "    (\"{shell}\", include_str!(concat!(env!(\"OUT_DIR\"), \"/{file}\"))),"
        )?;
    }
    code.push_str("];\n");
    std::fs::write(out.join("generated.rs"), code)?;
    Ok(())
}

/// clap_complete's bash script never completes past a subcommand when the binary's
/// name has a hyphen (clap-rs/clap#6421, fix proposed in #6428, not released): its
/// loop sets `cmd` to `f2b__mailguard__subcmd__status`, but the `case` arms that
/// hold each subcommand's options are spelt `f2b__subcmd__mailguard__subcmd__status`,
/// so no arm ever matches. Respell the arms the way the loop spells `cmd`; once clap
/// is fixed the wrong spelling no longer occurs and this changes nothing.
fn fix_bash(script: &str) -> String {
    const SEP: &str = "__subcmd__";
    let wrong = format!("{}{SEP}", BIN.replace('-', SEP));
    let right = format!("{}{SEP}", BIN.replace('-', "__"));
    script.replace(&wrong, &right)
}
