//! Live sessions: one task per session owns its data-channel client, feeds a terminal model
//! ([`Model`], in a task of its own) and keeps a bounded ring of the latest output, relays
//! output to the one attached browser (with end-to-end flow control) and input from it,
//! enforces the idle, duration and detached limits with warnings, and writes the session's end
//! (row and audit event) when the data channel closes.
//!
//! Output offsets: every output byte of a session has an offset (0, 1, 2, … since the start).
//! A browser that reattaches with `since = N` gets exactly the bytes from N on when the ring
//! still holds them, else a snapshot of the screen; either way it is then told the current
//! offset (`sync`) and acknowledges offsets as it writes them to its screen. The task forwards
//! at most [`FLOW_WINDOW`] bytes beyond the last acknowledgement; beyond that it stops reading
//! the data channel, so the pressure reaches the agent.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::Engine;
use super::indexer::Indexer;
use super::recorder::Recorder;
use super::screen::Model;
use crate::gateway::aws::aws_message;
use crate::gateway::policy::JoinMode;
use crate::gateway::store::audit::{self, Client, Event, kind};
use crate::gateway::store::db::DbError;
use crate::gateway::store::sessions as rows;
use crate::gateway::telemetry::{self, Direction};
use crate::ssm::channel::CloseReason;
use crate::ssm::client::{AwsClients, ClientEvent, ClientHandle};

/// Messages queued towards one attached browser; when it is this far behind, the session
/// stops reading its data channel (and the agent stops reading the PTY).
pub const ATTACH_QUEUE: usize = 64;
/// Messages queued towards one observer; one that falls this far behind is dropped.
pub const OBSERVER_QUEUE: usize = 1024;
/// Commands queued towards a session task.
const COMMAND_QUEUE: usize = 64;
/// How long an ending session waits for its browser to take the last messages.
const BROWSER_STALL: Duration = Duration::from_secs(10);
/// Output bytes forwarded to a browser beyond its last acknowledgement before the session
/// stops reading the data channel.
pub const FLOW_WINDOW: u64 = 256 * 1024;
/// Lines of history the terminal model keeps above the screen.
pub const MODEL_SCROLLBACK_LINES: usize = 2000;
/// Output produced but not yet drawn by the browser beyond which an interrupt (Ctrl-C) flushes
/// it, as a terminal's line discipline flushes its output queue on an interrupt.
pub const INTERRUPT_FLUSH_MIN: u64 = 64 * 1024;
/// After an interrupt flush, the browser is redrawn from the terminal model once output has
/// paused this long…
const FLUSH_QUIET: Duration = Duration::from_millis(100);
/// … or at the latest this long after the interrupt (output that goes on regardless of the
/// interrupt is then streamed again, with flow control).
const FLUSH_MAX: Duration = Duration::from_secs(1);
/// The start of the label of the recording's marker event that names who typed the input
/// after it (`input by alice`).
pub const AUTHOR_MARKER: &str = "input by ";
/// Seconds before a limit ends a session at which the browser is warned.
pub const WARN_AT: [u64; 2] = [60, 10];

/// What a session sends to its attached browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToBrowser {
    /// Terminal output.
    Output(Bytes),
    /// Everything sent so far brings the browser to this output offset.
    Sync(u64),
    /// What follows up to the next `Sync` is a redraw of the screen (after an interrupt
    /// flushed output the browser had not been sent), not output to count.
    Resync,
    /// The connection state: `connected`, `reconnecting`.
    Status(&'static str),
    /// A limit is near.
    Warning {
        /// For a person.
        message: String,
        /// Seconds until the session ends.
        seconds_left: u64,
    },
    /// The session is over; how.
    Closed(String),
    /// A newer attach took over.
    Replaced,
    /// Who is observing the session now (sent to its owner's browser when that changes).
    Observers(Vec<String>),
    /// An observer fell too far behind and was dropped.
    TooSlow,
    /// The session moved to another gateway (this one is stopping): reconnect, to any.
    HandedOver,
    /// Who is attached and how, and who typed last (sent to the owner and to everyone
    /// watching whenever that changes).
    Presence(Presence),
    /// The owner revoked this participant's invitation; why, in words.
    Revoked(String),
    /// The terminal's size, which the owner's page decides (sent to everyone watching when
    /// they join and whenever it changes, so that their terminal takes it rather than fit
    /// their own window).
    Size {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Input from a read-only participant was not sent.
    Refused,
}

/// How someone other than the owner is attached to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joiner {
    /// Observes, read-only, by a role's `observe_others` (audited, shown to the owner).
    Observer,
    /// Was invited, and watches (`read`).
    Reader,
    /// Was invited, and types along (`write`).
    Writer,
}

impl Joiner {
    /// The participant of `mode`.
    pub fn of(mode: JoinMode) -> Self {
        match mode {
            JoinMode::Write => Self::Writer,
            JoinMode::Read => Self::Reader,
        }
    }

    /// `observe`, `read` or `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Observer => "observe",
            Self::Reader => "read",
            Self::Writer => "write",
        }
    }

    /// Whether it is an invited participant (not an observer).
    pub fn is_participant(self) -> bool {
        !matches!(self, Self::Observer)
    }
}

/// Who is attached to a session and who typed last.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Presence {
    /// Each person once, the owner first: their name and `owner`, `write`, `read` or
    /// `observe`.
    pub people: Vec<(String, &'static str)>,
    /// Who typed the latest input (none yet).
    pub last_typed: Option<String>,
}

#[derive(Debug)]
enum Command {
    Attach {
        since: Option<u64>,
        tx: mpsc::Sender<ToBrowser>,
        reply: oneshot::Sender<u64>,
    },
    Detach {
        attach_id: u64,
    },
    Ack {
        attach_id: u64,
        offset: u64,
    },
    Input {
        /// The watcher who typed it; `None`: the owner's browser.
        from: Option<u64>,
        bytes: Bytes,
    },
    Resize(u32, u32),
    Ending {
        how: String,
    },
    ScreenText(oneshot::Sender<String>),
    Observe {
        name: String,
        /// Observer or participant.
        joiner: Joiner,
        /// The most observers the session may have.
        limit: usize,
        tx: mpsc::Sender<ToBrowser>,
        /// The observer's id, or `None` when `limit` observers watch already.
        reply: oneshot::Sender<Option<u64>>,
    },
    Unobserve {
        id: u64,
    },
    /// The invitation of participant `name` was revoked: their sockets close.
    Kick {
        name: String,
        why: String,
    },
    /// Participant `name` was invited again with another mode.
    SetMode {
        name: String,
        joiner: Joiner,
    },
    Stats(oneshot::Sender<Stats>),
    Freeze {
        reply: oneshot::Sender<Result<Frozen, String>>,
        /// Resolved (or dropped) once the hand-over is settled; the browsers are told then.
        settled: oneshot::Receiver<()>,
    },
}

/// A live session stopped for a hand-over: everything another gateway needs to carry it on.
#[derive(Debug)]
pub struct Frozen {
    /// The data channel's state.
    pub channel: crate::ssm::channel::ChannelState,
    /// The rest of the session's state.
    pub restored: Restored,
    /// The policy's limits of the session.
    pub max_duration: Option<Duration>,
    /// Likewise.
    pub idle_timeout: Option<Duration>,
    /// The owner's name.
    pub user_name: String,
}

