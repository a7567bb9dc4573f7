//! Kamailio in front of replicas: deploy/kamailio/kamailio.cfg, run by
//! Debian's kamailio 5.6 on an ephemeral loopback port, dispatches to three
//! switchboard replicas that share one redis-server, each on its own
//! loopback address (127.0.0.2-4, advertised in its Contact and SDP as a
//! node's IP would be). One test, three acts, timed:
//!
//! 1. Calls through Kamailio are spread over the replicas (round robin);
//!    Kamailio record-routes, so the caller's ACK and BYE and a replica's
//!    own BYE pass through it to the other end, and each call's records
//!    and counters are on the replica that took it.
//! 2. SIGTERM on a replica that holds a call: Kamailio's OPTIONS probe sees
//!    its 503 and takes it out (INVITEs sent before that are refused with
//!    503 and tried on the next replica), new calls go only to the others,
//!    and its call goes on until the caller's BYE, after which it exits.
//! 3. kill -9 of a replica that holds a call: new calls still succeed
//!    within 5 s (an INVITE sent to it times out after FR_TIMER and is
//!    tried on the next replica; the probe then takes it out). Its call is
//!    gone: no process is left to send a BYE, a BYE sent to it gets 408
//!    from Kamailio, and its RTP stops, so the caller's RTP timeout is what
//!    ends the call on the caller's side. Its record, held in memory until
//!    the call ends, is lost with it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::api::{assert_nothing_left, debug_state_blocking, metrics_blocking, wait_for_routing};
use common::routes::{cli, rule, start, trunk};
use common::uac::{notify_progress, sdp_rtp_addr, Msg, Uac};
use common::{free_port, options, repo, status_and_call_id, Switchboard};
use serde_json::Value;

/// Seconds between Kamailio's OPTIONS probes here (production: 2).
const PING_INTERVAL: u64 = 1;
/// Milliseconds Kamailio waits for any reply before failing over.
const FR_TIMER: u64 = 2000;
/// The digest nonce key the replicas share.
const NONCE_KEY: &str = "8f3c2a9d41b7e6055ac1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d";

/// A program from Debian's kamailio package (in /usr/sbin, which a
/// non-root PATH may lack).
fn kamailio_program(name: &str) -> PathBuf {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.exists() {
        return sbin;
    }
    PathBuf::from(name)
}

