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

#[path = "build/man.rs"]
mod man;

const BIN: &str = "f2b-mailguard";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo::rerun-if-changed=src/cli.rs");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=build/man.rs");
    let out = std::env::var_os("OUT_DIR").ok_or("OUT_DIR not set by cargo")?;
    let out = Path::new(&out);

    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    let mut cmd = cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    man_pages(&cmd, &[], &man)?;
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

/// One page per command, as clap_mangen::generate_to writes them, each followed by
/// the sections of build/man.rs (DESCRIPTION, EXAMPLES, FILES, EXIT STATUS, SEE ALSO).
fn man_pages(cmd: &clap::Command, path: &[&str], dir: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut p = path.to_vec();
        p.push(sub.get_name());
        man_pages(sub, &p, dir)?;
    }
    let page = clap_mangen::Man::new(cmd.clone());
    let mut roff = Vec::new();
    page.render_title(&mut roff)?;
    page.render_name_section(&mut roff)?;
    page.render_synopsis_section(&mut roff)?;
    page.render_description_section(&mut roff)?;
    let mut sections = man::sections(path);
    // Our DESCRIPTION continues clap's (the --help text) rather than repeating it.
    if let Some(i) = sections.iter().position(|(h, _)| *h == "DESCRIPTION") {
        let (_, text) = sections.remove(i);
        let more = man::roff("", &text);
        roff.extend_from_slice(more.split_once('\n').map_or("", |(_, r)| r).as_bytes());
    }
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        page.render_options_section(&mut roff)?;
    }
    if cmd.has_subcommands() {
        page.render_subcommands_section(&mut roff)?;
    }
    if cmd.get_after_help().is_some() || cmd.get_after_long_help().is_some() {
        page.render_extra_section(&mut roff)?;
    }
    for (heading, text) in sections {
        roff.extend_from_slice(man::roff(heading, &text).as_bytes());
    }
    page.render_version_section(&mut roff)?;
    std::fs::write(dir.join(page.get_filename()), roff)
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