/// The state of a session carried on from another gateway (or from before a hand-over).
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// Offset of the first byte of `ring`.
    pub ring_start: u64,
    /// The latest output, as the ring held it.
    pub ring: Bytes,
    /// Bytes that redraw the screen (and its history) on a fresh terminal model.
    pub screen: Vec<u8>,
    /// The terminal's size.
    pub rows: u16,
    /// Likewise.
    pub cols: u16,
    /// Output bytes so far.
    pub bytes_out: u64,
    /// Input bytes so far.
    pub bytes_in: u64,
    /// The exit code, when one came.
    pub exit_code: Option<i32>,
    /// Data-channel resumes so far.
    pub resumes: u32,
    /// How long the session has run.
    pub elapsed: Duration,
    /// How long since its last input.
    pub idle: Duration,
    /// Its recording so far.
    pub recording: Option<super::recorder::Carried>,
    /// Keystrokes typed as it was frozen, for the next gateway to send.
    pub pending_input: Vec<u8>,
}

/// A running session's counters, for the live-sessions page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Stats {
    /// Output bytes so far.
    pub bytes_out: u64,
    /// Input bytes so far.
    pub bytes_in: u64,
    /// Whether its owner's browser is attached.
    pub attached: bool,
    /// Who observes it.
    pub observers: Vec<String>,
    /// Who of the people invited into it is attached.
    #[serde(default)]
    pub participants: Vec<String>,
    /// Whether the data channel is up (not reconnecting).
    pub connected: bool,
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
    /// The node's account (by name; empty for the implicit one).
    pub account: String,
    /// The SSM session id.
    pub ssm_session_id: String,
    /// Its AWS clients: SSM signed as the person when a role was assumed for them.
    pub aws: AwsClients,
    /// Set when it is being handed to another gateway: an attached browser is then told to
    /// reconnect (4010), not that it ended.
    pub moved: AtomicBool,
    /// Set while the session is compacted (quiet: its ring compressed, its terminal model
    /// reduced to bytes); cleared by the next output, input or attach.
    compacted: AtomicBool,
    commands: mpsc::Sender<Command>,
}

/// The session has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session has ended")]
pub struct Ended;

/// Why an observer was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ObserveError {
    /// The session has ended.
    #[error("the session has ended")]
    Ended,
    /// As many observers as allowed watch already.
    #[error("the session has as many observers as allowed")]
    Full,
}

impl LiveSession {
    /// Attaches a browser: replaces any earlier one, sends the output from offset `since`
    /// (or a snapshot of the screen when that is not held or not given) and the current
    /// offset, then goes live. Returns the attach id and the browser's queue.
    pub async fn attach(
        &self,
        since: Option<u64>,
    ) -> Result<(u64, mpsc::Receiver<ToBrowser>), Ended> {
        let (tx, rx) = mpsc::channel(ATTACH_QUEUE);
        let (reply, id) = oneshot::channel();
        self.commands
            .send(Command::Attach { since, tx, reply })
            .await
            .map_err(|_| Ended)?;
        Ok((id.await.map_err(|_| Ended)?, rx))
    }

    /// Adds a read-only observer named `name`, unless `limit` observers watch already: it
    /// gets a snapshot of the screen, then the live output (never holding the session back: an
    /// observer that falls behind by more than its queue is dropped). The owner's browser is
    /// told who observes.
    pub async fn observe(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<(u64, mpsc::Receiver<ToBrowser>), ObserveError> {
        self.watch(name, Joiner::Observer, limit).await
    }

    /// Adds an invited participant named `name` (`Reader` or `Writer`): like an observer, it
    /// gets the screen, then the live output (dropped when it falls behind by more than its
    /// queue). An earlier socket of the same participant is replaced ([`ToBrowser::Replaced`]);
    /// the owner is never. Everyone attached is told who is present.
    pub async fn join(
        &self,
        name: &str,
        joiner: Joiner,
    ) -> Result<(u64, mpsc::Receiver<ToBrowser>), ObserveError> {
        self.watch(name, joiner, usize::MAX).await
    }

    async fn watch(
        &self,
        name: &str,
        joiner: Joiner,
        limit: usize,
    ) -> Result<(u64, mpsc::Receiver<ToBrowser>), ObserveError> {
        let (tx, rx) = mpsc::channel(OBSERVER_QUEUE);
        let (reply, id) = oneshot::channel();
        self.commands
            .send(Command::Observe {
                name: name.to_owned(),
                joiner,
                limit,
                tx,
                reply,
            })
            .await
            .map_err(|_| ObserveError::Ended)?;
        match id.await {
            Ok(Some(id)) => Ok((id, rx)),
            Ok(None) => Err(ObserveError::Full),
            Err(_) => Err(ObserveError::Ended),
        }
    }

    /// Removes observer (or participant) `id`.
    pub async fn unobserve(&self, id: u64) {
        let _ = self.commands.send(Command::Unobserve { id }).await; // ended: moot
    }

    /// Closes the sockets of participant `name` (their invitation was revoked), telling them
    /// `why`.
    pub async fn kick(&self, name: &str, why: &str) {
        let kick = Command::Kick {
            name: name.to_owned(),
            why: why.to_owned(),
        };
        let _ = self.commands.send(kick).await; // ended: nothing to close
    }

    /// Participant `name` now takes part with `mode` (they were invited again).
    pub async fn set_mode(&self, name: &str, mode: JoinMode) {
        let change = Command::SetMode {
            name: name.to_owned(),
            joiner: Joiner::of(mode),
        };
        let _ = self.commands.send(change).await; // ended: moot
    }

    /// Keystrokes of participant `from` (a watcher id from [`LiveSession::join`]): sent when
    /// they may type (`Writer`), refused ([`ToBrowser::Refused`]) when they only watch.
    pub async fn input_from(&self, from: u64, bytes: Bytes) -> Result<(), Ended> {
        self.commands
            .send(Command::Input {
                from: Some(from),
                bytes,
            })
            .await
            .map_err(|_| Ended)
    }

    /// The text on the session's screen now (the terminal model's view).
    pub async fn screen_text(&self) -> Result<String, Ended> {
        let (reply, text) = oneshot::channel();
        self.commands
            .send(Command::ScreenText(reply))
            .await
            .map_err(|_| Ended)?;
        text.await.map_err(|_| Ended)
    }

    /// The session's counters now.
    pub async fn stats(&self) -> Result<Stats, Ended> {
        let (reply, stats) = oneshot::channel();
        self.commands
            .send(Command::Stats(reply))
            .await
            .map_err(|_| Ended)?;
        stats.await.map_err(|_| Ended)
    }

    /// The browser `attach_id` has written output up to `offset` to its screen.
    pub async fn ack(&self, attach_id: u64, offset: u64) {
        let _ = self.commands.send(Command::Ack { attach_id, offset }).await; // ended: moot
    }

    /// Detaches browser `attach_id` (nothing happens if a newer one replaced it).
    pub async fn detach(&self, attach_id: u64) {
        let _ = self.commands.send(Command::Detach { attach_id }).await; // ended: nothing to do
    }

    /// Keystrokes or pasted bytes of the owner's browser.
    pub async fn input(&self, bytes: Bytes) -> Result<(), Ended> {
        self.commands
            .send(Command::Input { from: None, bytes })
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

    /// Stops the session for a hand-over: its data channel is frozen (the agent keeps the shell
    /// and waits for a resume), the output it had is taken in, and its state returned; it
    /// leaves the registry. Its browsers are told to reconnect ([`ToBrowser::HandedOver`])
    /// once `settled` resolves or is dropped. An error (the channel could not be frozen)
    /// leaves the session running.
    pub async fn freeze(&self, settled: oneshot::Receiver<()>) -> Result<Frozen, String> {
        let (reply, frozen) = oneshot::channel();
        self.commands
            .send(Command::Freeze { reply, settled })
            .await
            .map_err(|_| "the session has ended".to_owned())?;
        frozen
            .await
            .map_err(|_| "the session has ended".to_owned())?
    }

    /// Whether the session is compacted now (see `sessions.compact_after_seconds`).
    pub fn is_compacted(&self) -> bool {
        self.compacted.load(Ordering::SeqCst)
    }

    /// Whether it is being (or was) handed to another gateway.
    pub fn is_moved(&self) -> bool {
        self.moved.load(Ordering::SeqCst)
    }

    /// Records how the session is being ended ("terminated by alice", "gateway shutdown"),
    /// so its end is described as such.
    pub async fn ending(&self, how: &str) {
        let _ = self
            .commands
            .send(Command::Ending {
                how: how.to_owned(),
            })
            .await; // ended already: the end row says how
    }
}

/// Whose credentials sign a `TerminateSession` first (the other's are tried when they fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// The gateway's own: limits, revocations, shutdown.
    Gateway,
    /// The session's (the person's, when a role was assumed for them): a person ending their
    /// own session, so that CloudTrail names them.
    Session,
}

impl LiveSession {
    /// `TerminateSession` of this session at SSM, signed first as `first` says, then the other
    /// way when that fails; AWS's words when both failed.
    pub async fn terminate_at_ssm(
        &self,
        engine: &Engine,
        first: Credentials,
    ) -> Result<(), String> {
        let live = self;
        let own = engine.clients(&live.account, &live.region);
        let order: [Option<&AwsClients>; 2] = match first {
            Credentials::Gateway => [own, Some(&live.aws)],
            Credentials::Session => [Some(&live.aws), own],
        };
        let mut last = String::from("no AWS clients for the session's region");
        for clients in order.into_iter().flatten() {
            match clients
                .ssm
                .terminate_session()
                .session_id(&live.ssm_session_id)
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => {
                    last = aws_message(&e);
                    tracing::warn!(session = %live.id, "TerminateSession failed: {last}");
                }
            }
        }
        Err(last)
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