/// Kamailio with deploy/kamailio/kamailio.cfg on 127.0.0.1 and an
/// ephemeral port, dispatching to `replicas`.
struct Kamailio {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Kamailio {
    fn start(replicas: &[SocketAddr]) -> Kamailio {
        let config = repo().join("deploy/kamailio/kamailio.cfg");
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let list = dir.path().join("dispatcher.list");
            let mut text = String::from("# setid destination\n");
            for replica in replicas {
                text.push_str(&format!("1 sip:{replica}\n"));
            }
            std::fs::write(&list, text).unwrap();
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let log = std::fs::File::create(dir.path().join("kamailio.log")).unwrap();
            let child = Command::new(kamailio_program("kamailio"))
                .arg("-f")
                .arg(&config)
                // No daemon, logs on stderr, runtime files in our directory.
                .args(["-DD", "-E", "-Y"])
                .arg(dir.path())
                .args(["-m", "32", "-M", "4"])
                .arg("-A")
                .arg(format!("LISTEN=udp:{addr}"))
                .arg("-A")
                .arg(format!("DSLIST=\"{}\"", list.display()))
                .arg("-A")
                .arg(format!("CTL=\"unix:{}\"", dir.path().join("ctl").display()))
                .arg("-A")
                .arg(format!("PING_INTERVAL={PING_INTERVAL}"))
                .arg("-A")
                .arg(format!("FR_TIMER={FR_TIMER}"))
                .args(["-A", "CHILDREN=2", "-A", "LOG_LEVEL=2"])
                .current_dir(dir.path())
                // Its own process group: its worker processes end with it.
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run kamailio ({e}): install the Debian package kamailio (tests/deps/kamailio.apt)")
                });
            let mut lb = Kamailio { child, dir, addr };
            // Ready once it answers a keep-alive OPTIONS (200: replicas up).
            let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
            probe
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let local = probe.local_addr().unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut exited = false;
            while Instant::now() < deadline {
                if lb.child.try_wait().unwrap().is_some() {
                    exited = true;
                    break;
                }
                let request = options("UDP", local, addr, &format!("lb-probe-{port}"))
                    .replace("sip:probe@", "sip:");
                probe.send_to(request.as_bytes(), addr).unwrap();
                let mut buf = [0u8; 4096];
                if let Ok((n, _)) = probe.recv_from(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    assert_eq!(status_and_call_id(&text).0, 200, "{text}");
                    return lb;
                }
            }
            let log = lb.log();
            // Another process may have taken the port we picked: try another.
            if exited && log.contains("bind") {
                continue;
            }
            panic!("kamailio did not start (exited: {exited}):\n{log}");
        }
        panic!("kamailio could not bind a port");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kamailio.log")).unwrap_or_default()
    }

    /// Each replica's flags in `kamcmd dispatcher.list` (AP: active and
    /// probed; IP: inactive and probed).
    fn flags(&self) -> Vec<(String, String)> {
        let ctl = format!("unix:{}", self.dir.path().join("ctl").display());
        let output = Command::new(kamailio_program("kamcmd"))
            .args(["-s", &ctl, "dispatcher.list"])
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run kamcmd ({e}): install the Debian package kamailio")
            });
        assert!(output.status.success(), "{output:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        let mut out = Vec::new();
        let mut uri = None;
        for line in text.lines().map(str::trim) {
            if let Some(u) = line.strip_prefix("URI: ") {
                uri = Some(u.to_string());
            } else if let Some(f) = line.strip_prefix("FLAGS: ") {
                out.push((uri.take().unwrap_or_default(), f.to_string()));
            }
        }
        out
    }

    /// The flags of the replica at `replica`.
    fn flags_of(&self, replica: SocketAddr) -> String {
        let uri = format!("sip:{replica}");
        self.flags()
            .into_iter()
            .find(|(u, _)| *u == uri)
            .map(|(_, f)| f)
            .unwrap_or_else(|| panic!("{uri} is not in the dispatcher list: {:?}", self.flags()))
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM to the group: the main process and its workers.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// A call through Kamailio, answered and ACKed.
struct Call {
    uac: Uac,
    /// The replica that answered (index into the replicas).
    replica: usize,
    /// The call's ID on that replica (its To tag, `SCL_...`).
    id: String,
    /// The replica's RTP address from its SDP.
    rtp: SocketAddr,
}

/// The address in a Contact or Via value: `<sip:user@ip:port;...>`.
fn contact_addr(value: &str) -> SocketAddr {
    let inner = value
        .trim()
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap();
    let host = inner.split('@').next_back().unwrap();
    let host = host.trim_start_matches("sip:");
    host.split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{value}: {e}"))
}

/// Calls +15550100 through `lb`; the 200 must come within `within`.
/// Every call is from another number: calls from one number into one room
/// would be one participant identity, and the newer call would replace
/// the older (DUPLICATE_IDENTITY), as on LiveKit.
fn call(lb: &Kamailio, replicas: &[SocketAddr], within: Duration) -> Call {
    static CALLERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CALLERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut uac = Uac::new(lb.addr, &format!("+1555020{n:04}"), "+15550100");
    let seq = uac.invite(&uac.pcmu_offer(), &[]);
    let (_, ok) = uac.final_response(seq, within);
    assert_eq!(ok.status(), 200, "{}\n{}", ok.text, lb.log());
    uac.ack(seq, &ok);
    let contact = contact_addr(ok.header("Contact").expect("a Contact"));
    let replica = replicas
        .iter()
        .position(|r| *r == contact)
        .unwrap_or_else(|| panic!("Contact {contact} is none of the replicas {replicas:?}"));
    // Kamailio record-routed: the caller's route set is Kamailio alone.
    let route = uac.route_set().to_vec();
    assert_eq!(route.len(), 1, "{}", ok.text);
    assert!(
        route[0].starts_with(&format!("<sip:{};lr", lb.addr)),
        "{route:?}"
    );
    // Media goes to the replica's own (advertised) address, not Kamailio's.
    let rtp = sdp_rtp_addr(ok.body()).expect("an SDP answer");
    assert_eq!(rtp.ip(), contact.ip(), "{}", ok.body());
    Call {
        id: ok.to_tag().unwrap(),
        uac,
        replica,
        rtp,
    }
}

/// The caller hangs up; the BYE goes through Kamailio to the replica.
fn hang_up(call: &mut Call) -> Msg {
    let bye = call.uac.in_dialog("BYE", "", "");
    call.uac.response_to(bye, "BYE", Duration::from_secs(10))
}

/// A counter of `switchboard_sip_requests_total` received by this replica.
fn received(sb: &Switchboard, method: &str) -> u64 {
    let text = metrics_blocking(sb.api.unwrap());
    let wanted = format!("method=\"{method}\"");
    text.lines()
        .filter(|l| l.starts_with("switchboard_sip_requests_total{"))
        .filter(|l| l.contains("direction=\"received\"") && l.contains(&wanted))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .unwrap()
                .parse::<f64>()
                .unwrap_or_else(|e| panic!("{l}: {e}")) as u64
        })
        .sum()
}

fn calls_active(sb: &Switchboard) -> u64 {
    debug_state_blocking(sb.api.unwrap())["calls_active"]
        .as_u64()
        .unwrap()
}

