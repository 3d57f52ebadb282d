//! Hand-over: a stopping gateway gives each live session to another, which carries it on with
//! `ResumeSession`, so a rolling deploy keeps the shells.
//!
//! The giver ([`drain`], on SIGTERM): freezes the session ([`live::LiveSession::freeze`]: the
//! data channel's state, the output ring, the terminal model's screen, the recording so far),
//! seals that with the cluster's sealing key and leaves it in the `handovers` table for one
//! running peer, then asks the peer (a signed `POST /internal/v1/sessions/{id}/take`) to take
//! it. The taker ([`take`]): opens the state, resumes the SSM session on a new data channel
//! (no byte of output lost or repeated: what the giver had acknowledged travels in the state,
//! the rest the agent sends again), registers the session, makes the row its own and audits
//! `session.handover`. Only then are the giver's browsers told to reconnect (close code 4010):
//! wherever they land, the attach reaches the taker. When no peer takes it, the giver carries
//! the session on itself and it ends as before ("gateway shutdown").

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;

use super::Engine;
use super::live::{self, LiveSession, Restored};
use super::recorder::Carried;
use crate::gateway::cluster::PeerError;
use crate::gateway::cluster::keys::OpenError;
use crate::gateway::store::audit::{self, Client, Event, kind};
use crate::gateway::store::db::now_ms;
use crate::gateway::store::gateways::{self, Handover, Registered};
use crate::gateway::store::sessions as rows;
use crate::gateway::telemetry;
use crate::ssm::channel::ChannelState;
use crate::ssm::client::{self, ClientOptions, ResumeTarget};

/// The version of [`Snapshot`]'s encoding.
pub const SNAPSHOT_VERSION: u32 = 1;
/// The path a taker is asked at.
pub fn take_path(id: &str) -> String {
    format!("/internal/v1/sessions/{id}/take")
}
/// Sessions handed over at once while draining.
const AT_ONCE: usize = 8;

/// Serde for byte fields as base64 text.
pub mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes bytes as base64.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// Reads base64 as bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// Everything that travels in a hand-over, sealed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// Porthole's session id.
    pub id: String,
    /// The owner.
    pub user_id: i64,
    /// The owner's name.
    pub user_name: String,
    /// The node.
    pub target: String,
    /// Its region.
    pub region: String,
    /// Its account (by name).
    pub account: String,
    /// The SSM session.
    pub ssm_session_id: String,
    /// The data channel ([`ChannelState::to_bytes`]).
    #[serde(with = "base64_bytes")]
    pub channel: Vec<u8>,
    /// Offset of the first byte of `ring`.
    pub ring_start: u64,
    /// The latest output.
    #[serde(with = "base64_bytes")]
    pub ring: Vec<u8>,
    /// Bytes that redraw the screen on a fresh model.
    #[serde(with = "base64_bytes")]
    pub screen: Vec<u8>,
    /// Terminal rows.
    pub rows: u16,
    /// Terminal columns.
    pub cols: u16,
    /// Output bytes so far.
    pub bytes_out: u64,
    /// Input bytes so far.
    pub bytes_in: u64,
    /// The exit code, when one came.
    pub exit_code: Option<i32>,
    /// Data-channel resumes so far.
    pub resumes: u32,
    /// Milliseconds the session has run.
    pub elapsed_ms: u64,
    /// Milliseconds since its last input.
    pub idle_ms: u64,
    /// The policy's longest session, in seconds.
    pub max_duration_s: Option<u64>,
    /// The policy's idle timeout, in seconds.
    pub idle_timeout_s: Option<u64>,
    /// The recording so far.
    pub recording: Option<Carried>,
    /// Keystrokes typed as it was frozen, sent by the taker first.
    #[serde(with = "base64_bytes")]
    pub pending_input: Vec<u8>,
    /// When the giver froze it (milliseconds since the epoch).
    pub frozen_at: i64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Snapshot {
    fn of(live: &LiveSession, frozen: live::Frozen) -> Self {
        let r = frozen.restored;
        Self {
            version: SNAPSHOT_VERSION,
            id: live.id.clone(),
            user_id: live.user_id,
            user_name: frozen.user_name,
            target: live.target.clone(),
            region: live.region.clone(),
            account: live.account.clone(),
            ssm_session_id: live.ssm_session_id.clone(),
            channel: frozen.channel.to_bytes(),
            ring_start: r.ring_start,
            ring: r.ring.to_vec(),
            screen: r.screen,
            rows: r.rows,
            cols: r.cols,
            bytes_out: r.bytes_out,
            bytes_in: r.bytes_in,
            exit_code: r.exit_code,
            resumes: r.resumes,
            elapsed_ms: millis(r.elapsed),
            idle_ms: millis(r.idle),
            max_duration_s: frozen.max_duration.map(|d| d.as_secs()),
            idle_timeout_s: frozen.idle_timeout.map(|d| d.as_secs()),
            recording: r.recording,
            pending_input: r.pending_input,
            frozen_at: now_ms(),
        }
    }
}

