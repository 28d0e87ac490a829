//! Many `record` processes at once on one database, as with several Fail2ban servers,
//! the CLI and timers: every event stored exactly once, no "database is locked".

use crate::support;

use std::thread;

use support::{Sandbox, BIN, T0};

#[test]
fn eight_writers_times_500_records() {
    let s = Sandbox::new("");
    let config = s.config_path();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let config = config.clone();
            thread::spawn(move || {
                let mut failures = Vec::new();
                for i in 0..500 {
                    let out = std::process::Command::new(BIN)
                        .env("F2B_MAILGUARD_CONFIG", &config)
                        .args([
                            "record",
                            "--source=smtp",
                            "--jail=load",
                            &format!("--user=user{}@example.com", i % 50),
                            &format!("--ip=198.51.{w}.{}", i % 250 + 1),
                            &format!("--time={}", T0 + i),
                        ])
                        .output()
                        .expect("spawn record");
                    if !out.status.success() {
                        failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(s.rows("events"), 4000);
    assert_eq!(s.rows("users"), 50);
}
