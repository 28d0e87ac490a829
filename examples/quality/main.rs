//! `cargo run --release --example quality -- --dir DIR`
//!
//! Reads what `bench/quality.sh` left in DIR: labels.jsonl and scenario.json (from
//! `examples/scenario`), events.jsonl (the filters' output, merged, as fed to ingest)
//! and ingest.json (`f2b-mailguard ingest --json`; another name with `--ingest FILE`),
//! and prints the detection-quality report as Markdown: per class the accounts
//! reaching notify, block and lock, the time from compromise to detection, precision
//! and recall, and the detection targets, each met or not.

mod score;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn read(dir: &Path, name: &str) -> Result<String, String> {
    std::fs::read_to_string(dir.join(name))
        .map_err(|e| format!("{}: {e}", dir.join(name).display()))
}

fn run(dir: &Path, report: &str) -> Result<(), String> {
    let labels = score::parse_labels(&read(dir, "labels.jsonl")?)?;
    let meta: serde_json::Value = serde_json::from_str(&read(dir, "scenario.json")?)
        .map_err(|e| format!("scenario.json: {e}"))?;
    let events = read(dir, "events.jsonl")?;
    let ingest = read(dir, report)?;

    let first_login = meta["first_login"].as_i64().unwrap_or(0);
    let offset = score::time_offset(&events, first_login);
    if offset != 0.0 {
        println!("Note: Fail2ban read the year-less log times {offset:+.0} s off; corrected.\n");
    }
    let found = score::count_sources(&events);
    let mut counts = Vec::new();
    for source in ["smtp", "imap", "pop3", "bounces"] {
        let want = meta["expected"][source].as_u64().unwrap_or(0);
        let got = found.get(source).copied();
        counts.push(match got {
            Some(n) if n == want => format!("{source} {n}"),
            Some(n) => format!("{source} {n} (corpus has {want})"),
            None => format!("{source} – (no filter; corpus has {want})"),
        });
    }
    println!(
        "Corpus: seed {}, {} day(s), {} accounts, {} log lines, {} owners. Events from the filters: {}. Report: {report}.\n",
        meta["seed"],
        meta["days"],
        labels.len(),
        meta["lines"],
        meta["owners"],
        counts.join(", ")
    );
    let outcomes = score::score(&labels, &ingest, offset)?;
    print!("{}", score::table(&outcomes));
    Ok(())
}

fn main() -> ExitCode {
    const USAGE: &str = "usage: quality --dir DIR [--ingest FILE]";
    let mut dir = None;
    let mut report = "ingest.json".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--dir", Some(v)) => dir = Some(PathBuf::from(v)),
            ("--ingest", Some(v)) => report = v,
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match run(&dir, &report) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quality: {e}");
            ExitCode::FAILURE
        }
    }
}
