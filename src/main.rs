use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use f2b_mailguard::cli::{self, Command};
use f2b_mailguard::cmd::{App, Run};
use f2b_mailguard::error;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so `status | head` would end in a panic on the closed pipe.
    // A command-line tool should just stop, as cat and grep do.
    // SAFETY: first thing in main, before any thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args: Vec<OsString> = std::env::args_os().collect();
    let parsed = match cli::RecordCli::position(&args) {
        Some(at) => {
            let mut args = args;
            args.remove(at);
            cli::RecordCli::try_parse_from(args).map(|r| (r.globals, Command::Record(r.record)))
        }
        None => cli::Cli::try_parse_from(args).map(|c| (c.globals, c.command)),
    };
    let (globals, command) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            use clap::error::ErrorKind::{DisplayHelp, DisplayVersion};
            if matches!(e.kind(), DisplayHelp | DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // Keep clap's first line only: Fail2ban logs stderr, one line per failure.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "f2b-mailguard: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let app = App::new(&globals);
    match command.run(&app) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error::Error::Exit(code)) => ExitCode::from(code),
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("f2b-mailguard: {}", error::one_line(&e));
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
