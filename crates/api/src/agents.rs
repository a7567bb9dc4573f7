//! LiveKit Agents: the worker protocol at `/agent` (`livekit-agents`
//! workers register, are offered jobs, take them), jobs for rooms as they
//! are created (the agents a room asks for, or LiveKit's default unnamed
//! dispatch), and `livekit.AgentDispatchService` (explicit dispatch).
//!
//! A job is offered to one registered worker whose `agent_name` matches
//! (the least loaded available one); when it accepts, it is assigned with a
//! token for the room (kind agent, identity as the worker chose), and its
//! job process joins over `/rtc` like any LiveKit client. When the room
//! closes, its jobs are terminated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use livekit_api::access_token::{AccessToken, VideoGrants};
use livekit_protocol as proto;
use prost::Message as _;
use switchboard_rooms::{new_sid, Lifecycle, RoomInfo};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::auth::{authenticate, ApiKeys};
use crate::ApiState;

/// A worker that registers must do so within this long.
const REGISTER_DEADLINE: Duration = Duration::from_secs(10);
/// How long an agent's token is valid (LiveKit's own).
const AGENT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Messages queued for one worker before it counts as stuck.
const WORKER_QUEUE: usize = 64;

struct Worker {
    agent_name: String,
    job_type: i32,
    available: bool,
    load: f32,
    permissions: proto::ParticipantPermission,
    outbox: mpsc::Sender<proto::ServerMessage>,
}

struct JobEntry {
    job: proto::Job,
    worker_id: String,
    dispatch_id: String,
    room: String,
}

#[derive(Default)]
struct Registry {
    workers: HashMap<String, Worker>,
    jobs: HashMap<String, JobEntry>,
    /// Explicit and room dispatches by `AD_…` ID.
    dispatches: HashMap<String, proto::AgentDispatch>,
    /// Dispatches for rooms another replica serves: no room closes here to
    /// forget them, so each goes with its last job.
    remote_dispatches: std::collections::HashSet<String>,
}

impl Registry {
    /// Forgets the remote dispatches that no longer have a job.
    fn forget_finished_remote_dispatches(&mut self) {
        let jobs = &self.jobs;
        let finished: Vec<String> = self
            .remote_dispatches
            .iter()
            .filter(|id| !jobs.values().any(|j| &j.dispatch_id == *id))
            .cloned()
            .collect();
        for id in finished {
            self.remote_dispatches.remove(&id);
            self.dispatches.remove(&id);
        }
    }
}

/// Registered workers, their jobs and the rooms' dispatches.
#[derive(Default)]
pub struct Agents {
    registry: Mutex<Registry>,
    /// Woken when a worker registers or leaves (replicas advertise their
    /// agents at once rather than at the next renewal).
    workers_changed: tokio::sync::Notify,
}

impl std::fmt::Debug for Agents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let registry = self.lock();
        f.debug_struct("Agents")
            .field("workers", &registry.workers.len())
            .field("jobs", &registry.jobs.len())
            .finish()
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn server_message(message: proto::server_message::Message) -> proto::ServerMessage {
    proto::ServerMessage {
        message: Some(message),
    }
}

/// Why a dispatch found no one to run it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no available worker for agent {0:?}")]
pub struct NoWorker(pub String);

impl Agents {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // Every update is a single insert or removal: a poisoned lock still
        // holds consistent data.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Resolves once a worker has registered or left since the last call
    /// (one waiter).
    pub async fn workers_changed(&self) {
        self.workers_changed.notified().await;
    }

    /// Workers registered now.
    pub fn worker_count(&self) -> usize {
        self.lock().workers.len()
    }

    /// The agent names of the registered room workers (the empty name for
    /// unnamed ones), each once.
    pub fn agent_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lock()
            .workers
            .values()
            .filter(|w| w.job_type == proto::JobType::JtRoom as i32)
            .map(|w| w.agent_name.clone())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Jobs offered or running now.
    pub fn job_count(&self) -> usize {
        self.lock().jobs.len()
    }

    fn register(
        &self,
        request: &proto::RegisterWorkerRequest,
        outbox: mpsc::Sender<proto::ServerMessage>,
    ) -> String {
        let worker_id = new_sid("AW_");
        // LiveKit's defaults when a worker names none.
        let permissions =
            request
                .allowed_permissions
                .clone()
                .unwrap_or(proto::ParticipantPermission {
                    can_publish: true,
                    can_subscribe: true,
                    can_publish_data: true,
                    can_update_metadata: true,
                    ..Default::default()
                });
        self.lock().workers.insert(
            worker_id.clone(),
            Worker {
                agent_name: request.agent_name.clone(),
                job_type: request.r#type,
                available: true,
                load: 0.0,
                permissions,
                outbox,
            },
        );
        self.workers_changed.notify_one();
        worker_id
    }