/// Waits for `done`, returning how long it took.
fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if done() {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The finished record of call `id`, read through `sb` (the history is in
/// the shared Redis).
fn record(sb: &Switchboard, id: &str) -> Value {
    let mut last = Value::Null;
    wait_until(
        "the call's record is stored",
        Duration::from_secs(10),
        || {
            last = serde_json::from_str(&cli(sb, &["sip", "calls", "get", id, "--json"])).unwrap();
            last["live"] == false
        },
    );
    last
}

/// Counts calls per replica.
fn spread(calls: &[Call], n: usize) -> Vec<usize> {
    let mut counts = vec![0; n];
    for c in calls {
        counts[c.replica] += 1;
    }
    counts
}

/// Replicas on `redis`, one per loopback address in `ips`, each bound to
/// and advertising its own address (as each node's IP on Kubernetes), with
/// one trunk and direct rule created once through the first: the trunk
/// admits Kamailio's address, where the carrier's INVITEs now come from.
fn replicas_behind_lb(
    redis: &common::redis::Redis,
    ips: &[&str],
    answer: &str,
    extra: &[(&str, &str)],
) -> (Vec<Switchboard>, Vec<SocketAddr>) {
    let url = redis.url();
    let sbs: Vec<Switchboard> = ips
        .iter()
        .map(|ip| {
            let mut env = vec![
                ("SWITCHBOARD_STORE__URL", url.as_str()),
                ("SWITCHBOARD_CALLS__ANSWER", answer),
                ("SWITCHBOARD_CALLS__AUTH_NONCE_KEY", NONCE_KEY),
                ("SWITCHBOARD_SIP__BIND", ip),
                ("SWITCHBOARD_SIP__ADVERTISE__HOST", ip),
                ("SWITCHBOARD_SIP__TRANSPORTS", "[udp]"),
                ("SWITCHBOARD_MEDIA__BIND", ip),
                ("SWITCHBOARD_LOG__LEVEL", "info"),
            ];
            env.extend_from_slice(extra);
            start(&env)
        })
        .collect();
    let replicas: Vec<SocketAddr> = sbs.iter().map(|sb| sb.udp.unwrap()).collect();
    for (replica, ip) in replicas.iter().zip(ips) {
        assert_eq!(replica.ip().to_string(), *ip);
    }
    let id = trunk(
        &sbs[0],
        r#"{"name": "via-lb", "numbers": ["+15550100"], "allowed_addresses": ["127.0.0.1"]}"#,
    );
    rule(
        &sbs[0],
        &format!(
            r#"{{"name": "r", "trunk_ids": ["{id}"], "rule": {{"dispatch_rule_direct": {{"room_name": "r"}}}}}}"#
        ),
    );
    let version = common::api::store_version(sbs[0].api.unwrap());
    for sb in &sbs {
        wait_for_routing(sb.api.unwrap(), version);
    }
    (sbs, replicas)
}

#[test]
fn kamailio_spreads_calls_keeps_dialogs_and_routes_around_drained_and_dead_replicas() {
    let t_test = Instant::now();
    let redis = common::redis::Redis::start();
    let (mut sbs, replicas) = replicas_behind_lb(
        &redis,
        &["127.0.0.2", "127.0.0.3", "127.0.0.4"],
        "immediate",
        &[],
    );
    let lb = Kamailio::start(&replicas);
    let setup = t_test.elapsed();

    // ------------------------------------------------------------ 1. spread
    let t1 = Instant::now();
    let mut calls: Vec<Call> = (0..6)
        .map(|_| call(&lb, &replicas, Duration::from_secs(5)))
        .collect();
    let counts = spread(&calls, 3);
    assert!(
        counts.iter().filter(|n| **n > 0).count() >= 2,
        "calls all on one replica: {counts:?}"
    );
    for (i, sb) in sbs.iter().enumerate() {
        assert_eq!(calls_active(sb), counts[i] as u64, "replica {i}");
    }
    let byes_before: Vec<u64> = sbs.iter().map(|sb| received(sb, "BYE")).collect();
    // The first call is hung up by its replica: the BYE takes the route set
    // (Kamailio) back to the caller.
    let mut first = calls.remove(0);
    let said = cli(&sbs[first.replica], &["sip", "calls", "hangup", &first.id]);
    assert!(said.contains("hung up"), "{said}");
    let bye = first.uac.wait_request("BYE", Duration::from_secs(5));
    let vias = bye.headers("Via");
    assert_eq!(vias.len(), 2, "{}", bye.text);
    assert!(vias[0].contains(&lb.addr.to_string()), "{}", bye.text);
    assert!(
        vias[1].contains(&replicas[first.replica].to_string()),
        "{}",
        bye.text
    );
    first.uac.answer(&bye, 200);
    // The caller hangs up the others: each BYE reaches the replica holding
    // the call, through Kamailio.
    for c in &mut calls {
        assert_eq!(hang_up(c).status(), 200);
    }
    for (i, sb) in sbs.iter().enumerate() {
        let expected = calls.iter().filter(|c| c.replica == i).count() as u64;
        assert_eq!(
            received(sb, "BYE") - byes_before[i],
            expected,
            "replica {i} should have had the BYEs of its own calls"
        );
        assert_nothing_left(sb.api.unwrap(), || sb.log());
    }
    let removed = record(&sbs[first.replica], &first.id);
    assert_eq!(
        removed["info"]["disconnect_reason"], "PARTICIPANT_REMOVED",
        "{removed}"
    );
    for c in &calls {
        let rec = record(&sbs[c.replica], &c.id);
        assert_eq!(rec["result"], "answered", "{rec}");
        assert_eq!(
            rec["info"]["disconnect_reason"], "CLIENT_INITIATED",
            "{rec}"
        );
        let trace = cli(&sbs[c.replica], &["sip", "calls", "trace", &c.id]);
        assert!(trace.contains("BYE"), "{trace}");
    }
    let act1 = t1.elapsed();

    // ------------------------------------------------------------ 2. drain
    let t2 = Instant::now();
    let mut held = call(&lb, &replicas, Duration::from_secs(5));
    let d = held.replica;
    let invites_at_term = received(&sbs[d], "INVITE");
    sbs[d].signal("TERM");
    let term = Instant::now();
    // Calls right away: until the probe takes the replica out, an INVITE
    // that reaches it gets 503 and Kamailio tries the next replica.
    let mut during: Vec<Call> = Vec::new();
    for _ in 0..3 {
        let c = call(&lb, &replicas, Duration::from_secs(5));
        assert_ne!(c.replica, d, "a draining replica took a new call");
        during.push(c);
    }
    wait_until(
        "Kamailio's probe takes the draining replica out",
        Duration::from_secs(PING_INTERVAL + 3),
        || lb.flags_of(replicas[d]).starts_with('I'),
    );
    let out_since_term = term.elapsed();
    let refused_before_probe = received(&sbs[d], "INVITE") - invites_at_term;
    let invites_out = received(&sbs[d], "INVITE");
    for _ in 0..4 {
        let c = call(&lb, &replicas, Duration::from_secs(5));
        assert_ne!(c.replica, d, "a draining replica took a new call");
        during.push(c);
    }
    assert_eq!(
        received(&sbs[d], "INVITE"),
        invites_out,
        "Kamailio sent INVITEs to a replica it had taken out"
    );
    // Its call is still up, and ends normally with the caller's BYE.
    assert!(sbs[d].is_running());
    assert_eq!(calls_active(&sbs[d]), 1);
    assert_eq!(hang_up(&mut held).status(), 200);
    let status = sbs[d]
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the drained replica did not exit:\n{}", sbs[d].log()));
    assert!(status.success(), "{status}\n{}", sbs[d].log());
    let drained_in = term.elapsed();
    assert!(sbs[d].log().contains("drained; exiting"));
    let survivor = (0..3).find(|i| *i != d).unwrap();
    let rec = record(&sbs[survivor], &held.id);
    assert_eq!(
        rec["info"]["disconnect_reason"], "CLIENT_INITIATED",
        "{rec}"
    );
    for c in &mut during {
        assert_eq!(hang_up(c).status(), 200);
    }
    let act2 = t2.elapsed();

    // ------------------------------------------------------------ 3. kill -9
    let t3 = Instant::now();
    let mut doomed = call(&lb, &replicas, Duration::from_secs(5));
    let k = doomed.replica;
    assert_ne!(k, d);
    let last = (0..3).find(|i| *i != d && *i != k).unwrap();
    // The replica sends RTP (the room's silence) to the caller.
    doomed.uac.send_rtp(doomed.rtp, 1, 160);
    doomed
        .uac
        .rtp
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let (_, from) = doomed
        .uac
        .rtp
        .recv_from(&mut buf)
        .expect("RTP from the replica");
    assert_eq!(from.ip(), replicas[k].ip());
    sbs[k].signal("KILL");
    let killed = Instant::now();
    assert!(sbs[k].wait_exit(Duration::from_secs(5)).is_some());
    // New calls: each answered within 5 s, on the last replica.
    let mut after: Vec<(Call, Duration)> = Vec::new();
    for _ in 0..4 {
        let sent = Instant::now();
        let c = call(&lb, &replicas, Duration::from_secs(5));
        assert_eq!(c.replica, last);
        after.push((c, sent.elapsed()));
    }
    let first_after_kill = after[0].1;
    let slowest_after_kill = after.iter().map(|(_, t)| *t).max().unwrap();
    wait_until(
        "Kamailio takes the dead replica out",
        Duration::from_secs(PING_INTERVAL + FR_TIMER / 1000 + 3),
        || lb.flags_of(replicas[k]).starts_with('I'),
    );
    let dead_out_since_kill = killed.elapsed();
    let timed_out = lb
        .log()
        .matches(&format!("replica sip:{} did not answer", replicas[k]))
        .count();
    // The dead replica's call: its RTP has stopped (drain what was queued)…
    doomed
        .uac
        .rtp
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    while doomed.uac.rtp.recv_from(&mut buf).is_ok() {}
    doomed
        .uac
        .rtp
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    assert!(
        doomed.uac.rtp.recv_from(&mut buf).is_err(),
        "RTP still arrives from a killed replica"
    );
    // …and a BYE for it gets Kamailio's 408: nobody is there to answer.
    let t_bye = Instant::now();
    assert_eq!(hang_up(&mut doomed).status(), 408);
    let bye_408_in = t_bye.elapsed();
    // Its record lived in its memory until the call would have ended.
    let listed = cli(&sbs[last], &["sip", "calls", "list", "--json"]);
    assert!(!listed.contains(&doomed.id), "{listed}");
    for (c, _) in &mut after {
        assert_eq!(hang_up(c).status(), 200);
    }
    assert_nothing_left(sbs[last].api.unwrap(), || sbs[last].log());
    let act3 = t3.elapsed();

    println!(
        "kamailio: setup {setup:.1?}; 1. spread {counts:?} in {act1:.1?}; \
         2. SIGTERM: probe took the replica out {out_since_term:.1?} after the signal \
         ({refused_before_probe} INVITEs refused with 503 and failed over before that), \
         drained replica exited {drained_in:.1?} after the signal, act {act2:.1?}; \
         3. kill -9: first new call answered in {first_after_kill:.1?}, slowest {slowest_after_kill:.1?}, \
         dead replica out {dead_out_since_kill:.1?} after the kill ({timed_out} INVITEs to it \
         timed out and failed over), BYE to it 408 in {bye_408_in:.1?}, \
         act {act3:.1?}; total {:.1?}",
        t_test.elapsed()
    );
    // Kamailio's log says where each INVITE went and why it moved on.
    let log = lb.log();
    let notices: Vec<&str> = log.lines().filter(|l| l.contains("NOTICE")).collect();
    println!("kamailio log:\n{}", notices.join("\n"));
    assert!(
        log.contains("INVITE from 127.0.0.1 to replica sip:"),
        "{log}"
    );
    // Each 503 the draining replica gave was failed over (the replica may
    // count a retransmitted INVITE twice under load; Kamailio logs once).
    let failed_over = log
        .matches(&format!("replica sip:{} answered 503", replicas[d]))
        .count() as u64;
    assert_eq!(failed_over > 0, refused_before_probe > 0, "{log}");
    assert!(failed_over <= refused_before_probe, "{log}");
}

/// Seconds a replica's room and call leases outlive it in the rooms test.
const LEASE_SECS: u64 = 3;

/// The leases in Redis (`switchboard:room:…`, `switchboard:sip-participant:…`).
fn leases(redis: &common::redis::Redis) -> Vec<String> {
    let output = Command::new("redis-cli")
        .args(["-u", &redis.url(), "--scan", "--pattern", "switchboard:*"])
        .output()
        .expect("redis-cli (Debian redis-tools)");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| {
            l.starts_with("switchboard:room:") || l.starts_with("switchboard:sip-participant:")
        })
        .map(str::to_string)
        .collect()
}

/// Who holds room `room`'s lease.
fn room_owner(redis: &common::redis::Redis, room: &str) -> String {
    let key = format!("switchboard:room:{}:{room}", room.len());
    let output = Command::new("redis-cli")
        .args(["-u", &redis.url(), "GET", &key])
        .output()
        .expect("redis-cli (Debian redis-tools)");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn api_url(sb: &Switchboard) -> String {
    format!("http://{}", sb.api.unwrap())
}

/// A call through Kamailio that lands on a replica other than `not`
/// (round robin: within three calls); the calls that landed on `not` are
/// hung up.
fn call_not_on(lb: &Kamailio, replicas: &[SocketAddr], not: usize) -> Call {
    for _ in 0..3 {
        let mut c = call(lb, replicas, Duration::from_secs(5));
        if c.replica != not {
            return c;
        }
        assert_eq!(hang_up(&mut c).status(), 200);
    }
    panic!("three calls in a row landed on replica {not}");
}

/// The identity of the SIP participant of call `call_id` in `room`, as the
/// replica at `api` lists the room.
fn sip_identity(
    rt: &tokio::runtime::Runtime,
    api: SocketAddr,
    room: &str,
    call_id: &str,
) -> Option<String> {
    let (status, body) = rt.block_on(common::api::room_service(
        api,
        "ListParticipants",
        &common::api::admin_token(room),
        serde_json::json!({ "room": room }),
    ));
    assert_eq!(status, 200, "{body}");
    body["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["attributes"]["sip.callID"] == call_id && p["kind"] == "SIP")
        .and_then(|p| p["identity"].as_str().map(str::to_string))
}

/// Replicas share their embedded rooms (issue 15, part 2). A WebSocket
/// agent joins room `r` on one replica, which takes the room's lease; a
/// caller that Kamailio gives to another replica is bridged into that room
/// over LiveKit's client protocol, and each hears the other. The room's
/// owner lists the caller as a SIP participant; a transfer ordered on the
/// third replica reaches the replica holding the call. When the owner is
/// killed (-9), a caller bridged into its room stays up: its lease expires,
/// the room moves to the caller's replica, and an agent joining through
/// yet another replica hears the caller again. At the end no lease is left.
#[test]
fn replicas_behind_kamailio_share_rooms_with_agents_calls_and_orders() {
    let t_test = Instant::now();
    let redis = common::redis::Redis::start();
    let lease = LEASE_SECS.to_string();
    let (mut sbs, replicas) = replicas_behind_lb(
        &redis,
        &["127.0.0.2", "127.0.0.3", "127.0.0.4"],
        "immediate",
        &[("SWITCHBOARD_ROOMS__REPLICAS__LEASE_SECS", lease.as_str())],
    );
    let lb = Kamailio::start(&replicas);
    let rt = tokio::runtime::Runtime::new().unwrap();

    // ------------------------------------------------ 1. agent and caller
    let owner = 0;
    let mut agent = rt.block_on(common::ws::Client::join(
        sbs[owner].api.unwrap(),
        "r",
        "agent",
        16_000,
    ));
    assert_eq!(room_owner(&redis, "r"), api_url(&sbs[owner]));
    let mut caller = call_not_on(&lb, &replicas, owner);
    let a = caller.replica;
    // The owner lists the caller (bridged by replica a) as a SIP participant.
    let mut identity = None;
    wait_until(
        "the owner lists the bridged caller",
        Duration::from_secs(5),
        || {
            identity = sip_identity(&rt, sbs[owner].api.unwrap(), "r", &caller.id);
            identity.is_some()
        },
    );
    let identity = identity.unwrap();
    let (heard_by_caller, t_audio) = std::thread::scope(|s| {
        let c = &caller;
        let playing = s.spawn(move || c.uac.play_tone(c.rtp, 440.0, Duration::from_secs(4)));
        let t = Instant::now();
        rt.block_on(common::ws::play(
            &mut [(&mut agent, Some(1000.0))],
            Duration::from_secs(4),
        ));
        (playing.join().unwrap(), t.elapsed())
    });
    let agent_heard = common::ws::last_second(&agent);
    let caller_at_agent = common::ws::amplitude(agent_heard, 16_000, 440.0);
    assert!(
        caller_at_agent > 1000.0,
        "the agent on replica {owner} does not hear the caller on replica {a}: 440 Hz at {caller_at_agent:.0}\n{}",
        sbs[a].log()
    );
    assert!(
        heard_by_caller.len() > 8000,
        "the caller heard {} samples",
        heard_by_caller.len()
    );
    let last = &heard_by_caller[heard_by_caller.len() - 8000..];
    let agent_at_caller = common::ws::amplitude(last, 8000, 1000.0);
    assert!(
        agent_at_caller > 1000.0,
        "the caller on replica {a} does not hear the agent on replica {owner}: 1000 Hz at {agent_at_caller:.0}"
    );

    // ------------------------------------------------ 2. transfer ordered on a third replica
    let third = (0..3).find(|i| *i != owner && *i != a).unwrap();
    let token = common::api::token(serde_json::json!({
        "sip": {"call": true},
        "video": {"roomAdmin": true, "room": "r"}
    }));
    let third_api = sbs[third].api.unwrap();
    let transfer = rt.spawn(async move {
        common::api::sip_service(
            third_api,
            "TransferSIPParticipant",
            &token,
            serde_json::json!({
                "room_name": "r",
                "participant_identity": identity,
                "transfer_to": "tel:+15550111"
            }),
        )
        .await
    });
    let refer = caller.uac.wait_request("REFER", Duration::from_secs(10));
    assert_eq!(refer.header("Refer-To"), Some("tel:+15550111"));
    notify_progress(&mut caller.uac, &refer, &["100 Trying", "200 OK"]);
    let (status, body) = rt.block_on(transfer).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "STS_TRANSFER_SUCCESSFUL", "{body}");
    let bye = caller.uac.expect_request("BYE", Duration::from_secs(5));
    caller.uac.answer(&bye, 200);
    assert!(sbs[third]
        .log()
        .contains("API order forwarded to the replica holding its room or call"));
    let rec = record(&sbs[a], &caller.id);
    assert_eq!(
        rec["info"]["disconnect_reason"], "CLIENT_INITIATED",
        "{rec}"
    );

    // ------------------------------------------------ 3. the owner dies
    let mut survivor = call_not_on(&lb, &replicas, owner);
    let b = survivor.replica;
    wait_until(
        "the owner lists the second caller",
        Duration::from_secs(5),
        || sip_identity(&rt, sbs[owner].api.unwrap(), "r", &survivor.id).is_some(),
    );
    drop(agent);
    sbs[owner].signal("KILL");
    let killed = Instant::now();
    assert!(sbs[owner].wait_exit(Duration::from_secs(5)).is_some());
    // The lease expires; the caller's uplink takes the room to its replica.
    wait_until(
        "the room moves to the caller's replica",
        Duration::from_secs(LEASE_SECS + 10),
        || room_owner(&redis, "r") == api_url(&sbs[b]),
    );
    let moved_in = killed.elapsed();
    // An agent joining through the remaining replica is relayed to it.
    let other = (0..3).find(|i| *i != owner && *i != b).unwrap();
    let mut agent2 = rt.block_on(common::ws::Client::join(
        sbs[other].api.unwrap(),
        "r",
        "agent-2",
        16_000,
    ));
    let heard_by_survivor = std::thread::scope(|s| {
        let c = &survivor;
        let playing = s.spawn(move || c.uac.play_tone(c.rtp, 440.0, Duration::from_secs(3)));
        rt.block_on(common::ws::play(
            &mut [(&mut agent2, Some(1000.0))],
            Duration::from_secs(3),
        ));
        playing.join().unwrap()
    });
    let at_agent2 = common::ws::amplitude(common::ws::last_second(&agent2), 16_000, 440.0);
    assert!(
        at_agent2 > 1000.0,
        "after the owner died, an agent on replica {other} does not hear the caller on replica {b}: {at_agent2:.0}\n{}",
        sbs[b].log()
    );
    let last = &heard_by_survivor[heard_by_survivor.len().saturating_sub(8000)..];
    let at_survivor = common::ws::amplitude(last, 8000, 1000.0);
    assert!(
        at_survivor > 1000.0,
        "the surviving caller does not hear the new agent: {at_survivor:.0}"
    );
    assert!(sbs[b]
        .log()
        .contains("lost the room's server: joining the room again"));

    // ------------------------------------------------ 4. orders through a replica without the room
    // ListParticipants and RemoveParticipant asked of `other` are the
    // room owner's answers: the caller is listed, and removed it hangs up.
    let listed = sip_identity(&rt, sbs[other].api.unwrap(), "r", &survivor.id)
        .expect("the room's owner lists the caller through another replica");
    let removed = rt.block_on(common::api::room_service(
        sbs[other].api.unwrap(),
        "RemoveParticipant",
        &common::api::admin_token("r"),
        serde_json::json!({"room": "r", "identity": listed}),
    ));
    assert_eq!(removed.0, 200, "{}", removed.1);
    let bye = survivor.uac.expect_request("BYE", Duration::from_secs(5));
    survivor.uac.answer(&bye, 200);
    let rec = record(&sbs[b], &survivor.id);
    assert_eq!(
        rec["info"]["disconnect_reason"], "PARTICIPANT_REMOVED",
        "{rec}"
    );

    // ------------------------------------------------ 5. nothing left
    drop(agent2);
    let mut left = Vec::new();
    wait_until(
        "every lease is gone",
        Duration::from_secs(LEASE_SECS + 5),
        || {
            left = leases(&redis);
            left.is_empty()
        },
    );
    for i in [b, other] {
        assert_nothing_left(sbs[i].api.unwrap(), || sbs[i].log());
    }
    println!(
        "replicas sharing rooms: audio both ways across replicas in {t_audio:.1?} \
         (440 Hz at the agent {caller_at_agent:.0}, 1000 Hz at the caller {agent_at_caller:.0}); \
         after kill -9 of the owner the room moved in {moved_in:.1?}; total {:.1?}",
        t_test.elapsed()
    );
}

/// A CANCEL goes where its INVITE went: the replica that rings gets it
/// (and answers 487), the other hears nothing of the call.
#[test]
fn a_cancel_follows_its_invite_to_the_ringing_replica() {
    let redis = common::redis::Redis::start();
    // Calls ring until someone who sends audio joins the room: nobody does.
    let (sbs, replicas) =
        replicas_behind_lb(&redis, &["127.0.0.5", "127.0.0.6"], "on_participant", &[]);
    let lb = Kamailio::start(&replicas);
    for attempt in 0..2 {
        let mut uac = Uac::new(lb.addr, &format!("+155503000{attempt}"), "+15550100");
        let seq = uac.invite(&uac.pcmu_offer(), &[]);
        let ringing = loop {
            let msg = uac.recv(Duration::from_secs(5)).expect("180 Ringing");
            if msg.status() == 180 {
                break msg;
            }
        };
        let contact = contact_addr(ringing.header("Contact").expect("a Contact in the 180"));
        let r = replicas.iter().position(|a| *a == contact).unwrap();
        let cancels: Vec<u64> = sbs.iter().map(|sb| received(sb, "CANCEL")).collect();
        uac.cancel(seq);
        let (_, last) = uac.final_response(seq, Duration::from_secs(5));
        assert_eq!(last.status(), 487, "{}", last.text);
        uac.ack(seq, &last);
        for (i, sb) in sbs.iter().enumerate() {
            let expected = u64::from(i == r);
            assert_eq!(received(sb, "CANCEL") - cancels[i], expected, "replica {i}");
            assert_nothing_left(sb.api.unwrap(), || sb.log());
        }
    }
}

/// The shipped kamailio.cfg passes Kamailio's own check with its defaults
/// (only the socket moved to loopback), and the shipped dispatcher list
/// has the shape the config reads: set 1, one SIP URI per line, each
/// address also usable by the kamcmd-free reader in this file.
#[test]
fn the_shipped_kamailio_config_and_dispatcher_list_are_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(kamailio_program("kamailio"))
        .arg("-c")
        .arg("-f")
        .arg(repo().join("deploy/kamailio/kamailio.cfg"))
        .arg("-A")
        .arg(format!("LISTEN=udp:127.0.0.1:{}", free_port()))
        .arg("-A")
        .arg(format!(
            "DSLIST=\"{}\"",
            repo().join("deploy/kamailio/dispatcher.list").display()
        ))
        .arg("-Y")
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run kamailio ({e}): install the Debian package kamailio (tests/deps/kamailio.apt)")
        });
    let said = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("config file ok"), "{said}");

    let list = std::fs::read_to_string(repo().join("deploy/kamailio/dispatcher.list")).unwrap();
    let entries: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(!entries.is_empty());
    for entry in entries {
        let fields: Vec<&str> = entry.split_whitespace().collect();
        assert_eq!(
            fields[0], "1",
            "{entry}: set 1 is the one kamailio.cfg dispatches to"
        );
        let uri = fields[1]
            .strip_prefix("sip:")
            .unwrap_or_else(|| panic!("{entry}"));
        uri.parse::<SocketAddr>()
            .unwrap_or_else(|e| panic!("{entry}: not ip:port ({e})"));
    }
}

