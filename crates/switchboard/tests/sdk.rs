//! The LiveKit SIP API through the official server SDKs, against the real
//! binary: each test starts `switchboard serve` on ephemeral loopback ports
//! with a fresh store and runs one script of tests/sdk against it.
//!
//! - Python `livekit-api` (protobuf on the wire): tests/sdk/python/sip_api.py,
//!   and its RoomService with WebSocket participants: tests/sdk/python/room_service.py
//! - Node `livekit-server-sdk` (JSON on the wire): tests/sdk/node/sip_api.mjs
//! - curl, the API reference's examples as written: tests/sdk/curl/
//!
//! The SDKs are pinned in tests/deps/sdk.pip and tests/deps/sdk.npm and
//! installed by tests/run; a missing interpreter or package fails the test.
//! A failing script fails the test with the script's output and the server
//! log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{repo, Switchboard};
use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const API_KEY: &str = "sdk-test-key";
const API_SECRET: &str = "sdk-test-secret-0123456789abcdefghijklmnopqrstuv";

/// Longer than any script needs, shorter than nextest's kill (5 x 60 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// Starts switchboard with the test key (the harness puts its API on an
/// ephemeral port); returns it and the API's base URL.
fn start() -> (Switchboard, String) {
    let sb = Switchboard::start(&[
        ("LIVEKIT_API_KEY", API_KEY),
        ("LIVEKIT_API_SECRET", API_SECRET),
    ]);
    let Some(api) = sb.api else {
        panic!(
            "the ready file names no API address\n--- switchboard log\n{}",
            sb.log()
        );
    };
    (sb, format!("http://{api}"))
}

/// Runs `program args` from the repository root with the API's URL and key
/// in LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET. It must exit 0 and
/// print `passed_line` last; otherwise the test fails with its output and
/// the server log.
fn run_script(program: &str, args: &[&str], passed_line: &str) {
    let (sb, url) = start();
    let output_path = sb.dir().join("script.out");
    let output = File::create(&output_path).unwrap();
    let mut child = match Command::new(program)
        .args(args)
        .current_dir(repo())
        .env("LIVEKIT_URL", &url)
        .env("LIVEKIT_API_KEY", API_KEY)
        .env("LIVEKIT_API_SECRET", API_SECRET)
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!("cannot run {program} ({e}): it must be on PATH"),
    };
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
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
    let text = std::fs::read_to_string(&output_path).unwrap_or_default();
    let verdict = match status {
        None => format!("timed out after {SCRIPT_TIMEOUT:?}"),
        Some(s) if !s.success() => format!("exited with {s}"),
        Some(_) if text.lines().last().map(str::trim) != Some(passed_line) => {
            format!("exited 0 without printing {passed_line:?} last")
        }
        Some(_) => return,
    };
    panic!(
        "{program} {} {verdict}\n--- its output\n{text}\n--- switchboard log\n{}",
        args.join(" "),
        sb.log()
    );
}

#[test]
fn python_sdk_runs_the_guides_examples() {
    run_script(
        "python3",
        &["tests/sdk/python/sip_api.py"],
        "all Python SDK checks passed",
    );
}

#[test]
fn python_sdk_manages_rooms_and_their_websocket_participants() {
    run_script(
        "python3",
        &["tests/sdk/python/room_service.py"],
        "all Python room service checks passed",
    );
}

#[test]
fn node_sdk_runs_the_guides_examples() {
    let sdk = repo().join("tests/sdk/node_modules/livekit-server-sdk/package.json");
    assert!(
        sdk.exists(),
        "{} is missing: tests/run installs tests/deps/sdk.npm into tests/sdk/node_modules",
        sdk.display()
    );
    run_script(
        "node",
        &["tests/sdk/node/sip_api.mjs"],
        "all Node SDK checks passed",
    );
}

#[test]
fn curl_runs_the_api_reference_examples() {
    run_script(
        "bash",
        &["tests/sdk/curl/seed_api_reference.sh"],
        "all curl checks passed",
    );
}