/// Why a session could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// No hand-over of the session waits for this gateway.
    #[error("no hand-over of session {0} waits for this gateway")]
    NoneWaiting(String),
    /// The state does not open or parse.
    #[error("the hand-over state cannot be read: {0}")]
    Unreadable(String),
    /// This gateway has no clients for the session's account and region.
    #[error("this gateway has no AWS clients for account {account:?} in {region}")]
    NoClients {
        /// The account.
        account: String,
        /// The region.
        region: String,
    },
    /// `ResumeSession` or the new data channel failed.
    #[error("resuming the SSM session failed: {0}")]
    Resume(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] crate::gateway::store::db::DbError),
}

/// Hands every live session to a running peer, at most [`AT_ONCE`] at a time; returns how
/// many were handed over. Hand-overs begin only within `server.drain_seconds` (one that has
/// begun runs to its end, bounded by its own timeouts). Sessions no peer took stay here (the
/// caller ends them). Nothing happens without `cluster.secret` or a running peer.
pub async fn drain(engine: &Arc<Engine>) -> usize {
    if !engine.cluster.is_clustered() {
        return 0;
    }
    let peers = match engine.cluster.running_peers(&engine.db).await {
        Ok(peers) => peers,
        Err(e) => {
            tracing::warn!("no hand-over: cannot list the other gateways: {e}");
            return 0;
        }
    };
    if peers.is_empty() {
        tracing::info!("no other gateway runs: the sessions end here");
        return 0;
    }
    let ids: Vec<String> = engine.live.all().iter().map(|l| l.id.clone()).collect();
    let began = Instant::now();
    let deadline = Duration::from_secs(engine.config.server.drain_seconds);
    let handed = std::sync::atomic::AtomicUsize::new(0);
    futures_util::stream::iter(ids.into_iter().enumerate())
        .for_each_concurrent(AT_ONCE, |(i, id)| {
            let (engine, peers, handed) = (engine.clone(), &peers, &handed);
            async move {
                // Spread over the peers; the next one is tried when one does not take it.
                for k in 0..peers.len() {
                    if began.elapsed() > deadline {
                        tracing::warn!(session = %id, "server.drain_seconds is over: it ends here");
                        return;
                    }
                    // After a failed attempt the session runs here under a new handle.
                    let Some(live) = engine.live.get(&id) else {
                        return;
                    };
                    let peer = &peers[(i + k) % peers.len()];
                    match hand_over(&engine, &live, peer).await {
                        Ok(Outcome::Taken) => {
                            handed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            return;
                        }
                        Ok(Outcome::KeptHere) => {}
                        Err(e) => {
                            tracing::warn!(session = %id, "no hand-over: {e}");
                            return;
                        }
                    }
                }
            }
        })
        .await;
    handed.into_inner()
}

/// How one hand-over went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The peer carries the session on.
    Taken,
    /// The peer did not take it: this gateway carries it on (and ends it as it stops).
    KeptHere,
}

/// Longest a peer may take to take a session over (`ResumeSession` is allowed 10 s, then the
/// new data channel opens).
pub const TAKE_TIMEOUT: Duration = Duration::from_secs(40);
/// Largest sealed state written; a session with more (its recording, mostly) is not handed
/// over but ends here.
pub const MAX_SNAPSHOT_BYTES: usize = 64 << 20;

