//! Kill the process holding the data (SIGKILL) in the middle of a stream of
//! writes, then find every acknowledged write.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers, not only #[test] fns

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{redis_config, RedisServer};
use switchboard_routing::livekit_protocol::SipInboundTrunkInfo;
use switchboard_store::SipStore;

const CHILD_DIR_ENV: &str = "SWITCHBOARD_STORE_CRASH_DIR";
/// How many acknowledged writes to see before pulling the plug.
const ACKS_BEFORE_KILL: usize = 40;

fn trunk(i: usize) -> SipInboundTrunkInfo {
    SipInboundTrunkInfo {
        numbers: vec![format!("+1555{i:07}")],
        ..Default::default()
    }
}

/// The writer process of `redb_acknowledged_writes_survive_sigkill`: run by
/// that test in a child process, never on its own.
#[tokio::test]
#[ignore = "child process of redb_acknowledged_writes_survive_sigkill"]
async fn redb_writer_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let store = SipStore::open_embedded(&dir).await.unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        let created = store.create_inbound_trunk(trunk(i)).await.unwrap();
        // Printed only after the commit returned: this line is the acknowledgement.
        writeln!(out, "ACK {}", created.sip_trunk_id).unwrap();
        out.flush().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "redb_writer_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    while acked.len() < ACKS_BEFORE_KILL {
        let line = lines.next().expect("writer exited early").unwrap();
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.push(id.to_owned());
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-stream
                           // Acknowledgements already in the pipe count too.
    for line in lines {
        if let Some(id) = line.unwrap().strip_prefix("ACK ") {
            acked.push(id.to_owned());
        }
    }
    child.wait().unwrap();

    let store = SipStore::open_embedded(dir.path())
        .await
        .expect("the file opens after a crash");
    for id in &acked {
        assert!(
            store.get_inbound_trunk(id).await.unwrap().is_some(),
            "acknowledged {id} lost"
        );
    }
    println!(
        "{} acknowledged writes, all found after SIGKILL",
        acked.len()
    );
    // And the store still takes writes.
    store.create_inbound_trunk(trunk(9_999_999)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_acknowledged_writes_survive_sigkill() {
    // The durability Redis gives is its own configuration: this is the one
    // the store is documented to need for "acknowledged means durable".
    let mut server = RedisServer::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
    ]);
    let store = SipStore::connect_redis(redis_config(&server))
        .await
        .unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let acked = acked.clone();
        tokio::spawn(async move {
            for i in 0.. {
                match tokio::time::timeout(
                    Duration::from_secs(5),
                    store.create_inbound_trunk(trunk(i)),
                )
                .await
                {
                    Ok(Ok(created)) => acked.lock().unwrap().push(created.sip_trunk_id),
                    _ => break,
                }
            }
        })
    };
    while acked.lock().unwrap().len() < ACKS_BEFORE_KILL {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill(); // SIGKILL, mid-stream
    tokio::time::timeout(Duration::from_secs(20), writer)
        .await
        .expect("writer stops")
        .unwrap();
    server.restart();

    let acked = acked.lock().unwrap().clone();
    let store = SipStore::connect_redis(redis_config(&server))
        .await
        .unwrap();
    for id in &acked {
        assert!(
            store.get_inbound_trunk(id).await.unwrap().is_some(),
            "acknowledged {id} lost"
        );
    }
    println!(
        "{} acknowledged writes, all found after SIGKILL",
        acked.len()
    );
}
