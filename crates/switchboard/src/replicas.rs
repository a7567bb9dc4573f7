//! Where rooms live, for the two ways of not having them all here:
//!
//! - [`LiveKitRooms`]: every room is on one LiveKit server
//!   (`rooms.backend: livekit`);
//! - [`ReplicaRooms`]: replicas on one Redis share the embedded rooms. The
//!   first replica a room is needed on takes a lease on it and serves it;
//!   the others join it there. Each replica also leases the SIP
//!   participants whose calls it holds, so that a transfer ordered on any
//!   replica reaches the call. Leases are renewed every third of their
//!   time and given up when the room finishes or the call leaves; a replica
//!   that dies stops renewing and its leases expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use switchboard_gateway::GatewayHandle;
use switchboard_rooms::{
    shared_room_of, DirectoryFuture, Lifecycle, ParticipantKind, RoomDirectory, RoomHome, Rooms,
};
use switchboard_routing::attrs;
use switchboard_store::{LeaseKey, Leases};
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, info, warn};

/// Every room on one LiveKit server.
pub struct LiveKitRooms {
    /// The server's URL.
    pub url: String,
}

impl RoomDirectory for LiveKitRooms {
    fn locate<'a>(&'a self, _room: &'a str) -> DirectoryFuture<'a, Result<RoomHome, String>> {
        Box::pin(async move { Ok(RoomHome::Elsewhere(self.url.clone())) })
    }

    fn owner_elsewhere<'a>(&'a self, _room: &'a str) -> DirectoryFuture<'a, Option<String>> {
        // RoomService orders go to the LiveKit server itself, not through us.
        Box::pin(async { None })
    }

    fn call_elsewhere<'a>(
        &'a self,
        _room: &'a str,
        _identity: &'a str,
    ) -> DirectoryFuture<'a, Option<String>> {
        Box::pin(async { None })
    }
}

/// A claimed room lease is given up if no room of that name exists here
/// this long after the claim (the member that needed it never came).
const UNUSED_CLAIM_GRACE: Duration = Duration::from_secs(5);

/// Rooms shared by replicas through leases in Redis.
pub struct ReplicaRooms {
    leases: Leases,
    /// This replica's API URL, the value of its leases.
    me: String,
    ttl: Duration,
    rooms: Rooms,
    /// Leases this replica holds, with when each was taken.
    held: Mutex<HashMap<LeaseKey, Instant>>,
    /// The agent names this replica says it has workers of.
    advertised: Mutex<Vec<String>>,
}

impl ReplicaRooms {
    /// The directory of the replicas sharing `leases`; this one is `me`.
    pub fn new(leases: Leases, me: String, ttl: Duration, rooms: Rooms) -> Arc<ReplicaRooms> {
        Arc::new(ReplicaRooms {
            leases,
            me,
            ttl: ttl.max(Duration::from_secs(1)),
            rooms,
            held: Mutex::new(HashMap::new()),
            advertised: Mutex::new(Vec::new()),
        })
    }

    /// This replica's API URL, as the others reach it.
    pub fn url(&self) -> &str {
        &self.me
    }

    fn held(&self) -> MutexGuard<'_, HashMap<LeaseKey, Instant>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Renews the leases, registers and unregisters calls as they join and
    /// leave, and gives up rooms as they finish; for the life of the
    /// process.
    pub fn spawn(self: &Arc<Self>, gateway: GatewayHandle) {
        let renewer = self.clone();
        tokio::spawn(async move { renewer.renew_forever().await });
        let follower = self.clone();
        tokio::spawn(async move { follower.follow_rooms(gateway).await });
    }

    async fn renew_forever(&self) {
        let mut tick = tokio::time::interval(self.ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.renew_once().await;
        }
    }

