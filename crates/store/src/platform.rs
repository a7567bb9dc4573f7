//! Carrier trunks of the /v1 API: one record that owns an inbound trunk, an
//! outbound trunk and a dispatch rule, all written, changed and removed in
//! one commit so that a failure half-way leaves nothing behind.
//!
//! The API crate turns the JSON shapes into the LiveKit records; this module
//! gives them IDs and timestamps, checks them against what is stored (the
//! trunk cap, LiveKit's conflict rules) and commits everything at one store
//! version.

use std::fmt;

use livekit_protocol::{SipDispatchRuleInfo, SipInboundTrunkInfo, SipOutboundTrunkInfo};
use prost::Message;
use switchboard_routing::{
    check_dispatch_rule_conflicts, check_inbound_trunk_conflicts, prepare_dispatch_rule_create,
    prepare_inbound_trunk_create, prepare_outbound_trunk_create, IdPrefix, ObjectKind,
    RoutingError,
};

use crate::backend::{Records, Table, WriteOp};
use crate::error::StoreError;
use crate::random::{generate_id, generate_platform_trunk_id};
use crate::store::{backoff, decode, decode_all, now, SipStore, MAX_ATTEMPTS};

/// A carrier trunk as the /v1 API stores it. The password is kept (the
/// outbound trunk needs it to answer challenges) but never printed.
#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub struct PlatformTrunk {
    /// `trunk_` + 26 Crockford base32 characters.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Human-readable name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Where the trunk came from (`byoc` is the only kind provisioned here).
    #[prost(string, tag = "3")]
    pub kind: String,
    /// `inbound`, `outbound` or `both`.
    #[prost(string, tag = "4")]
    pub direction: String,
    /// The carrier's SIP host (no port for the seed-004 shape).
    #[prost(string, tag = "5")]
    pub sip_address: String,
    /// Digest user name, both ways.
    #[prost(string, tag = "6")]
    pub auth_username: String,
    /// Digest password: write-only on the API.
    #[prost(string, tag = "7")]
    pub auth_password: String,
    /// IPs and CIDRs inbound calls may come from; empty means any.
    #[prost(string, repeated, tag = "8")]
    pub allowed_addresses: Vec<String>,
    /// ISO 3166-1 alpha-2 country of the dial plan.
    #[prost(string, tag = "9")]
    pub destination_country: String,
    /// `auto`, `udp`, `tcp` or `tls`.
    #[prost(string, tag = "10")]
    pub transport: String,
    /// `disable`, `allow` or `require`.
    #[prost(string, tag = "11")]
    pub media_encryption: String,
    /// The caller's opaque credentials object, as JSON text.
    #[prost(string, tag = "12")]
    pub credentials_json: String,
    /// The trunk's numbers (or the one extension).
    #[prost(string, repeated, tag = "13")]
    pub numbers: Vec<String>,
    /// `+e164`, `e164` or `national`; empty: numbers are sent as given.
    #[prost(string, tag = "14")]
    pub number_format: String,
    /// `auth` or `ip`: how inbound calls are admitted.
    #[prost(string, tag = "15")]
    pub inbound_authorization: String,
    /// `extension` or `number` for the seed-004 shape; empty otherwise.
    #[prost(string, tag = "16")]
    pub trunk_type: String,
    /// Outbound calls leave through the configured fixed-address proxy.
    #[prost(bool, tag = "17")]
    pub use_outbound_proxy: bool,
    /// `individual`, `direct` or `callee`: how inbound calls find a room.
    #[prost(string, tag = "18")]
    pub dispatch: String,
    /// Room name prefix (individual, callee).
    #[prost(string, tag = "19")]
    pub room_prefix: String,
    /// The one room (direct).
    #[prost(string, tag = "20")]
    pub room_name: String,
    /// The provisioned inbound trunk, when the direction includes inbound.
    #[prost(string, tag = "21")]
    pub inbound_trunk_id: String,
    /// The provisioned outbound trunk, when the direction includes outbound.
    #[prost(string, tag = "22")]
    pub outbound_trunk_id: String,
    /// The provisioned dispatch rule, when the direction includes inbound.
    #[prost(string, tag = "23")]
    pub dispatch_rule_id: String,
    /// Creation time, microseconds since the Unix epoch.
    #[prost(int64, tag = "24")]
    pub created_at_micros: i64,
    /// Last change, microseconds since the Unix epoch.
    #[prost(int64, tag = "25")]
    pub updated_at_micros: i64,
}