/// Behind Kamailio every packet comes from Kamailio. With it in
/// `security.trusted_proxies`, a trunk's `allowed_addresses` sees the
/// caller again (the Via below Kamailio's), the call's record shows the
/// caller, and a caller that writes the same Via itself, without the
/// proxy, is not believed.
#[test]
fn behind_a_trusted_proxy_trunks_match_the_callers_own_address() {
    let ip = "127.0.0.7";
    let sb = start(&[
        ("SWITCHBOARD_CALLS__ANSWER", "immediate"),
        ("SWITCHBOARD_SIP__BIND", ip),
        ("SWITCHBOARD_SIP__ADVERTISE__HOST", ip),
        ("SWITCHBOARD_SIP__TRANSPORTS", "[udp]"),
        ("SWITCHBOARD_MEDIA__BIND", ip),
        ("SWITCHBOARD_SECURITY__TRUSTED", "[127.0.0.1/32]"),
        ("SWITCHBOARD_SECURITY__TRUSTED_PROXIES", "[127.0.0.1/32]"),
    ]);
    let id = trunk(
        &sb,
        r#"{"name": "carrier", "numbers": ["+15550100"], "allowed_addresses": ["127.0.0.2"]}"#,
    );
    rule(
        &sb,
        &format!(
            r#"{{"name": "r", "trunk_ids": ["{id}"], "rule": {{"dispatch_rule_direct": {{"room_name": "r"}}}}}}"#
        ),
    );
    wait_for_routing(sb.api.unwrap(), 0);
    let replica = sb.udp.unwrap();
    let lb = Kamailio::start(&[replica]);

    // The carrier's address, through the proxy: accepted.
    let mut carrier = Uac::new_from("127.0.0.2", lb.addr, "+15550199", "+15550100");
    let seq = carrier.invite(&carrier.pcmu_offer(), &[]);
    let (_, ok) = carrier.final_response(seq, Duration::from_secs(5));
    assert_eq!(ok.status(), 200, "{}\n{}", ok.text, sb.log());
    carrier.ack(seq, &ok);
    let call_id = ok.to_tag().unwrap();
    let live: Value =
        serde_json::from_str(&cli(&sb, &["sip", "calls", "get", &call_id, "--json"])).unwrap();
    assert_eq!(live["remote_address"], carrier.local.to_string(), "{live}");

    // Another address through the same proxy: no trunk allows it.
    let mut stranger = Uac::new_from("127.0.0.3", lb.addr, "+15550198", "+15550100");
    let seq = stranger.invite(&stranger.pcmu_offer(), &[]);
    let (_, refused) = stranger.final_response(seq, Duration::from_secs(5));
    assert_eq!(refused.status(), 404, "{}", refused.text);

    // The stranger straight to the replica, claiming a Via from the
    // carrier: its packets do not come from a trusted proxy.
    let mut forger = Uac::new_from("127.0.0.3", replica, "+15550197", "+15550100");
    let forged = format!("Via: SIP/2.0/UDP {};branch=z9hG4bK-forged", carrier.local);
    let seq = forger.invite(&forger.pcmu_offer(), &[forged]);
    let (_, refused) = forger.final_response(seq, Duration::from_secs(5));
    assert_eq!(refused.status(), 404, "{}", refused.text);

    let bye = carrier.in_dialog("BYE", "", "");
    let answer = carrier.response_to(bye, "BYE", Duration::from_secs(10));
    assert_eq!(answer.status(), 200, "{}", answer.text);
    assert_eq!(record(&sb, &call_id)["result"], "answered");
}
