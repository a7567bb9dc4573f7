//! Two running stacks over loopback sockets: UDP, TCP and TLS, connection
//! reuse, limits, and digest authentication answered and checked over the
//! wire.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};
use switchboard_sip::auth::{ChallengeKind, DigestClient, DigestServer, DigestServerConfig};
use switchboard_sip::message::{HeaderName, Headers, Method, Request, ResponseSpec};
use switchboard_sip::transport::{tls, SipStack, TransportConfig};
use switchboard_sip::{AdvertisedPorts, Destination, EndpointConfig, Event, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

struct TestPki {
    _dir: tempdir::Dir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    ca: std::path::PathBuf,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).unwrap();
            let name = format!("switchboard-{tag}-{}", u64::from_le_bytes(bytes));
            let path = std::env::temp_dir().join(name);
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A CA and a server certificate for 127.0.0.1, written as PEM files.
fn test_pki() -> TestPki {
    let dir = tempdir::Dir::new("pki");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let server = server_params.signed_by(&server_key, &issuer).unwrap();
    let cert = dir.0.join("cert.pem");
    let key = dir.0.join("key.pem");
    let ca_path = dir.0.join("ca.pem");
    std::fs::write(&cert, server.pem()).unwrap();
    std::fs::write(&key, server_key.serialize_pem()).unwrap();
    std::fs::write(&ca_path, ca.pem()).unwrap();
    TestPki {
        _dir: dir,
        cert,
        key,
        ca: ca_path,
    }
}

async fn server_stack(pki: Option<&TestPki>) -> SipStack {
    let transport = TransportConfig {
        udp: Some(loopback()),
        tcp: Some(loopback()),
        tls: pki.map(|p| (loopback(), tls::server_config(&p.cert, &p.key).unwrap())),
        ..TransportConfig::default()
    };
    let endpoint = EndpointConfig {
        advertised_ports: AdvertisedPorts {
            udp: 0,
            tcp: 0,
            tls: 0,
        },
        ..EndpointConfig::default()
    };
    SipStack::start(transport, endpoint).await.unwrap()
}

async fn client_stack(pki: Option<&TestPki>) -> SipStack {
    let transport = TransportConfig {
        udp: Some(loopback()),
        tcp: Some(loopback()),
        tls_client: pki.map(|p| tls::client_config(&p.ca).unwrap()),
        ..TransportConfig::default()
    };
    let endpoint = EndpointConfig {
        advertised_ports: AdvertisedPorts {
            udp: 0,
            tcp: 0,
            tls: 0,
        },
        ..EndpointConfig::default()
    };
    SipStack::start(transport, endpoint).await.unwrap()
}

fn request(method: Method, target: SocketAddr, call_id: &str) -> Request {
    let mut headers = Headers::new();
    headers.push(HeaderName::From, "<sip:tester@127.0.0.1>;tag=t1");
    headers.push(HeaderName::To, format!("<sip:gw@{target}>"));
    headers.push(HeaderName::CallId, call_id);
    headers.push(HeaderName::CSeq, format!("1 {method}"));
    headers.push(HeaderName::Contact, "<sip:tester@127.0.0.1>");
    Request {
        method,
        uri: format!("sip:+15550100@{target}"),
        headers,
        body: Bytes::new(),
    }
}

async fn next_final(stack: &mut SipStack) -> u16 {
    loop {
        let event = timeout(Duration::from_secs(5), stack.events.recv())
            .await
            .expect("a response in time")
            .expect("stack running");
        match event {
            Event::Response { response, .. } if response.status >= 200 => return response.status,
            Event::Response { .. } => continue,
            Event::RequestFailed { reason, .. } => panic!("request failed: {reason:?}"),
            other => panic!("unexpected event {other:?}"),
        }
    }
}

#[tokio::test]
async fn options_over_udp_tcp_and_tls() {
    let pki = test_pki();
    let server = server_stack(Some(&pki)).await;
    let mut client = client_stack(Some(&pki)).await;
    for (transport, addr) in [
        (Transport::Udp, server.bound.udp.unwrap()),
        (Transport::Tcp, server.bound.tcp.unwrap()),
        (Transport::Tls, server.bound.tls.unwrap()),
    ] {
        let call_id = format!("opt-{}", transport.as_str());
        client.handle.send_request(
            request(Method::Options, addr, &call_id),
            Destination::Address { transport, addr },
        );
        assert_eq!(next_final(&mut client).await, 200, "{transport:?}");
    }
}

#[tokio::test]
async fn a_tls_client_that_does_not_trust_us_is_refused() {
    let pki = test_pki();
    let server = server_stack(Some(&pki)).await;
    let other = test_pki();
    let mut client = client_stack(Some(&other)).await;
    let addr = server.bound.tls.unwrap();
    client.handle.send_request(
        request(Method::Options, addr, "untrusted"),
        Destination::Address {
            transport: Transport::Tls,
            addr,
        },
    );
    let event = timeout(Duration::from_secs(5), client.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(event, Event::RequestFailed { .. }), "{event:?}");
}

#[tokio::test]
async fn requests_to_one_peer_share_a_connection() {
    let server = server_stack(None).await;
    let mut client = client_stack(None).await;
    let addr = server.bound.tcp.unwrap();
    for i in 0..3 {
        client.handle.send_request(
            request(Method::Options, addr, &format!("reuse-{i}")),
            Destination::Address {
                transport: Transport::Tcp,
                addr,
            },
        );
        assert_eq!(next_final(&mut client).await, 200);
    }
    assert_eq!(server.handle.connection_count(), 1);
    assert_eq!(client.handle.connection_count(), 1);
}

#[tokio::test]
async fn responses_return_on_the_connection_of_the_request() {
    let server = server_stack(None).await;
    let addr = server.bound.tcp.unwrap();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    // The Via names a port nobody listens on: the answer must still come
    // back on this connection.
    let text = format!(
        "OPTIONS sip:gw@{addr} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKconn\r\n\
         From: <sip:a@{local}>;tag=1\r\nTo: <sip:gw@{addr}>\r\nCall-ID: conn-1\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    tcp.write_all(text.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200 "));
}