    fn unregister(&self, worker_id: &str) {
        let mut registry = self.lock();
        registry.workers.remove(worker_id);
        registry.jobs.retain(|_, job| job.worker_id != worker_id);
        registry.forget_finished_remote_dispatches();
        drop(registry);
        self.workers_changed.notify_one();
    }

    fn update_worker(&self, worker_id: &str, status: &proto::UpdateWorkerStatus) {
        if let Some(worker) = self.lock().workers.get_mut(worker_id) {
            if let Some(status) = status.status {
                worker.available = status == proto::WorkerStatus::WsAvailable as i32;
            }
            if status.load.is_finite() {
                worker.load = status.load.clamp(0.0, 1.0);
            }
        }
    }

    /// Offers a job in `room` to a worker of `agent_name`; the job's ID.
    pub fn dispatch(
        &self,
        room: &RoomInfo,
        agent_name: &str,
        metadata: &str,
        dispatch_id: &str,
    ) -> Result<String, NoWorker> {
        let mut registry = self.lock();
        let worker_id = registry
            .workers
            .iter()
            .filter(|(_, w)| {
                w.agent_name == agent_name
                    && w.available
                    && w.job_type == proto::JobType::JtRoom as i32
            })
            .min_by(|a, b| a.1.load.total_cmp(&b.1.load))
            .map(|(id, _)| id.clone())
            .ok_or_else(|| NoWorker(agent_name.to_string()))?;
        let now = unix_ms();
        let job = proto::Job {
            id: new_sid("AJ_"),
            dispatch_id: dispatch_id.to_string(),
            r#type: proto::JobType::JtRoom as i32,
            room: Some(proto::Room {
                sid: room.sid.clone(),
                name: room.name.clone(),
                metadata: room.metadata.clone(),
                ..Default::default()
            }),
            metadata: metadata.to_string(),
            agent_name: agent_name.to_string(),
            state: Some(proto::JobState {
                status: proto::JobStatus::JsPending as i32,
                started_at: now,
                updated_at: now,
                worker_id: worker_id.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let job_id = job.id.clone();
        let offer = server_message(proto::server_message::Message::Availability(
            proto::AvailabilityRequest {
                job: Some(job.clone()),
                resuming: false,
            },
        ));
        let sent = registry
            .workers
            .get(&worker_id)
            .is_some_and(|w| w.outbox.try_send(offer).is_ok());
        if !sent {
            return Err(NoWorker(agent_name.to_string()));
        }
        registry.jobs.insert(
            job_id.clone(),
            JobEntry {
                job,
                worker_id,
                dispatch_id: dispatch_id.to_string(),
                room: room.name.clone(),
            },
        );
        Ok(job_id)
    }

    /// A worker's answer to a job offer: assigned with a token when it
    /// takes the job, forgotten when it does not.
    fn on_availability(
        &self,
        keys: &ApiKeys,
        worker_id: &str,
        answer: proto::AvailabilityResponse,
    ) {
        let mut registry = self.lock();
        let Some(entry) = registry
            .jobs
            .get(&answer.job_id)
            .filter(|j| j.worker_id == worker_id)
        else {
            debug!(job = %answer.job_id, "availability for a job not offered to this worker");
            return;
        };
        if !answer.available {
            info!(job = %answer.job_id, worker = %worker_id, "agent worker declined the job");
            registry.jobs.remove(&answer.job_id);
            registry.forget_finished_remote_dispatches();
            return;
        }
        let Some(worker) = registry.workers.get(worker_id) else {
            return;
        };
        let mut job = entry.job.clone();
        let room = entry.room.clone();
        let token = match agent_token(keys, &room, &job, &answer, &worker.permissions) {
            Ok(token) => token,
            Err(e) => {
                warn!(job = %job.id, error = %e, "no token for an agent job");
                registry.jobs.remove(&answer.job_id);
                return;
            }
        };
        if let Some(state) = job.state.as_mut() {
            state.status = proto::JobStatus::JsRunning as i32;
            state.participant_identity = answer.participant_identity.clone();
            state.updated_at = unix_ms();
        }
        let assignment = server_message(proto::server_message::Message::Assignment(
            proto::JobAssignment {
                job: Some(job.clone()),
                url: None,
                token,
            },
        ));
        if worker.outbox.try_send(assignment).is_err() {
            warn!(job = %job.id, worker = %worker_id, "agent worker does not take its messages");
            return;
        }
        info!(job = %job.id, worker = %worker_id, room = %room, agent = %job.agent_name, "agent job assigned");
        if let Some(entry) = registry.jobs.get_mut(&answer.job_id) {
            entry.job = job;
        }
    }

    fn on_job_status(&self, worker_id: &str, update: &proto::UpdateJobStatus) {
        let mut registry = self.lock();
        let ended = update.status == proto::JobStatus::JsSuccess as i32
            || update.status == proto::JobStatus::JsFailed as i32;
        if let Some(entry) = registry
            .jobs
            .get_mut(&update.job_id)
            .filter(|j| j.worker_id == worker_id)
        {
            if let Some(state) = entry.job.state.as_mut() {
                state.status = update.status;
                state.error = update.error.clone();
                state.updated_at = unix_ms();
            }
            if ended {
                info!(job = %update.job_id, error = %update.error, "agent job ended");
                registry.jobs.remove(&update.job_id);
                registry.forget_finished_remote_dispatches();
            }
        }
    }

    /// A room closed: its jobs are terminated and its dispatches forgotten.
    fn room_finished(&self, room: &str) {
        let mut registry = self.lock();
        let ended: Vec<(String, String)> = registry
            .jobs
            .iter()
            .filter(|(_, j)| j.room == room)
            .map(|(id, j)| (id.clone(), j.worker_id.clone()))
            .collect();
        for (job_id, worker_id) in ended {
            registry.jobs.remove(&job_id);
            if let Some(worker) = registry.workers.get(&worker_id) {
                let end = server_message(proto::server_message::Message::Termination(
                    proto::JobTermination {
                        job_id: job_id.clone(),
                    },
                ));
                // A worker that is gone or stuck has no job to end.
                let _ = worker.outbox.try_send(end);
            }
            info!(job = %job_id, room, "agent job terminated: the room closed");
        }
        registry.dispatches.retain(|_, d| d.room != room);
    }

    /// Records a dispatch and offers its job; the dispatch as
    /// AgentDispatchService shows it.
    pub fn create_dispatch(
        &self,
        room: &RoomInfo,
        agent_name: &str,
        metadata: &str,
    ) -> proto::AgentDispatch {
        let id = new_sid("AD_");
        let job = match self.dispatch(room, agent_name, metadata, &id) {
            Ok(job_id) => self.lock().jobs.get(&job_id).map(|j| j.job.clone()),
            Err(e) => {
                info!(room = %room.name, error = %e, "agent not dispatched");
                None
            }
        };
        let dispatch = proto::AgentDispatch {
            id: id.clone(),
            agent_name: agent_name.to_string(),
            room: room.name.clone(),
            metadata: metadata.to_string(),
            state: Some(proto::AgentDispatchState {
                jobs: job.into_iter().collect(),
                created_at: unix_ms().saturating_mul(1_000_000),
                deleted_at: 0,
            }),
            ..Default::default()
        };
        self.lock().dispatches.insert(id, dispatch.clone());
        dispatch
    }

    /// A dispatch for a room another replica serves (it has no worker of
    /// the agent; this one does): kept while its job lasts.
    pub fn create_remote_dispatch(
        &self,
        room: &RoomInfo,
        agent_name: &str,
        metadata: &str,
    ) -> proto::AgentDispatch {
        let dispatch = self.create_dispatch(room, agent_name, metadata);
        let mut registry = self.lock();
        registry.remote_dispatches.insert(dispatch.id.clone());
        registry.forget_finished_remote_dispatches();
        dispatch
    }

    /// The dispatches of a room (with their jobs as they are now).
    pub fn dispatches(&self, room: &str) -> Vec<proto::AgentDispatch> {
        let registry = self.lock();
        registry
            .dispatches
            .values()
            .filter(|d| d.room == room)
            .map(|d| {
                let mut d = d.clone();
                let jobs = registry
                    .jobs
                    .values()
                    .filter(|j| j.dispatch_id == d.id)
                    .map(|j| j.job.clone())
                    .collect();
                if let Some(state) = d.state.as_mut() {
                    state.jobs = jobs;
                }
                d
            })
            .collect()
    }

    /// Forgets a dispatch and terminates its jobs; whether it existed.
    pub fn delete_dispatch(&self, room: &str, dispatch_id: &str) -> Option<proto::AgentDispatch> {
        let mut registry = self.lock();
        let dispatch = registry
            .dispatches
            .remove(dispatch_id)
            .filter(|d| d.room == room)?;
        let ended: Vec<(String, String)> = registry
            .jobs
            .iter()
            .filter(|(_, j)| j.dispatch_id == dispatch_id)
            .map(|(id, j)| (id.clone(), j.worker_id.clone()))
            .collect();
        for (job_id, worker_id) in ended {
            registry.jobs.remove(&job_id);
            if let Some(worker) = registry.workers.get(&worker_id) {
                let _ = worker.outbox.try_send(server_message(
                    proto::server_message::Message::Termination(proto::JobTermination { job_id }),
                ));
            }
        }
        Some(dispatch)
    }
}

/// The token a job's process joins its room with.
fn agent_token(
    keys: &ApiKeys,
    room: &str,
    job: &proto::Job,
    answer: &proto::AvailabilityResponse,
    permissions: &proto::ParticipantPermission,
) -> Result<String, String> {
    let (key, secret) = keys.signing_key().ok_or("no API key to sign with")?;
    let identity = if answer.participant_identity.is_empty() {
        format!("agent-{}", job.id)
    } else {
        answer.participant_identity.clone()
    };
    let mut attributes = answer.participant_attributes.clone();
    attributes.insert("lk.agent_name".into(), job.agent_name.clone());
    let grants = VideoGrants {
        room_join: true,
        room: room.to_string(),
        agent: true,
        can_publish: Some(permissions.can_publish),
        can_subscribe: Some(permissions.can_subscribe),
        can_publish_data: Some(permissions.can_publish_data),
        can_update_own_metadata: Some(permissions.can_update_metadata),
        hidden: permissions.hidden,
        ..Default::default()
    };
    AccessToken::with_api_key(key, secret)
        .with_identity(&identity)
        .with_name(&answer.participant_name)
        .with_metadata(&answer.participant_metadata)
        .with_attributes(attributes)
        .with_kind("agent")
        .with_grants(grants)
        .with_ttl(AGENT_TOKEN_TTL)
        .to_jwt()
        .map_err(|e| e.to_string())
}

/// A room served here asks for an agent none of whose workers is
/// registered here: a replica that has one gets the dispatch (its
/// CreateDispatch, marked forwarded, with a token of ours), offers the job
/// to its worker, and the job's process joins the room through any replica
/// (relayed here).
async fn dispatch_elsewhere(
    state: Arc<ApiState>,
    room: String,
    agent: switchboard_rooms::AgentRequest,
) {
    let Some(directory) = state.directory.clone() else {
        return;
    };
    let hosts = directory.agent_hosts(&agent.agent_name).await;
    if hosts.is_empty() {
        return;
    }
    let token = match admin_token(&state.keys, &room) {
        Ok(token) => token,
        Err(e) => {
            warn!(room = %room, error = %e, "no token to dispatch an agent on another replica");
            return;
        }
    };
    let Ok(authorization) = axum::http::HeaderValue::from_str(&format!("Bearer {token}")) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(axum::http::header::AUTHORIZATION, authorization);
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/protobuf"),
    );
    let body = proto::CreateAgentDispatchRequest {
        agent_name: agent.agent_name.clone(),
        room: room.clone(),
        metadata: agent.metadata.clone(),
        ..Default::default()
    }
    .encode_to_vec();
    for host in hosts {
        let sent = crate::replicas::send_order(
            &host,
            "/twirp/livekit.AgentDispatchService/CreateDispatch",
            &headers,
            &body,
            state.max_body_bytes,
            &state.keys,
        )
        .await;
        let dispatched = match sent {
            Ok((status, _, reply)) if status.is_success() => {
                proto::AgentDispatch::decode(reply.as_ref())
                    .ok()
                    .is_some_and(|d| d.state.is_some_and(|s| !s.jobs.is_empty()))
            }
            Ok((status, _, _)) => {
                debug!(replica = %host, %status, "agent dispatch refused by a replica");
                false
            }
            Err(e) => {
                debug!(replica = %host, error = %e, "agent dispatch not delivered to a replica");
                false
            }
        };
        if dispatched {
            info!(room = %room, agent = %agent.agent_name, replica = %host, "agent dispatched through the replica that has its workers");
            return;
        }
    }
    info!(room = %room, agent = %agent.agent_name, "agent not dispatched: no replica has an available worker");
}

/// A short token for one room's administration, signed with the first key.
fn admin_token(keys: &ApiKeys, room: &str) -> Result<String, String> {
    let (key, secret) = keys.signing_key().ok_or("no API key to sign with")?;
    AccessToken::with_api_key(key, secret)
        .with_grants(VideoGrants {
            room_admin: true,
            room: room.to_string(),
            ..Default::default()
        })
        .with_ttl(Duration::from_secs(60))
        .to_jwt()
        .map_err(|e| e.to_string())
}

/// Dispatches agents to rooms as they are created and terminates their
/// jobs when they close.
pub fn spawn_dispatcher(state: Arc<ApiState>) -> tokio::task::JoinHandle<()> {
    let mut lifecycle = state.rooms.lifecycle();
    tokio::spawn(async move {
        loop {
            match lifecycle.recv().await {
                Ok(Lifecycle::RoomStarted(room)) => {
                    // A call's private room stands for a room served
                    // elsewhere, which dispatches the call's agents there.
                    // Without workers here, replicas may have some.
                    if (state.agents.worker_count() == 0 && state.directory.is_none())
                        || switchboard_rooms::shared_room_of(&room.name).is_some()
                    {
                        continue;
                    }
                    // No agents asked for: LiveKit's default, unnamed dispatch.
                    let wanted = if room.agents.is_empty() {
                        vec![switchboard_rooms::AgentRequest::default()]
                    } else {
                        room.agents.clone()
                    };
                    for agent in wanted {
                        let dispatch =
                            state
                                .agents
                                .create_dispatch(&room, &agent.agent_name, &agent.metadata);
                        debug!(room = %room.name, dispatch = %dispatch.id, agent = %agent.agent_name, "room dispatch");
                        let no_job = dispatch.state.as_ref().is_none_or(|s| s.jobs.is_empty());
                        if no_job && state.directory.is_some() {
                            tokio::spawn(dispatch_elsewhere(
                                state.clone(),
                                room.name.clone(),
                                agent,
                            ));
                        }
                    }
                }
                Ok(Lifecycle::RoomFinished(room)) => state.agents.room_finished(&room.name),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    warn!(
                        missed = n,
                        "agent dispatcher fell behind the rooms' lifecycle"
                    );
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

/// The route of the worker protocol.
pub(crate) fn routes() -> Router<Arc<ApiState>> {
    Router::new().route("/agent", get(worker))
}

/// `GET /agent`: a worker connects with a token that has `video.agent`.
async fn worker(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let allowed = matches!(authenticate(&state.keys, &headers, &uri), Ok(Some(c)) if c.video.agent);
    if !allowed {
        return (
            StatusCode::UNAUTHORIZED,
            "a token with the agent grant is required",
        )
            .into_response();
    }
    match upgrade {
        Ok(upgrade) => upgrade
            .max_message_size(state.websocket.max_message_bytes)
            .on_upgrade(move |socket| drive_worker(socket, state)),
        Err(e) => e.into_response(),
    }
}

async fn send(socket: &mut WebSocket, message: &proto::ServerMessage) -> bool {
    socket
        .send(Message::Binary(message.encode_to_vec().into()))
        .await
        .is_ok()
}

fn decode(message: Message) -> Option<proto::WorkerMessage> {
    match message {
        Message::Binary(data) => proto::WorkerMessage::decode(data.as_ref()).ok(),
        _ => None,
    }
}

async fn drive_worker(mut socket: WebSocket, state: Arc<ApiState>) {
    let first = tokio::time::timeout(REGISTER_DEADLINE, socket.recv()).await;
    let request = match first {
        Ok(Some(Ok(message))) => match decode(message).and_then(|m| m.message) {
            Some(proto::worker_message::Message::Register(request)) => request,
            _ => {
                info!("agent worker's first message is not register");
                return;
            }
        },
        _ => return,
    };
    let (outbox, mut inbox) = mpsc::channel(WORKER_QUEUE);
    let worker_id = state.agents.register(&request, outbox);
    info!(worker = %worker_id, agent = %request.agent_name, version = %request.version, "agent worker registered");
    let registered = server_message(proto::server_message::Message::Register(
        proto::RegisterWorkerResponse {
            worker_id: worker_id.clone(),
            server_info: Some(switchboard_webrtc::models::server_info()),
            ..Default::default()
        },
    ));
    if send(&mut socket, &registered).await {
        serve_worker(&mut socket, &state, &worker_id, &mut inbox).await;
    }
    state.agents.unregister(&worker_id);
    info!(worker = %worker_id, "agent worker left");
}

async fn serve_worker(
    socket: &mut WebSocket,
    state: &ApiState,
    worker_id: &str,
    inbox: &mut mpsc::Receiver<proto::ServerMessage>,
) {
    use proto::worker_message::Message as W;
    loop {
        tokio::select! {
            outgoing = inbox.recv() => match outgoing {
                Some(message) => {
                    if !send(socket, &message).await {
                        return;
                    }
                }
                None => return,
            },
            incoming = socket.recv() => {
                let message = match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(message)) => message,
                };
                match decode(message).and_then(|m| m.message) {
                    Some(W::Availability(answer)) => {
                        state.agents.on_availability(&state.keys, worker_id, answer)
                    }
                    Some(W::UpdateWorker(status)) => state.agents.update_worker(worker_id, &status),
                    Some(W::UpdateJob(update)) => state.agents.on_job_status(worker_id, &update),
                    Some(W::Ping(ping)) => {
                        let pong = server_message(proto::server_message::Message::Pong(
                            proto::WorkerPong {
                                last_timestamp: ping.timestamp,
                                timestamp: unix_ms(),
                            },
                        ));
                        if !send(socket, &pong).await {
                            return;
                        }
                    }
                    Some(_) => debug!(worker = %worker_id, "worker message not handled"),
                    None => {}
                }
            }
        }
    }
}

/// The methods of `livekit.AgentDispatchService` served.
pub const DISPATCH_METHODS: [&str; 3] = ["CreateDispatch", "DeleteDispatch", "ListDispatch"];

/// Runs an AgentDispatchService method; `None` if there is no such method.
pub(crate) fn dispatch_service(
    method: &str,
    call: &crate::service::Call<'_>,
) -> Option<Result<Vec<u8>, crate::twirp::TwirpError>> {
    use crate::room_service::require_room_admin;
    use crate::twirp::{Code, TwirpError};
    let state = call.state;
    let result = match method {
        "CreateDispatch" => (|| {
            let request: proto::CreateAgentDispatchRequest = call.request()?;
            require_room_admin(call.claims, &request.room)?;
            if request.room.is_empty() {
                return Err(TwirpError::new(Code::InvalidArgument, "missing room"));
            }
            // As LiveKit does with auto-create on: the room is made, unless
            // another replica that serves it sent the order (its agents'
            // workers are here; the job's process joins it there).
            let dispatch = match state.rooms.room(&request.room) {
                Some(room) => {
                    state
                        .agents
                        .create_dispatch(&room, &request.agent_name, &request.metadata)
                }
                None if call.forwarded => {
                    let room = RoomInfo {
                        sid: String::new(),
                        name: request.room.clone(),
                        metadata: String::new(),
                        num_participants: 0,
                        created_at: SystemTime::now(),
                        max_participants: 0,
                        empty_timeout: Duration::ZERO,
                        agents: Vec::new(),
                    };
                    state.agents.create_remote_dispatch(
                        &room,
                        &request.agent_name,
                        &request.metadata,
                    )
                }
                None => {
                    let room = state
                        .rooms
                        .create_room(&request.room, "")
                        .or_else(|_| {
                            state
                                .rooms
                                .room(&request.room)
                                .ok_or_else(|| TwirpError::internal("room vanished"))
                        })
                        .map_err(|e| TwirpError::new(Code::ResourceExhausted, e.to_string()))?;
                    state
                        .agents
                        .create_dispatch(&room, &request.agent_name, &request.metadata)
                }
            };
            call.reply(&dispatch)
        })(),
        "ListDispatch" => (|| {
            let request: proto::ListAgentDispatchRequest = call.request()?;
            require_room_admin(call.claims, &request.room)?;
            let agent_dispatches = state
                .agents
                .dispatches(&request.room)
                .into_iter()
                .filter(|d| request.dispatch_id.is_empty() || d.id == request.dispatch_id)
                .collect();
            call.reply(&proto::ListAgentDispatchResponse { agent_dispatches })
        })(),
        "DeleteDispatch" => (|| {
            let request: proto::DeleteAgentDispatchRequest = call.request()?;
            require_room_admin(call.claims, &request.room)?;
            match state
                .agents
                .delete_dispatch(&request.room, &request.dispatch_id)
            {
                Some(dispatch) => call.reply(&dispatch),
                None => Err(TwirpError::new(Code::NotFound, "dispatch not found")),
            }
        })(),
        _ => return None,
    };
    Some(result)
}