    async fn renew_once(&self) {
        let now = Instant::now();
        // Claims whose room never came here are given up, not renewed.
        let (keys, unused): (Vec<LeaseKey>, Vec<LeaseKey>) = {
            let held = self.held();
            let mut keys = Vec::with_capacity(held.len());
            let mut unused = Vec::new();
            for (key, taken) in held.iter() {
                match key {
                    LeaseKey::Room(room)
                        if self.rooms.room(room).is_none()
                            && now.saturating_duration_since(*taken) > UNUSED_CLAIM_GRACE =>
                    {
                        unused.push(key.clone())
                    }
                    _ => keys.push(key.clone()),
                }
            }
            (keys, unused)
        };
        for key in unused {
            self.give_up(&key).await;
        }
        if let Err(e) = self.leases.advertise_replica(&self.me, self.ttl).await {
            warn!(error = %e, "this replica is not advertised to the others");
        }
        match self.leases.renew(&keys, &self.me, self.ttl).await {
            Ok(kept) => {
                let mut held = self.held();
                for (key, kept) in keys.iter().zip(kept) {
                    if !kept {
                        // Another replica took it after ours expired (we
                        // could not reach Redis for a whole lease time).
                        warn!(lease = ?key, "lease lost to another replica");
                        held.remove(key);
                    }
                }
            }
            Err(e) => warn!(error = %e, leases = keys.len(), "leases not renewed"),
        }
    }

