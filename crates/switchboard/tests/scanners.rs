//! The scanners of the open internet against the real binary: SIPVicious
//! (Debian's `sipvicious`: svmap, svwar, svcrack) learns nothing and is
//! banned; a banned source gets silence even with the right password; an
//! operator sees and lifts bans with the CLI.
//!
//! SIPVicious sends from 127.0.0.1 whatever its `-b`, so each test's
//! legitimate caller comes from another loopback address.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::routes::{cli, start, trunk, wait_log};
use common::uac::Uac;
use common::{free_port, Switchboard};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchboard_sip::auth::DigestClient;

/// Runs a SIPVicious tool against switchboard's UDP port; its output.
fn sipvicious(tool: &str, sb: &Switchboard, args: &[&str]) -> String {
    let target = sb.udp.unwrap();
    let local_port = free_port().to_string();
    let mut child = Command::new(tool)
        .args(["-P", &local_port, "-p", &target.port().to_string()])
        .args(args)
        .arg(target.ip().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{tool} must be installed: apt-get install sipvicious (tests/deps/security.apt): {e}")
        });
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{tool} ran for a minute");
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Number 100 with digest credentials (password 1050), as a PBX has it.
fn pbx_trunk(sb: &Switchboard) {
    trunk(
        sb,
        r#"{"name": "pbx", "numbers": ["100"], "auth_username": "100", "auth_password": "1050"}"#,
    );
    common::routes::settle(sb);
}

/// `switchboard sip bans list`.
fn bans(sb: &Switchboard) -> String {
    cli(sb, &["sip", "bans", "list"])
}

/// An INVITE to `number` from `local_ip` that answers the digest challenge
/// with `password`: the final status, or `None` when nothing answers.
fn call_with_password(
    sb: &Switchboard,
    local_ip: &str,
    number: &str,
    password: &str,
) -> Option<u16> {
    let target = sb.udp.unwrap();
    let mut uac = Uac::new_from(local_ip, target, "caller", number);
    let offer = uac.pcmu_offer();
    let seq = uac.invite(&offer, &[]);
    let challenge = loop {
        let msg = uac.recv(Duration::from_secs(2))?;
        if msg.status() >= 200 {
            break msg;
        }
    };
    uac.ack(seq, &challenge);
    assert_eq!(challenge.status(), 407, "{}", challenge.text);
    let challenges: Vec<&str> = challenge.headers("Proxy-Authenticate");
    let uri = format!("sip:{number}@{target}");
    let credentials = DigestClient::new(number, password)
        .authorize(&challenges, "INVITE", &uri, offer.as_bytes())
        .unwrap();
    let seq = uac.invite(&offer, &[format!("Proxy-Authorization: {credentials}")]);
    let (_, last) = uac.final_response(seq, Duration::from_secs(5));
    uac.ack(seq, &last);
    Some(last.status())
}

