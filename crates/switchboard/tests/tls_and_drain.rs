//! OPTIONS over TLS with clients that verify our certificate (rustls and
//! openssl), and the drain on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::pki::{make_pki, Pki};
use common::{header, options, status_and_call_id, Switchboard};
use std::io::Write;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A rustls client that trusts only the test CA in `ca`.
fn verifying_connector(ca: &std::path::Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(ca).unwrap();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn tls_switchboard() -> (Switchboard, tempfile::TempDir, Pki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let sb = Switchboard::start(&[
        ("SWITCHBOARD_SIP__TLS_PORT", "0"),
        ("SWITCHBOARD_SIP__TLS__CERT", pki.cert.to_str().unwrap()),
        ("SWITCHBOARD_SIP__TLS__KEY", pki.key.to_str().unwrap()),
    ]);
    (sb, dir, pki)
}

#[tokio::test]
async fn options_over_tls_with_a_verifying_rustls_client() {
    let (sb, _dir, pki) = tls_switchboard();
    let target = sb
        .tls
        .expect("TLS listens when a certificate is configured");
    let connector = verifying_connector(&pki.ca);
    let tcp = tokio::net::TcpStream::connect(target).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("the certificate verifies");
    tls.write_all(options("TLS", local, target, "tls-probe").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert_eq!(
        status_and_call_id(&text),
        (200, "tls-probe".to_string()),
        "{text}"
    );
    assert!(header(&text, "Allow").unwrap().contains("INVITE"));
}

#[test]
fn options_over_tls_with_openssl_s_client() {
    let (sb, _dir, pki) = tls_switchboard();
    let target = sb.tls.unwrap();
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-no_ign_eof",
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
        ])
        .arg("-CAfile")
        .arg(&pki.ca)
        .arg("-connect")
        .arg(target.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (tests/run installs it)");
    let request = options(
        "TLS",
        "127.0.0.1:5999".parse().unwrap(),
        target,
        "openssl-probe",
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(request.as_bytes()).unwrap();
    // Keep stdin open until the answer is in, then close it.
    let waiter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        drop(stdin);
    });
    let output = child.wait_with_output().unwrap();
    waiter.join().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        text.starts_with("SIP/2.0 200 "),
        "stdout: {text}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let other = tempfile::tempdir().unwrap();
    let stranger = make_pki(other.path());
    let refused = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error"])
        .arg("-CAfile")
        .arg(&stranger.ca)
        .arg("-connect")
        .arg(target.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a client trusting another CA refuses us"
    );
}

#[test]
fn sigterm_drains_with_503_and_exits_once_idle() {
    let mut sb = Switchboard::start(&[
        ("SWITCHBOARD_DRAIN__MIN_SECS", "2"),
        ("SWITCHBOARD_DRAIN__RETRY_AFTER_SECS", "30"),
    ]);
    let target = sb.udp.unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let local = socket.local_addr().unwrap();
    let ask = |call_id: &str| {
        socket
            .send_to(options("UDP", local, target, call_id).as_bytes(), target)
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, _) = socket.recv_from(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert_eq!(status_and_call_id(&ask("before")).0, 200);
    sb.signal("TERM");
    // Until the signal is handled OPTIONS still gets 200; then 503.
    let deadline = Instant::now() + Duration::from_secs(10);
    let during = loop {
        let answer = ask("during");
        if status_and_call_id(&answer).0 != 200 {
            break answer;
        }
        assert!(Instant::now() < deadline, "never drained:\n{}", sb.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status_and_call_id(&during).0, 503, "{during}");
    assert_eq!(header(&during, "Retry-After"), Some("30"));
    let invite = format!(
        "INVITE sip:+15550100@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKdrain\r\n\
         From: <sip:+15550199@{local}>;tag=d\r\nTo: <sip:+15550100@{target}>\r\nCall-ID: drain-invite\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:x@{local}>\r\nContent-Length: 0\r\n\r\n"
    );
    socket.send_to(invite.as_bytes(), target).unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    let refused = String::from_utf8_lossy(&buf[..n]).to_string();
    assert_eq!(status_and_call_id(&refused).0, 503, "{refused}");
    let status = sb
        .wait_exit(Duration::from_secs(10))
        .expect("the process exits once idle");
    assert!(status.success(), "clean exit: {status}\n{}", sb.log());
    assert!(sb.log().contains("drained; exiting"));
}

/// The store over TLS: a `rediss://` URL to a redis-server that speaks only
/// TLS, its certificate checked against the CA bundle SSL_CERT_FILE names;
/// a trunk written through the API is read back from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_over_rediss_with_a_verified_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let port = common::free_port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
        .arg("--tls-cert-file")
        .arg(&pki.cert)
        .arg("--tls-key-file")
        .arg(&pki.key)
        .arg("--tls-ca-cert-file")
        .arg(&pki.ca)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (Debian's redis-server, built with TLS)");
    // Our own server must hold the port, not whoever took it first.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !common::process_listens_on(redis.id(), port, true) {
        assert!(
            std::time::Instant::now() < deadline && redis.try_wait().unwrap().is_none(),
            "redis-server did not start on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("rediss://127.0.0.1:{port}/");
    let sb = Switchboard::start(&[
        ("LIVEKIT_API_KEY", common::api::KEY),
        ("LIVEKIT_API_SECRET", common::api::SECRET),
        ("SWITCHBOARD_STORE__URL", &url),
        ("SSL_CERT_FILE", pki.ca.to_str().unwrap()),
    ]);
    let admin = common::api::token(serde_json::json!({"sip": {"admin": true}}));
    let api = sb.api.unwrap();
    let (status, created) = common::api::sip_service(
        api,
        "CreateSIPInboundTrunk",
        &admin,
        serde_json::json!({"trunk": {"name": "over tls", "numbers": ["+15550100"], "allowed_addresses": ["192.0.2.1"]}}),
    )
    .await;
    assert_eq!(status, 200, "{created}\n{}", sb.log());
    let (status, got) = common::api::sip_service(
        api,
        "GetSIPInboundTrunk",
        &admin,
        serde_json::json!({"sip_trunk_id": created["sip_trunk_id"]}),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["trunk"]["name"], "over tls");
    assert!(sb.log().contains("store: redis"), "{}", sb.log());
    drop(sb);
    let _ = redis.kill();
    let _ = redis.wait();
}

/// `api.tls`: the API over HTTPS, its certificate verified by a rustls
/// client; the same port refuses plain HTTP.
#[tokio::test]
async fn the_api_serves_https_with_api_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let sb = Switchboard::start(&[
        ("SWITCHBOARD_API__TLS__CERT", pki.cert.to_str().unwrap()),
        ("SWITCHBOARD_API__TLS__KEY", pki.key.to_str().unwrap()),
    ]);
    let api = sb.api.unwrap();
    let connector = verifying_connector(&pki.ca);
    let tcp = tokio::net::TcpStream::connect(api).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("the API's certificate verifies");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: switchboard\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(api).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: switchboard\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}
