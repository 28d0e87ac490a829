//! The lock action's `doveadm kick` against a private real Dovecot 2.3, with IMAP
//! sessions open: a forged account name must never act as a wildcard mask, a network
//! or an option, and must never disconnect anyone else.

use crate::support;

use support::imap::Session;
use support::mailstack::Dovecot;
use support::{now, Sandbox};

const ALICE: (&str, &str) = ("alice@example.test", "alice-pw");
const BOB: (&str, &str) = ("bob@example.test", "bob-pw");
/// A real account whose name doveadm would take for its `-h` option without `--`.
const DASH: (&str, &str) = ("-h@example.test", "dash-pw");

fn config(doveadm: &std::path::Path) -> String {
    format!(
        "mode = \"enforce\"\n\
         [actions]\nnotify = []\nblock = []\nlock = [\"dovecot_kick\"]\n\
         retry_base = \"1s\"\ncommand_timeout = \"10s\"\n\
         [dovecot]\ndoveadm = \"{}\"\n",
        doveadm.display()
    )
}

/// Takes `user` to lock and returns its dovecot_kick action once it has settled
/// (done or failed; a pending retry is not settled).
fn lock(s: &Sandbox, user: &str) -> serde_json::Value {
    s.burst(user, 21, now() - 300);
    let (d, kick) = s.wait_action(user, "dovecot_kick", |a| {
        a["state"] == "done" || a["state"] == "failed"
    });
    assert_eq!(d["state"], "lock", "{d:#}");
    kick
}

#[test]
fn forged_masks_kick_nobody_and_a_dash_name_is_kicked_as_a_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut dv = Dovecot::configure(dir.path(), &[ALICE, BOB, DASH]);
    dv.start();
    let mut alice = Session::login(dv.imap_port, ALICE);
    let mut bob = Session::login(dv.imap_port, BOB);
    let mut dash = Session::login(dv.imap_port, DASH);
    let s = Sandbox::acting(&config(&dv.doveadm));

    // `doveadm kick *@example.test` would disconnect the whole domain; `0.0.0.0/0`
    // every session. Both are refused at once, for good, saying why.
    for (forged, reason) in [
        ("*@example.test", "wildcard mask"),
        ("0.0.0.0/0", "IP address or network"),
    ] {
        let kick = lock(&s, forged);
        assert_eq!(
            kick["state"], "failed",
            "{forged} must be refused: {kick:#}"
        );
        assert_eq!(kick["attempts"], 1, "no retry can fix it: {kick:#}");
        let outcome = kick["outcome"].as_str().expect("outcome");
        assert!(outcome.contains(reason), "{outcome}");
        assert!(outcome.contains("no retry will change that"), "{outcome}");
        assert!(alice.alive(), "{forged} kicked alice");
        assert!(bob.alive(), "{forged} kicked bob");
        assert!(dash.alive(), "{forged} kicked {}", DASH.0);
    }

    // A name starting with '-' reaches doveadm after `--`: a name, not an option,
    // so that account (and only it) is flushed and kicked.
    let kick = lock(&s, DASH.0);
    assert_eq!(kick["state"], "done", "{kick:#}\n{}", dv.log());
    assert!(
        kick["outcome"]
            .as_str()
            .expect("outcome")
            .contains("sessions kicked"),
        "{kick:#}"
    );
    assert!(!dash.alive(), "{} was not kicked", DASH.0);
    assert!(alice.alive(), "kicking {} kicked alice", DASH.0);
    assert!(bob.alive(), "kicking {} kicked bob", DASH.0);
}
