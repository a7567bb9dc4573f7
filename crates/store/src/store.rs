//! [`SipStore`]: the operations the API and the gateway call, written once
//! over any [`StoreBackend`].

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use livekit_protocol::{
    update_sip_dispatch_rule_request, update_sip_inbound_trunk_request,
    update_sip_outbound_trunk_request, ListSipDispatchRuleRequest, ListSipInboundTrunkRequest,
    ListSipOutboundTrunkRequest, Pagination, SipDispatchRuleInfo, SipInboundTrunkInfo,
    SipOutboundTrunkInfo,
};
use pbjson_types::Timestamp;
use prost::Message;
use switchboard_routing::{
    apply_dispatch_rule_action, apply_inbound_trunk_action, apply_outbound_trunk_action,
    check_dispatch_rule_conflicts, check_inbound_trunk_conflicts, normalize_number,
    prepare_dispatch_rule_create, prepare_inbound_trunk_create, prepare_outbound_trunk_create,
    IdPrefix, ObjectKind, RoutingError, RoutingIndex, RoutingOptions,
};
use tokio::sync::watch;

use crate::backend::{Records, StoreBackend, Table, WriteOp};
use crate::error::StoreError;
use crate::platform::ProvisioningFault;
use crate::random::generate_id;

/// How often an optimistic write is retried when another writer got in first.
pub(crate) const MAX_ATTEMPTS: u32 = 32;

/// Every stored trunk and rule at one version: what the routing index is built from.
#[derive(Clone, Default, PartialEq)]
pub struct StoreSnapshot {
    /// The store version this was read at.
    pub version: u64,
    /// All inbound trunks, by ID.
    pub inbound_trunks: Vec<SipInboundTrunkInfo>,
    /// All outbound trunks, by ID.
    pub outbound_trunks: Vec<SipOutboundTrunkInfo>,
    /// All dispatch rules, by ID.
    pub dispatch_rules: Vec<SipDispatchRuleInfo>,
}

impl fmt::Debug for StoreSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Trunks carry passwords: counts only.
        f.debug_struct("StoreSnapshot")
            .field("version", &self.version)
            .field("inbound_trunks", &self.inbound_trunks.len())
            .field("outbound_trunks", &self.outbound_trunks.len())
            .field("dispatch_rules", &self.dispatch_rules.len())
            .finish()
    }
}

impl StoreSnapshot {
    /// Builds the routing index of this snapshot.
    pub fn routing_index(&self, options: RoutingOptions) -> RoutingIndex {
        RoutingIndex::new(
            self.inbound_trunks.clone(),
            self.dispatch_rules.clone(),
            options,
        )
    }
}

/// A subscription to store changes.
pub struct ChangeFeed {
    rx: watch::Receiver<u64>,
}

impl ChangeFeed {
    /// Waits until the store changed since the last call (or since
    /// subscribing), and returns the new version. `None` if the store is gone.
    pub async fn changed(&mut self) -> Option<u64> {
        self.rx.changed().await.ok()?;
        Some(*self.rx.borrow_and_update())
    }

    /// The latest version known, without waiting.
    pub fn version(&self) -> u64 {
        *self.rx.borrow()
    }
}

/// Trunks and dispatch rules, durable, shared by every handle on the same
/// backend. Cheap to clone.
#[derive(Clone)]
pub struct SipStore {
    backend: Arc<dyn StoreBackend>,
    fault: Option<ProvisioningFault>,
}

impl fmt::Debug for SipStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipStore").finish_non_exhaustive()
    }
}

pub(crate) fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: since.subsec_nanos() as i32,
    }
}

pub(crate) fn decode_all<M: Message + Default>(
    table: Table,
    records: &Records,
) -> Result<Vec<M>, StoreError> {
    records
        .iter()
        .map(|(id, bytes)| decode(table, id, bytes))
        .collect()
}

pub(crate) fn decode<M: Message + Default>(
    table: Table,
    id: &str,
    bytes: &[u8],
) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|source| StoreError::Corrupt {
        table,
        id: id.to_owned(),
        source,
    })
}

/// Waits a little, more each round, so racing writers spread out.
pub(crate) async fn backoff(round: u32) {
    tokio::time::sleep(Duration::from_millis(u64::from(round % 8) * 3 + 1)).await;
}