impl fmt::Debug for PlatformTrunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformTrunk")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("direction", &self.direction)
            .field("sip_address", &self.sip_address)
            .field("auth_password_set", &!self.auth_password.is_empty())
            .finish_non_exhaustive()
    }
}

/// How an outbound trunk writes the numbers it dials: stored beside the
/// LiveKit record, whose message has no such field.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct DialPlanRecord {
    /// `+e164`, `e164` or `national`.
    #[prost(string, tag = "1")]
    pub number_format: String,
    /// ISO 3166-1 alpha-2 region for numbers written without `+`.
    #[prost(string, tag = "2")]
    pub country: String,
}

/// What a create or update writes: the carrier trunk and the LiveKit
/// records it owns. IDs, timestamps and the rule's trunk are filled in here.
#[derive(Debug, Clone, Default)]
pub struct PlatformTrunkWrite {
    /// The carrier trunk's own fields.
    pub trunk: PlatformTrunk,
    /// The inbound trunk to provision, if the direction includes inbound.
    pub inbound: Option<SipInboundTrunkInfo>,
    /// The outbound trunk to provision, if the direction includes outbound.
    pub outbound: Option<SipOutboundTrunkInfo>,
    /// The rule sending the inbound trunk's calls to rooms (with `inbound`).
    pub dispatch_rule: Option<SipDispatchRuleInfo>,
    /// The outbound number format (with `outbound`).
    pub dial_plan: Option<DialPlanRecord>,
}

/// A place where a provisioning write can be made to fail, so tests can
/// show from outside the process that a failure half-way writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisioningFault {
    /// After the inbound trunk is prepared, before the outbound trunk is.
    AfterInbound,
}

impl ProvisioningFault {
    /// The name used to ask for it (`SWITCHBOARD_FAULT` in debug builds).
    pub fn parse(name: &str) -> Option<ProvisioningFault> {
        (name == "platform-after-inbound").then_some(ProvisioningFault::AfterInbound)
    }
}

/// A page of carrier trunks.
#[derive(Debug, Clone, Default)]
pub struct PlatformTrunkPage {
    /// The trunks, oldest first.
    pub trunks: Vec<PlatformTrunk>,
    /// Whether more follow the last one.
    pub has_more: bool,
}

fn micros(at: &pbjson_types::Timestamp) -> i64 {
    at.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(at.nanos / 1_000))
}

/// The stored record under `key`, if any.
fn find<'a>(records: &'a Records, key: &str) -> Option<&'a (String, Vec<u8>)> {
    records.iter().find(|(k, _)| k == key)
}

/// The ID a LiveKit record a carrier trunk wants is written under: the one
/// it has (an update keeps it), or a fresh one; `None` when it wants none.
fn owned_id(wanted: bool, existing: &str, prefix: IdPrefix) -> Result<Option<String>, StoreError> {
    match (wanted, existing.is_empty()) {
        (false, _) => Ok(None),
        (true, true) => generate_id(prefix).map(Some),
        (true, false) => Ok(Some(existing.to_owned())),
    }
}

impl SipStore {
    /// Creates a carrier trunk and its LiveKit records in one commit.
    /// `max_trunks` carrier trunks may exist; one more is refused with
    /// [`StoreError::AtCapacity`].
    pub async fn create_platform_trunk(
        &self,
        write: PlatformTrunkWrite,
        max_trunks: usize,
    ) -> Result<PlatformTrunk, StoreError> {
        let id = generate_platform_trunk_id()?;
        self.write_platform_trunk(&id, None, write, max_trunks)
            .await
    }

    /// Replaces a carrier trunk's fields and its LiveKit records in one
    /// commit: records it keeps keep their IDs and creation times, records
    /// its new direction no longer needs are deleted, new ones are created.
    pub async fn update_platform_trunk(
        &self,
        id: &str,
        write: PlatformTrunkWrite,
    ) -> Result<PlatformTrunk, StoreError> {
        let existing = self
            .get_platform_trunk(id)
            .await?
            .ok_or(RoutingError::NotFound(ObjectKind::Trunk))?;
        self.write_platform_trunk(id, Some(existing), write, usize::MAX)
            .await
    }

