//! SIPp as a callee (UAS) in the background: a scenario of tests/sipp
//! listening on an ephemeral loopback port, for switchboard to dial
//! through an outbound trunk. Its exit status says whether every call went
//! as the scenario expects.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, process_listens_on, repo, SippTransport};

/// A running SIPp callee, killed when dropped.
pub struct SippUas {
    child: Option<Child>,
    work: tempfile::TempDir,
    /// The scenario's name.
    pub scenario: String,
    /// Where it listens (the trunk's address).
    pub addr: SocketAddr,
    transport: SippTransport,
}

/// A loopback UDP port that is free, with the one two above it (SIPp binds
/// its audio port and, two above, its video port).
fn free_media_port() -> u16 {
    for _ in 0..100 {
        let port = free_port();
        if port < 65_000 && UdpSocket::bind(("127.0.0.1", port + 2)).is_ok() {
            return port;
        }
    }
    panic!("no free media port pair");
}

impl SippUas {
    /// Starts `scenario` (tests/sipp/<scenario>.xml) to take `calls` calls,
    /// and waits until it listens. SIPp must be installed: its absence is
    /// a failure, not a skip.
    pub fn start(scenario: &str, transport: SippTransport, calls: u32) -> SippUas {
        // The port is picked free and then bound by SIPp: another test may
        // take it in between, so SIPp must be seen holding it itself.
        for _ in 0..5 {
            if let Some(uas) = SippUas::try_start(scenario, transport, calls) {
                return uas;
            }
        }
        panic!("sipp {scenario} found no free port in 5 tries");
    }

    fn try_start(scenario: &str, transport: SippTransport, calls: u32) -> Option<SippUas> {
        let work = tempfile::tempdir().unwrap();
        let file = repo().join("tests/sipp").join(format!("{scenario}.xml"));
        let port = free_port();
        let stderr = std::fs::File::create(work.path().join("stderr.log")).unwrap();
        let mut command = Command::new("sipp");
        command
            .arg("-sf")
            .arg(&file)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &free_media_port().to_string()])
            .args(["-m", &calls.to_string()])
            .args([
                "-nostdin",
                "-timeout",
                "90",
                "-timeout_error",
                "-trace_err",
                "-trace_msg",
            ])
            .current_dir(work.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if transport == SippTransport::Tcp {
            command.args(["-t", "t1"]);
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!("cannot run sipp ({e}): install Debian's sip-tester (tests/run does)"),
        };
        let pid = child.id();
        let mut uas = SippUas {
            child: Some(child),
            work,
            scenario: scenario.to_string(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            transport,
        };
        let tcp = transport == SippTransport::Tcp;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !process_listens_on(pid, port, tcp) {
            if uas.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                // Most likely the port was taken first: try another.
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "sipp {scenario} does not listen on {port}\n{}",
                uas.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(uas)
    }

    /// The text of its log whose file name ends with `suffix`
    /// (`_messages.log`: every message sent and received).
    pub fn log(&self, suffix: &str) -> String {
        std::fs::read_dir(self.work.path())
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().ends_with(suffix))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Its error and message logs.
    pub fn logs(&self) -> String {
        let mut report = String::new();
        let mut entries: Vec<_> = std::fs::read_dir(self.work.path())
            .unwrap()
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(".log") {
                report.push_str(&format!("--- sipp {} {name}\n", self.scenario));
                report.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        report
    }

    /// Waits for SIPp to finish its calls: Ok when every call went as the
    /// scenario says, else what went wrong with its logs.
    pub fn finish(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.child = None;
        match status {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(format!(
                "sipp {} ({:?}) exited with {s}\n{}",
                self.scenario,
                self.transport,
                self.logs()
            )),
            None => Err(format!(
                "sipp {} ({:?}) had not finished its calls after {within:?}\n{}",
                self.scenario,
                self.transport,
                self.logs()
            )),
        }
    }
}

impl Drop for SippUas {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