fn after_id(page: &Option<Pagination>) -> &str {
    page.as_ref().map(|p| p.after_id.as_str()).unwrap_or("")
}

/// Applies `after_id` and `limit` to records already sorted by ID and filtered.
fn paginate<T>(items: impl Iterator<Item = T>, page: &Option<Pagination>) -> Vec<T> {
    let limit = page.as_ref().map(|p| p.limit).unwrap_or(0);
    match usize::try_from(limit) {
        Ok(n) if n > 0 => items.take(n).collect(),
        _ => items.collect(),
    }
}

impl SipStore {
    /// A store over a backend.
    pub fn new(backend: impl StoreBackend) -> SipStore {
        SipStore {
            backend: Arc::new(backend),
            fault: None,
        }
    }

    /// A store over a shared backend handle.
    pub fn from_backend(backend: Arc<dyn StoreBackend>) -> SipStore {
        SipStore {
            backend,
            fault: None,
        }
    }

    /// The same store, failing provisioning writes at `fault`: for tests that
    /// show a failure half-way writes nothing. The binary only offers it in
    /// debug builds.
    pub fn with_fault(mut self, fault: ProvisioningFault) -> SipStore {
        self.fault = Some(fault);
        self
    }

    pub(crate) fn fault(&self) -> Option<ProvisioningFault> {
        self.fault
    }

    pub(crate) fn backend(&self) -> &dyn StoreBackend {
        self.backend.as_ref()
    }

    /// The embedded store under `data_dir` (the default).
    pub async fn open_embedded(
        data_dir: impl AsRef<std::path::Path>,
    ) -> Result<SipStore, StoreError> {
        Ok(SipStore::new(crate::RedbBackend::open(data_dir).await?))
    }

    /// The Redis store for replicas.
    pub async fn connect_redis(config: crate::RedisConfig) -> Result<SipStore, StoreError> {
        Ok(SipStore::new(crate::RedisBackend::connect(config).await?))
    }

    /// Subscribes to changes made through any handle, on any replica.
    pub fn subscribe(&self) -> ChangeFeed {
        ChangeFeed {
            rx: self.backend.subscribe(),
        }
    }

    /// Everything, at one version.
    pub async fn snapshot(&self) -> Result<StoreSnapshot, StoreError> {
        let loaded = self.backend.load(&Table::ROUTING).await?;
        let [inbound, outbound, rules] = match <[Records; 3]>::try_from(loaded.tables) {
            Ok(t) => t,
            Err(_) => {
                return Err(StoreError::Task(
                    "backend returned the wrong number of tables".into(),
                ))
            }
        };
        Ok(StoreSnapshot {
            version: loaded.version,
            inbound_trunks: decode_all(Table::InboundTrunks, &inbound)?,
            outbound_trunks: decode_all(Table::OutboundTrunks, &outbound)?,
            dispatch_rules: decode_all(Table::DispatchRules, &rules)?,
        })
    }

    async fn load_one<M: Message + Default>(
        &self,
        table: Table,
    ) -> Result<(u64, Vec<M>), StoreError> {
        let mut loaded = self.backend.load(&[table]).await?;
        let records = loaded.tables.pop().unwrap_or_default();
        Ok((loaded.version, decode_all(table, &records)?))
    }

    async fn get_one<M: Message + Default>(
        &self,
        table: Table,
        id: &str,
    ) -> Result<Option<M>, StoreError> {
        match self.backend.get(table, id).await? {
            Some(bytes) => Ok(Some(decode(table, id, &bytes)?)),
            None => Ok(None),
        }
    }

    // ---------------- inbound trunks ----------------

