//! `cargo run --release --example scenario -- --seed 1 --days 14 --users 300 --out DIR`
//!
//! Writes a labelled detection-quality corpus: DIR/mail.log (Postfix and Dovecot lines in
//! Debian's syslog format), DIR/labels.jsonl (one account per line: user, class,
//! compromised, compromise_start, first_message), DIR/owners.csv (the synthetic owner
//! of every client address: `first,last,asn,org,country`, empty for unannounced space)
//! and DIR/scenario.json (parameters and the number of logins and bounces the shipped
//! filters must find). The same arguments always give the same files.
//! `bench/quality.sh` runs it; the generator is in gen.rs and its modules.

mod gen;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut params = gen::Params {
        seed: 1,
        days: 14,
        users: 300,
        without: &[],
    };
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (a.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next());
        let ok = match key.as_str() {
            "--seed" => value()
                .and_then(|v| v.parse().ok())
                .map(|v| params.seed = v),
            "--days" => value()
                .and_then(|v| v.parse().ok())
                .filter(|d| (1..=60).contains(d))
                .map(|v| params.days = v),
            "--users" => value()
                .and_then(|v| v.parse().ok())
                .filter(|u| (20..=100_000).contains(u))
                .map(|v| params.users = v),
            "--out" => value().map(|v| out = Some(PathBuf::from(v))),
            "-h" | "--help" => {
                println!("usage: scenario --out DIR [--seed N] [--days 1-60] [--users 20-100000]");
                return ExitCode::SUCCESS;
            }
            _ => None,
        };
        if ok.is_none() {
            eprintln!("scenario: bad argument {a:?} (see --help)");
            return ExitCode::from(2);
        }
    }
    let Some(out) = out else {
        eprintln!("scenario: --out DIR is required");
        return ExitCode::from(2);
    };
    let corpus = gen::generate(&params);
    if let Err(e) = corpus.write(&out) {
        eprintln!("scenario: writing {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    eprintln!("scenario: {}", gen::summary(&corpus));
    ExitCode::SUCCESS
}
