//! Shared by the end-to-end tests: the switchboard binary on ephemeral
//! loopback ports, SIPp, and small raw-SIP helpers.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod api;
pub mod baresip;
pub mod pki;
pub mod redis;
#[path = "../../../../tests/support/redis_process.rs"]
pub mod redis_process;
pub mod routes;
pub mod sipp_uas;
pub mod uac;
pub mod uas;
pub mod ws;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running switchboard process, killed when dropped.
pub struct Switchboard {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Bound SIP UDP address.
    pub udp: Option<SocketAddr>,
    /// Bound SIP TCP address.
    pub tcp: Option<SocketAddr>,
    /// Bound SIP TLS address.
    pub tls: Option<SocketAddr>,
    /// Bound HTTP API address.
    pub api: Option<SocketAddr>,
}

impl Switchboard {
    /// Starts `switchboard serve` on 127.0.0.1 with ephemeral UDP, TCP and
    /// API ports and the embedded store in a temporary directory, plus `env`
    /// overrides, and waits until it is listening.
    pub fn start(env: &[(&str, &str)]) -> Switchboard {
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready.json");
        let log = std::fs::File::create(dir.path().join("switchboard.log")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .arg("serve")
            .arg("--ready-file")
            .arg(&ready)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SWITCHBOARD_SIP__BIND", "127.0.0.1")
            .env("SWITCHBOARD_SIP__UDP_PORT", "0")
            .env("SWITCHBOARD_SIP__TCP_PORT", "0")
            .env("SWITCHBOARD_API__BIND", "127.0.0.1")
            .env("SWITCHBOARD_API__PORT", "0")
            .env("SWITCHBOARD_LOG__LEVEL", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("the switchboard binary starts");
        let mut sb = Switchboard {
            child: Some(child),
            dir,
            udp: None,
            tcp: None,
            tls: None,
            api: None,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                let json: serde_json::Value = serde_json::from_str(&text).unwrap();
                let addr = |k: &str| json["sip"][k].as_str().map(|s| s.parse().unwrap());
                sb.udp = addr("udp");
                sb.tcp = addr("tcp");
                sb.tls = addr("tls");
                sb.api = json["api"].as_str().map(|s| s.parse().unwrap());
                return sb;
            }
            if let Some(status) = sb.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "switchboard exited with {status} before listening:\n{}",
                    sb.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "switchboard did not start:\n{}",
                sb.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("switchboard.log")).unwrap_or_default()
    }

    /// A scratch directory that lives as long as the process.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends a signal to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Switchboard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port free for both UDP and TCP right now (for peers, like
/// SIPp, that need a port number rather than 0).
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port");
}

/// Which transport SIPp uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SippTransport {
    /// UDP.
    Udp,
    /// TCP, one socket.
    Tcp,
}

/// Runs one call of a scenario in tests/sipp against `target`. SIPp must
/// be installed (tests/run installs Debian's sip-tester): its absence is a
/// failure, not a skip.
pub fn sipp(
    scenario: &str,
    target: SocketAddr,
    transport: SippTransport,
    extra: &[&str],
) -> Result<(), String> {
    let work = tempfile::tempdir().unwrap();
    let file = repo().join("tests/sipp").join(format!("{scenario}.xml"));
    let mut command = Command::new("sipp");
    command
        .arg("-sf")
        .arg(&file)
        .arg(target.to_string())
        .args([
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "20",
            "-timeout_error",
            "-trace_err",
            "-trace_msg",
        ])
        // No -p: SIPp binds a port the system picks, so parallel tests
        // cannot race for one.
        .args(["-i", "127.0.0.1"])
        .args(extra)
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if transport == SippTransport::Tcp {
        command.args(["-t", "t1"]);
    }
    let output = match command.output() {
        Ok(output) => output,
        Err(e) => panic!("cannot run sipp ({e}): install Debian's sip-tester (tests/run does)"),
    };
    if output.status.success() {
        return Ok(());
    }
    let mut report = format!(
        "sipp {scenario} over {transport:?} exited with {}\n",
        output.status
    );
    report.push_str(&String::from_utf8_lossy(&output.stderr));
    for entry in std::fs::read_dir(work.path()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".log") {
            report.push_str(&format!("--- {name}\n"));
            report.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    Err(report)
}

/// An OPTIONS request from `local` to `target` with this Call-ID.
pub fn options(transport: &str, local: SocketAddr, target: SocketAddr, call_id: &str) -> String {
    format!(
        "OPTIONS sip:probe@{target} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK{call_id}\r\n\
         From: <sip:probe@{local}>;tag=probe\r\n\
         To: <sip:probe@{target}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The status code and Call-ID of a response text.
pub fn status_and_call_id(text: &str) -> (u16, String) {
    let status = text
        .strip_prefix("SIP/2.0 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {text}"));
    let call_id = text
        .lines()
        .find_map(|l| l.strip_prefix("Call-ID: "))
        .unwrap_or_default()
        .trim()
        .to_string();
    (status, call_id)
}

/// A header value of a response text.
pub fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
}

/// Splits a byte stream of responses into messages by Content-Length.
pub fn split_stream(mut data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&data[..end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let total = (end + 4 + length).min(data.len());
        out.push(String::from_utf8_lossy(&data[..total]).to_string());
        data = &data[total..];
    }
    out
}

/// Whether process `pid` itself holds a loopback socket on `port` (a TCP
/// listener, or a bound UDP socket): read from /proc, so that a test's peer
/// is known to be listening, not whichever process took the port after
/// the test picked it.
pub fn process_listens_on(pid: u32, port: u16, tcp: bool) -> bool {
    let table = if tcp {
        "/proc/net/tcp"
    } else {
        "/proc/net/udp"
    };
    let Ok(text) = std::fs::read_to_string(table) else {
        return false;
    };
    let wanted = format!(":{port:04X}");
    let inodes: Vec<String> = text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            // TCP state 0A is LISTEN; UDP sockets show 07.
            let listening = if tcp { *state == "0A" } else { true };
            (local.ends_with(&wanted) && listening).then(|| fields.get(9).map(|i| i.to_string()))?
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            let target = target.to_string_lossy();
            inodes.iter().any(|i| target == format!("socket:[{i}]"))
        })
    })
}
