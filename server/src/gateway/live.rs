//! Live sessions: one task per session owns its data-channel client, keeps a bounded
//! scrollback, relays output to the one attached browser and input from it, and writes the
//! session's end (row and audit event) when the data channel closes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::audit::{self, Client, Event, kind};
use super::db::{DbError, now_ms};
use super::state::AppState;
use crate::ssm::channel::CloseReason;
use crate::ssm::client::{ClientEvent, ClientHandle};

/// Messages queued towards one attached browser; when it is this far behind, the session
/// stops reading its data channel (and the agent stops reading the PTY).
pub const ATTACH_QUEUE: usize = 64;
/// Commands queued towards a session task.
const COMMAND_QUEUE: usize = 64;
/// A browser that takes longer than this to accept one message is detached.
const BROWSER_STALL: Duration = Duration::from_secs(10);

/// What a session sends to its attached browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToBrowser {
    /// Terminal output.
    Output(Bytes),
    /// The connection state: `connected`, `reconnecting`.
    Status(&'static str),
    /// The session is over; how.
    Closed(String),
    /// A newer attach took over.
    Replaced,
}

#[derive(Debug)]
enum Command {
    Attach {
        tx: mpsc::Sender<ToBrowser>,
        reply: oneshot::Sender<u64>,
    },
    Detach {
        attach_id: u64,
    },
    Input(Bytes),
    Resize(u32, u32),
    Terminating {
        actor: String,
    },
}

/// A live session as handlers see it.
#[derive(Debug)]
pub struct LiveSession {
    /// Porthole's session id.
    pub id: String,
    /// The owner.
    pub user_id: i64,
    /// The node.
    pub target: String,
    /// The node's region.
    pub region: String,
    /// The SSM session id.
    pub ssm_session_id: String,
    commands: mpsc::Sender<Command>,
}

/// The session has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session has ended")]
pub struct Ended;

impl LiveSession {
    /// Attaches a browser: replaces any earlier one, replays the scrollback, then goes live.
    /// Returns the attach id and the browser's queue.
    pub async fn attach(&self) -> Result<(u64, mpsc::Receiver<ToBrowser>), Ended> {
        let (tx, rx) = mpsc::channel(ATTACH_QUEUE);
        let (reply, id) = oneshot::channel();
        self.commands
            .send(Command::Attach { tx, reply })
            .await
            .map_err(|_| Ended)?;
        Ok((id.await.map_err(|_| Ended)?, rx))
    }

    /// Detaches browser `attach_id` (nothing happens if a newer one replaced it).
    pub async fn detach(&self, attach_id: u64) {
        let _ = self.commands.send(Command::Detach { attach_id }).await; // ended: nothing to do
    }

    /// Keystrokes or pasted bytes.
    pub async fn input(&self, bytes: Bytes) -> Result<(), Ended> {
        self.commands
            .send(Command::Input(bytes))
            .await
            .map_err(|_| Ended)
    }

    /// A terminal size.
    pub async fn resize(&self, cols: u32, rows: u32) -> Result<(), Ended> {
        self.commands
            .send(Command::Resize(cols, rows))
            .await
            .map_err(|_| Ended)
    }

    /// Records who asked for termination, so the end is described as such.
    pub async fn terminating(&self, actor: &str) {
        let _ = self
            .commands
            .send(Command::Terminating {
                actor: actor.to_owned(),
            })
            .await; // ended already: the end row says how
    }
}

/// The live sessions of this gateway.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<HashMap<String, Arc<LiveSession>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LiveSession>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A live session by id.
    pub fn get(&self, id: &str) -> Option<Arc<LiveSession>> {
        self.lock().get(id).cloned()
    }

    /// Every live session.
    pub fn all(&self) -> Vec<Arc<LiveSession>> {
        self.lock().values().cloned().collect()
    }

    /// How many are live.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is live.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn insert(&self, live: Arc<LiveSession>) {
        self.lock().insert(live.id.clone(), live);
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// What a new session task needs.
#[derive(Debug)]
pub struct Spawn {
    /// Porthole's session id.
    pub id: String,
    /// The owner's id.
    pub user_id: i64,
    /// The owner's name.
    pub user_name: String,
    /// The node.
    pub target: String,
    /// The node's region.
    pub region: String,
    /// The SSM session id.
    pub ssm_session_id: String,
    /// The running data-channel client.
    pub handle: ClientHandle,
}

/// Starts the session's task and registers it.
pub fn spawn(state: Arc<AppState>, spawn: Spawn) -> Arc<LiveSession> {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let live = Arc::new(LiveSession {
        id: spawn.id.clone(),
        user_id: spawn.user_id,
        target: spawn.target.clone(),
        region: spawn.region.clone(),
        ssm_session_id: spawn.ssm_session_id.clone(),
        commands: tx,
    });
    state.live.insert(live.clone());
    let scrollback = Scrollback::new(state.config.sessions.scrollback_bytes);
    tokio::spawn(
        Task {
            state,
            spawn,
            commands: rx,
            scrollback,
            attached: None,
            next_attach: 0,
            bytes_out: 0,
            bytes_in: 0,
            exit_code: None,
            terminated_by: None,
            connected: false,
        }
        .run(),
    );
    live
}

/// The last output, bounded, replayed on attach.
#[derive(Debug)]
struct Scrollback {
    pieces: VecDeque<Bytes>,
    len: usize,
    cap: usize,
}

impl Scrollback {
    fn new(cap: usize) -> Self {
        Self {
            pieces: VecDeque::new(),
            len: 0,
            cap,
        }
    }