/// Hands `live` to `peer`; see the module documentation. An error: the session could not be
/// frozen and runs on here untouched.
pub async fn hand_over(
    engine: &Arc<Engine>,
    live: &Arc<LiveSession>,
    peer: &Registered,
) -> Result<Outcome, String> {
    let keys = engine
        .cluster
        .keys()
        .ok_or("this gateway has no cluster.secret")?;
    let me = engine.cluster.id.clone();
    let started = Instant::now();
    // Fresh, so that no sweep takes it for abandoned while it moves.
    {
        let _writes = engine.db.lock_writes().await;
        if let Err(e) = rows::touch(&engine.db, &live.id).await {
            tracing::warn!(session = %live.id, "{e}");
        }
    }
    let (settle, settled) = oneshot::channel();
    let frozen = live.freeze(settled).await?;
    let snapshot = Snapshot::of(live, frozen);
    let plain = serde_json::to_vec(&snapshot).map_err(|e| e.to_string())?;
    let outcome = if plain.len() > MAX_SNAPSHOT_BYTES {
        tracing::warn!(session = %live.id, bytes = plain.len(), "too large to hand over");
        keep_here(engine, snapshot).await
    } else {
        let handover = Handover {
            session_id: live.id.clone(),
            from_gateway: me.clone(),
            to_gateway: peer.id.clone(),
            sealed: keys.seal(&plain),
        };
        drop(plain);
        match gateways::put_handover(&engine.db, &handover).await {
            Err(e) => {
                tracing::warn!(session = %live.id, "hand-over not written: {e}");
                keep_here(engine, snapshot).await
            }
            Ok(()) => ask(engine, peer, snapshot).await,
        }
    };
    if outcome == Outcome::Taken {
        telemetry::handover(telemetry::Direction::Out);
    }
    let _ = settle.send(()); // the browsers are told to reconnect now
    tracing::info!(
        session = %live.id,
        peer = %peer.id,
        ms = started.elapsed().as_millis() as u64,
        "hand-over: {outcome:?}"
    );
    Ok(outcome)
}

/// Asks `peer` to take the session of `snapshot` (written for it already).
async fn ask(engine: &Arc<Engine>, peer: &Registered, snapshot: Snapshot) -> Outcome {
    let id = snapshot.id.clone();
    let me = engine.cluster.id.clone();
    let asked = engine
        .cluster
        .post::<serde_json::Value>(peer, &take_path(&id), "", &json!({}), TAKE_TIMEOUT)
        .await;
    match asked {
        Ok(_) => Outcome::Taken,
        Err(refused @ PeerError::Answered { .. }) => {
            // It answered that it did not take it (refused, or failed before carrying it on).
            tracing::warn!(session = %id, "hand-over refused: {refused}");
            let _ = gateways::take_handover(&engine.db, &id, &me, &peer.id).await;
            keep_here(engine, snapshot).await
        }
        Err(PeerError::Unreachable(e)) => {
            tracing::warn!(session = %id, "no answer to the hand-over: {e}");
            match gateways::take_handover(&engine.db, &id, &me, &peer.id).await {
                // Never taken: carried on here.
                Ok(Some(_)) => keep_here(engine, snapshot).await,
                // Taken: the peer carries it on unless it failed; its row says.
                _ => {
                    if owner_becomes(engine, &id, &peer.id).await {
                        Outcome::Taken
                    } else {
                        tracing::error!(session = %id, peer = %peer.id, "the peer took the hand-over but does not run the session: carried on here");
                        keep_here(engine, snapshot).await
                    }
                }
            }
        }
    }
}

/// Whether session `id`'s row names `peer` as its owner within [`TAKE_TIMEOUT`].
async fn owner_becomes(engine: &Engine, id: &str, peer: &str) -> bool {
    let deadline = Instant::now() + TAKE_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(owner)) = gateways::owner_of(&engine.db, id).await
            && owner.id == peer
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// Carries the session on here after all.
async fn keep_here(engine: &Arc<Engine>, snapshot: Snapshot) -> Outcome {
    let id = snapshot.id.clone();
    if let Err(e) = adopt(engine, snapshot).await {
        tracing::error!(session = %id, "the session could not be carried on here either: {e}");
    }
    Outcome::KeptHere
}

