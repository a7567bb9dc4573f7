//! The embedded backend: one redb file under the data directory. Every
//! commit is a redb write transaction with immediate durability (fsync), so
//! an acknowledged write survives a crash, and a half-written one never
//! becomes visible.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;

use crate::backend::{BoxFuture, Loaded, StoreBackend, Table, WriteOp};
use crate::error::StoreError;

/// The file inside the data directory.
pub const DATABASE_FILE: &str = "switchboard.redb";

const INBOUND: TableDefinition<&str, &[u8]> = TableDefinition::new("sip_inbound_trunk");
const OUTBOUND: TableDefinition<&str, &[u8]> = TableDefinition::new("sip_outbound_trunk");
const RULES: TableDefinition<&str, &[u8]> = TableDefinition::new("sip_dispatch_rule");
const PLATFORM_TRUNKS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("switchboard_platform_trunk");
const DIAL_PLANS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("switchboard_outbound_dial_plan");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const VERSION_KEY: &str = "version";

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match table {
        Table::InboundTrunks => INBOUND,
        Table::OutboundTrunks => OUTBOUND,
        Table::DispatchRules => RULES,
        Table::PlatformTrunks => PLATFORM_TRUNKS,
        Table::OutboundDialPlans => DIAL_PLANS,
    }
}

/// The redb backend. Cheap to clone; clones share the database and the feed.
#[derive(Clone)]
pub struct RedbBackend {
    db: Arc<Database>,
    changes: Arc<watch::Sender<u64>>,
    path: PathBuf,
}

impl std::fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbBackend")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbBackend {
    /// Opens (creating if needed) the store under `data_dir`. Recovers from
    /// an interrupted previous run if the file needs it.
    pub async fn open(data_dir: impl AsRef<Path>) -> Result<RedbBackend, StoreError> {
        let dir = data_dir.as_ref().to_owned();
        blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| StoreError::Redb(format!("{}: {e}", dir.display())))?;
            let path = dir.join(DATABASE_FILE);
            let db = Database::create(&path)?;
            let txn = db.begin_write()?;
            let version = {
                for table in Table::ALL {
                    txn.open_table(definition(table))?;
                }
                let meta = txn.open_table(META)?;
                let v = meta.get(VERSION_KEY)?.map(|g| g.value()).unwrap_or(0);
                v
            };
            txn.commit()?;
            let (changes, _) = watch::channel(version);
            Ok(RedbBackend {
                db: Arc::new(db),
                changes: Arc::new(changes),
                path,
            })
        })
        .await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

impl StoreBackend for RedbBackend {
    fn load(&self, tables: &[Table]) -> BoxFuture<'_, Result<Loaded, StoreError>> {
        let db = self.db.clone();
        let tables = tables.to_vec();
        Box::pin(blocking(move || {
            let txn = db.begin_read()?;
            let version = txn
                .open_table(META)?
                .get(VERSION_KEY)?
                .map(|g| g.value())
                .unwrap_or(0);
            let mut out = Vec::with_capacity(tables.len());
            for table in tables {
                let t = txn.open_table(definition(table))?;
                let mut records = Vec::new();
                for entry in t.iter()? {
                    let (k, v) = entry?;
                    records.push((k.value().to_owned(), v.value().to_vec()));
                }
                out.push(records);
            }
            Ok(Loaded {
                version,
                tables: out,
            })
        }))
    }

    fn get(&self, table: Table, id: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        let db = self.db.clone();
        let id = id.to_owned();
        Box::pin(blocking(move || {
            let txn = db.begin_read()?;
            let t = txn.open_table(definition(table))?;
            let value = t.get(id.as_str())?.map(|g| g.value().to_vec());
            Ok(value)
        }))
    }

    fn commit(
        &self,
        expected: Option<u64>,
        ops: Vec<WriteOp>,
    ) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        let db = self.db.clone();
        let changes = self.changes.clone();
        Box::pin(async move {
            let committed = blocking(move || {
                // redb serialises write transactions, so the version check and
                // the writes below cannot interleave with another commit.
                let txn = db.begin_write()?;
                let next = {
                    let mut meta = txn.open_table(META)?;
                    let current = meta.get(VERSION_KEY)?.map(|g| g.value()).unwrap_or(0);
                    if expected.is_some_and(|e| e != current) {
                        None
                    } else {
                        for op in &ops {
                            match op {
                                WriteOp::Put { table, id, value } => {
                                    txn.open_table(definition(*table))?
                                        .insert(id.as_str(), value.as_slice())?;
                                }
                                WriteOp::Delete { table, id } => {
                                    txn.open_table(definition(*table))?.remove(id.as_str())?;
                                }
                            }
                        }
                        let next = current + 1;
                        meta.insert(VERSION_KEY, next)?;
                        Some(next)
                    }
                };
                match next {
                    Some(v) => {
                        txn.commit()?;
                        Ok(Some(v))
                    }
                    None => {
                        txn.abort()?;
                        Ok(None)
                    }
                }
            })
            .await?;
            if let Some(v) = committed {
                changes.send_if_modified(|cur| {
                    let newer = v > *cur;
                    if newer {
                        *cur = v;
                    }
                    newer
                });
            }
            Ok(committed)
        })
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
