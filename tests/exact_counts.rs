//! The duplicate rule, one for `record` and `ingest`: a retried Fail2ban call (same
//! ticket id, time and count) is one event; calls with different ids are each one,
//! however many share a second.

use crate::support;

use support::{Sandbox, T0};

const ALICE: &str = "alice@example.com";

/// One `record` call of the rate or bounce jail: (time, source, ticket id).
type Call = (i64, &'static str, String);

/// A message with ten recipients bounced in one second, five messages in one second,
/// each retried once at once, and one bounce retried again three hours later (past
/// the window the replay holds).
fn calls() -> Vec<Call> {
    let mut out = Vec::new();
    for r in 0..10 {
        out.push((
            T0,
            "bounces",
            format!("('4F1A32C0D1', 'r{r}@remote.example')"),
        ));
    }
    out.push(out[3].clone());
    for q in 0..5 {
        out.push((T0 + 1, "rate", format!("('{ALICE}', '4F1A32C0E{q}')")));
    }
    out.push(out[12].clone());
    out.push((T0 + 3 * 3600, "rate", format!("('{ALICE}', '4F1A32C0F0')")));
    out.push(out[5].clone());
    out
}

/// Stored rows and alice's (messages, bounces) one second after `at`, in `db`.
fn outcome(s: &Sandbox, db: &std::path::Path, at: i64) -> (i64, u64, u64) {
    let rows = rusqlite::Connection::open(db)
        .expect("open")
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("count");
    let db = format!("--db={}", db.display());
    let out = s.ok(&[
        &db,
        "status",
        "--json",
        &format!("--at={}", at + 1),
        "--",
        ALICE,
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let n = |k: &str| v[k].as_u64().unwrap_or(u64::MAX);
    (rows, n("messages"), n("bounces"))
}

#[test]
fn record_and_ingest_store_each_call_once_and_every_recipient_of_a_second() {
    let s = Sandbox::new("");
    for (t, source, fid) in calls() {
        s.ok(&[
            "record",
            &format!("--source={source}"),
            "--jail=mailguard-rate",
            &format!("--user={ALICE}"),
            "--ip=198.51.100.1",
            &format!("--time={t}.0"),
            &format!("--fid={fid}"),
            "--count=1",
        ]);
    }
    let scratch = s.path().join("backtest.db");
    let lines: String = calls()
        .iter()
        .map(|(t, source, fid)| {
            let call = serde_json::json!({"time": t, "user": ALICE, "ip": "198.51.100.1",
                                          "source": source, "count": 1, "fid": fid});
            format!("{call}\n")
        })
        .collect();
    s.ingest(&scratch, lines);

    // 10 bounces and 5 messages in the first seconds; later, one message.
    assert_eq!(outcome(&s, &s.db(), T0 + 1), (16, 5, 10));
    assert_eq!(outcome(&s, &scratch, T0 + 1), (16, 5, 10));
}