    /// Says, every third of a lease time and whenever a worker comes or
    /// goes, which agents this replica has workers of, so that a room served by another replica can
    /// have its agents dispatched here.
    pub fn spawn_agent_advertiser(self: &Arc<Self>, api: Arc<switchboard_api::ApiState>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.ttl / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = api.agents.workers_changed() => {}
                }
                let now = api.agents.agent_names();
                let before = std::mem::replace(
                    &mut *this.advertised.lock().unwrap_or_else(|p| p.into_inner()),
                    now.clone(),
                );
                for name in &now {
                    if let Err(e) = this.leases.advertise_agent(name, &this.me, this.ttl).await {
                        warn!(agent = %name, error = %e, "agent workers not advertised to the other replicas");
                    }
                }
                for gone in before.iter().filter(|n| !now.contains(n)) {
                    let _ = this.leases.withdraw_agent(gone, &this.me).await;
                }
            }
        });
    }

    /// Gives up every lease, as the process exits: its rooms move to the
    /// next replica that needs them at once rather than after a lease time
    /// (members bridged into them from other replicas join them again
    /// there).
    pub async fn release_all(&self) {
        let keys: Vec<LeaseKey> = self.held().keys().cloned().collect();
        for key in &keys {
            self.give_up(key).await;
        }
        let agents =
            std::mem::take(&mut *self.advertised.lock().unwrap_or_else(|p| p.into_inner()));
        for name in &agents {
            let _ = self.leases.withdraw_agent(name, &self.me).await;
        }
        let _ = self.leases.withdraw_replica(&self.me).await;
        info!(leases = keys.len(), "leases given up");
    }

    async fn give_up(&self, key: &LeaseKey) {
        self.held().remove(key);
        if let Err(e) = self.leases.release(key, &self.me).await {
            debug!(lease = ?key, error = %e, "lease not released (it expires)");
        }
    }

    async fn follow_rooms(&self, gateway: GatewayHandle) {
        let mut lifecycle = self.rooms.lifecycle();
        loop {
            match lifecycle.recv().await {
                Ok(Lifecycle::ParticipantJoined { room, participant })
                    if participant.kind == ParticipantKind::Sip =>
                {
                    // Only our own calls: a caller that another replica
                    // bridged into one of our rooms is leased by that one.
                    let ours = participant
                        .attributes
                        .get(attrs::CALL_ID)
                        .is_some_and(|id| gateway.holds_call(id));
                    if !ours {
                        continue;
                    }
                    let key = call_lease(&room.name, &participant.identity);
                    match self.leases.put(&key, &self.me, self.ttl).await {
                        Ok(()) => {
                            self.held().insert(key, Instant::now());
                        }
                        Err(e) => {
                            warn!(room = %room.name, identity = %participant.identity, error = %e, "call not registered: orders for it on other replicas will not find it")
                        }
                    }
                }
                Ok(Lifecycle::ParticipantLeft {
                    room, participant, ..
                }) if participant.kind == ParticipantKind::Sip => {
                    let key = call_lease(&room.name, &participant.identity);
                    if self.held().contains_key(&key) {
                        self.give_up(&key).await;
                    }
                }
                Ok(Lifecycle::RoomFinished(room)) if shared_room_of(&room.name).is_none() => {
                    let key = LeaseKey::Room(room.name.clone());
                    if self.held().contains_key(&key) {
                        info!(room = %room.name, "room finished: lease given up");
                        self.give_up(&key).await;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    warn!(
                        missed = n,
                        "the room leases fell behind the rooms' lifecycle"
                    );
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

/// The lease of a call's SIP participant `identity`, joined to local room
/// `room` (the room itself, or a private room standing for it): keyed by
/// the room it is in for everyone else.
fn call_lease(room: &str, identity: &str) -> LeaseKey {
    LeaseKey::Participant {
        room: shared_room_of(room).unwrap_or(room).to_string(),
        identity: identity.to_string(),
    }
}

impl RoomDirectory for ReplicaRooms {
    fn locate<'a>(&'a self, room: &'a str) -> DirectoryFuture<'a, Result<RoomHome, String>> {
        Box::pin(async move {
            let key = LeaseKey::Room(room.to_string());
            let holder = self
                .leases
                .claim(&key, &self.me, self.ttl)
                .await
                .map_err(|e| e.to_string())?;
            if holder == self.me {
                let mut held = self.held();
                if !held.contains_key(&key) {
                    info!(room, "room lease taken: the room is served here");
                }
                held.insert(key, Instant::now());
                Ok(RoomHome::Here)
            } else {
                Ok(RoomHome::Elsewhere(holder))
            }
        })
    }

    fn owner_elsewhere<'a>(&'a self, room: &'a str) -> DirectoryFuture<'a, Option<String>> {
        Box::pin(async move {
            let key = LeaseKey::Room(room.to_string());
            match self.leases.holder(&key).await {
                Ok(holder) => holder.filter(|h| *h != self.me),
                Err(e) => {
                    warn!(room, error = %e, "cannot tell which replica owns the room");
                    None
                }
            }
        })
    }

    fn other_servers(&self) -> DirectoryFuture<'_, Vec<String>> {
        Box::pin(async move {
            match self.leases.replicas().await {
                Ok(replicas) => replicas.into_iter().filter(|r| *r != self.me).collect(),
                Err(e) => {
                    warn!(error = %e, "cannot tell which other replicas are up");
                    Vec::new()
                }
            }
        })
    }

    fn agent_hosts<'a>(&'a self, agent_name: &'a str) -> DirectoryFuture<'a, Vec<String>> {
        Box::pin(async move {
            match self.leases.agent_hosts(agent_name).await {
                Ok(hosts) => hosts.into_iter().filter(|h| *h != self.me).collect(),
                Err(e) => {
                    warn!(agent = %agent_name, error = %e, "cannot tell which replicas have the agent's workers");
                    Vec::new()
                }
            }
        })
    }

    fn call_elsewhere<'a>(
        &'a self,
        room: &'a str,
        identity: &'a str,
    ) -> DirectoryFuture<'a, Option<String>> {
        Box::pin(async move {
            let key = LeaseKey::Participant {
                room: room.to_string(),
                identity: identity.to_string(),
            };
            match self.leases.holder(&key).await {
                Ok(holder) => holder.filter(|h| *h != self.me),
                Err(e) => {
                    warn!(room, identity, error = %e, "cannot tell which replica holds the call");
                    None
                }
            }
        })
    }
}
