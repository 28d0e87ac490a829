//! TLS to the shared store as libpq has it: the private PostgreSQL with
//! `ssl=on` on 127.0.0.1 and pg_hba `hostssl` only, a CA and a server certificate
//! made here by `openssl`.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::postgres::{Postgres, DB};
use support::smtp_sink::free_port;
use support::{described as text, wait_until, Sandbox, NO_ACTIONS, T0};

const HOST: &str = "db.mailguard.test";
const ALICE: &str = "alice@example.com";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    support::assert_success(format_args!("openssl {args:?}"), &out);
}

/// A self-signed CA `NAME.pem` (key `NAME.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    dir.join(format!("{name}.pem"))
}

/// `NAME.pem` (key `NAME.key`) in `dir` for subject `cn`, signed by `ca.pem`, with
/// the extensions `ext`.
fn make_signed(dir: &Path, name: &str, cn: &str, ext: &str) {
    let (key, csr, pem, cnf) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.cnf"),
    );
    let subject = format!("/CN={cn}");
    let new = ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key];
    openssl(
        dir,
        &[&new[..], &["-out", &csr, "-subj", &subject]].concat(),
    );
    std::fs::write(dir.join(&cnf), ext).expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &cnf,
            "-out",
            &pem,
        ],
    );
}

/// PostgreSQL on 127.0.0.1 with a certificate for `HOST` that `ca` signed;
/// TCP only with TLS (`hostssl`), the Unix socket for the test's own psql.
fn tls_postgres(certs: &Path) -> (Postgres, u16) {
    tls_postgres_with(certs, "trust")
}

/// The same, TCP logins authenticated by pg_hba's `method` (`cert`: a client
/// certificate `ca` signed, naming the role).
fn tls_postgres_with(certs: &Path, method: &str) -> (Postgres, u16) {
    make_ca(certs, "ca");
    let ext = format!("subjectAltName=DNS:{HOST}\nextendedKeyUsage=serverAuth\n");
    make_signed(certs, "server", HOST, &ext);
    let mut pg = Postgres::start();
    let data = pg.data_dir();
    for f in ["server.pem", "server.key", "ca.pem"] {
        std::fs::copy(certs.join(f), data.join(f)).expect("copy cert");
    }
    std::fs::write(
        data.join("pg_hba.conf"),
        format!("local all all trust\nhostssl all all 127.0.0.1/32 {method}\n"),
    )
    .expect("pg_hba");
    let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).expect("conf");
    conf.push_str("ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n");
    conf.push_str("ssl_ca_file = 'ca.pem'\n");
    std::fs::write(data.join("postgresql.conf"), conf).expect("conf");
    let st = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&data)
        .status()
        .expect("chown");
    assert!(st.success());
    let st = Command::new("chmod")
        .arg("600")
        .arg(data.join("server.key"))
        .status()
        .expect("chmod");
    assert!(st.success());
    let port = free_port();
    pg.listen_tcp(port);
    (pg, port)
}

/// The URL over TCP to 127.0.0.1, naming the server `host` (what verify-full checks).
fn url(port: u16, host: &str, tls: &str) -> String {
    format!(
        "postgresql://postgres@{host}:{port}/{DB}?hostaddr=127.0.0.1&application_name=mg-tls&{tls}"
    )
}

/// A server on `url`, whose HOME is its sandbox (no ~/.postgresql/root.crt of ours).
fn server(url: &str) -> Sandbox {
    let mut s = Sandbox::server(url, "mx1", NO_ACTIONS);
    s.env.push(("HOME".into(), s.path().to_path_buf()));
    s
}

fn record(s: &Sandbox, i: i64) -> Output {
    s.run(&[
        "record",
        "--source=smtp",
        "--jail=t",
        &format!("--user={ALICE}"),
        &format!("--ip=198.51.100.{}", 10 + i),
        &format!("--time={}", T0 + i),
    ])
}