    fn push(&mut self, bytes: Bytes) {
        self.len += bytes.len();
        self.pieces.push_back(bytes);
        while self.len > self.cap {
            let Some(front) = self.pieces.pop_front() else {
                break;
            };
            self.len -= front.len();
        }
    }
}

struct Attached {
    id: u64,
    tx: mpsc::Sender<ToBrowser>,
}

struct Task {
    state: Arc<AppState>,
    spawn: Spawn,
    commands: mpsc::Receiver<Command>,
    scrollback: Scrollback,
    attached: Option<Attached>,
    next_attach: u64,
    bytes_out: u64,
    bytes_in: u64,
    exit_code: Option<i32>,
    terminated_by: Option<String>,
    connected: bool,
}

impl Task {
    async fn run(mut self) {
        let how = loop {
            tokio::select! {
                event = self.spawn.handle.events.recv() => match event {
                    Some(ClientEvent::Ready(_)) | Some(ClientEvent::Reconnected) => {
                        self.connected = true;
                        self.send_browser(ToBrowser::Status("connected")).await;
                    }
                    Some(ClientEvent::Output(bytes)) => {
                        self.bytes_out += bytes.len() as u64;
                        self.scrollback.push(bytes.clone());
                        self.send_browser(ToBrowser::Output(bytes)).await;
                    }
                    Some(ClientEvent::ExitCode(code)) => self.exit_code = Some(code),
                    Some(ClientEvent::Reconnecting { attempt, error }) => {
                        tracing::info!(session = %self.spawn.id, attempt, "data channel reconnecting: {error}");
                        self.connected = false;
                        self.send_browser(ToBrowser::Status("reconnecting")).await;
                    }
                    Some(ClientEvent::Closed(reason)) => break self.describe(&reason),
                    None => break "the data channel task stopped".to_owned(),
                },
                command = self.commands.recv() => match command {
                    Some(command) => self.command(command).await,
                    // Unreachable while registered; end cleanly if it happens.
                    None => break "the gateway dropped the session".to_owned(),
                },
            }
        };
        self.end(how).await;
    }

    fn describe(&self, reason: &CloseReason) -> String {
        match (&self.terminated_by, reason) {
            (Some(actor), _) => format!("terminated by {actor}"),
            (None, CloseReason::Remote { output }) if output.trim().is_empty() => {
                "the shell exited".to_owned()
            }
            (None, other) => other.to_string(),
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Attach { tx, reply } => {
                if let Some(old) = self.attached.take() {
                    let _ = old.tx.try_send(ToBrowser::Replaced); // it may be gone already
                }
                self.next_attach += 1;
                let id = self.next_attach;
                let replay: Vec<Bytes> = self.scrollback.pieces.iter().cloned().collect();
                let status = if self.connected {
                    "connected"
                } else {
                    "connecting"
                };
                self.attached = Some(Attached { id, tx });
                self.send_browser(ToBrowser::Status(status)).await;
                for piece in replay {
                    self.send_browser(ToBrowser::Output(piece)).await;
                }
                let _ = reply.send(id); // the attacher may have gone; it detaches then
            }
            Command::Detach { attach_id } => {
                if self.attached.as_ref().is_some_and(|a| a.id == attach_id) {
                    self.attached = None;
                }
            }
            Command::Input(bytes) => {
                self.bytes_in += bytes.len() as u64;
                // An error means the session is over; the Closed event follows.
                let _ = self.spawn.handle.input(bytes).await;
            }
            Command::Resize(cols, rows) => {
                let _ = self.spawn.handle.resize(cols, rows).await; // as above
            }
            Command::Terminating { actor } => self.terminated_by = Some(actor),
        }
    }

    /// Sends to the attached browser; one that stalls or has gone is detached.
    async fn send_browser(&mut self, message: ToBrowser) {
        let Some(attached) = &self.attached else {
            return;
        };
        let sent = tokio::time::timeout(BROWSER_STALL, attached.tx.send(message)).await;
        if !matches!(sent, Ok(Ok(()))) {
            self.attached = None;
        }
    }

    async fn end(mut self, how: String) {
        // Recorded first, so the end is in the log before the browser hears of it.
        if let Err(e) = self.record_end(&how).await {
            tracing::error!(session = %self.spawn.id, "recording the end failed: {e}");
        }
        self.state.live.remove(&self.spawn.id);
        self.send_browser(ToBrowser::Closed(how.clone())).await;
        tracing::info!(session = %self.spawn.id, "session ended: {how}");
    }

    async fn record_end(&self, how: &str) -> Result<(), DbError> {
        let s = &self.spawn;
        let mut tx = self.state.db.begin_write().await?;
        sqlx::query(
            "UPDATE sessions SET state = 'ended', ended_at = $1, end_reason = $2, \
             bytes_out = $3, bytes_in = $4 WHERE id = $5",
        )
        .bind(now_ms())
        .bind(how)
        .bind(i64::try_from(self.bytes_out).unwrap_or(i64::MAX))
        .bind(i64::try_from(self.bytes_in).unwrap_or(i64::MAX))
        .bind(&s.id)
        .execute(&mut *tx.tx)
        .await
        .map_err(|e| DbError::new("end session", e))?;
        let client = Client::default();
        audit::append(
            &mut tx.tx,
            &Event::new(kind::SESSION_END, &s.user_name, &client)
                .session(&s.id, &s.target)
                .detail(json!({
                    "how": how,
                    "exit_code": self.exit_code,
                    "bytes_out": self.bytes_out,
                    "bytes_in": self.bytes_in,
                    "ssm_session_id": s.ssm_session_id,
                })),
        )
        .await?;
        tx.commit().await
    }
}