    /// Creates an inbound trunk: validates it, checks it against every stored
    /// inbound trunk for conflicts and writes it, all at one store version.
    pub async fn create_inbound_trunk(
        &self,
        trunk: SipInboundTrunkInfo,
    ) -> Result<SipInboundTrunkInfo, StoreError> {
        let candidate = prepare_inbound_trunk_create(trunk)?;
        let id = generate_id(IdPrefix::Trunk)?;
        for round in 0..MAX_ATTEMPTS {
            let (version, existing) = self
                .load_one::<SipInboundTrunkInfo>(Table::InboundTrunks)
                .await?;
            check_inbound_trunk_conflicts(&existing, &candidate)?;
            let mut stored = candidate.clone();
            stored.sip_trunk_id.clone_from(&id);
            let at = now();
            stored.created_at = Some(at);
            stored.updated_at = Some(at);
            let op = WriteOp::Put {
                table: Table::InboundTrunks,
                id: id.clone(),
                value: stored.encode_to_vec(),
            };
            if self
                .backend
                .commit(Some(version), vec![op])
                .await?
                .is_some()
            {
                return Ok(stored);
            }
            backoff(round).await;
        }
        Err(StoreError::Contention)
    }

    /// Updates or replaces an inbound trunk, re-validating and re-checking
    /// conflicts at one store version. `created_at` is kept.
    pub async fn update_inbound_trunk(
        &self,
        id: &str,
        action: &update_sip_inbound_trunk_request::Action,
    ) -> Result<SipInboundTrunkInfo, StoreError> {
        switchboard_routing::check_update_request(id, ObjectKind::Trunk, true)?;
        for round in 0..MAX_ATTEMPTS {
            let (version, existing) = self
                .load_one::<SipInboundTrunkInfo>(Table::InboundTrunks)
                .await?;
            let stored = existing
                .iter()
                .find(|t| t.sip_trunk_id == id)
                .ok_or(RoutingError::NotFound(ObjectKind::Trunk))?;
            let mut next = apply_inbound_trunk_action(id, stored, action)?;
            check_inbound_trunk_conflicts(&existing, &next)?;
            next.created_at = stored.created_at;
            next.updated_at = Some(now());
            let op = WriteOp::Put {
                table: Table::InboundTrunks,
                id: id.to_owned(),
                value: next.encode_to_vec(),
            };
            if self
                .backend
                .commit(Some(version), vec![op])
                .await?
                .is_some()
            {
                return Ok(next);
            }
            backoff(round).await;
        }
        Err(StoreError::Contention)
    }

    /// One inbound trunk, if it exists.
    pub async fn get_inbound_trunk(
        &self,
        id: &str,
    ) -> Result<Option<SipInboundTrunkInfo>, StoreError> {
        self.get_one(Table::InboundTrunks, id).await
    }

    /// Inbound trunks by ID order, filtered as ListSIPInboundTrunk asks:
    /// `trunk_ids` (exact), `numbers` (normalised, wildcard trunks included),
    /// then `after_id` and `limit` (`limit` <= 0: no limit).
    pub async fn list_inbound_trunks(
        &self,
        req: &ListSipInboundTrunkRequest,
    ) -> Result<Vec<SipInboundTrunkInfo>, StoreError> {
        let (_, trunks) = self
            .load_one::<SipInboundTrunkInfo>(Table::InboundTrunks)
            .await?;
        let ids: HashSet<&str> = req.trunk_ids.iter().map(String::as_str).collect();
        let numbers: HashSet<String> = req
            .numbers
            .iter()
            .map(|n| normalize_number(n).into_owned())
            .collect();
        let after = after_id(&req.page);
        let items = trunks.into_iter().filter(|t| {
            t.sip_trunk_id.as_str() > after
                && (ids.is_empty() || ids.contains(t.sip_trunk_id.as_str()))
                && (numbers.is_empty()
                    || t.numbers.is_empty()
                    || t.numbers
                        .iter()
                        .any(|n| numbers.contains(normalize_number(n).as_ref())))
        });
        Ok(paginate(items, &req.page))
    }

    // ---------------- outbound trunks ----------------

    /// Creates an outbound trunk (validated; outbound trunks have no conflicts).
    pub async fn create_outbound_trunk(
        &self,
        trunk: SipOutboundTrunkInfo,
    ) -> Result<SipOutboundTrunkInfo, StoreError> {
        let mut stored = prepare_outbound_trunk_create(trunk)?;
        stored.sip_trunk_id = generate_id(IdPrefix::Trunk)?;
        let at = now();
        stored.created_at = Some(at);
        stored.updated_at = Some(at);
        let op = WriteOp::Put {
            table: Table::OutboundTrunks,
            id: stored.sip_trunk_id.clone(),
            value: stored.encode_to_vec(),
        };
        self.backend.commit(None, vec![op]).await?;
        Ok(stored)
    }

