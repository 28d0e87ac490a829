//! The policy service holds an account's new mail in-band from the moment it knows of
//! the account's rise to notify, which can be before this server's map holds it (the
//! map is rebuilt by the worker that follows, and a level changed on another server
//! reaches it at the next `run-actions`). `release` must deliver that mail too, and
//! still leave what an admin held. Real Postfix, Dovecot, Fail2ban and the service.

use crate::quarantine::{
    as_sent, honest_message, send, travel, Stack, CAROL, DAVE, SUBMISSION_JAILS,
};
use crate::support;

use std::time::Duration;

use support::smtp_client::message;
use support::{now, wait_until};

#[test]
fn release_delivers_the_mail_the_service_held_before_the_map_did() {
    let st = Stack::start_jails(
        &[(CAROL, "carol-pw"), (DAVE, "dave-pw")],
        "enforce",
        "",
        true,
        SUBMISSION_JAILS,
    );
    // Held by the admin: one of dave's.
    st.sink.set_tempfail(true);
    send(
        &st,
        DAVE,
        "dave-pw",
        "198.51.100.30",
        &message(DAVE, crate::support::smtp_sink::TO, "dave's", "y"),
    );
    st.pf
        .wait_queue("dave's deferred", |pf| pf.queued(DAVE, "deferred") == 1);
    let admin_held = st.ids(DAVE, "deferred");
    st.postfix("/usr/sbin/postsuper", &["-h", &admin_held[0]]);
    st.sink.set_tempfail(false);

    // This server's map is rebuilt late: every convergence waits for the local
    // state's lock, held here meanwhile.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(st.s.path().join("state/mailguard.local.lock"))
        .unwrap();
    lock.lock().unwrap();
    travel(&st);
    let sent = [honest_message(1), honest_message(2)];
    for m in &sent {
        let reply = send(&st, CAROL, "carol-pw", "198.51.100.20", m);
        assert!(reply.starts_with("250"), "{reply}");
    }
    // Held in-band, by the service: the map does not list her yet.
    st.pf
        .wait_queue("carol's mail held", |pf| pf.queued(CAROL, "hold") >= 2);
    assert!(st.pf.map_lookup(CAROL).is_none(), "{}", st.map());
    assert!(st.pf.log().contains("END-OF-MESSAGE"), "{}", st.pf.log());
    // The map follows a second later or more (Postfix's arrival times are whole
    // seconds): what the worker held until now is the service's alone.
    std::thread::sleep(Duration::from_millis(1100));
    drop(lock);

    let out = st.s.ok(&["release", CAROL]);
    println!("{out}");
    let delivered = |n: u32| {
        (st.sink.messages().into_iter()).find(|m| {
            m.header("Subject").as_deref() == Some(&format!("Quarterly figures, part {n}"))
        })
    };
    wait_until(
        "the mail held in-band delivered",
        Duration::from_secs(30),
        || delivered(1).is_some() && delivered(2).is_some(),
    );
    for (n, m) in (1..).zip(&sent) {
        assert_eq!(as_sent(&delivered(n).unwrap().data), *m, "part {n}");
    }
    assert_eq!(st.pf.queued(CAROL, "hold"), 0, "{:?}", st.pf.queue());
    // The admin's hold stays.
    assert_eq!(st.ids(DAVE, "hold"), admin_held);
    assert_eq!(st.s.status_user(CAROL, now())["level"], "ok");
}