/// svmap and svwar say who they are (User-Agent `friendly-scanner`): the
/// first packet bans them, they find nothing, and callers from elsewhere
/// are not affected.
#[test]
fn svmap_and_svwar_are_banned_on_sight_and_find_nothing() {
    let sb = start(&[]);
    pbx_trunk(&sb);
    let map = sipvicious("svmap", &sb, &[]);
    assert!(
        map.contains("found nothing"),
        "svmap found switchboard:\n{map}"
    );
    let listed = bans(&sb);
    assert!(
        listed.contains("127.0.0.1") && listed.contains("scanner User-Agent"),
        "{listed}"
    );
    let war = sipvicious(
        "svwar",
        &sb,
        &["-m", "INVITE", "-e", "90-110", "--maximumtime", "3"],
    );
    assert!(
        war.contains("found nothing"),
        "svwar learnt numbers:\n{war}"
    );
    assert!(!war.contains("| 100"), "{war}");
    // Another source is heard.
    assert_eq!(
        call_with_password(&sb, "127.0.0.2", "100", "1050"),
        Some(404)
    );
    let metrics = common::api::metrics_blocking(sb.api.unwrap());
    assert!(
        metrics.contains("switchboard_sip_bans_active 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("switchboard_sip_dropped_scanner_total 0"),
        "{metrics}"
    );
}

/// A scanner that hides its User-Agent: with `challenge_unknown_numbers`,
/// a number no trunk has is challenged like one that exists, so svwar
/// cannot tell them apart.
#[test]
fn svwar_without_its_user_agent_learns_no_numbers() {
    let sb = start(&[
        ("SWITCHBOARD_SECURITY__SCANNER_USER_AGENTS", "[]"),
        ("SWITCHBOARD_CALLS__CHALLENGE_UNKNOWN_NUMBERS", "true"),
    ]);
    pbx_trunk(&sb);
    let war = sipvicious(
        "svwar",
        &sb,
        &["-m", "INVITE", "-e", "90-110", "--maximumtime", "3"],
    );
    assert!(
        war.contains("found nothing"),
        "svwar learnt numbers:\n{war}"
    );
    let forced = sipvicious(
        "svwar",
        &sb,
        &[
            "--force",
            "-m",
            "INVITE",
            "-e",
            "90-110",
            "--maximumtime",
            "3",
        ],
    );
    assert!(
        forced.contains("found nothing"),
        "svwar --force learnt numbers:\n{forced}"
    );
    // A number that does not exist answers like one that does: 407, then 403.
    assert_eq!(
        call_with_password(&sb, "127.0.0.2", "999", "guess"),
        Some(403)
    );
    assert_eq!(
        call_with_password(&sb, "127.0.0.2", "100", "guess"),
        Some(403)
    );
}

/// svcrack guesses the password of number 100 (the right one is 12th in
/// its list): after `auth_failures_to_ban` wrong guesses its source is
/// banned, it finds nothing, and the right password from that source gets
/// silence until the operator lifts the ban.
#[test]
fn svcrack_is_banned_at_the_threshold_and_then_even_the_right_password_gets_silence() {
    let sb = start(&[
        ("SWITCHBOARD_SECURITY__SCANNER_USER_AGENTS", "[]"),
        ("SWITCHBOARD_SECURITY__AUTH_FAILURES_TO_BAN", "5"),
    ]);
    pbx_trunk(&sb);
    let dictionary = sb.dir().join("passwords.txt");
    let words: Vec<String> = std::iter::once(1000)
        .chain(1040..=1060)
        .map(|n| n.to_string())
        .collect();
    std::fs::write(&dictionary, words.join("\n")).unwrap();
    let crack = sipvicious(
        "svcrack",
        &sb,
        &[
            "-m",
            "INVITE",
            "-u",
            "100",
            "-d",
            dictionary.to_str().unwrap(),
            "--maximumtime",
            "3",
        ],
    );
    assert!(
        !crack.contains("1050"),
        "svcrack found the password:\n{crack}"
    );
    let log = wait_log(&sb, "source banned", Duration::from_secs(2));
    assert!(log.contains("reason=\"failed authentications\""), "{log}");
    assert_eq!(
        log.matches("reason=Authentication failed").count(),
        5,
        "{log}"
    );
    let listed = bans(&sb);
    assert!(listed.contains("failed authentications"), "{listed}");
    // The right password from the banned source: silence.
    assert_eq!(call_with_password(&sb, "127.0.0.1", "100", "1050"), None);
    // Lifted by the operator, the same call is taken (404: no rule here).
    let lifted = cli(&sb, &["sip", "bans", "lift", "127.0.0.1"]);
    assert!(lifted.contains("lifted"), "{lifted}");
    assert_eq!(
        call_with_password(&sb, "127.0.0.1", "100", "1050"),
        Some(404)
    );
    assert!(!bans(&sb).contains("127.0.0.1"));
}