    /// Updates or replaces an outbound trunk. `created_at` is kept.
    pub async fn update_outbound_trunk(
        &self,
        id: &str,
        action: &update_sip_outbound_trunk_request::Action,
    ) -> Result<SipOutboundTrunkInfo, StoreError> {
        switchboard_routing::check_update_request(id, ObjectKind::Trunk, true)?;
        for round in 0..MAX_ATTEMPTS {
            let loaded = self.backend.load(&[]).await?;
            let stored: SipOutboundTrunkInfo = self
                .get_one(Table::OutboundTrunks, id)
                .await?
                .ok_or(RoutingError::NotFound(ObjectKind::Trunk))?;
            let mut next = apply_outbound_trunk_action(id, &stored, action)?;
            next.created_at = stored.created_at;
            next.updated_at = Some(now());
            let op = WriteOp::Put {
                table: Table::OutboundTrunks,
                id: id.to_owned(),
                value: next.encode_to_vec(),
            };
            if self
                .backend
                .commit(Some(loaded.version), vec![op])
                .await?
                .is_some()
            {
                return Ok(next);
            }
            backoff(round).await;
        }
        Err(StoreError::Contention)
    }

    /// One outbound trunk, if it exists.
    pub async fn get_outbound_trunk(
        &self,
        id: &str,
    ) -> Result<Option<SipOutboundTrunkInfo>, StoreError> {
        self.get_one(Table::OutboundTrunks, id).await
    }

    /// Outbound trunks by ID order: `trunk_ids` (exact), `numbers` (exact
    /// string, as LiveKit; trunks without numbers included), `after_id`, `limit`.
    pub async fn list_outbound_trunks(
        &self,
        req: &ListSipOutboundTrunkRequest,
    ) -> Result<Vec<SipOutboundTrunkInfo>, StoreError> {
        let (_, trunks) = self
            .load_one::<SipOutboundTrunkInfo>(Table::OutboundTrunks)
            .await?;
        let ids: HashSet<&str> = req.trunk_ids.iter().map(String::as_str).collect();
        let after = after_id(&req.page);
        let items = trunks.into_iter().filter(|t| {
            t.sip_trunk_id.as_str() > after
                && (ids.is_empty() || ids.contains(t.sip_trunk_id.as_str()))
                && (req.numbers.is_empty()
                    || t.numbers.is_empty()
                    || t.numbers.iter().any(|n| req.numbers.contains(n)))
        });
        Ok(paginate(items, &req.page))
    }

    /// Deletes a trunk, inbound or outbound, by ID. Returns whether anything
    /// was there (LiveKit's API answers the same either way).
    pub async fn delete_trunk(&self, id: &str) -> Result<bool, StoreError> {
        let existed = self.backend.get(Table::InboundTrunks, id).await?.is_some()
            || self.backend.get(Table::OutboundTrunks, id).await?.is_some();
        let ops = vec![
            WriteOp::Delete {
                table: Table::InboundTrunks,
                id: id.to_owned(),
            },
            WriteOp::Delete {
                table: Table::OutboundTrunks,
                id: id.to_owned(),
            },
            WriteOp::Delete {
                table: Table::OutboundDialPlans,
                id: id.to_owned(),
            },
        ];
        if existed {
            self.backend.commit(None, ops).await?;
        }
        Ok(existed)
    }

    // ---------------- dispatch rules ----------------

