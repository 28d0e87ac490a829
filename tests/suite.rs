//! Every integration test in one binary, as ripgrep has it: each file under tests/ is
//! a module here, so the harness (tests/support) and the scenario generator are built
//! and linked once, and the test threads stay busy across files instead of waiting
//! for each file's slowest test. `cargo test --test suite -- postgres::` runs one file.

#[path = "../examples/scenario/gen.rs"]
mod gen;
#[path = "../examples/quality/score.rs"]
mod score;
mod support;

#[path = "account_names.rs"]
mod account_names;
#[path = "arrival_order.rs"]
mod arrival_order;
#[path = "backtest.rs"]
mod backtest;
#[path = "backtest_logs.rs"]
mod backtest_logs;
#[path = "bounce_share.rs"]
mod bounce_share;
#[path = "completions.rs"]
mod completions;
#[path = "concurrency.rs"]
mod concurrency;
#[path = "config.rs"]
mod config;
#[path = "config_reference.rs"]
mod config_reference;
#[path = "containment.rs"]
mod containment;
#[path = "containment_leak.rs"]
mod containment_leak;
#[path = "deb_first_hour.rs"]
mod deb_first_hour;
#[path = "deb_package.rs"]
mod deb_package;
#[path = "detection.rs"]
mod detection;
#[path = "display.rs"]
mod display;
#[path = "docs.rs"]
mod docs;
#[path = "doctor.rs"]
mod doctor;
#[path = "doctor_postfix.rs"]
mod doctor_postfix;
#[path = "dovecot_kick.rs"]
mod dovecot_kick;
#[path = "e2e_botnet.rs"]
mod e2e_botnet;
#[path = "exact_counts.rs"]
mod exact_counts;
#[path = "fail2ban_counts.rs"]
mod fail2ban_counts;
#[path = "fail2ban_e2e.rs"]
mod fail2ban_e2e;
#[path = "fail2ban_filters.rs"]
mod fail2ban_filters;
#[path = "fail2ban_heal.rs"]
mod fail2ban_heal;
#[path = "fail2ban_no_match.rs"]
mod fail2ban_no_match;
#[path = "fail2ban_reconcile.rs"]
mod fail2ban_reconcile;
#[path = "fail2ban_restart.rs"]
mod fail2ban_restart;
#[path = "fail2ban_stream.rs"]
mod fail2ban_stream;
#[path = "hardening.rs"]
mod hardening;
#[path = "hostile_rows.rs"]
mod hostile_rows;
#[path = "install.rs"]
mod install;
#[path = "install_prerequisites.rs"]
mod install_prerequisites;
#[path = "invalid_input.rs"]
mod invalid_input;
#[path = "journal.rs"]
mod journal;
#[path = "journal_heal.rs"]
mod journal_heal;
#[path = "live_equals_backtest.rs"]
mod live_equals_backtest;
#[path = "new_parties.rs"]
mod new_parties;
#[path = "nothing_lost.rs"]
mod nothing_lost;
#[path = "operations.rs"]
mod operations;
#[path = "owner_detection.rs"]
mod owner_detection;
#[path = "ownership.rs"]
mod ownership;
#[path = "ownership_sources.rs"]
mod ownership_sources;
#[path = "ownership_update.rs"]
mod ownership_update;
#[path = "pg_follow.rs"]
mod pg_follow;
#[path = "pg_outage.rs"]
mod pg_outage;
#[path = "pg_password.rs"]
mod pg_password;
#[path = "pg_queue.rs"]
mod pg_queue;
#[path = "pg_tls.rs"]
mod pg_tls;
#[path = "policy.rs"]
mod policy;
#[path = "policy_counts.rs"]
mod policy_counts;
#[path = "policy_levels.rs"]
mod policy_levels;
#[path = "policy_release.rs"]
mod policy_release;
#[path = "policy_shared.rs"]
mod policy_shared;
#[path = "postgres.rs"]
mod postgres;
#[path = "quality.rs"]
mod quality;
#[path = "quarantine.rs"]
mod quarantine;
#[path = "queue_scan.rs"]
mod queue_scan;
#[path = "refused_attack.rs"]
mod refused_attack;
#[path = "release.rs"]
mod release;
#[path = "roundcube.rs"]
mod roundcube;
#[path = "servers.rs"]
mod servers;
#[path = "several_servers.rs"]
mod several_servers;
#[path = "signals.rs"]
mod signals;
#[path = "store_files.rs"]
mod store_files;
#[path = "temp_files.rs"]
mod temp_files;
#[path = "user_mail.rs"]
mod user_mail;