/// Takes the session `id` that gateway `from` left for this one: see the module
/// documentation. Returns how long the session was frozen, in milliseconds. An error means
/// the session is not carried on here (the giver carries it on).
pub async fn take(engine: &Arc<Engine>, id: &str, from: &str) -> Result<i64, TakeError> {
    let keys = engine
        .cluster
        .keys()
        .ok_or_else(|| TakeError::NoneWaiting(id.to_owned()))?;
    let handover = gateways::take_handover(&engine.db, id, from, &engine.cluster.id)
        .await?
        .ok_or_else(|| TakeError::NoneWaiting(id.to_owned()))?;
    let plain = keys
        .open(&handover.sealed)
        .map_err(|e: OpenError| TakeError::Unreadable(e.to_string()))?;
    let mut snapshot: Snapshot =
        serde_json::from_slice(&plain).map_err(|e| TakeError::Unreadable(e.to_string()))?;
    if snapshot.version != SNAPSHOT_VERSION || snapshot.id != id {
        return Err(TakeError::Unreadable(format!(
            "version {} of session {:?}; expected version {SNAPSHOT_VERSION} of {id:?}",
            snapshot.version, snapshot.id
        )));
    }
    let frozen_at = snapshot.frozen_at;
    // The time it spent frozen counts towards its limits (on the two hosts' clocks).
    let gap = u64::try_from(now_ms() - frozen_at).unwrap_or(0);
    snapshot.elapsed_ms = snapshot.elapsed_ms.saturating_add(gap);
    snapshot.idle_ms = snapshot.idle_ms.saturating_add(gap);
    if let Some(r) = &mut snapshot.recording {
        r.elapsed_us = r.elapsed_us.saturating_add(gap.saturating_mul(1000));
    }
    let (user_name, target) = (snapshot.user_name.clone(), snapshot.target.clone());
    adopt(engine, snapshot).await?;
    // Carried on here from now: what follows is recorded, not undone.
    match gateways::move_session(&engine.db, id, from, &engine.cluster.id).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::error!(session = %id, "took over a session whose row {from} no longer owned")
        }
        Err(e) => tracing::error!(session = %id, "recording the new owner failed: {e}"),
    }
    telemetry::handover(telemetry::Direction::In);
    let took_ms = now_ms() - frozen_at;
    let client = Client::default();
    let event = Event::new(kind::SESSION_HANDOVER, &user_name, &client)
        .session(id, &target)
        .detail(json!({"from": from, "to": engine.cluster.id, "frozen_ms": took_ms}));
    if let Err(e) = audit::record(&engine.db, &event).await {
        tracing::error!(session = %id, "audit of the hand-over failed: {e}");
    }
    Ok(took_ms)
}

/// Carries the session of `snapshot` on in this gateway: `ResumeSession` with this gateway's
/// clients for its account and region, a new data channel from the frozen state, and the
/// session's task with its ring, screen, counters, limits and recording.
async fn adopt(engine: &Arc<Engine>, snapshot: Snapshot) -> Result<Arc<LiveSession>, TakeError> {
    let clients = engine
        .clients(&snapshot.account, &snapshot.region)
        .ok_or_else(|| TakeError::NoClients {
            account: snapshot.account.clone(),
            region: snapshot.region.clone(),
        })?
        .clone();
    let state = ChannelState::from_bytes(&snapshot.channel)
        .map_err(|e| TakeError::Unreadable(e.to_string()))?;
    let options = ClientOptions {
        give_up_after: Duration::from_secs(engine.config.sessions.retransmit_give_up_seconds),
        ..ClientOptions::default()
    };
    let target = ResumeTarget {
        session_id: snapshot.ssm_session_id.clone(),
        target: snapshot.target.clone(),
    };
    let handle = client::resume_frozen(state, target, clients.clone(), options)
        .await
        .map_err(|e| TakeError::Resume(e.to_string()))?;
    let restored = Restored {
        ring_start: snapshot.ring_start,
        ring: Bytes::from(snapshot.ring),
        screen: snapshot.screen,
        rows: snapshot.rows,
        cols: snapshot.cols,
        bytes_out: snapshot.bytes_out,
        bytes_in: snapshot.bytes_in,
        exit_code: snapshot.exit_code,
        resumes: snapshot.resumes,
        elapsed: Duration::from_millis(snapshot.elapsed_ms),
        idle: Duration::from_millis(snapshot.idle_ms),
        recording: snapshot.recording,
        pending_input: snapshot.pending_input,
    };
    Ok(live::spawn_with(
        engine.clone(),
        live::Spawn {
            id: snapshot.id,
            user_id: snapshot.user_id,
            user_name: snapshot.user_name,
            target: snapshot.target,
            region: snapshot.region,
            account: snapshot.account,
            ssm_session_id: snapshot.ssm_session_id,
            handle,
            aws: clients,
            max_duration: snapshot.max_duration_s.map(Duration::from_secs),
            idle_timeout: snapshot.idle_timeout_s.map(Duration::from_secs),
        },
        Some(restored),
        None,
    ))
}