    fn remove(&self, id: &str, live: &Arc<LiveSession>) {
        let mut map = self.lock();
        // Only this session: after a hand-over back to this gateway the id may be another's.
        if map.get(id).is_some_and(|held| Arc::ptr_eq(held, live)) {
            map.remove(id);
        }
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
    /// The node's account (by name; empty for the implicit one).
    pub account: String,
    /// The SSM session id.
    pub ssm_session_id: String,
    /// The running data-channel client.
    pub handle: ClientHandle,
    /// The session's AWS clients (as the person when a role was assumed for them).
    pub aws: AwsClients,
    /// The policy's longest session for this one (the tighter of it and `[sessions]` holds).
    pub max_duration: Option<Duration>,
    /// The policy's idle timeout for this one (likewise).
    pub idle_timeout: Option<Duration>,
}

/// Starts the session's task and registers it.
pub fn spawn(state: Arc<Engine>, spawn: Spawn) -> Arc<LiveSession> {
    spawn_with(state, spawn, None, None)
}

/// [`spawn`], for a session whose `StartSession` was called at `asked`: the time from then
/// until its data channel is ready is measured ([`telemetry::session_ready`]).
pub fn spawn_timed(state: Arc<Engine>, spawn: Spawn, asked: Option<Instant>) -> Arc<LiveSession> {
    spawn_with(state, spawn, None, asked)
}

/// [`spawn`] for a session carried on from another gateway, with its state.
pub fn spawn_with(
    state: Arc<Engine>,
    spawn: Spawn,
    restored: Option<Restored>,
    asked: Option<Instant>,
) -> Arc<LiveSession> {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let live = Arc::new(LiveSession {
        id: spawn.id.clone(),
        user_id: spawn.user_id,
        target: spawn.target.clone(),
        region: spawn.region.clone(),
        account: spawn.account.clone(),
        ssm_session_id: spawn.ssm_session_id.clone(),
        aws: spawn.aws.clone(),
        moved: AtomicBool::new(false),
        compacted: AtomicBool::new(false),
        commands: tx,
    });
    state.live.insert(live.clone());
    let mut ring = Ring::new(state.config.sessions.scrollback_bytes);
    let state_compact_after = state.config.sessions.compact_after_seconds;
    let limits = Limits::from_config(&state.config.sessions)
        .tightened(spawn.max_duration, spawn.idle_timeout);
    let now = Instant::now();
    let title = format!("{} on {}", spawn.user_name, spawn.target);
    let dir = &state.config.recordings.dir;
    let restored = restored.unwrap_or_else(|| Restored {
        rows: 24,
        cols: 80,
        ..Restored::default()
    });
    let carried = restored.recording.clone();
    let resumed = carried.is_some();
    let recorder = match carried {
        Some(carried) => Recorder::resume(dir, &spawn.id, carried),
        None => Recorder::create(
            dir,
            &spawn.id,
            80,
            24,
            &title,
            state.config.recordings.input,
        ),
    };
    let recorder = match recorder {
        Ok(r) => {
            let index = if resumed {
                Indexer::spawn_continuing(state.db.clone(), &spawn.id)
            } else {
                Indexer::spawn(state.db.clone(), &spawn.id)
            };
            Some(r.with_index(index))
        }
        Err(e) => {
            tracing::error!(session = %spawn.id, "cannot record the session: {e}");
            None
        }
    };
    ring.start = restored.ring_start;
    if !restored.ring.is_empty() {
        ring.push(&restored.ring);
    }
    let model = Model::spawn(restored.rows, restored.cols, MODEL_SCROLLBACK_LINES);
    let task = Task {
        state,
        spawn,
        commands: rx,
        ring,
        model,
        size: (restored.rows, restored.cols),
        attached: None,
        next_attach: 0,
        bytes_out: restored.bytes_out,
        bytes_in: restored.bytes_in,
        exit_code: restored.exit_code,
        ending: None,
        connected: false,
        resumes: restored.resumes,
        limits,
        started: now,
        carried: restored.elapsed,
        last_input: now,
        idle_carried: restored.idle,
        pending_end: None,
        detached_since: Some(now),
        warned: Vec::new(),
        recorder,
        observers: Vec::new(),
        last_author: None,
        handed_over: false,
        asked,
        live: live.clone(),
        compact_after: Duration::from_secs(state_compact_after),
        quiet_since: now,
        compacted: false,
    };
    let screen = restored.screen;
    let pending_input = restored.pending_input;
    tokio::spawn(async move {
        if !screen.is_empty() {
            task.model.output(Bytes::from(screen)).await;
        }
        if !pending_input.is_empty() {
            // An error: the session is over; the Closed event follows.
            let _ = task.spawn.handle.input(Bytes::from(pending_input)).await;
        }
        task.run().await;
    });
    live
}

/// Output is kept in chunks of this size, copied out of the pieces the data channel hands
/// over: a piece is a slice of the socket's read buffer, and holding it would hold that whole
/// buffer (up to [`crate::ssm::client::READ_BUFFER`] each, however little of it is output).
const RING_CHUNK: usize = 16 * 1024;

/// The latest output, bounded, with its offsets: what a reattaching browser missed.
///
/// Compacted ([`Ring::compact`]) when the session is quiet: the chunks are compressed into one
/// LZ4 block; the next use thaws them.
#[derive(Debug)]
struct Ring {
    /// Full chunks, oldest first.
    pieces: VecDeque<Bytes>,
    /// The chunk being filled (capacity [`RING_CHUNK`] once used, none when empty).
    tail: Vec<u8>,
    /// Everything held, compressed, while compacted (`pieces` and `tail` are empty then).
    frozen: Option<Vec<u8>>,
    /// Offset of the first byte held.
    start: u64,
    len: usize,
    cap: usize,
}

impl Ring {
    fn new(cap: usize) -> Self {
        Self {
            pieces: VecDeque::new(),
            tail: Vec::new(),
            frozen: None,
            start: 0,
            len: 0,
            cap,
        }
    }