#[tokio::test]
async fn the_connection_limit_refuses_further_connections() {
    let transport = TransportConfig {
        tcp: Some(loopback()),
        max_connections: 1,
        ..TransportConfig::default()
    };
    let server = SipStack::start(transport, EndpointConfig::default())
        .await
        .unwrap();
    let addr = server.bound.tcp.unwrap();
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A keep-alive's pong proves the server has taken the first connection
    // (and counts it) before the second arrives.
    first.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    timeout(Duration::from_secs(5), first.read_exact(&mut pong))
        .await
        .expect("a pong to the keep-alive")
        .unwrap();
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the second connection is closed"
    );
    assert_eq!(server.handle.connection_count(), 1);
}

#[tokio::test]
async fn keepalive_ping_gets_a_pong() {
    let server = server_stack(None).await;
    let mut tcp = tokio::net::TcpStream::connect(server.bound.tcp.unwrap())
        .await
        .unwrap();
    tcp.write_all(b"\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 8];
    let n = timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"\r\n");
}

/// A server that challenges every INVITE (407) and answers 200 to one that
/// authenticates, 403 to one that does not.
async fn run_authenticating_server(mut server: SipStack, digest: DigestServer) {
    let mut digest = digest;
    let passwords = |user: &str| (user == "carrier").then(|| "trunk-secret".to_string());
    while let Some(event) = server.events.recv().await {
        let Event::Request(incoming) = event else {
            continue;
        };
        let kind = ChallengeKind::Proxy;
        let credentials = incoming
            .request
            .headers
            .get(&kind.credentials_header())
            .map(str::to_string);
        let spec = match credentials {
            None => {
                let mut spec = ResponseSpec::new(kind.status());
                for challenge in digest.challenges(SystemTime::now(), "gw.example.com", false) {
                    spec = spec.header(kind.challenge_header(), challenge);
                }
                spec
            }
            Some(credentials) => match digest.verify(
                SystemTime::now(),
                incoming.request.method.as_str(),
                "gw.example.com",
                &credentials,
                &passwords,
                &incoming.request.body,
            ) {
                Ok(_) => ResponseSpec::new(200),
                Err(failure) => ResponseSpec::new(403).reason(failure.to_string()),
            },
        };
        server.handle.respond(incoming.txn, spec).unwrap();
    }
}

async fn call_with_credentials(password: &str, transport: Transport) -> Vec<u16> {
    let server = server_stack(None).await;
    let addr = match transport {
        Transport::Udp => server.bound.udp.unwrap(),
        _ => server.bound.tcp.unwrap(),
    };
    let digest = DigestServer::with_random_key(DigestServerConfig::default()).unwrap();
    tokio::spawn(run_authenticating_server(server, digest));
    let mut client = client_stack(None).await;
    let destination = Destination::Address { transport, addr };
    let invite = request(Method::Invite, addr, &format!("auth-{password}"));
    client.handle.send_request(invite.clone(), destination);
    let mut statuses = Vec::new();
    let mut digest_client = DigestClient::new("carrier", password);
    let mut cseq = 1;
    loop {
        let event = timeout(Duration::from_secs(5), client.events.recv())
            .await
            .unwrap()
            .unwrap();
        let Event::Response { response, .. } = event else {
            continue;
        };
        if response.status < 200 {
            continue;
        }
        statuses.push(response.status);
        if response.status != 407 {
            return statuses;
        }
        let challenges: Vec<&str> = response
            .headers
            .get_all(&HeaderName::ProxyAuthenticate)
            .collect();
        let Ok(answer) = digest_client.authorize(&challenges, "INVITE", &invite.uri, b"") else {
            return statuses;
        };
        assert!(
            answer.contains("algorithm=SHA-256"),
            "SHA-256 is preferred: {answer}"
        );
        assert!(answer.contains("qop=auth"));
        cseq += 1;
        let mut retry = invite.clone();
        retry
            .headers
            .set(HeaderName::CSeq, format!("{cseq} INVITE"));
        retry.headers.push(HeaderName::ProxyAuthorization, answer);
        client.handle.send_request(retry, destination);
    }
}

#[tokio::test]
async fn digest_over_the_wire_udp_and_tcp() {
    assert_eq!(
        call_with_credentials("trunk-secret", Transport::Udp).await,
        vec![407, 200]
    );
    assert_eq!(
        call_with_credentials("trunk-secret", Transport::Tcp).await,
        vec![407, 200]
    );
    assert_eq!(
        call_with_credentials("wrong", Transport::Udp).await,
        vec![407, 403]
    );
}

#[tokio::test]
async fn stack_keeps_answering_after_garbage() {
    let server = server_stack(None).await;
    let udp = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
    let target = server.bound.udp.unwrap();
    for garbage in [
        &b"\x00\x01\x02"[..],
        b"INVITE",
        b"SIP/2.0 200 OK\r\n\r\n",
        &[0xffu8; 2000],
    ] {
        udp.send_to(garbage, target).await.unwrap();
    }
    let local = udp.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:gw@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKafter\r\n\
         From: <sip:a@{local}>;tag=1\r\nTo: <sip:gw@{target}>\r\nCall-ID: after-garbage\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    udp.send_to(options.as_bytes(), target).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = timeout(Duration::from_secs(5), udp.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(text.starts_with("SIP/2.0 200 "), "{text}");
    assert!(text.contains("Call-ID: after-garbage"));
}
