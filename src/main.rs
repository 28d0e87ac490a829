//! The binary: argument parsing and dispatch.
//!
//! It starts as a C `main`, without Rust's runtime set-up: that set-up locates the
//! main thread's stack guard by reading /proc/self/maps and installs an alternate
//! signal stack, a measurable share of a `record` that Fail2ban waits for under its
//! global lock (BENCHMARKS.md). Nothing here needs them: arguments still come from std
//! (glibc hands them over before `main`), a stack overflow still ends the process,
//! and SQLite never puts a database on descriptors 0-2 even when they are closed.
#![no_main]
#![warn(clippy::unwrap_used)]

use std::ffi::{c_char, c_int, OsString};
use std::io::Write;

use clap::Parser;

use f2b_mailguard::cli::{self, Command};
use f2b_mailguard::cmd::{App, Run};
use f2b_mailguard::error;

#[no_mangle]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    let status = run();
    // Rust's runtime would flush stdout at exit; a last line without newline stays
    // buffered otherwise.
    let _ = std::io::stdout().flush();
    c_int::from(status)
}

/// The exit status.
fn run() -> u8 {
    // A parent may hand SIGPIPE down ignored (Rust programs do), and then `status | head`
    // would end in a panic on the closed pipe. A command-line tool should just stop, as
    // cat and grep do.
    // SAFETY: first thing in main, before any thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args: Vec<OsString> = std::env::args_os().collect();
    let parsed = match cli::fast_record(&args) {
        Some((globals, record)) => Ok((globals, Command::Record(record))),
        None => cli::Cli::try_parse_from(args).map(|c| (c.globals, c.command)),
    };
    let (globals, command) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            use clap::error::ErrorKind::{DisplayHelp, DisplayVersion};
            if matches!(e.kind(), DisplayHelp | DisplayVersion) {
                let _ = e.print();
                return 0;
            }
            // Keep clap's first line only: Fail2ban logs stderr, one line per failure.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "f2b-mailguard: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return 2;
        }
    };
    let app = App::new(&globals);
    match command.run(&app) {
        Ok(()) => 0,
        Err(error::Error::Exit(code)) => code,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("f2b-mailguard: {}", error::one_line(&e));
            e.exit_code() as u8
        }
    }
}