    fn end(&self) -> u64 {
        self.start + self.len as u64
    }

    fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.thaw();
        if self.tail.len() + bytes.len() > RING_CHUNK {
            self.seal();
        }
        if bytes.len() >= RING_CHUNK {
            self.pieces.push_back(Bytes::copy_from_slice(bytes));
        } else {
            if self.tail.capacity() == 0 {
                self.tail.reserve_exact(RING_CHUNK);
            }
            self.tail.extend_from_slice(bytes);
        }
        self.len += bytes.len();
        while self.len > self.cap {
            let Some(front) = self.pieces.pop_front() else {
                break;
            };
            self.len -= front.len();
            self.start += front.len() as u64;
        }
    }

    /// Moves the chunk being filled to the full ones.
    fn seal(&mut self) {
        if !self.tail.is_empty() {
            self.pieces
                .push_back(Bytes::from(std::mem::take(&mut self.tail)));
        }
    }

    /// Everything held, in chunks (the last one copied out of the chunk being filled).
    fn chunks(&mut self) -> Vec<Bytes> {
        self.thaw();
        let mut out: Vec<Bytes> = self.pieces.iter().cloned().collect();
        if !self.tail.is_empty() {
            out.push(Bytes::copy_from_slice(&self.tail));
        }
        out
    }

    /// Everything held, from the first line start when earlier bytes were dropped (so the
    /// replay that makes a snapshot's history does not begin in the middle of a line or of
    /// an escape sequence).
    fn latest(&mut self) -> Vec<Bytes> {
        let mut pieces = self.chunks();
        if self.start > 0 {
            while let Some(first) = pieces.first_mut() {
                match first.iter().position(|b| *b == b'\n') {
                    Some(at) => {
                        *first = first.slice(at + 1..);
                        break;
                    }
                    None => {
                        pieces.remove(0);
                    }
                }
            }
        }
        pieces
    }

    /// The bytes from offset `since` to the end, if all of them are held.
    fn since(&mut self, since: u64) -> Option<Vec<Bytes>> {
        if since < self.start || since > self.end() {
            return None;
        }
        let mut skip = since - self.start;
        let mut out = Vec::new();
        for piece in self.chunks() {
            let n = piece.len() as u64;
            if skip >= n {
                skip -= n;
                continue;
            }
            out.push(piece.slice(usize::try_from(skip).unwrap_or(0)..));
            skip = 0;
        }
        Some(out)
    }

    /// Compresses everything held into one block and lets go of the chunks.
    fn compact(&mut self) {
        if self.frozen.is_some() || self.len == 0 {
            return;
        }
        let mut all = Vec::with_capacity(self.len);
        for piece in self.pieces.drain(..) {
            all.extend_from_slice(&piece);
        }
        all.extend_from_slice(&self.tail);
        self.tail = Vec::new();
        self.pieces = VecDeque::new();
        let mut frozen = lz4_flex::block::compress_prepend_size(&all);
        frozen.shrink_to_fit();
        self.frozen = Some(frozen);
    }

    /// Whether the output held is compressed.
    #[cfg(test)]
    fn is_compacted(&self) -> bool {
        self.frozen.is_some()
    }

    /// Undoes [`Ring::compact`]: the bytes in chunks again, as before.
    fn thaw(&mut self) {
        let Some(frozen) = self.frozen.take() else {
            return;
        };
        // The block was made here from `len` bytes; one that does not decompress (it cannot
        // happen) leaves the ring empty at the same end offset rather than wrong.
        match lz4_flex::block::decompress_size_prepended(&frozen) {
            Ok(all) if all.len() == self.len => {
                let all = Bytes::from(all);
                let mut at = 0;
                while at < all.len() {
                    let to = (at + RING_CHUNK).min(all.len());
                    self.pieces.push_back(all.slice(at..to));
                    at = to;
                }
            }
            other => {
                let what = other.map(|all| format!("{} bytes, not {}", all.len(), self.len));
                tracing::error!("a compacted output ring did not decompress: {what:?}");
                self.start += self.len as u64;
                self.len = 0;
            }
        }
    }
}

/// The time limits of a session.
#[derive(Debug, Clone, Copy)]
struct Limits {
    idle: Option<Duration>,
    max: Option<Duration>,
    detached: Option<Duration>,
}

impl Limits {
    /// The tighter of these and the policy's limits.
    fn tightened(self, max: Option<Duration>, idle: Option<Duration>) -> Self {
        let tighter = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self {
            max: tighter(self.max, max),
            idle: tighter(self.idle, idle),
            ..self
        }
    }

    fn from_config(c: &crate::gateway::config::SessionsConfig) -> Self {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Self {
            idle: secs(c.idle_timeout_seconds),
            max: secs(c.max_duration_seconds),
            detached: secs(c.detached_grace_seconds),
        }
    }
}

/// "20 minutes", "90 seconds", "12 hours".
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 3600 == 0 && s >= 3600 => {
            format!("{} hour{}", s / 3600, if s == 3600 { "" } else { "s" })
        }
        s if s % 60 == 0 && s >= 60 => {
            format!("{} minute{}", s / 60, if s == 60 { "" } else { "s" })
        }
        s => format!("{s} second{}", if s == 1 { "" } else { "s" }),
    }
}

/// Someone other than the owner's browser: an observer or an invited participant.
struct Watcher {
    id: u64,
    name: String,
    joiner: Joiner,
    tx: mpsc::Sender<ToBrowser>,
}

struct Attached {
    id: u64,
    tx: mpsc::Sender<ToBrowser>,
    /// Output offset forwarded to this browser.
    sent: u64,
    /// Output offset it has acknowledged.
    acked: u64,
    /// Messages waiting for room in the browser's queue, oldest first. Bounded: output is
    /// read from the data channel only while `sent - acked` is within [`FLOW_WINDOW`].
    pending: VecDeque<ToBrowser>,
    /// An interrupt flush in progress: output is not forwarded until the screen is redrawn.
    flush: Option<Flush>,
}

/// An interrupt flush: when it started and when output last arrived.
#[derive(Debug, Clone, Copy)]
struct Flush {
    started: Instant,
    last_output: Instant,
}

impl Flush {
    fn deadline(&self) -> Instant {
        (self.last_output + FLUSH_QUIET).min(self.started + FLUSH_MAX)
    }
}

