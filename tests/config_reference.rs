//! docs/configuration.md is generated from config.example.toml, the one place that
//! documents each key beside its default (tests/config.rs checks those defaults
//! against the code's). This test regenerates the page and fails when the committed
//! one differs; `F2B_MAILGUARD_WRITE_DOCS=1` writes it instead.

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const PAGE: &str = "docs/configuration.md";

const PREAMBLE: &str = "# Configuration reference

<!-- Generated from config.example.toml by tests/config_reference.rs; do not edit.
     Regenerate: F2B_MAILGUARD_WRITE_DOCS=1 cargo test --test suite -- config_reference:: -->

The configuration is one TOML file, `/etc/f2b-mailguard/config.toml` (`--config PATH`
or `F2B_MAILGUARD_CONFIG` for another). Every key is optional: each block below shows
a key with its default, and what it does. `install.sh` and the Debian package install
`config.example.toml`, which holds the same text with every key commented out.
`f2b-mailguard config check` validates the file (naming the file, line, column, key and
reason of an error) and prints every effective value.

Durations are written `90s`, `15m`, `1h`, `30d`, `1w` or combined (`1h30m`).
";

/// One run of `## ` comment lines and the `# key = value` lines after it.
#[derive(Default)]
struct Item {
    text: Vec<String>,
    keys: Vec<String>,
}

/// The Markdown of one comment run: prose lines joined into paragraphs, example lines
/// (`##   ...`, indented) as a code block.
fn prose(text: &[String], out: &mut String) {
    let mut in_code = false;
    let mut first = true;
    for line in text {
        let code = line.starts_with("  ");
        if code != in_code {
            out.push_str(if code { "\n\n```toml\n" } else { "```\n\n" });
            in_code = code;
            first = true;
        }
        if code {
            out.push_str(line.trim_start());
            out.push('\n');
        } else {
            if !first {
                out.push(' ');
            }
            out.push_str(line);
            first = false;
        }
    }
    out.push_str(if in_code { "```\n" } else { "\n" });
}

fn item(it: &Item, out: &mut String) {
    if !it.keys.is_empty() {
        out.push_str("\n```toml\n");
        for k in &it.keys {
            out.push_str(k);
            out.push('\n');
        }
        out.push_str("```\n");
    }
    if !it.text.is_empty() {
        out.push('\n');
        prose(&it.text, out);
    }
}

/// The reference page for an example config in config.example.toml's shape.
fn reference(example: &str) -> String {
    let mut out = String::from(PREAMBLE);
    out.push_str("\n## Top level\n");
    for (n, group) in example.split("\n\n").enumerate() {
        let mut items: Vec<Item> = vec![Item::default()];
        for line in group.lines() {
            if let Some(c) = line.strip_prefix("##") {
                let last = items.last_mut().expect("one item");
                if !last.keys.is_empty() {
                    items.push(Item::default());
                }
                let c = c.strip_prefix(' ').unwrap_or(c);
                items.last_mut().expect("one item").text.push(c.to_owned());
            } else if let Some(kv) = line.strip_prefix("# ") {
                items.last_mut().expect("one item").keys.push(kv.to_owned());
            } else {
                panic!("config.example.toml: unexpected line {line:?}");
            }
        }
        // The file's own header: said by the preamble.
        if n == 0 {
            continue;
        }
        let has_keys = items.iter().any(|i| !i.keys.is_empty());
        if !has_keys {
            // A comment alone (the per-account policy): its first clause is its title.
            let first = &items[0].text[0];
            let title = first
                .split([' ', '.'])
                .take_while(|w| !w.starts_with('('))
                .collect::<Vec<_>>();
            out.push_str(&format!("\n## {}\n\n", title.join(" ")));
            prose(&items[0].text, &mut out);
            continue;
        }
        for it in &items {
            // A table header opens a section; a comment right before it describes it.
            let mut run = Item {
                text: it.text.clone(),
                keys: Vec::new(),
            };
            for key in &it.keys {
                if key.starts_with('[') {
                    let describes_table = run.keys.is_empty();
                    if !describes_table {
                        item(&run, &mut out);
                        run.text.clear();
                    }
                    run.keys.clear();
                    out.push_str(&format!("\n## `{key}`\n"));
                } else {
                    run.keys.push(key.clone());
                }
            }
            item(&run, &mut out);
        }
    }
    out
}

#[test]
fn configuration_reference_is_generated_from_the_example_config() {
    let example = std::fs::read_to_string(format!("{ROOT}/config.example.toml")).unwrap();
    let want = reference(&example);
    let path = format!("{ROOT}/{PAGE}");
    if std::env::var_os("F2B_MAILGUARD_WRITE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{PAGE} is not what config.example.toml generates; regenerate it with\n  \
         F2B_MAILGUARD_WRITE_DOCS=1 cargo test --test suite -- config_reference::"
    );
}

#[test]
fn every_key_of_the_example_is_in_the_reference_with_its_default() {
    // Independent of the generator's layout: each default line appears verbatim in a
    // toml block of the page, each table as a heading.
    let example = std::fs::read_to_string(format!("{ROOT}/config.example.toml")).unwrap();
    let page = reference(&example);
    for line in example.lines().filter_map(|l| l.strip_prefix("# ")) {
        if line.starts_with('[') {
            assert!(page.contains(&format!("## `{line}`\n")), "{line}");
        } else {
            assert!(page.contains(&format!("\n{line}\n")), "{line}");
        }
    }
}
