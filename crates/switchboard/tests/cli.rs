//! The `switchboard` CLI as a user runs it: `token create` on its own, and
//! `sip ...` against a running `switchboard serve` with the API on an
//! ephemeral loopback port. Request files are the seeds' examples in
//! tests/fixtures/cli.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::Switchboard;
use hmac::{KeyInit, Mac};
use serde_json::Value;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KEY: &str = "APIclitest";
const SECRET: &str = "cli-test-secret-0123456789abcdefghij";

/// What one CLI run printed and how it ended.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        self
    }
}

/// Runs the switchboard binary with `args`, the test key pair and `url`
/// in the environment, and `stdin` on standard input.
fn run_with(url: &str, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LIVEKIT_URL", url)
        .env("LIVEKIT_API_KEY", KEY)
        .env("LIVEKIT_API_SECRET", SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/cli/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A loopback URL where nothing listens.
fn closed_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

// --- without a server -------------------------------------------------------

#[test]
fn token_create_prints_a_signed_token_with_the_grants() {
    let run = run_with(
        "http://unused",
        &[
            "token",
            "create",
            "--sip-admin",
            "--sip-call",
            "--room",
            "lobby",
            "--room-admin",
            "--room-join",
            "--identity",
            "agent-7",
            "--valid-for",
            "10m",
        ],
        "",
    )
    .ok();
    let jwt = run.stdout.trim();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    assert_eq!(decode_part(parts[0])["alg"], "HS256");
    let claims = decode_part(parts[1]);
    assert_eq!(claims["iss"], KEY);
    assert_eq!(claims["sub"], "agent-7");
    assert_eq!(
        claims["sip"],
        serde_json::json!({"admin": true, "call": true})
    );
    assert_eq!(claims["video"]["room"], "lobby");
    assert_eq!(claims["video"]["roomAdmin"], true);
    assert_eq!(claims["video"]["roomJoin"], true);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp > now + 590 && exp <= now + 600, "exp {exp}, now {now}");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    assert_eq!(
        URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        mac.finalize().into_bytes().as_slice(),
        "signed with LIVEKIT_API_SECRET"
    );
}

#[test]
fn usage_mistakes_exit_2() {
    let url = closed_url();
    let nothing = run_with(&url, &["token", "create"], "");
    assert_eq!(nothing.code, 2, "{nothing:#?}");
    assert!(nothing.stderr.contains("--sip-admin"), "{nothing:#?}");
    let join = run_with(&url, &["token", "create", "--room-join"], "");
    assert_eq!(
        join.code, 2,
        "--room-join needs --room and --identity: {join:#?}"
    );
    let missing = run_with(
        &url,
        &["sip", "inbound", "create", "/nonexistent/trunk.json"],
        "",
    );
    assert_eq!(missing.code, 2, "{missing:#?}");
    assert!(
        missing.stderr.contains("/nonexistent/trunk.json"),
        "{missing:#?}"
    );
    let typo = run_with(
        &url,
        &["sip", "inbound", "create", "-"],
        r#"{"trunk": {"nmae": "x"}}"#,
    );
    assert_eq!(typo.code, 2, "{typo:#?}");
    assert!(typo.stderr.contains("trunk.nmae"), "{typo:#?}");
    let pins = run_with(
        &url,
        &[
            "sip",
            "explain",
            "--from",
            "a",
            "--to",
            "b",
            "--source-ip",
            "192.0.2.1",
            "--pin",
            "1",
            "--no-pin",
        ],
        "",
    );
    assert_eq!(pins.code, 2, "{pins:#?}");
}

#[test]
fn unreachable_server_exits_2_with_one_line() {
    let url = closed_url();
    for args in [
        &["sip", "inbound", "list"][..],
        &["sip", "dispatch", "delete", "SDR_x"][..],
        &[
            "sip",
            "explain",
            "--from",
            "+1",
            "--to",
            "+2",
            "--source-ip",
            "192.0.2.1",
        ][..],
    ] {
        let run = run_with(&url, args, "");
        assert_eq!(run.code, 2, "{args:?}: {run:#?}");
        assert!(
            run.stderr
                .starts_with("switchboard: cannot reach the server"),
            "{run:#?}"
        );
        assert_eq!(run.stderr.trim_end().lines().count(), 1, "{run:#?}");
    }
}

// --- against `switchboard serve` ---------------------------------------------

/// A server with the API on an ephemeral loopback port and the test key.
struct Server {
    sb: Switchboard,
    url: String,
}

impl Server {
    fn start() -> Server {
        let sb = Switchboard::start(&[
            ("SWITCHBOARD_API__BIND", "127.0.0.1"),
            ("SWITCHBOARD_API__PORT", "0"),
            ("LIVEKIT_API_KEY", KEY),
            ("LIVEKIT_API_SECRET", SECRET),
        ]);
        let ready: Value =
            serde_json::from_str(&std::fs::read_to_string(sb.dir().join("ready.json")).unwrap())
                .unwrap();
        // "api": "127.0.0.1:port" (or an object holding that string).
        let api = match &ready["api"] {
            Value::String(s) => s.clone(),
            Value::Object(m) => m
                .values()
                .find_map(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
            _ => panic!("the ready file has no API address: {ready}\n{}", sb.log()),
        };
        let addr: SocketAddr = api.parse().unwrap();
        Server {
            sb,
            url: format!("http://{addr}"),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_stdin(args, "")
    }

    fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut all = vec!["sip"];
        all.extend_from_slice(args);
        run_with(&self.url, &all, stdin)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let run = self.run(&all);
        assert_eq!(run.code, 0, "{run:#?}\n{}", self.sb.log());
        serde_json::from_str(&run.stdout).unwrap()
    }

    /// Creates something and returns the ID from `SIPTrunkID: ...`.
    fn create(&self, args: &[&str], stdin: &str) -> String {
        let run = self.run_stdin(args, stdin);
        assert_eq!(run.code, 0, "{args:?}: {run:#?}\n{}", self.sb.log());
        let line = run.stdout.lines().next().unwrap_or_default();
        let id = line
            .strip_prefix("SIPTrunkID: ")
            .or_else(|| line.strip_prefix("SIPDispatchRuleID: "))
            .unwrap_or_else(|| panic!("no ID printed: {run:#?}"));
        assert!(id.starts_with("ST_") || id.starts_with("SDR_"), "{id}");
        id.to_owned()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn inbound_trunk_lifecycle() {
    let server = Server::start();
    let id = server.create(
        &[
            "inbound",
            "create",
            &fixture("inbound-trunk-allowed-numbers.json"),
        ],
        "",
    );

    let table = server.run(&["inbound", "list"]).ok().stdout;
    let row = table
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("My trunk") && row.contains("+13105550100,+17145550100"),
        "{table}"
    );

    // A field update from the docs' file keeps what the file does not name.
    server
        .run(&[
            "inbound",
            "update",
            "--id",
            &id,
            &fixture("inbound-trunk-update.json"),
        ])
        .ok();
    let trunk = &server.json(&["inbound", "list", "--id", &id])["items"][0];
    assert_eq!(
        strings(&trunk["allowed_numbers"]),
        ["+13105550100", "+17145550100"]
    );

    // ListUpdate by flags.
    let updated = server
        .run(&[
            "inbound",
            "update",
            "--id",
            &id,
            "--add-numbers",
            "+15105550199",
            "--remove-allowed-numbers",
            "+13105550100",
        ])
        .ok();
    assert_eq!(updated.stdout, format!("SIPTrunkID: {id}\n"));
    let trunk = &server.json(&["inbound", "list", "--id", &id])["items"][0];
    assert_eq!(strings(&trunk["numbers"]), ["+15105550100", "+15105550199"]);
    assert_eq!(strings(&trunk["allowed_numbers"]), ["+17145550100"]);

    // Replace from the dashboard example, read from standard input.
    let replace = std::fs::read_to_string(fixture("inbound-trunk-replace.json")).unwrap();
    server
        .run_stdin(
            &["inbound", "update", "--id", &id, "--replace", "-"],
            &replace,
        )
        .ok();
    let trunk = &server.json(&["inbound", "list"])["items"][0];
    assert_eq!(trunk["name"], "My replaced trunk");
    assert_eq!(strings(&trunk["allowed_addresses"]), ["192.168.254.10"]);
    assert_eq!(trunk["krisp_enabled"], true);

    let deleted = server.run(&["inbound", "delete", &id]).ok();
    assert_eq!(deleted.stdout, format!("SIP Trunk [{id}] deleted\n"));
    assert_eq!(
        server.json(&["inbound", "list"])["items"],
        serde_json::json!([])
    );
    // Deleting a trunk twice succeeds, as in LiveKit; changing a deleted one does not.
    let gone = server.run(&["inbound", "update", "--id", &id, "--name", "ghost"]);
    assert_eq!(gone.code, 1, "{gone:#?}");
    assert!(
        gone.stderr.starts_with("switchboard: not_found (HTTP 404)"),
        "{gone:#?}"
    );
}

#[test]
fn outbound_trunk_lifecycle() {
    let server = Server::start();
    let id = server.create(
        &[
            "outbound",
            "create",
            &fixture("outbound-trunk-telnyx.json"),
            "--auth-user",
            "carrier-user",
            "--auth-pass",
            "carrier-pass",
        ],
        "",
    );
    let table = server.run(&["outbound", "list"]).ok().stdout;
    assert!(
        table.contains("sip.telnyx.com") && table.contains("carrier-user"),
        "{table}"
    );
    assert!(
        !table.contains("carrier-pass"),
        "the password is never printed: {table}"
    );

    server
        .run(&[
            "outbound",
            "update",
            "--id",
            &id,
            &fixture("outbound-trunk-update-twilio.json"),
        ])
        .ok();
    server
        .run(&[
            "outbound",
            "update",
            "--id",
            &id,
            "--transport",
            "tcp",
            "--add-numbers",
            "+15225550101",
        ])
        .ok();
    let trunk = &server.json(&["outbound", "list"])["items"][0];
    assert_eq!(trunk["name"], "My updated outbound trunk");
    assert_eq!(trunk["address"], "<my-trunk>.pstn.twilio.com");
    assert_eq!(trunk["transport"], "SIP_TRANSPORT_TCP");
    assert_eq!(strings(&trunk["numbers"]), ["+15105550100", "+15225550101"]);
    assert_eq!(
        trunk["auth_username"], "carrier-user",
        "a field update keeps the credentials"
    );

    server.run(&["outbound", "delete", &id]).ok();
    assert_eq!(
        server.json(&["outbound", "list"])["items"],
        serde_json::json!([])
    );
}

#[test]
fn dispatch_rule_lifecycle() {
    let server = Server::start();
    let agent_rule = server.create(
        &[
            "dispatch",
            "create",
            &fixture("dispatch-rule-individual.json"),
        ],
        "",
    );
    let legacy = std::fs::read_to_string(fixture("dispatch-rule-legacy.json")).unwrap();
    let legacy_rule = server.create(&["dispatch", "create", "-"], &legacy);

    let table = server.run(&["dispatch", "list"]).ok().stdout;
    let row = table
        .lines()
        .find(|l| l.contains(&agent_rule))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("call-_<caller>_<random>") && row.contains("inbound-agent"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.contains(&legacy_rule))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("ST_supporttrunk") && row.contains("support_<callee>_<random>"),
        "{table}"
    );

    server
        .run(&[
            "dispatch",
            "update",
            "--id",
            &agent_rule,
            "--name",
            "Renamed",
            "--add-trunks",
            "ST_sometrunk",
        ])
        .ok();
    let rule = &server.json(&["dispatch", "list", "--id", &agent_rule])["items"][0];
    assert_eq!(rule["name"], "Renamed");
    assert_eq!(strings(&rule["trunk_ids"]), ["ST_sometrunk"]);

    let deleted = server
        .run(&["dispatch", "delete", &agent_rule, &legacy_rule])
        .ok();
    assert!(
        deleted.stdout.contains(&format!("[{agent_rule}] deleted")),
        "{deleted:#?}"
    );
    assert!(
        deleted.stdout.contains(&format!("[{legacy_rule}] deleted")),
        "{deleted:#?}"
    );
    assert_eq!(
        server.json(&["dispatch", "list"])["items"],
        serde_json::json!([])
    );
    let again = server.run(&["dispatch", "delete", &agent_rule]);
    assert_eq!(again.code, 1, "{again:#?}");
    assert!(
        again
            .stderr
            .starts_with("switchboard: not_found (HTTP 404)"),
        "{again:#?}"
    );
}

#[test]
fn server_errors_are_one_line_with_the_code() {
    let server = Server::start();
    // A trunk for any number must be limited by addresses or credentials.
    let open = server.run(&["inbound", "create", "--name", "open to all"]);
    assert_eq!(open.code, 1, "{open:#?}");
    assert!(
        open.stderr
            .starts_with("switchboard: invalid_argument (HTTP 400)"),
        "{open:#?}"
    );
    assert_eq!(open.stderr.trim_end().lines().count(), 1, "{open:#?}");

    let wrong_secret = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["sip", "inbound", "list", "--url", &server.url])
        .args(["--api-key", KEY, "--api-secret", "not-the-secret"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(wrong_secret.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&wrong_secret.stderr);
    assert!(stderr.contains("HTTP 401"), "{stderr}");
}

/// `sip explain` until its output contains `expected` (the routing index
/// refreshes from the store's change feed, so a new trunk may take a moment).
fn explain_eventually(server: &Server, args: &[&str], expected: &str) -> Run {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut all = vec!["explain"];
        all.extend_from_slice(args);
        let run = server.run(&all);
        if run.stdout.contains(expected) || Instant::now() > deadline {
            return run;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn explain_tells_why_each_trunk_and_rule_was_passed_over() {
    let server = Server::start();
    let carrier = server.create(
        &[
            "inbound",
            "create",
            "--name",
            "Carrier A",
            "--numbers",
            "+15550001000",
            "--allowed-addresses",
            "192.0.2.0/24",
        ],
        "",
    );
    let vip = server.create(
        &[
            "inbound",
            "create",
            "--name",
            "VIP line",
            "--numbers",
            "+15550002000",
            "--allowed-numbers",
            "+15551110000",
        ],
        "",
    );
    let pin_rule = server.create(
        &[
            "dispatch", "create", "--name", "VIP room", "--trunks", &vip, "--direct", "vip-room",
            "--pin", "1234",
        ],
        "",
    );
    let open_rule = server.create(
        &[
            "dispatch", "create", "--name", "Open A", "--trunks", &carrier, "--caller", "call",
        ],
        "",
    );
    let numbered = format!(
        r#"{{"dispatch_rule": {{"name": "Numbered A", "trunk_ids": ["{carrier}"],
            "numbers": ["+15550001000"], "rule": {{"dispatch_rule_callee": {{"room_prefix": "num"}}}}}}}}"#
    );
    let numbered_rule = server.create(&["dispatch", "create", &numbered], "");

    // Accepted: the rule naming the called number beats the open one; the
    // PIN rule belongs to another trunk.
    let ok = explain_eventually(
        &server,
        &[
            "--from",
            "+15557770000",
            "--to",
            "+15550001000",
            "--source-ip",
            "192.0.2.10",
            "--from-host",
            "carrier.example",
        ],
        &numbered_rule,
    );
    assert_eq!(ok.code, 0, "{ok:#?}\n{}", server.sb.log());
    assert!(ok.stdout.starts_with("ACCEPTED: "), "{ok:#?}");
    assert!(
        ok.stdout
            .contains(&format!("trunk: {carrier} (lists the called number)")),
        "{ok:#?}"
    );
    assert!(
        ok.stdout.contains(&format!(
            "rule: {numbered_rule} -> room \"num_+15550001000\""
        )),
        "{ok:#?}"
    );
    let line = |out: &str, id: &str| -> String {
        out.lines()
            .find(|l| l.contains("passed over") && l.contains(id))
            .unwrap_or_else(|| panic!("no passed-over line for {id}:\n{out}"))
            .to_owned()
    };
    let pin_line = line(&ok.stdout, &pin_rule);
    assert!(
        pin_line.contains(&format!("trunk {carrier} not in the rule's trunk_ids")),
        "{pin_line}"
    );
    let open_line = line(&ok.stdout, &open_rule);
    assert!(
        open_line.contains("(Open A)") && open_line.contains("better priority"),
        "{open_line}"
    );
    let vip_line = line(&ok.stdout, &vip);
    assert!(vip_line.contains("not in numbers"), "{vip_line}");

    // No trunk for the called number at all.
    let none = server.run(&[
        "explain",
        "--from",
        "+15557770000",
        "--to",
        "+15559999999",
        "--source-ip",
        "192.0.2.10",
    ]);
    assert_eq!(none.code, 1, "{none:#?}");
    assert!(none.stdout.starts_with("REFUSED: "), "{none:#?}");
    assert!(
        line(&none.stdout, &carrier).contains("\"+15559999999\" (To user) not in numbers"),
        "{none:#?}"
    );
    assert!(
        !none.stdout.contains("rule:"),
        "refused before dispatch: {none:#?}"
    );

    // The carrier's number, from an address the trunk does not allow.
    let wrong_ip = server.run(&[
        "explain",
        "--from",
        "+15557770000",
        "--to",
        "+15550001000",
        "--source-ip",
        "203.0.113.9",
    ]);
    assert_eq!(wrong_ip.code, 1, "{wrong_ip:#?}");
    assert!(
        line(&wrong_ip.stdout, &carrier).contains("source 203.0.113.9"),
        "{wrong_ip:#?}"
    );
    assert!(
        line(&wrong_ip.stdout, &carrier).contains("not in allowed_addresses"),
        "{wrong_ip:#?}"
    );

    // The VIP line from a caller it does not list.
    let caller = server.run(&[
        "explain",
        "--from",
        "+15550000000",
        "--to",
        "+15550002000",
        "--source-ip",
        "198.51.100.1",
    ]);
    assert_eq!(caller.code, 1, "{caller:#?}");
    assert!(
        line(&caller.stdout, &vip).contains("caller \"+15550000000\" not in allowed_numbers"),
        "{caller:#?}"
    );

    // The carrier put the number in the Request-URI and something else in To.
    let ruri = server.run(&[
        "explain",
        "--from",
        "+15557770000",
        "--to",
        "trunk-a",
        "--request-uri-user",
        "+15550001000",
        "--source-ip",
        "192.0.2.10",
    ]);
    assert_eq!(ruri.code, 1, "{ruri:#?}");
    assert!(
        line(&ruri.stdout, &carrier).contains("Request-URI user \"+15550001000\" would match"),
        "{ruri:#?}"
    );

    // The PIN rule: prompt, wrong PIN, no PIN, right PIN.
    let vip_call = [
        "--from",
        "+15551110000",
        "--to",
        "+15550002000",
        "--source-ip",
        "198.51.100.1",
    ];
    let prompt = server.run(&[&["explain"], &vip_call[..]].concat());
    assert!(
        prompt.stdout.contains(&format!(
            "rule: {pin_rule} (asks the caller for a PIN first)"
        )),
        "{prompt:#?}"
    );
    let wrong = server.run(&[&["explain"], &vip_call[..], &["--pin", "0000"]].concat());
    assert_eq!(wrong.code, 1, "{wrong:#?}");
    assert!(
        line(&wrong.stdout, &pin_rule).contains("entered PIN is not this rule's PIN"),
        "{wrong:#?}"
    );
    let skipped = server.run(&[&["explain"], &vip_call[..], &["--no-pin"]].concat());
    assert_eq!(skipped.code, 1, "{skipped:#?}");
    assert!(
        line(&skipped.stdout, &pin_rule).contains("needs a PIN and the caller entered none"),
        "{skipped:#?}"
    );
    let right = server.run(&[&["explain"], &vip_call[..], &["--pin", "1234"]].concat());
    assert_eq!(right.code, 0, "{right:#?}");
    assert!(
        right
            .stdout
            .contains(&format!("rule: {pin_rule} -> room \"vip-room\"")),
        "{right:#?}"
    );

    // --json is the server's answer as it came.
    let mut json_args = vec!["explain"];
    json_args.extend_from_slice(&vip_call);
    json_args.extend_from_slice(&["--pin", "1234"]);
    let answer = server.json(&json_args);
    assert_eq!(answer["accepted"], true);
    assert_eq!(answer["dispatch"]["room_name"], "vip-room");
}