struct Task {
    state: Arc<Engine>,
    spawn: Spawn,
    commands: mpsc::Receiver<Command>,
    ring: Ring,
    /// The terminal model, in a task of its own.
    model: Model,
    /// The terminal's size (rows, columns).
    size: (u16, u16),
    /// Set once the session has been handed to another gateway: the task ends without
    /// recording an end.
    handed_over: bool,
    /// This session in the registry.
    live: Arc<LiveSession>,
    attached: Option<Attached>,
    next_attach: u64,
    bytes_out: u64,
    bytes_in: u64,
    exit_code: Option<i32>,
    /// How the session is being ended, when the gateway or a person ends it.
    ending: Option<String>,
    connected: bool,
    resumes: u32,
    limits: Limits,
    started: Instant,
    /// How long the session ran before this gateway carried it on.
    carried: Duration,
    last_input: Instant,
    /// How long it had been idle when this gateway carried it on (until the first input).
    idle_carried: Duration,
    /// The data channel closed while the session was being frozen: it ends as usual.
    pending_end: Option<String>,
    detached_since: Option<Instant>,
    /// Warnings already given, as (limit name, seconds before).
    warned: Vec<(&'static str, u64)>,
    /// The session's recording (none when the file could not be created; that is logged).
    recorder: Option<Recorder>,
    /// Observers and invited participants, in the order they came.
    observers: Vec<Watcher>,
    /// Who typed the latest input (recorded as a marker whenever it changes).
    last_author: Option<String>,
    /// When `StartSession` was called, until the data channel is ready.
    asked: Option<Instant>,
    /// A session quiet for this long compacts itself.
    compact_after: Duration,
    /// The last output, input, resize, attach or question about the screen.
    quiet_since: Instant,
    /// Compacted since the session went quiet (the ring and the model thaw on their next use).
    compacted: bool,
}

impl Task {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let how = loop {
            let may_read = self.may_read();
            let flush = self.flush_sender();
            let redraw_at = self
                .attached
                .as_ref()
                .and_then(|a| a.flush)
                .map(|f| f.deadline());
            tokio::select! {
                _ = tokio::time::sleep_until(redraw_at.unwrap_or_else(Instant::now)), if redraw_at.is_some() => {
                    self.redraw().await;
                }
                permit = async { flush?.reserve_owned().await.ok() }, if flush.is_some() => {
                    self.flush_one(permit);
                }
                event = self.spawn.handle.events.recv(), if may_read => match event {
                    Some(event) => {
                        if let Some(how) = self.client_event(event).await {
                            break how;
                        }
                    }
                    None => break "the data channel task stopped".to_owned(),
                },
                command = self.commands.recv() => match command {
                    Some(command) => {
                        self.command(command).await;
                        if self.handed_over {
                            return;
                        }
                        if let Some(how) = self.pending_end.take() {
                            break how;
                        }
                    }
                    // Unreachable while registered; end cleanly if it happens.
                    None => break "the gateway dropped the session".to_owned(),
                },
                _ = tick.tick() => {
                    if let Some(r) = &mut self.recorder {
                        r.flush();
                    }
                    self.check_limits().await;
                    self.compact_if_quiet().await;
                }
            }
        };
        // Boxed, like every path a session takes once or rarely (see `check_limits`): a
        // future awaited inline is part of the task's state for the task's whole life, and
        // the end's database writes are the largest (docs/performance.md, "Idle memory").
        Box::pin(self.end(how)).await;
    }

    /// Handles an event of the data channel; `Some(how)` when the session is over.
    async fn client_event(&mut self, event: ClientEvent) -> Option<String> {
        match event {
            ClientEvent::Ready(_) | ClientEvent::Reconnected => {
                if let Some(asked) = self.asked.take() {
                    telemetry::session_ready(asked.elapsed());
                }
                self.connected = true;
                self.send_observers(ToBrowser::Status("connected"));
                self.send_browser(ToBrowser::Status("connected")).await;
            }
            ClientEvent::Output(bytes) => self.output(bytes).await,
            ClientEvent::ExitCode(code) => self.exit_code = Some(code),
            ClientEvent::Reconnecting { attempt, error } => {
                tracing::info!(session = %self.spawn.id, attempt, "data channel reconnecting: {error}");
                if self.connected {
                    self.resumes += 1;
                    telemetry::ssm_resumed();
                }
                self.connected = false;
                self.send_browser(ToBrowser::Status("reconnecting")).await;
            }
            ClientEvent::Closed(reason) => return Some(self.describe(&reason)),
        }
        None
    }