    async fn write_platform_trunk(
        &self,
        id: &str,
        existing: Option<PlatformTrunk>,
        write: PlatformTrunkWrite,
        max_trunks: usize,
    ) -> Result<PlatformTrunk, StoreError> {
        let before = existing.clone().unwrap_or_default();
        let inbound_id = owned_id(
            write.inbound.is_some(),
            &before.inbound_trunk_id,
            IdPrefix::Trunk,
        )?;
        let outbound_id = owned_id(
            write.outbound.is_some(),
            &before.outbound_trunk_id,
            IdPrefix::Trunk,
        )?;
        let rule_id = owned_id(
            write.dispatch_rule.is_some(),
            &before.dispatch_rule_id,
            IdPrefix::DispatchRule,
        )?;
        let inbound = write
            .inbound
            .map(prepare_inbound_trunk_create)
            .transpose()?;
        let outbound = write
            .outbound
            .map(prepare_outbound_trunk_create)
            .transpose()?;
        let rule = match (write.dispatch_rule, &inbound_id) {
            (Some(mut rule), Some(trunk)) => {
                rule.trunk_ids = vec![trunk.clone()];
                Some(prepare_dispatch_rule_create(rule)?)
            }
            _ => None,
        };
        for round in 0..MAX_ATTEMPTS {
            let loaded = self
                .backend()
                .load(&[
                    Table::InboundTrunks,
                    Table::DispatchRules,
                    Table::PlatformTrunks,
                    Table::OutboundTrunks,
                ])
                .await?;
            let version = loaded.version;
            let [stored_inbound, stored_rules, stored_platform, stored_outbound] =
                <[Records; 4]>::try_from(loaded.tables).map_err(|_| {
                    StoreError::Task("backend returned the wrong number of tables".into())
                })?;
            let current = find(&stored_platform, id);
            match (&existing, current) {
                (None, _) if stored_platform.len() >= max_trunks => {
                    return Err(StoreError::AtCapacity { max: max_trunks });
                }
                (Some(_), None) => return Err(RoutingError::NotFound(ObjectKind::Trunk).into()),
                _ => {}
            }
            let at = now();
            let mut ops = Vec::with_capacity(6);
            let mut trunk = write.trunk.clone();
            trunk.id = id.to_owned();
            trunk.created_at_micros = before.created_at_micros;
            if existing.is_none() {
                trunk.created_at_micros = micros(&at);
            }
            trunk.updated_at_micros = micros(&at);

            // Inbound trunk.
            trunk.inbound_trunk_id = inbound_id.clone().unwrap_or_default();
            if let (Some(candidate), Some(key)) = (&inbound, &inbound_id) {
                let existing_inbound: Vec<SipInboundTrunkInfo> =
                    decode_all(Table::InboundTrunks, &stored_inbound)?;
                let mut record = candidate.clone();
                record.sip_trunk_id.clone_from(key);
                check_inbound_trunk_conflicts(&existing_inbound, &record)?;
                record.created_at = existing_inbound
                    .iter()
                    .find(|t| t.sip_trunk_id == *key)
                    .and_then(|t| t.created_at)
                    .or(Some(at));
                record.updated_at = Some(at);
                ops.push(WriteOp::Put {
                    table: Table::InboundTrunks,
                    id: key.clone(),
                    value: record.encode_to_vec(),
                });
            } else if !before.inbound_trunk_id.is_empty() {
                ops.push(WriteOp::Delete {
                    table: Table::InboundTrunks,
                    id: before.inbound_trunk_id.clone(),
                });
            }

            if self.fault() == Some(ProvisioningFault::AfterInbound) {
                return Err(StoreError::InjectedFault("platform-after-inbound"));
            }

            // Outbound trunk and how it writes numbers.
            trunk.outbound_trunk_id = outbound_id.clone().unwrap_or_default();
            if let (Some(candidate), Some(key)) = (&outbound, &outbound_id) {
                let mut record = candidate.clone();
                record.sip_trunk_id.clone_from(key);
                record.created_at = match find(&stored_outbound, key) {
                    Some((k, bytes)) => {
                        decode::<SipOutboundTrunkInfo>(Table::OutboundTrunks, k, bytes)?.created_at
                    }
                    None => None,
                }
                .or(Some(at));
                record.updated_at = Some(at);
                ops.push(WriteOp::Put {
                    table: Table::OutboundTrunks,
                    id: key.clone(),
                    value: record.encode_to_vec(),
                });
                ops.push(match &write.dial_plan {
                    Some(plan) => WriteOp::Put {
                        table: Table::OutboundDialPlans,
                        id: key.clone(),
                        value: plan.encode_to_vec(),
                    },
                    None => WriteOp::Delete {
                        table: Table::OutboundDialPlans,
                        id: key.clone(),
                    },
                });
            } else if !before.outbound_trunk_id.is_empty() {
                ops.push(WriteOp::Delete {
                    table: Table::OutboundTrunks,
                    id: before.outbound_trunk_id.clone(),
                });
                ops.push(WriteOp::Delete {
                    table: Table::OutboundDialPlans,
                    id: before.outbound_trunk_id.clone(),
                });
            }

            // Dispatch rule.
            trunk.dispatch_rule_id = rule_id.clone().unwrap_or_default();
            if let (Some(candidate), Some(key)) = (&rule, &rule_id) {
                let existing_rules: Vec<SipDispatchRuleInfo> =
                    decode_all(Table::DispatchRules, &stored_rules)?;
                let mut record = candidate.clone();
                record.sip_dispatch_rule_id.clone_from(key);
                let others = existing_rules
                    .iter()
                    .filter(|r| r.sip_dispatch_rule_id != *key);
                check_dispatch_rule_conflicts(others, &record)?;
                record.created_at = existing_rules
                    .iter()
                    .find(|r| r.sip_dispatch_rule_id == *key)
                    .and_then(|r| r.created_at)
                    .or(Some(at));
                record.updated_at = Some(at);
                ops.push(WriteOp::Put {
                    table: Table::DispatchRules,
                    id: key.clone(),
                    value: record.encode_to_vec(),
                });
            } else if !before.dispatch_rule_id.is_empty() {
                ops.push(WriteOp::Delete {
                    table: Table::DispatchRules,
                    id: before.dispatch_rule_id.clone(),
                });
            }

            ops.push(WriteOp::Put {
                table: Table::PlatformTrunks,
                id: id.to_owned(),
                value: trunk.encode_to_vec(),
            });
            if self.backend().commit(Some(version), ops).await?.is_some() {
                return Ok(trunk);
            }
            backoff(round).await;
        }
        Err(StoreError::Contention)
    }

