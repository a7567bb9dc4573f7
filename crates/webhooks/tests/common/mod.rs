//! A webhook receiver for the tests: a raw HTTP/1.1 server on 127.0.0.1
//! that records every request (body, Authorization, Content-Type) and
//! answers with a status the test sets, and can be taken down (port
//! closed, connections cut) and brought back on the same port.

#![allow(dead_code)] // each test file uses its own part of the helpers

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const KEY: &str = "APIwebhooktest";
pub const SECRET: &str = "a-long-enough-secret-for-hs256-signing";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub body: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The status it was answered with (0: not answered, the receiver hung).
    pub status: u16,
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    status: AtomicU16,
    /// Requests to leave unanswered (the connection stays open, silent).
    hang: AtomicUsize,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Receiver {
    /// Listens on a free port of 127.0.0.1, answering 200.
    pub async fn start() -> Receiver {
        Receiver::start_with(None).await
    }

    /// Listens on `addr` (a port that was free), answering 200.
    pub async fn start_at(addr: SocketAddr) -> Receiver {
        let state = Arc::new(State::default());
        state.status.store(200, Ordering::SeqCst);
        let receiver = Receiver {
            addr,
            state,
            tls: None,
        };
        receiver.restart().await;
        receiver
    }

    /// Same, over TLS with `acceptor`.
    pub async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        state.status.store(200, Ordering::SeqCst);
        let receiver = Receiver { addr, state, tls };
        receiver.serve(listener);
        receiver
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let host = if self.tls.is_some() {
            "localhost".to_string()
        } else {
            self.addr.ip().to_string()
        };
        format!("{scheme}://{host}:{}{path}", self.addr.port())
    }

    /// Answer with `status` from now on.
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Leave the next `n` requests unanswered.
    pub fn hang_next(&self, n: usize) {
        self.state.hang.store(n, Ordering::SeqCst);
    }

    /// Closes the port and every open connection.
    pub fn stop(&self) {
        for task in self.state.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        // The port was ours a moment ago; tokio's listener sets SO_REUSEADDR.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("rebinding {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// The bodies answered 2xx, in order.
    pub fn delivered(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(|r| r.body)
            .collect()
    }

    pub fn clear(&self) {
        self.state.received.lock().unwrap().clear();
    }

    fn serve(&self, listener: TcpListener) {
        let state = self.state.clone();
        let tls = self.tls.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let conn_state = state.clone();
                let task = match tls.clone() {
                    None => tokio::spawn(connection(tcp, conn_state)),
                    Some(acceptor) => tokio::spawn(async move {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            connection(stream, conn_state).await;
                        }
                    }),
                };
                state.tasks.lock().unwrap().push(task);
            }
        });
        self.state.tasks.lock().unwrap().push(accept);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves HTTP/1.1 requests on one connection (kept alive) until the
/// client closes it.
async fn connection<S: AsyncRead + AsyncWrite + Unpin>(stream: S, state: Arc<State>) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut length = 0usize;
        let mut authorization = None;
        let mut content_type = None;
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            let value = value.trim().to_string();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap(),
                "authorization" => authorization = Some(value),
                "content-type" => content_type = Some(value),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let hang = state
            .hang
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let status = if hang {
            0
        } else {
            state.status.load(Ordering::SeqCst)
        };
        state.received.lock().unwrap().push(Received {
            path,
            body: String::from_utf8(body).unwrap(),
            authorization,
            content_type,
            status,
        });
        if hang {
            // Silent until the client gives up and closes.
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
            return;
        }
        let response = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok");
        let out = stream.get_mut();
        if out.write_all(response.as_bytes()).await.is_err() || out.flush().await.is_err() {
            return;
        }
    }
}

/// Polls `done` every 10 ms until it holds or `within` passes.
pub async fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

/// A WebhookEvent body as LiveKit's server encodes it (protojson).
pub fn event_body(n: u64) -> String {
    format!(
        r#"{{"event":"participant_joined","room":{{"name":"r","sid":"RM_x"}},"participant":{{"identity":"p{n}"}},"id":"EV_{n}","createdAt":"{}"}}"#,
        1_700_000_000 + n
    )
}

/// A free 127.0.0.1 port with nothing listening (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