    /// Freezes the session for a hand-over (see [`LiveSession::freeze`]).
    async fn freeze(
        &mut self,
        reply: oneshot::Sender<Result<Frozen, String>>,
        settled: oneshot::Receiver<()>,
    ) {
        self.live.moved.store(true, Ordering::SeqCst);
        let frozen = match self.spawn.handle.freeze().await {
            Ok(frozen) => frozen,
            Err(e) => {
                self.live.moved.store(false, Ordering::SeqCst);
                let _ = reply.send(Err(e.to_string())); // the asker may have gone
                return;
            }
        };
        // Everything the agent was told we have: what the task queued, then what it held.
        let mut closed = None;
        while let Some(event) = self.spawn.handle.events.recv().await {
            closed = closed.or(self.client_event(event).await);
        }
        for event in frozen.undelivered {
            closed = closed.or(self.client_event(event).await);
        }
        if let Some(how) = closed {
            // It ended as it was being frozen: nothing to hand over; it ends as usual.
            self.live.moved.store(false, Ordering::SeqCst);
            let _ = reply.send(Err(format!("the session ended meanwhile: {how}")));
            self.pending_end = Some(how);
            return;
        }
        // Keystrokes that were queued behind the freeze travel with the session.
        let mut pending_input = Vec::new();
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Input { bytes, .. } = command {
                self.bytes_in += bytes.len() as u64;
                pending_input.extend_from_slice(&bytes);
            }
            // Anything else waits for an answer that now comes from the next gateway.
        }
        self.handed_over = true;
        self.state.live.remove(&self.spawn.id, &self.live);
        let screen = self.model.snapshot(self.ring.latest()).await;
        let ring = self.ring.since(self.ring.start).unwrap_or_default();
        let ring = Bytes::from(ring.concat());
        let recording = match self.recorder.take().map(Recorder::freeze) {
            Some(Ok(carried)) => Some(carried),
            Some(Err(e)) => {
                tracing::error!(session = %self.spawn.id, "the recording cannot be handed over: {e}");
                None
            }
            None => None,
        };
        let restored = Restored {
            ring_start: self.ring.start,
            ring,
            screen,
            rows: self.size.0,
            cols: self.size.1,
            bytes_out: self.bytes_out,
            bytes_in: self.bytes_in,
            exit_code: self.exit_code,
            resumes: self.resumes,
            elapsed: self.age(),
            idle: self.idle_age(),
            pending_input,
            recording,
        };
        let handed = Frozen {
            channel: frozen.state,
            restored,
            max_duration: self.spawn.max_duration,
            idle_timeout: self.spawn.idle_timeout,
            user_name: self.spawn.user_name.clone(),
        };
        if reply.send(Ok(handed)).is_err() {
            tracing::error!(session = %self.spawn.id, "a frozen session was not taken");
        }
        // Bounded: the hand-over settles within its own timeouts.
        let _ = tokio::time::timeout(Duration::from_secs(60), settled).await;
        self.send_observers(ToBrowser::HandedOver);
        self.send_browser(ToBrowser::HandedOver).await;
        if let Some(a) = self.attached.take() {
            let _ = tokio::time::timeout(BROWSER_STALL, async move {
                for message in a.pending {
                    if a.tx.send(message).await.is_err() {
                        break;
                    }
                }
            })
            .await;
        }
    }

    /// Whether the data channel may be read: no browser, or one within its window, or an
    /// interrupt flush in progress.
    fn may_read(&self) -> bool {
        self.attached
            .as_ref()
            .is_none_or(|a| a.flush.is_some() || a.sent.saturating_sub(a.acked) < FLOW_WINDOW)
    }

    /// An interrupt typed while the browser is far behind: the output it has not been sent
    /// is dropped (the ring, the model and the recording keep it), output is read on without
    /// being forwarded until it pauses, then the browser's screen is redrawn from the model.
    /// Without this, everything queued between the PTY and the page (the window, the
    /// data-channel client's queue, the agent's buffers: a megabyte or more) would have to
    /// be drawn before the prompt came back.
    fn interrupted(&mut self) {
        let bytes_out = self.bytes_out;
        let Some(a) = self.attached.as_mut() else {
            return;
        };
        if a.flush.is_some() || bytes_out.saturating_sub(a.acked) < INTERRUPT_FLUSH_MIN {
            return;
        }
        a.pending.retain(|m| !matches!(m, ToBrowser::Output(_)));
        let now = Instant::now();
        a.flush = Some(Flush {
            started: now,
            last_output: now,
        });
        tracing::debug!(session = %self.spawn.id, behind = bytes_out - a.acked, "interrupt: flushing output");
    }

    /// Ends an interrupt flush: the browser gets the screen as the model has it, then the
    /// current offset, and output flows again.
    async fn redraw(&mut self) {
        let Some(a) = self.attached.as_mut() else {
            return;
        };
        a.flush = None;
        a.sent = self.bytes_out;
        let snapshot = Bytes::from(self.model.snapshot(self.ring.latest()).await);
        self.send_browser(ToBrowser::Resync).await;
        self.send_browser(ToBrowser::Output(snapshot)).await;
        self.send_browser(ToBrowser::Sync(self.bytes_out)).await;
    }

    /// Something happened that needs the ring or the model: the session is not quiet.
    fn stir(&mut self) {
        self.quiet_since = Instant::now();
        if std::mem::take(&mut self.compacted) {
            self.live.compacted.store(false, Ordering::SeqCst);
        }
    }

    /// A session quiet for `compact_after` compacts itself, once per quiet spell: the ring is
    /// compressed, the terminal model reduced to the bytes that rebuild it (when they rebuild
    /// it exactly), and buffers that kept the size of a burst let go. Whatever is used next
    /// thaws on its own (the ring on output or a reattach, the model on its next message).
    async fn compact_if_quiet(&mut self) {
        if self.compacted || self.quiet_since.elapsed() < self.compact_after {
            return;
        }
        if self
            .attached
            .as_ref()
            .is_some_and(|a| !a.pending.is_empty() || a.flush.is_some())
        {
            return; // not quiet: a browser is being caught up
        }
        self.compacted = true;
        self.ring.compact();
        let model = self.model.compact().await;
        if let Some(a) = &mut self.attached {
            a.pending.shrink_to_fit();
        }
        self.warned.shrink_to_fit();
        self.observers.shrink_to_fit();
        if let Some(r) = &mut self.recorder {
            r.compact();
        }
        self.spawn.handle.compact();
        self.live.compacted.store(true, Ordering::SeqCst);
        tracing::debug!(session = %self.spawn.id, ring = self.ring.len, model, "session compacted");
    }

    async fn output(&mut self, bytes: Bytes) {
        self.stir();
        self.bytes_out += bytes.len() as u64;
        telemetry::relayed(Direction::Out, bytes.len());
        let flushing = match &mut self.attached {
            Some(Attached {
                flush: Some(flush), ..
            }) => {
                flush.last_output = Instant::now();
                true
            }
            Some(a) => {
                a.sent = self.bytes_out;
                false
            }
            None => false,
        };
        if !flushing {
            self.send_browser(ToBrowser::Output(bytes.clone())).await;
        }
        self.send_observers(ToBrowser::Output(bytes.clone()));
        // The model (the costliest step: about a third of the CPU of bulk output, see
        // docs/performance.md) runs in its own task, beside this one and the relay.
        self.model.output(bytes.clone()).await;
        if let Some(r) = &mut self.recorder {
            r.output(&bytes);
        }
        self.ring.push(&bytes);
    }

    fn describe(&self, reason: &CloseReason) -> String {
        match (&self.ending, reason) {
            (Some(how), _) => how.clone(),
            (None, CloseReason::Remote { output }) if output.trim().is_empty() => {
                "the shell exited".to_owned()
            }
            (None, other) => other.to_string(),
        }
    }

    /// Warns before, and enforces, the idle timeout, the maximum duration and the grace
    /// period without a browser.
    async fn check_limits(&mut self) {
        if self.ending.is_some() {
            return;
        }
        // Ages, not instants: a session carried on from another gateway brings its age (this
        // host's monotonic clock may have started after the session did).
        let checks = [
            ("idle", self.limits.idle, Some(self.idle_age()), "idle for"),
            (
                "max",
                self.limits.max,
                Some(self.age()),
                "reached the maximum duration of",
            ),
            (
                "detached",
                self.limits.detached,
                self.detached_since.map(|t| t.elapsed()),
                "no browser attached for",
            ),
        ];
        for (name, limit, age, words) in checks {
            let (Some(limit), Some(age)) = (limit, age) else {
                continue;
            };
            if age >= limit {
                let how = format!("{words} {}", human(limit));
                // Boxed: TerminateSession's future would otherwise be held, unused, by every
                // idle session's task.
                Box::pin(self.terminate(how)).await;
                return;
            }
            let left = (limit - age).as_secs() + 1;
            for at in WARN_AT {
                if left <= at && !self.warned.contains(&(name, at)) && name != "detached" {
                    self.warned.push((name, at));
                    let message = match name {
                        "idle" => format!(
                            "This session ends in {left} s unless you type something (idle timeout {})",
                            human(limit)
                        ),
                        _ => format!(
                            "This session reaches its maximum duration of {} in {left} s",
                            human(limit)
                        ),
                    };
                    self.send_browser(ToBrowser::Warning {
                        message,
                        seconds_left: left,
                    })
                    .await;
                }
            }
        }
    }

    /// How long the session has run (here and, before a hand-over, elsewhere).
    fn age(&self) -> Duration {
        self.carried + self.started.elapsed()
    }

    /// How long since its last input (carried from before a hand-over until the first here).
    fn idle_age(&self) -> Duration {
        self.idle_carried + self.last_input.elapsed()
    }

    /// Ends the session from here (a limit): TerminateSession, and the close that follows is
    /// described as `how`.
    async fn terminate(&mut self, how: String) {
        tracing::info!(session = %self.spawn.id, "ending: {how}");
        self.ending = Some(how);
        if let Some(live) = self.state.live.get(&self.spawn.id) {
            // A limit ends it: the gateway's own credentials first (logged when both fail).
            let _ = live
                .terminate_at_ssm(&self.state, Credentials::Gateway)
                .await;
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Attach { since, tx, reply } => {
                self.stir();
                if let Some(old) = self.attached.take() {
                    let _ = old.tx.try_send(ToBrowser::Replaced); // it may be gone already
                }
                self.next_attach += 1;
                let id = self.next_attach;
                let offset = self.bytes_out;
                let status = if self.connected {
                    "connected"
                } else {
                    "connecting"
                };
                self.attached = Some(Attached {
                    id,
                    tx,
                    sent: offset,
                    acked: offset,
                    pending: VecDeque::new(),
                    flush: None,
                });
                self.detached_since = None;
                self.send_browser(ToBrowser::Status(status)).await;
                match since.and_then(|n| self.ring.since(n)) {
                    Some(pieces) => {
                        for piece in pieces {
                            self.send_browser(ToBrowser::Output(piece)).await;
                        }
                    }
                    None => {
                        let snapshot = Bytes::from(self.model.snapshot(self.ring.latest()).await);
                        self.send_browser(ToBrowser::Output(snapshot)).await;
                    }
                }
                self.send_browser(ToBrowser::Sync(offset)).await;
                self.tell_observers().await;
                let _ = reply.send(id); // the attacher may have gone; it detaches then
            }
            Command::Detach { attach_id } => {
                if self.attached.as_ref().is_some_and(|a| a.id == attach_id) {
                    self.attached = None;
                    self.detached_since = Some(Instant::now());
                    self.tell_presence();
                }
            }
            Command::Ack { attach_id, offset } => {
                if let Some(a) = self.attached.as_mut().filter(|a| a.id == attach_id) {
                    a.acked = a.acked.max(offset.min(a.sent));
                }
            }
            Command::Input { from, bytes } => {
                let author = match from {
                    None => self.spawn.user_name.clone(),
                    Some(id) => match self.observers.iter().find(|w| w.id == id) {
                        Some(w) if w.joiner == Joiner::Writer => w.name.clone(),
                        Some(w) => {
                            // Read-only: refused, and the participant is told.
                            let _ = w.tx.try_send(ToBrowser::Refused); // best effort
                            return;
                        }
                        None => return, // revoked or gone meanwhile: nothing is sent
                    },
                };
                self.stir();
                if self.last_author.as_deref() != Some(author.as_str()) {
                    // Who types is recorded whenever it changes (asciicast has no author
                    // field): a marker event before the input, whether input is recorded
                    // or not.
                    if let Some(r) = &mut self.recorder {
                        r.marker(&format!("{AUTHOR_MARKER}{author}"));
                    }
                    self.last_author = Some(author);
                    self.tell_presence();
                }
                if bytes.contains(&0x03) {
                    self.interrupted();
                }
                self.bytes_in += bytes.len() as u64;
                telemetry::relayed(Direction::In, bytes.len());
                if let Some(r) = &mut self.recorder {
                    r.input(&bytes);
                }
                self.last_input = Instant::now();
                self.idle_carried = Duration::ZERO;
                self.warned.retain(|(name, _)| *name != "idle");
                // An error means the session is over; the Closed event follows.
                let _ = self.spawn.handle.input(bytes).await;
            }
            Command::Freeze { reply, settled } => self.freeze(reply, settled).await,
            Command::Resize(cols, rows) => {
                self.stir();
                if let Some(r) = &mut self.recorder {
                    r.resize(cols, rows);
                }
                let size = (
                    u16::try_from(rows).unwrap_or(u16::MAX),
                    u16::try_from(cols).unwrap_or(u16::MAX),
                );
                if size != self.size {
                    self.size = size;
                    self.send_observers(ToBrowser::Size {
                        cols: size.1,
                        rows: size.0,
                    });
                }
                self.model
                    .resize(
                        u16::try_from(rows).unwrap_or(u16::MAX),
                        u16::try_from(cols).unwrap_or(u16::MAX),
                    )
                    .await;
                let _ = self.spawn.handle.resize(cols, rows).await; // as above
            }
            Command::Ending { how } => self.ending = Some(how),
            Command::Observe {
                name,
                joiner,
                limit,
                tx,
                reply,
            } => {
                let observing = self
                    .observers
                    .iter()
                    .filter(|w| w.joiner == Joiner::Observer)
                    .count();
                if joiner == Joiner::Observer && observing >= limit {
                    let _ = reply.send(None); // the observer may have gone
                    return;
                }
                if joiner.is_participant() {
                    // One socket per participant: a newer tab of theirs takes over.
                    self.observers.retain(|w| {
                        let same = w.joiner.is_participant() && w.name == name;
                        if same {
                            let _ = w.tx.try_send(ToBrowser::Replaced); // it may be gone
                        }
                        !same
                    });
                }
                self.stir();
                self.next_attach += 1;
                let id = self.next_attach;
                let snapshot = Bytes::from(self.model.snapshot(self.ring.latest()).await);
                let first = [
                    ToBrowser::Status(if self.connected {
                        "connected"
                    } else {
                        "connecting"
                    }),
                    // The size before the screen drawn at it.
                    ToBrowser::Size {
                        cols: self.size.1,
                        rows: self.size.0,
                    },
                    ToBrowser::Output(snapshot),
                    ToBrowser::Sync(self.bytes_out),
                ];
                if first.into_iter().all(|m| tx.try_send(m).is_ok()) {
                    self.observers.push(Watcher {
                        id,
                        name,
                        joiner,
                        tx,
                    });
                    self.tell_observers().await;
                }
                let _ = reply.send(Some(id)); // the observer may have gone
            }
            Command::Unobserve { id } => {
                self.observers.retain(|w| w.id != id);
                self.tell_observers().await;
            }
            Command::Kick { name, why } => {
                self.observers.retain(|w| {
                    let kicked = w.joiner.is_participant() && w.name == name;
                    if kicked {
                        let _ = w.tx.try_send(ToBrowser::Revoked(why.clone())); // may be gone
                    }
                    !kicked
                });
                self.tell_observers().await;
            }
            Command::SetMode { name, joiner } => {
                let mut changed = false;
                for w in &mut self.observers {
                    if w.joiner.is_participant() && w.name == name && w.joiner != joiner {
                        w.joiner = joiner;
                        changed = true;
                    }
                }
                if changed {
                    self.tell_presence();
                }
            }
            Command::ScreenText(reply) => {
                self.stir();
                let _ = reply.send(self.model.text().await); // the asker may have gone
            }
            Command::Stats(reply) => {
                let _ = reply.send(Stats {
                    bytes_out: self.bytes_out,
                    bytes_in: self.bytes_in,
                    attached: self.attached.is_some(),
                    observers: self.observer_names(),
                    participants: self.participant_names(),
                    connected: self.connected,
                }); // the asker may have gone
            }
        }
    }

    /// Sends to the attached browser; one that stalls or has gone is detached.
    ///
    /// Never waits: what the browser's queue cannot take now waits in `pending` (flushed by
    /// the run loop), so a slow browser never holds up input, resizes or limits.
    async fn send_browser(&mut self, message: ToBrowser) {
        self.queue_browser(message);
    }

    /// [`Task::send_browser`], for callers that are not `async`.
    fn queue_browser(&mut self, message: ToBrowser) {
        let Some(attached) = &mut self.attached else {
            return;
        };
        if !attached.pending.is_empty() {
            attached.pending.push_back(message);
            return;
        }
        match attached.tx.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(message)) => attached.pending.push_back(message),
            Err(mpsc::error::TrySendError::Closed(_)) => self.browser_gone(),
        }
    }

    /// Sends to every observer and participant without waiting; one whose queue is full is
    /// dropped.
    fn send_observers(&mut self, message: ToBrowser) {
        if self.drop_slow(&message) {
            let names = self.observer_names();
            if let Some(a) = &self.attached {
                let _ = a.tx.try_send(ToBrowser::Observers(names)); // best effort
            }
            // Each round drops at least one watcher, so this ends.
            self.tell_presence();
        }
    }

    /// Sends `message` to every watcher; those whose queue is full or closed are dropped
    /// (told [`ToBrowser::TooSlow`]). Whether any was.
    fn drop_slow(&mut self, message: &ToBrowser) -> bool {
        let before = self.observers.len();
        self.observers
            .retain(|w| match w.tx.try_send(message.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let _ = w.tx.try_send(ToBrowser::TooSlow);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        self.observers.len() != before
    }

    /// The names of those observing (not the participants).
    fn observer_names(&self) -> Vec<String> {
        self.observers
            .iter()
            .filter(|w| w.joiner == Joiner::Observer)
            .map(|w| w.name.clone())
            .collect()
    }

    /// The names of the participants attached.
    fn participant_names(&self) -> Vec<String> {
        self.observers
            .iter()
            .filter(|w| w.joiner.is_participant())
            .map(|w| w.name.clone())
            .collect()
    }

    /// Who is attached, each once (the owner first, when their browser is), and who typed last.
    fn presence(&self) -> Presence {
        let mut people: Vec<(String, &'static str)> = Vec::new();
        if self.attached.is_some() {
            people.push((self.spawn.user_name.clone(), "owner"));
        }
        for w in &self.observers {
            if !people.iter().any(|(n, _)| *n == w.name) {
                people.push((w.name.clone(), w.joiner.as_str()));
            }
        }
        Presence {
            people,
            last_typed: self.last_author.clone(),
        }
    }

    /// Tells the owner's browser and every watcher who is present and who typed last (best
    /// effort: a watcher that cannot take it is dropped as too slow).
    fn tell_presence(&mut self) {
        let presence = self.presence();
        self.queue_browser(ToBrowser::Presence(presence.clone()));
        self.send_observers(ToBrowser::Presence(presence));
    }

    /// Tells the owner's browser who observes, and everyone who is present.
    async fn tell_observers(&mut self) {
        let names = self.observer_names();
        self.send_browser(ToBrowser::Observers(names)).await;
        self.tell_presence();
    }

    fn browser_gone(&mut self) {
        self.attached = None;
        self.detached_since = Some(Instant::now());
        self.tell_presence();
    }

    /// A sender with room for one pending message, when there is a pending message.
    fn flush_sender(&self) -> Option<mpsc::Sender<ToBrowser>> {
        self.attached
            .as_ref()
            .filter(|a| !a.pending.is_empty())
            .map(|a| a.tx.clone())
    }

    /// Moves one pending message into the browser's queue (a permit was granted).
    fn flush_one(&mut self, permit: Option<mpsc::OwnedPermit<ToBrowser>>) {
        match (permit, self.attached.as_mut()) {
            (Some(permit), Some(a)) => {
                if let Some(message) = a.pending.pop_front() {
                    permit.send(message);
                }
            }
            (None, Some(_)) => self.browser_gone(),
            _ => {}
        }
    }

    async fn end(mut self, how: String) {
        // Recorded first, so the end is in the log before the browser hears of it.
        if let Err(e) = self.record_end(&how).await {
            tracing::error!(session = %self.spawn.id, "recording the end failed: {e}");
        }
        self.state.live.remove(&self.spawn.id, &self.live);
        telemetry::session_ended(&how);
        self.send_observers(ToBrowser::Closed(how.clone()));
        self.send_browser(ToBrowser::Closed(how.clone())).await;
        // The browser gets what is pending and the end, within a bound.
        if let Some(a) = self.attached.take() {
            let _ = tokio::time::timeout(BROWSER_STALL, async move {
                for message in a.pending {
                    if a.tx.send(message).await.is_err() {
                        break;
                    }
                }
            })
            .await;
        }
        tracing::info!(session = %self.spawn.id, "session ended: {how}");
    }

    async fn record_end(&mut self, how: &str) -> Result<(), DbError> {
        // Kept (uploaded, with S3) before the end is written, so the event says where it is.
        let recording = match self.recorder.take() {
            Some(r) => Some(self.state.recordings.keep(&self.spawn.id, r.finish()).await),
            None => None,
        };
        let s = &self.spawn;
        let mut tx = self.state.db.begin_write().await?;
        let ending = rows::Ending {
            how,
            bytes_out: self.bytes_out,
            bytes_in: self.bytes_in,
        };
        rows::mark_ended(&mut tx, &s.id, &ending).await?;
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
                    "resumes": self.resumes,
                    "ssm_session_id": s.ssm_session_id,
                    "recording": recording,
                })),
        )
        .await?;
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A ring fed `pieces` (compacted after those at `compact_at`) against a plain record of
    /// every byte: the same offsets and the same bytes from every offset it holds.
    fn check(cap: usize, pieces: &[Vec<u8>], compact_at: &[usize]) -> Result<(), String> {
        let mut ring = Ring::new(cap);
        let mut all = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            ring.push(piece);
            all.extend_from_slice(piece);
            if compact_at.contains(&i) {
                ring.compact();
                if ring.len > 0 && !ring.is_compacted() {
                    return Err(format!("not compacted after piece {i}"));
                }
            }
        }
        if ring.end() != all.len() as u64 {
            return Err(format!("end {} of {}", ring.end(), all.len()));
        }
        if ring.len > cap {
            return Err(format!("holds {} with a cap of {cap}", ring.len));
        }
        let start = ring.start;
        for since in [start, start + 1, (start + ring.end()) / 2, ring.end()] {
            if since > ring.end() {
                continue;
            }
            ring.compact();
            let got = ring.since(since).ok_or("not held")?.concat();
            let at = usize::try_from(since).unwrap_or(usize::MAX);
            if got != all[at..] {
                return Err(format!("bytes from {since} differ"));
            }
        }
        if start > 0 && ring.since(start - 1).is_some() {
            return Err("an offset before the start is answered".into());
        }
        Ok(())
    }

    #[test]
    fn a_compacted_ring_gives_the_same_bytes_and_offsets() {
        let lines: Vec<Vec<u8>> = (0..3000).map(|i| format!("{i}\r\n").into_bytes()).collect();
        assert_eq!(check(256 * 1024, &lines, &[10, 2999]), Ok(()));
        // More than the ring holds, pieces large and small, compacted on the way.
        let big: Vec<Vec<u8>> = (0..200)
            .map(|i| vec![b'a' + (i % 26) as u8; (i * 977) % 40_000])
            .collect();
        assert_eq!(check(64 * 1024, &big, &[3, 50, 51, 120, 199]), Ok(()));
    }

    #[test]
    fn a_compacted_ring_is_small_and_holds_no_chunk() {
        let mut ring = Ring::new(256 * 1024);
        for i in 0..3000 {
            ring.push(format!("{i}\r\n").as_bytes());
        }
        ring.compact();
        assert!(ring.pieces.is_empty() && ring.tail.capacity() == 0);
        let frozen = ring.frozen.as_ref().map_or(0, Vec::len);
        assert!(frozen > 0 && frozen < ring.len, "{frozen} of {}", ring.len);
        // Output after it thaws it and goes on at the right offset.
        let end = ring.end();
        ring.push(b"more");
        assert!(!ring.is_compacted());
        assert_eq!(ring.since(end).unwrap().concat(), b"more");
    }

    proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]

        #[test]
        fn compacting_never_changes_what_the_ring_answers(
            cap in 1usize..100_000,
            sizes in proptest::collection::vec(0usize..30_000, 0..40),
            compact_at in proptest::collection::vec(0usize..40, 0..6),
        ) {
            let pieces: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, n)| (0..*n).map(|j| (i * 31 + j) as u8).collect())
                .collect();
            let cap = cap.max(RING_CHUNK);
            prop_assert_eq!(check(cap, &pieces, &compact_at), Ok(()));
        }
    }
}
