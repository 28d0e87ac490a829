//! The documentation as a reader follows it: every relative link of README.md,
//! BENCHMARKS.md and docs/*.md leads to a file and a heading that exist, and every
//! `f2b-mailguard ...` command they show names a real (sub)command with options it has.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn pages() -> Vec<PathBuf> {
    let mut out = vec![
        Path::new(ROOT).join("README.md"),
        Path::new(ROOT).join("BENCHMARKS.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    out.extend(docs);
    out
}

/// A page's lines outside fenced code blocks, and those inside (with the fence's
/// language).
fn split_code(text: &str) -> (Vec<&str>, Vec<(String, &str)>) {
    let (mut prose, mut code) = (Vec::new(), Vec::new());
    let mut fence: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(lang.to_owned()),
            };
            continue;
        }
        match &fence {
            Some(lang) => code.push((lang.clone(), line)),
            None => prose.push(line),
        }
    }
    (prose, code)
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    split_code(text)
        .0
        .iter()
        .filter_map(|l| {
            l.trim_start_matches('#')
                .strip_prefix(' ')
                .filter(|_| l.starts_with('#'))
        })
        .map(slug)
        .collect()
}

/// `[text](target)` targets in a line, outside inline code.
fn link_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else { break };
        // A "](" inside inline code is not a link.
        if rest[..i].matches('`').count().is_multiple_of(2) {
            out.push(after[..end].to_owned());
        }
        rest = &after[end..];
    }
    out
}

#[test]
fn every_relative_link_leads_to_a_file_and_heading_that_exist() {
    let mut texts: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut broken = Vec::new();
    let mut links = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("page");
        let (prose, _) = split_code(&text);
        for line in prose {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                links += 1;
                let (file, anchor) = match target.split_once('#') {
                    Some((f, a)) => (f, Some(a)),
                    None => (target.as_str(), None),
                };
                let dest = if file.is_empty() {
                    page.clone()
                } else {
                    page.parent().expect("dir").join(file)
                };
                let Ok(dest) = dest.canonicalize() else {
                    broken.push(format!("{}: {target}: no such file", page.display()));
                    continue;
                };
                if let Some(anchor) = anchor {
                    let dest_text = texts
                        .entry(dest.clone())
                        .or_insert_with(|| std::fs::read_to_string(&dest).unwrap_or_default());
                    if !anchors(dest_text).contains(anchor) {
                        broken.push(format!("{}: {target}: no such heading", page.display()));
                    }
                }
            }
        }
    }
    assert!(links > 30, "only {links} links found: is the parser right?");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// `f2b-mailguard ARGS` in a line of code: the words after the program name, up to
/// the end of the shell command.
fn invocations(line: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("f2b-mailguard ") {
        let before = rest[..i].chars().last();
        let after = &rest[i + "f2b-mailguard ".len()..];
        rest = after;
        // Part of another name (the .deb's, a unit's) or of prose in a comment.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_' || c == '[') {
            continue;
        }
        let words: Vec<String> = after
            .split_whitespace()
            .take_while(|w| !["|", "&&", ";", "#", ">", "<", "||"].contains(w))
            .map(|w| w.trim_end_matches(['`', '\'', ')', ';', ',']).to_owned())
            .take_while(|w| !w.is_empty())
            .collect();
        out.push(words);
    }
    out
}

fn help(path: &[&str]) -> Option<String> {
    let out = std::process::Command::new(support::BIN)
        .args(path)
        .arg("--help")
        .output()
        .expect("run the binary");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn has_option(help: &str, option: &str) -> bool {
    help.match_indices(option).any(|(i, _)| {
        !help[i + option.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

#[test]
fn every_command_shown_exists_with_the_options_shown() {
    let top = help(&[]).expect("f2b-mailguard --help");
    let mut checked = BTreeSet::new();
    let mut wrong = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("page");
        let (prose, code) = split_code(&text);
        // Code blocks, with shell line continuations joined; inline code in prose.
        let mut lines: Vec<String> = Vec::new();
        let mut joined = String::new();
        for (_, line) in &code {
            match line.strip_suffix('\\') {
                Some(start) => joined.push_str(start),
                None => {
                    joined.push_str(line);
                    lines.push(std::mem::take(&mut joined));
                }
            }
        }
        for line in prose {
            lines.extend(line.split('`').skip(1).step_by(2).map(str::to_owned));
        }
        for line in &lines {
            for words in invocations(line) {
                let mut words = words.iter().map(String::as_str).peekable();
                // Global options and their values come first.
                let mut options = Vec::new();
                while let Some(w) = words.next_if(|w| w.starts_with('-')) {
                    options.push(w);
                    if matches!(w, "--config" | "--db") {
                        words.next();
                    }
                }
                let Some(command) = words.next() else {
                    continue;
                };
                // A placeholder (COMMAND) or a word of prose ("f2b-mailguard ships").
                if command.chars().all(|c| c.is_ascii_uppercase()) {
                    continue;
                }
                let mut path = vec![command];
                let Some(mut h) = help(&path) else {
                    wrong.push(format!(
                        "{}: {line}: no command {command:?}",
                        page.display()
                    ));
                    continue;
                };
                // A command with commands of its own (whitelist add, config check).
                if h.contains("\nCommands:\n") {
                    if let Some(sub) = words.next_if(|w| !w.starts_with('-')) {
                        path.push(sub);
                        match help(&path) {
                            Some(sub_help) => h = sub_help,
                            None => {
                                wrong.push(format!(
                                    "{}: {line}: no command {path:?}",
                                    page.display()
                                ));
                                continue;
                            }
                        }
                    }
                }
                for w in words.take_while(|w| *w != "--") {
                    if w.starts_with("--") {
                        options.push(w);
                    }
                }
                for option in options {
                    let option = option.split('=').next().expect("split");
                    if !has_option(&h, option) && !has_option(&top, option) {
                        wrong.push(format!(
                            "{}: {line}: {path:?} has no {option}",
                            page.display()
                        ));
                    }
                }
                checked.insert(path.join(" "));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "commands in the docs that do not exist:\n{}",
        wrong.join("\n")
    );
    // The parser finds the commands a reader meets first.
    for c in [
        "record",
        "status",
        "release",
        "ingest",
        "doctor",
        "whitelist add",
        "config check",
    ] {
        assert!(checked.contains(c), "{c} not found among {checked:?}");
    }
}