#[test]
fn verify_full_with_the_ca_works_and_a_wrong_ca_or_name_keeps_the_login() {
    let certs = tempfile::tempdir().expect("dir");
    let (pg, port) = tls_postgres(certs.path());
    let ca = certs.path().join("ca.pem").display().to_string();
    let other_ca = make_ca(certs.path(), "other").display().to_string();

    let good = server(&url(
        port,
        HOST,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ));
    let o = record(&good, 0);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", text(&o));
    assert_eq!(good.spooled_shared(), 0);
    let status = good.status_user(ALICE, T0 + 10);
    assert!(status.to_string().contains("198.51.100.10"), "{status}");

    // The server's certificate is not signed by this CA / does not name this host.
    for (what, u, says) in [
        (
            "wrong CA",
            url(
                port,
                HOST,
                &format!("sslmode=verify-full&sslrootcert={other_ca}"),
            ),
            "UnknownIssuer",
        ),
        (
            "wrong host name",
            url(
                port,
                "other.mailguard.test",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            "certificate not valid for name \"other.mailguard.test\"",
        ),
    ] {
        let s = server(&u);
        let o = record(&s, 1);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(0), "{what}: {out}");
        assert!(
            out.contains("is unreachable") && out.contains(says),
            "{what}: {out}"
        );
        assert!(out.contains("postgresql.spool"), "{what}: {out}");
        assert_eq!(s.spooled_shared(), 1, "{what}");
    }
    // verify-ca checks the chain only: the other name is fine.
    let ca_only = server(&url(
        port,
        "other.mailguard.test",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ));
    let o = record(&ca_only, 2);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", text(&o));
    // libpq's rule: require with a root certificate (here its default file,
    // ~/.postgresql/root.crt) checks the chain as verify-ca.
    let require_wrong_ca = server(&url(port, HOST, "sslmode=require"));
    let dot = require_wrong_ca.path().join(".postgresql");
    std::fs::create_dir(&dot).expect("mkdir");
    std::fs::copy(&other_ca, dot.join("root.crt")).expect("root.crt");
    let o = record(&require_wrong_ca, 3);
    assert!(text(&o).contains("UnknownIssuer"), "{}", text(&o));
    assert_eq!(require_wrong_ca.spooled_shared(), 1);
    assert_eq!(
        pg.psql("SELECT count(*) FROM events WHERE ip = '198.51.100.13'"),
        "0"
    );
    drop(pg);
}

#[test]
fn require_encrypts_without_a_root_certificate() {
    let certs = tempfile::tempdir().expect("dir");
    let (pg, port) = tls_postgres(certs.path());
    // No root certificate anywhere (HOME without ~/.postgresql): encrypted, unchecked.
    let s = server(&url(port, "127.0.0.1", "sslmode=require"));
    let o = s.run(&["status"]);
    assert!(o.status.success(), "{}", text(&o));
    // Hold the accounts table so this record waits, connected, while we look.
    let held = pg.hold("BEGIN; LOCK TABLE users IN EXCLUSIVE MODE;");
    wait_until("psql to hold the lock", Duration::from_secs(30), || {
        pg.psql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'users' AND l.mode = 'ExclusiveLock' AND l.granted") == "1"
    });
    let mut cmd = s.cmd();
    cmd.args([
        "record",
        "--source=smtp",
        "--jail=t",
        &format!("--user={ALICE}"),
        "--ip=198.51.100.50",
        &format!("--time={T0}"),
    ]);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("record");
    let ours = "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'mg-tls'";
    wait_until("record to connect", Duration::from_secs(30), || {
        !pg.psql(ours).is_empty()
    });
    assert_eq!(pg.psql(ours), "t");
    held.end();
    let o = child.wait_with_output().expect("record");
    assert!(o.status.success() && o.stderr.is_empty(), "{}", text(&o));
    assert_eq!(s.spooled_shared(), 0);
    assert_eq!(
        pg.psql("SELECT count(*) FROM events WHERE ip = '198.51.100.50'"),
        "1"
    );
}

#[test]
fn a_client_certificate_logs_in_where_pg_hba_asks_for_one() {
    let certs = tempfile::tempdir().expect("dir");
    let (pg, port) = tls_postgres_with(certs.path(), "cert");
    // The role's certificate (cert authentication maps its CN to the role).
    make_signed(
        certs.path(),
        "client",
        "postgres",
        "extendedKeyUsage=clientAuth\n",
    );
    let at = |f: &str| certs.path().join(f).display().to_string();
    let key = certs.path().join("client.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let ca = format!("sslmode=verify-full&sslrootcert={}", at("ca.pem"));
    let with_cert = format!(
        "{ca}&sslcert={}&sslkey={}",
        at("client.pem"),
        at("client.key")
    );

    let good = server(&url(port, HOST, &with_cert));
    let o = record(&good, 0);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", text(&o));
    assert_eq!(good.spooled_shared(), 0);
    assert_eq!(
        pg.psql("SELECT count(*) FROM events WHERE ip = '198.51.100.10'"),
        "1"
    );

    // No certificate: PostgreSQL refuses the login; it is kept, and stderr says why.
    let none = server(&url(port, HOST, &ca));
    let o = record(&none, 1);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("certificate"), "{}", text(&o));
    assert_eq!(none.spooled_shared(), 1);

    // libpq's default files, ~/.postgresql/postgresql.crt and .key, are used too.
    let by_default = server(&url(port, HOST, &ca));
    let dot = by_default.path().join(".postgresql");
    std::fs::create_dir(&dot).expect("mkdir");
    std::fs::copy(at("client.pem"), dot.join("postgresql.crt")).expect("crt");
    std::fs::copy(&key, dot.join("postgresql.key")).expect("key");
    let o = record(&by_default, 2);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", text(&o));

    // A key others may read is refused before connecting, as libpq does.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let loose = server(&url(port, HOST, &with_cert));
    let o = record(&loose, 3);
    assert!(
        text(&o).contains("lets others read the key"),
        "{}",
        text(&o)
    );
    assert_eq!(loose.spooled_shared(), 1);
    assert_eq!(
        pg.psql("SELECT count(*) FROM events WHERE ip IN ('198.51.100.11', '198.51.100.13')"),
        "0"
    );
}