    /// One carrier trunk, if it exists.
    pub async fn get_platform_trunk(&self, id: &str) -> Result<Option<PlatformTrunk>, StoreError> {
        match self.backend().get(Table::PlatformTrunks, id).await? {
            Some(bytes) => Ok(Some(decode(Table::PlatformTrunks, id, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Carrier trunks in ID order (which is creation order), those after
    /// `after` (an ID; empty for the first page), at most `limit`.
    pub async fn list_platform_trunks(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<PlatformTrunkPage, StoreError> {
        let mut loaded = self.backend().load(&[Table::PlatformTrunks]).await?;
        let records = loaded.tables.pop().unwrap_or_default();
        let mut trunks = Vec::new();
        let mut has_more = false;
        for (id, bytes) in records.iter().filter(|(id, _)| id.as_str() > after) {
            if trunks.len() == limit {
                has_more = true;
                break;
            }
            trunks.push(decode(Table::PlatformTrunks, id, bytes)?);
        }
        Ok(PlatformTrunkPage { trunks, has_more })
    }

    /// Deletes a carrier trunk and everything it provisioned in one commit;
    /// returns what was deleted, `not_found` if there was nothing.
    pub async fn delete_platform_trunk(&self, id: &str) -> Result<PlatformTrunk, StoreError> {
        for round in 0..MAX_ATTEMPTS {
            let loaded = self.backend().load(&[]).await?;
            let trunk = self
                .get_platform_trunk(id)
                .await?
                .ok_or(RoutingError::NotFound(ObjectKind::Trunk))?;
            let mut ops = vec![WriteOp::Delete {
                table: Table::PlatformTrunks,
                id: id.to_owned(),
            }];
            let owned = [
                (Table::InboundTrunks, &trunk.inbound_trunk_id),
                (Table::OutboundTrunks, &trunk.outbound_trunk_id),
                (Table::OutboundDialPlans, &trunk.outbound_trunk_id),
                (Table::DispatchRules, &trunk.dispatch_rule_id),
            ];
            ops.extend(
                owned
                    .into_iter()
                    .filter(|(_, key)| !key.is_empty())
                    .map(|(table, key)| WriteOp::Delete {
                        table,
                        id: key.clone(),
                    }),
            );
            if self
                .backend()
                .commit(Some(loaded.version), ops)
                .await?
                .is_some()
            {
                return Ok(trunk);
            }
            backoff(round).await;
        }
        Err(StoreError::Contention)
    }

    /// How the outbound trunk `trunk_id` writes numbers, when it was
    /// provisioned with a number format.
    pub async fn outbound_dial_plan(
        &self,
        trunk_id: &str,
    ) -> Result<Option<DialPlanRecord>, StoreError> {
        match self
            .backend()
            .get(Table::OutboundDialPlans, trunk_id)
            .await?
        {
            Some(bytes) => Ok(Some(decode(Table::OutboundDialPlans, trunk_id, &bytes)?)),
            None => Ok(None),
        }
    }
}
