//! A shared database is written by every server's role, and anyone holding one can
//! write any row. Stored text (a level change's reason and actor) reaches the admin's
//! terminal and mail escaped, never as control sequences; a row under a name that
//! is not valid is skipped and reported, and every other account is still listed,
//! checked and converged. The same on SQLite (a damaged file) and PostgreSQL.

use crate::support;

use std::path::Path;
use std::time::Duration;

use support::postgres::Postgres;
use support::smtp_sink::{quoted_printable, with_subject, SmtpSink};
use support::{described, now, Sandbox};

const ALICE: &str = "alice@example.com";

/// Enforcing, mailing the admin at `sink` and blocking through the map `map`
/// (postmap and the queue commands are /bin/true: the map's text is what counts).
fn settings(sink: &SmtpSink, map: &Path) -> String {
    format!(
        "mode = \"enforce\"\n\
         [actions]\nnotify = []\nblock = [\"mail\", \"sasl_block\"]\nlock = [\"sasl_block\"]\n\
         retry_base = \"1s\"\ncommand_timeout = \"10s\"\n\
         [mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nfrom = \"mailguard@example.test\"\n\
         to = [\"postmaster@example.test\"]\n\
         [postfix]\nsasl_map = {:?}\npostmap = \"/bin/true\"\npostqueue = \"/bin/true\"\n\
         postsuper = \"/bin/true\"\n",
        sink.port,
        map.display().to_string()
    )
}

/// Rows a hostile role writes: a level change of alice's whose reason and actor
/// hold ESC, CR and LF, and a blocked account whose name holds ESC, with a login and
/// a level change, and whitelist entries: one for every account with ESC in its note,
/// one under a name with ESC. `chr` is the SQL function for a character by its code,
/// `account` the whitelist's account column.
fn hostile_sql(chr: &str, account: &str, at_ms: i64) -> String {
    let esc = format!("{chr}(27)");
    format!(
        "INSERT INTO level_changes (user_id, ts_ms, from_level, to_level, enforced, reason, actor)
             SELECT id, {at_ms}, 'ok', 'ok', false,
                    'quiet' || {esc} || '[31mRED' || {chr}(13) || {chr}(10) || 'Injected: fake line',
                    {esc} || ']0;pwned' || {chr}(7) || 'admin'
             FROM users WHERE name = '{ALICE}';
         INSERT INTO users (name, level, enforced) VALUES ('bad' || {esc} || '[2Jname@example.com', 'block', true);
         INSERT INTO level_changes (user_id, ts_ms, from_level, to_level, enforced, reason, actor)
             SELECT id, {at_ms}, 'ok', 'block', true, 'planted', 'detector' FROM users WHERE name LIKE 'bad%';
         INSERT INTO whitelist (cidr, {account}, note, added_ms) VALUES
             ('192.0.2.0/24', '', 'office' || {esc} || '[8m', {at_ms}),
             ('203.0.113.0/24', 'bad' || {esc} || 'w@example.com', 'planted', {at_ms});"
    )
}

/// What a person sees: no control character but the line ends, and the planted
/// line break starts no line.
fn harmless(what: &str, text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r'),
        "{what} shows a control character: {text:?}"
    );
    assert!(
        !text.contains("\r\r") && !text.contains("RED\r"),
        "{what}: {text:?}"
    );
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("Injected")),
        "{what} starts a planted line: {text}"
    );
}

/// Alice's block on a store holding the hostile rows, seen through every command.
/// `sql` runs SQL on the store, whose `chr` function makes a character of a code.
fn escaped_and_skipped(
    s: &Sandbox,
    sink: &SmtpSink,
    map: &Path,
    sql_names: (&str, &str),
    sql: impl Fn(&str),
) {
    let t = now() - 600;
    s.record("smtp", ALICE, "198.51.99.1", t);
    let (chr, account) = sql_names;
    sql(&hostile_sql(chr, account, (t + 1) * 1000));

    // Alice is blocked: her mail (history and all) goes out, her key into the map.
    s.burst(ALICE, 11, now() - 300);
    let mails = sink.wait_for(1, Duration::from_secs(30));
    let mail = with_subject(&mails, ": block").expect("block mail");
    let body = quoted_printable(&mail.data);
    harmless("the admin mail", &body);
    assert!(body.contains(r"quiet\u{1b}[31mRED"), "{body}");

    for args in [&["status"][..], &["status", "--", ALICE][..]] {
        let out = s.run(args);
        let text = described(&out);
        assert!(out.status.success(), "{args:?}: {text}");
        harmless("status", &text);
        assert!(text.contains(ALICE), "{args:?}: {text}");
    }
    let detail = String::from_utf8_lossy(&s.run(&["status", "--", ALICE]).stdout).into_owned();
    assert!(
        detail.contains(r"by \u{1b}]0;pwned\u{7}admin"),
        "the actor, escaped: {detail}"
    );
    let overview = s.run(&["status"]);
    let err = String::from_utf8_lossy(&overview.stderr);
    assert!(
        err.contains(r#"skipped 1 stored account(s) of 1 account name(s) that are not valid: "bad\u{1b}[2Jname@example.com""#),
        "the bad row is reported: {err}"
    );

    let check = s.run(&["check"]);
    let text = described(&check);
    harmless("check", &text);
    assert!(
        text.starts_with("exit Some(2)\nF2B-MAILGUARD CRITICAL"),
        "alice's block, checked: {text}"
    );
    assert!(
        text.contains("stored row(s) under account names that are not valid skipped"),
        "the bad row, in what monitoring reads: {text}"
    );

    let list = s.run(&["whitelist", "list"]);
    let text = described(&list);
    assert!(list.status.success(), "{text}");
    harmless("whitelist list", &text);
    assert!(text.contains(r"office\u{1b}[8m"), "{text}");
    assert!(
        text.contains(r#""bad\u{1b}w@example.com""#),
        "reported: {text}"
    );

    let converge = s.run(&["run-actions"]);
    let text = described(&converge);
    assert!(converge.status.success(), "{text}");
    harmless("run-actions", &text);
    let map_text = std::fs::read_to_string(map).unwrap_or_default();
    assert!(map_text.contains(ALICE), "converged: {map_text}");
    assert!(!map_text.contains("bad"), "{map_text}");
}

#[test]
fn sqlite_rows_written_by_hand_are_escaped_or_skipped() {
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("sasl_block");
    let s = Sandbox::acting(&settings(&sink, &map));
    escaped_and_skipped(&s, &sink, &map, ("char", "user"), |sql| {
        let conn = rusqlite::Connection::open(s.db()).unwrap();
        conn.execute_batch(sql).unwrap();
    });
}

#[test]
fn postgres_rows_written_by_another_role_are_escaped_or_skipped() {
    let pg = Postgres::start();
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("sasl_block");
    let s = pg.server("mx1", &settings(&sink, &map));
    escaped_and_skipped(&s, &sink, &map, ("chr", "account"), |sql| {
        pg.psql(sql);
    });
}
