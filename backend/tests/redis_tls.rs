//! An external Redis over TLS (`rediss://`), with an ACL user and
//! password: a real `redis-server` with a certificate signed by a private
//! certificate authority made for the test.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backend::{Backend, Config};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509Name, X509};
use shared::{Kind, Outcome};

const PASSWORD: &str = "s3cret-app-password";

fn key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

fn name(common: &str) -> X509Name {
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_text("CN", common).unwrap();
    name.build()
}

/// A certificate for `subject`, signed by `issuer` (itself when `None`).
fn certificate(subject: &PKey<Private>, common: &str, issuer: Option<(&X509, &PKey<Private>)>) -> X509 {
    let mut builder = X509::builder().unwrap();
    builder.set_version(2).unwrap();
    let serial = BigNum::from_u32(if issuer.is_some() { 2 } else { 1 }).unwrap();
    builder
        .set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    builder.set_subject_name(&name(common)).unwrap();
    builder.set_pubkey(subject).unwrap();
    builder
        .set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    builder
        .set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    match issuer {
        None => {
            builder.set_issuer_name(&name(common)).unwrap();
            builder
                .append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            builder.sign(subject, MessageDigest::sha256()).unwrap();
        }
        Some((ca, ca_key)) => {
            builder.set_issuer_name(ca.subject_name()).unwrap();
            let names = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .dns("localhost")
                .build(&builder.x509v3_context(Some(ca), None))
                .unwrap();
            builder.append_extension(names).unwrap();
            builder.sign(ca_key, MessageDigest::sha256()).unwrap();
        }
    }
    builder.build()
}

/// A `redis-server` that speaks only TLS, with an ACL user `app`; killed
/// on drop.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tls_redis(dir: &Path) -> TlsRedis {
    let ca_key = key();
    let ca = certificate(&ca_key, "playground test CA", None);
    let server_key = key();
    let server = certificate(&server_key, "127.0.0.1", Some((&ca, &ca_key)));
    std::fs::write(dir.join("ca.pem"), ca.to_pem().unwrap()).unwrap();
    std::fs::write(dir.join("server.pem"), server.to_pem().unwrap()).unwrap();
    std::fs::write(
        dir.join("server.key"),
        server_key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--tls-cert-file",
            &file("server.pem"),
            "--tls-key-file",
            &file("server.key"),
        ])
        .args(["--tls-ca-cert-file", &file("ca.pem"), "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no"])
        // An ACL user of its own; the default user is off.
        .args([
            "--user",
            "app",
            "on",
            &format!(">{PASSWORD}"),
            "~*",
            "&*",
            "+@all",
        ])
        .args(["--user", "default", "off"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server runs");
    let redis = TlsRedis { child, port };
    // Ready when a TLS client that trusts the CA gets an answer.
    let client = redis::Client::build_with_tls(
        format!("rediss://app:{PASSWORD}@127.0.0.1:{port}/"),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.to_pem().unwrap()),
        },
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answered = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        if answered.is_ok() {
            return redis;
        }
        assert!(
            Instant::now() < deadline,
            "TLS redis-server did not start: {answered:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn config(dir: &Path, url: String) -> Config {
    let mut config = Config::defaults();
    config.data_dir = dir.join("data");
    config.static_dir = dir.join("no-front-end");
    config.db_latency_ms = 0;
    config.redis_url = Some(url);
    config
}

/// With the certificate authority, the ACL user and its password, reads
/// cache over TLS (a miss, then a hit), Pub/Sub included; the password
/// shows nowhere.
#[tokio::test]
async fn reads_cache_in_a_redis_over_tls_with_an_acl_user() {
    let dir = tempfile::tempdir().unwrap();
    let redis = start_tls_redis(dir.path());
    let url = format!("rediss://app:{PASSWORD}@127.0.0.1:{}/", redis.port);
    let mut trusting = config(dir.path(), url.clone());
    trusting.redis_ca_cert = Some(dir.path().join("ca.pem"));
    trusting.near_cache = true;
    // A debug build's TLS handshake can take longer than the default 250
    // ms a command may; the connection would complete anyway (the engine's
    // connection tests show it), but this test wants its first read a miss.
    trusting.redis_timeout_ms = 5_000;
    let backend = Backend::start(trusting).unwrap();
    let playground = &backend.playground;
    let sandbox = shared::SandboxId::default_sandbox();
    let first = playground
        .read(&sandbox, Kind::Users, 3, shared::Origin::Rest)
        .await
        .unwrap();
    assert_eq!(first.outcome, Outcome::Miss);
    let second = playground
        .read(&sandbox, Kind::Products, 3, shared::Origin::Rest)
        .await
        .unwrap();
    assert_eq!(second.outcome, Outcome::Miss);
    let again = playground
        .read(&sandbox, Kind::Products, 3, shared::Origin::Rest)
        .await
        .unwrap();
    assert!(
        matches!(again.outcome, Outcome::Hit | Outcome::NearHit),
        "{:?}",
        again.outcome
    );
    assert!(!format!("{:?}", playground.redis).contains(PASSWORD));
    assert!(!backend::redact_url(&url).contains(PASSWORD));

    // Without the certificate authority the server is not trusted: reads
    // still work, from the database, and say why.
    let untrusting = Backend::start(config(dir.path(), url.clone())).unwrap();
    let read = untrusting
        .playground
        .read(&sandbox, Kind::Users, 4, shared::Origin::Rest)
        .await
        .unwrap();
    assert_eq!(read.outcome, Outcome::Fallback);

    // A wrong password likewise.
    let mut wrong = config(dir.path(), url.replace(PASSWORD, "wrong"));
    wrong.redis_ca_cert = Some(dir.path().join("ca.pem"));
    let wrong = Backend::start(wrong).unwrap();
    let read = wrong
        .playground
        .read(&sandbox, Kind::Users, 5, shared::Origin::Rest)
        .await
        .unwrap();
    assert_eq!(read.outcome, Outcome::Fallback);
}

/// TLS files with a plain `redis://` URL are a configuration error that
/// names the URL without its password.
#[test]
fn tls_files_need_a_rediss_url_and_errors_hide_the_password() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not used").unwrap();
    let mut plain = config(dir.path(), format!("redis://app:{PASSWORD}@127.0.0.1:1/"));
    plain.redis_ca_cert = Some(dir.path().join("ca.pem"));
    let error = Backend::start(plain).err().expect("refused").to_string();
    assert!(error.contains("rediss://"), "{error}");
    assert!(error.contains("app:***@"), "{error}");
    assert!(!error.contains(PASSWORD), "{error}");
    let mut half = config(dir.path(), "rediss://127.0.0.1:1/".to_string());
    half.redis_client_cert = Some(dir.path().join("ca.pem"));
    let error = Backend::start(half).err().expect("refused").to_string();
    assert!(error.contains("--redis-client-key"), "{error}");
}
