//! f2b-mailguard on a shared PostgreSQL store (issue 19), against a private
//! PostgreSQL 15 started per test on a Unix socket (tests/support/postgres.rs).

mod support;

use support::postgres::Postgres;

#[test]
fn the_private_server_starts_stops_and_starts_again() {
    let mut pg = Postgres::start();
    assert_eq!(pg.psql("SELECT 1 + 1"), "2");
    pg.stop();
    assert!(!pg.running());
    pg.start_server();
    assert_eq!(pg.psql("SELECT current_database()"), support::postgres::DB);
}
