//! Test fixtures: a real redis-server per test, and a store per backend.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../../../../tests/support/redis_process.rs"]
mod redis_process;
use redis_process::redis_process_id;

use switchboard_store::{RedbBackend, RedisBackend, RedisConfig, SipStore, StoreBackend};
use tempfile::TempDir;

/// A redis-server of our own on an ephemeral loopback port, in a temp dir.
/// A missing redis-server is a test failure, never a skip.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: TempDir,
    args: Vec<String>,
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&["--save", "", "--appendonly", "no"])
    }

    pub fn start_with(args: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir,
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start on a loopback port after 5 tries");
    }

    /// Starts the process on `self.port`; false if it exited (port taken).
    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--daemonize", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install the Debian package redis-server (tests/deps/store.apt)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().unwrap().is_some() {
                    self.child = None;
                    return false;
                }
            }
            // Answering on the port is not enough: another test's server
            // may hold it. Ours is the one whose process ID is our child's.
            let ours = self.child.as_ref().map(Child::id);
            match (redis_process_id(self.port), ours) {
                (Some(pid), Some(ours)) if pid == ours => return true,
                (Some(_), _) => {
                    if let Some(mut child) = self.child.take() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                    return false;
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not answer PING within 10 s",
            self.port
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL, no shutdown hook, no final save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts again on the same port, directory and arguments.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "redis-server did not restart on port {}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn redis_config(server: &RedisServer) -> RedisConfig {
    RedisConfig::new(server.url())
}

/// A store on one backend, with what is needed to reopen it.
pub enum Fixture {
    Redb {
        dir: TempDir,
        store: SipStore,
        backend: Arc<dyn StoreBackend>,
    },
    Redis {
        server: RedisServer,
        store: SipStore,
        backend: Arc<dyn StoreBackend>,
    },
}

impl Fixture {
    pub async fn redb() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn StoreBackend> = Arc::new(RedbBackend::open(dir.path()).await.unwrap());
        Fixture::Redb {
            store: SipStore::from_backend(backend.clone()),
            backend,
            dir,
        }
    }

    pub async fn redis() -> Fixture {
        let server = RedisServer::start();
        let backend: Arc<dyn StoreBackend> =
            Arc::new(RedisBackend::connect(redis_config(&server)).await.unwrap());
        Fixture::Redis {
            store: SipStore::from_backend(backend.clone()),
            backend,
            server,
        }
    }

    pub fn store(&self) -> &SipStore {
        match self {
            Fixture::Redb { store, .. } | Fixture::Redis { store, .. } => store,
        }
    }

    pub fn backend(&self) -> &Arc<dyn StoreBackend> {
        match self {
            Fixture::Redb { backend, .. } | Fixture::Redis { backend, .. } => backend,
        }
    }

    /// Closes every handle and opens the same data again (redb: the file;
    /// Redis: a new connection to the same server).
    pub async fn reopen(self) -> Fixture {
        match self {
            Fixture::Redb {
                dir,
                store,
                backend,
            } => {
                drop(store);
                drop(backend);
                let backend: Arc<dyn StoreBackend> =
                    Arc::new(RedbBackend::open(dir.path()).await.unwrap());
                Fixture::Redb {
                    store: SipStore::from_backend(backend.clone()),
                    backend,
                    dir,
                }
            }
            Fixture::Redis {
                server,
                store,
                backend,
            } => {
                drop(store);
                drop(backend);
                let backend: Arc<dyn StoreBackend> =
                    Arc::new(RedisBackend::connect(redis_config(&server)).await.unwrap());
                Fixture::Redis {
                    store: SipStore::from_backend(backend.clone()),
                    backend,
                    server,
                }
            }
        }
    }

    /// Independent handles for concurrent writers: separate connections on
    /// Redis (as replicas would have); clones of the one handle on redb (one
    /// process owns the file).
    pub async fn writer_handles(&self, n: usize) -> Vec<SipStore> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(match self {
                Fixture::Redb { store, .. } => store.clone(),
                Fixture::Redis { server, .. } => {
                    SipStore::connect_redis(redis_config(server)).await.unwrap()
                }
            });
        }
        out
    }
}