    /// Creates a dispatch rule: validated, conflict-checked against every
    /// stored rule and written at one store version.
    pub async fn create_dispatch_rule(
        &self,
        rule: SipDispatchRuleInfo,
    ) -> Result<SipDispatchRuleInfo, StoreError> {
        let candidate = prepare_dispatch_rule_create(rule)?;
        let id = generate_id(IdPrefix::DispatchRule)?;
        for round in 0..MAX_ATTEMPTS {
            let (version, existing) = self
                .load_one::<SipDispatchRuleInfo>(Table::DispatchRules)
                .await?;
            check_dispatch_rule_conflicts(&existing, &candidate)?;
            let mut stored = candidate.clone();
            stored.sip_dispatch_rule_id.clone_from(&id);
            let at = now();
            stored.created_at = Some(at);
            stored.updated_at = Some(at);
            let op = WriteOp::Put {
                table: Table::DispatchRules,
                id: id.clone(),
                value: stored.encode_to_vec(),
            };
            if self
                .backend
                .commit(Some(version), vec![op])
                .await?
                .is_some()
            {
                return Ok(stored);
            }
            backoff(round).await;
        }
        Err(StoreError::Contention)
    }

    /// Updates or replaces a dispatch rule, re-validated and re-checked. `created_at` is kept.
    pub async fn update_dispatch_rule(
        &self,
        id: &str,
        action: &update_sip_dispatch_rule_request::Action,
    ) -> Result<SipDispatchRuleInfo, StoreError> {
        switchboard_routing::check_update_request(id, ObjectKind::DispatchRule, true)?;
        for round in 0..MAX_ATTEMPTS {
            let (version, existing) = self
                .load_one::<SipDispatchRuleInfo>(Table::DispatchRules)
                .await?;
            let stored = existing
                .iter()
                .find(|r| r.sip_dispatch_rule_id == id)
                .ok_or(RoutingError::NotFound(ObjectKind::DispatchRule))?;
            let mut next = apply_dispatch_rule_action(id, stored, action)?;
            check_dispatch_rule_conflicts(&existing, &next)?;
            next.created_at = stored.created_at;
            next.updated_at = Some(now());
            let op = WriteOp::Put {
                table: Table::DispatchRules,
                id: id.to_owned(),
                value: next.encode_to_vec(),
            };
            if self
                .backend
                .commit(Some(version), vec![op])
                .await?
                .is_some()
            {
                return Ok(next);
            }
            backoff(round).await;
        }
        Err(StoreError::Contention)
    }

    /// One dispatch rule, if it exists.
    pub async fn get_dispatch_rule(
        &self,
        id: &str,
    ) -> Result<Option<SipDispatchRuleInfo>, StoreError> {
        self.get_one(Table::DispatchRules, id).await
    }

    /// Dispatch rules by ID order: `dispatch_rule_ids` (exact), `trunk_ids`
    /// (rules naming one of them, plus wildcard rules), `after_id`, `limit`.
    pub async fn list_dispatch_rules(
        &self,
        req: &ListSipDispatchRuleRequest,
    ) -> Result<Vec<SipDispatchRuleInfo>, StoreError> {
        let (_, rules) = self
            .load_one::<SipDispatchRuleInfo>(Table::DispatchRules)
            .await?;
        let ids: HashSet<&str> = req.dispatch_rule_ids.iter().map(String::as_str).collect();
        let trunks: HashSet<&str> = req.trunk_ids.iter().map(String::as_str).collect();
        let after = after_id(&req.page);
        let items = rules.into_iter().filter(|r| {
            r.sip_dispatch_rule_id.as_str() > after
                && (ids.is_empty() || ids.contains(r.sip_dispatch_rule_id.as_str()))
                && (trunks.is_empty()
                    || r.trunk_ids.is_empty()
                    || r.trunk_ids.iter().any(|t| trunks.contains(t.as_str())))
        });
        Ok(paginate(items, &req.page))
    }

    /// Deletes a dispatch rule and returns it; `not_found` if there is none.
    pub async fn delete_dispatch_rule(&self, id: &str) -> Result<SipDispatchRuleInfo, StoreError> {
        for round in 0..MAX_ATTEMPTS {
            let loaded = self.backend.load(&[]).await?;
            let rule: SipDispatchRuleInfo = self
                .get_one(Table::DispatchRules, id)
                .await?
                .ok_or(RoutingError::NotFound(ObjectKind::DispatchRule))?;
            let op = WriteOp::Delete {
                table: Table::DispatchRules,
                id: id.to_owned(),
            };
            if self
                .backend
                .commit(Some(loaded.version), vec![op])
                .await?
                .is_some()
            {
                return Ok(rule);
            }
            backoff(round).await;
        }
        Err(StoreError::Contention)
    }
}
