//! The web console (`/console`) of the real binary, in Debian's headless
//! Chromium driven by Playwright (tests/console/console.mjs): an operator
//! signs in, creates the inbound trunk and dispatch rule through the forms,
//! sees the API's own refusals next to them, watches a real baresip call
//! appear in Live calls within 2 s, hangs it up from there (the caller gets
//! its BYE), and reads the call's record and SIP ladder in the history,
//! then the same pages at 390 px. Screenshots are left in
//! `target/console-screenshots/`.
//!
//! Chromium, node and playwright-core are needed (tests/deps/console.apt
//! and console.npm, which tests/run installs); a missing one is a failure
//! with the way to install it, never a skip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::api::{KEY, SECRET};
use common::baresip::{tone, Baresip, CallerSpec};
use common::repo;
use common::routes::{cli, settle, start};
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole browser run; the script stops itself at 150 s.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// Where the screenshots go: `<target>/console-screenshots`.
fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("console-screenshots")
}

/// The node process, killed if the test ends before it does.
struct Script(Child);

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain HTTP/1.1 GET: status, lower-cased headers, body.
fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Waits until the API lists a live call to +15550100; its ID.
fn live_call(sb: &common::Switchboard, caller: &Baresip) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let calls = json(&cli(sb, &["sip", "calls", "list", "--live", "--json"]));
        let found = calls["calls"].as_array().and_then(|calls| {
            calls
                .iter()
                .find(|c| c["info"]["to_uri"]["user"] == "+15550100")
                .and_then(|c| c["info"]["call_id"].as_str().map(str::to_string))
        });
        if let Some(id) = found {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "baresip's call never went live:\n{}\n{}",
            caller.log(),
            sb.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// After the console's Hang up: the caller got a BYE, the record says so,
/// and the call is in the history the console is about to read.
fn check_hung_up(sb: &common::Switchboard, caller: &Baresip, call_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    // baresip's words for a BYE from the other side.
    while !caller
        .log()
        .contains("session closed: Connection reset by peer")
    {
        assert!(
            Instant::now() < deadline,
            "baresip did not get a BYE:\n{}",
            caller.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    loop {
        let listed = json(&cli(sb, &["sip", "calls", "list", "--json"]));
        let stored = listed["calls"].as_array().and_then(|calls| {
            calls
                .iter()
                .find(|c| c["info"]["call_id"] == call_id)
                .cloned()
        });
        if let Some(call) = stored {
            assert_eq!(call["result"], "answered", "{call}");
            assert_eq!(
                call["info"]["disconnect_reason"], "PARTICIPANT_REMOVED",
                "{call}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{call_id} never reached the history:\n{}",
            sb.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The console's files come with their types and the security headers;
/// an unknown one is a 404 with the same headers.
fn check_headers(api: SocketAddr) {
    for (path, content_type) in [
        ("/console", "text/html; charset=utf-8"),
        ("/console/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
        ("/console/favicon.svg", "image/svg+xml"),
        ("/console/nope.js", "text/plain; charset=utf-8"),
    ] {
        let (status, headers, body) = http_get(api, path);
        let expected = if path.ends_with("nope.js") { 404 } else { 200 };
        assert_eq!(status, expected, "{path}: {body}");
        assert_eq!(header(&headers, "content-type"), content_type, "{path}");
        assert_eq!(header(&headers, "cache-control"), "no-cache", "{path}");
        assert_eq!(
            header(&headers, "x-content-type-options"),
            "nosniff",
            "{path}"
        );
        assert_eq!(header(&headers, "x-frame-options"), "DENY", "{path}");
        let csp = header(&headers, "content-security-policy");
        assert!(
            csp.starts_with("default-src 'self';")
                && csp.contains("script-src 'self';")
                && !csp.contains("unsafe"),
            "{path}: {csp}"
        );
        if expected == 200 && path.starts_with("/console/app") {
            assert!(body.contains("import "), "{path}: {body}");
        }
    }
}

#[test]
fn an_operator_routes_a_call_watches_it_live_hangs_it_up_and_reads_its_ladder_in_chromium() {
    let started = Instant::now();
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium package \
         (apt-get install chromium; tests/deps/console.apt, which tests/run installs)"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is missing: install Debian's nodejs package (tests/deps/console.apt): {node:?}"
    );
    let playwright = repo().join("tests/sdk/node_modules/playwright-core/package.json");
    assert!(
        playwright.exists(),
        "{} is missing: tests/run installs tests/deps/console.npm into tests/sdk/node_modules",
        playwright.display()
    );

    let sb = start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    let api = sb.api.unwrap();
    check_headers(api);

    let shots = screenshots_dir();
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let stderr_path = sb.dir().join("console.stderr");
    let mut script = Script(
        Command::new("node")
            .arg(repo().join("tests/console/console.mjs"))
            .env("CONSOLE_URL", format!("http://{api}"))
            .env("CONSOLE_KEY", KEY)
            .env("CONSOLE_SECRET", SECRET)
            .env("CONSOLE_SCREENSHOTS", &shots)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut to_script = script.0.stdin.take().unwrap();
    let from_script = script.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from_script).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let mut output: Vec<String> = Vec::new();
    let mut caller: Option<Baresip> = None;
    let mut call_id = String::new();
    let report = |output: &[String]| {
        format!(
            "console.mjs said:\n{}\n--- its stderr:\n{}\n--- switchboard:\n{}",
            output.join("\n"),
            std::fs::read_to_string(&stderr_path).unwrap_or_default(),
            sb.log()
        )
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "console.mjs still ran after {SCRIPT_TIMEOUT:?}\n{}",
                    report(&output)
                )
            }
        };
        println!("console.mjs: {line}");
        output.push(line.clone());
        if line == "call: ready" {
            // The routing index follows the store a moment after the forms wrote it.
            settle(&sb);
            let phone = Baresip::call(CallerSpec {
                name: "console",
                codec: "PCMU",
                wav_rate: 8000,
                channels: 1,
                source: tone(8000, 440.0, 20.0),
                mediaenc: None,
                dial: Baresip::uri("+15550100", sb.udp.unwrap()),
                run_secs: 40,
                auth: None,
            });
            call_id = live_call(&sb, &phone);
            caller = Some(phone);
            writeln!(to_script, "live {call_id}").unwrap();
        } else if let Some(id) = line.strip_prefix("hung up: ") {
            assert_eq!(id, call_id, "{}", report(&output));
            check_hung_up(&sb, caller.as_ref().unwrap(), &call_id);
            writeln!(to_script, "ended").unwrap();
        }
    }
    let exit_deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = script.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < exit_deadline,
            "console.mjs closed its output but did not exit\n{}",
            report(&output)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success() && output.last().is_some_and(|l| l == "done"),
        "console.mjs exited with {status}\n{}",
        report(&output)
    );
    assert!(caller.is_some(), "the script never asked for the call");
    for step in [
        "ok: a wrong secret is refused",
        "ok: created inbound trunk ST_",
        "ok: a conflicting trunk shows the API's message",
        "ok: edited the trunk with UpdateSIPInboundTrunk replace",
        "ok: created dispatch rule SDR_",
        "ok: created carrier trunk trunk_",
        "ok: ExplainCall says: accepted",
        &format!("ok: the call {call_id} appeared in Live calls"),
        "ok: Transfer reaches TransferSIPParticipant",
        "ok: Hang up ended the call",
        "ok: Call history lists the call",
        "ok: the call's page draws the ladder",
        "ok: downloaded the trace",
        "ok: every input on every page has a label",
        "ok: keyboard focus is visible",
        "ok: no page scrolls sideways at 390x844",
        "ok: signed out",
        "ok: no script errors, no CSP violations",
    ] {
        assert!(
            output.iter().any(|l| l.starts_with(step)),
            "no step {step:?}\n{}",
            report(&output)
        );
    }
    let shots_taken: Vec<&str> = output
        .iter()
        .filter_map(|l| l.strip_prefix("screenshot: "))
        .collect();
    assert!(shots_taken.len() >= 12, "{shots_taken:?}");
    for shot in &shots_taken {
        let bytes = std::fs::read(shot).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{shot} is not a PNG");
    }
    drop(caller);
    common::api::assert_nothing_left(api, || sb.log());
    println!(
        "screenshots in {}:\n{}\nthe browser run took {:?}",
        shots.display(),
        shots_taken.join("\n"),
        started.elapsed()
    );
}
