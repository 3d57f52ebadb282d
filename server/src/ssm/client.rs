//! The data-channel client over a real WebSocket: the thin IO loop around the core's client
//! role. One task per session owns the socket and the [`Channel`]; the caller talks to it
//! through a [`ClientHandle`] (bounded queues both ways). A slow consumer of output does not
//! stop the socket being read (pings, acknowledgements, closes): new output is held back
//! unacknowledged instead, within a bounded buffer, and the pressure reaches the agent.
//!
//! On a socket error or close (including the service's 1000 "Bye"), the task calls
//! `ssm:ResumeSession` for a fresh token and reconnects to the original stream URL with the same
//! ClientId, keeping every counter and buffer; attempts back off exponentially with jitter.
//! KMS sessions call `kms:GenerateDataKey` when the handshake asks for a key.
//!
//! **Moving a session to another process.** [`ClientHandle::freeze`] stops the task: it stops
//! reading the socket, puts the input and sizes already sent to it into the channel, freezes the
//! channel and closes the socket without ending the SSM session (the agent sees a lost
//! connection and waits for a resume). It returns [`Frozen`]: the [`ChannelState`] and the
//! events the task had produced but not yet queued. The contract for the consumer: read
//! [`ClientHandle::events`] until `None`, then [`Frozen::undelivered`]; in that order they hold
//! every output byte the agent had an acknowledgement for. The freeze is answered while the task
//! holds output back (the consumer's queue full) and never waits for the consumer. Another
//! process then calls [`resume_frozen`]: ResumeSession for a token and stream URL, the socket,
//! the restored channel, no second handshake; its first event is [`ClientEvent::Reconnected`].
//! Freezing is refused before the session is ready (the client carries on), and once it is over
//! or already frozen.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::clock::{sleep_until, unix_ms};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn};

use super::channel::{
    Channel, ChannelConfig, ChannelState, CloseReason, Event, HandshakeSummary, StateError,
    Transmit,
};
use super::codec::MAX_FRAME_LEN;

/// Events queued towards the caller. Output arrives in ≤ 1 KiB pieces, so 256 events bound
/// what waits here to about 256 KiB. When the queue is full the socket is still read (pings,
/// acknowledgements, closes), and new output is held back ([`Channel::hold_incoming`]): at most
/// [`crate::ssm::channel::DEFAULT_HOLD_BYTES`] more is kept, the rest is left to the agent to
/// send again.
pub const EVENT_QUEUE: usize = 256;
/// Commands queued from the caller (input pieces, resizes).
pub const COMMAND_QUEUE: usize = 64;
/// Input bytes the channel may hold unsent before commands stop being read.
const INPUT_HIGH_WATER: usize = 256 * 1024;
/// WebSocket ping interval (the plugin's 5 minutes is too long for proxies).
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// A socket with no pong for this long is dead.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(60);
/// First reconnect delay; doubled per failure up to [`MAX_BACKOFF`], with jitter.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Largest reconnect delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one socket write may take before the socket counts as dead.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a KMS or SSM API call may take.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a frozen task waits for its socket's close frame to be written before dropping it.
const FREEZE_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What StartSession returned. The token is a secret: it is never logged.
#[derive(Clone)]
pub struct SessionStart {
    /// The session id.
    pub session_id: String,
    /// The target as passed to StartSession (for the KMS context).
    pub target: String,
    /// The data-channel URL.
    pub stream_url: String,
    /// The first token.
    pub token: String,
}

impl std::fmt::Debug for SessionStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStart")
            .field("session_id", &self.session_id)
            .field("target", &self.target)
            .field("stream_url", &"[redacted]")
            .field("token", &"[redacted]")
            .finish()
    }
}

/// The AWS clients the task needs: SSM for ResumeSession, KMS for encrypted sessions.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// SSM.
    pub ssm: aws_sdk_ssm::Client,
    /// KMS.
    pub kms: aws_sdk_kms::Client,
}

/// What the task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The session takes input now.
    Ready(Option<HandshakeSummary>),
    /// Terminal output.
    Output(Bytes),
    /// The exit code of a non-interactive command.
    ExitCode(i32),
    /// The socket dropped; resuming.
    Reconnecting {
        /// Attempt number, from 1.
        attempt: u32,
        /// Why the last socket or attempt failed.
        error: String,
    },
    /// A new socket carries the session again.
    Reconnected,
    /// The session is over.
    Closed(CloseReason),
}

/// Commands to the task.
#[derive(Debug)]
enum Command {
    Input(Bytes),
    Resize(u32, u32),
    /// Drop the socket now (tests and fault drills): the task resumes as after a network error.
    DropSocket,
    /// Let go of buffers kept from earlier traffic ([`ClientHandle::compact`]).
    Compact,
}

/// A request to freeze, with where to send the answer.
type FreezeRequest = oneshot::Sender<Result<Frozen, StateError>>;

/// The caller's side of a running data-channel client.
#[derive(Debug)]
pub struct ClientHandle {
    commands: mpsc::Sender<Command>,
    /// Freeze requests, apart from the commands: those are not read while input backs up.
    freezes: mpsc::Sender<FreezeRequest>,
    frozen: AtomicBool,
    /// Events from the task, in order; `None` once the task has ended.
    pub events: mpsc::Receiver<ClientEvent>,
}

/// What a frozen client hands back ([`ClientHandle::freeze`]).
#[derive(Debug)]
pub struct Frozen {
    /// The channel, ready for [`resume_frozen`] here or in another process
    /// ([`ChannelState::to_bytes`]). It holds the KMS data key: seal it.
    pub state: ChannelState,
    /// Events the task had produced but not yet queued to [`ClientHandle::events`], in order:
    /// they come after everything still readable there.
    pub undelivered: Vec<ClientEvent>,
}

/// Why [`ClientHandle::freeze`] did not freeze.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreezeError {
    /// This handle's client was frozen already.
    #[error("the session was frozen already")]
    AlreadyFrozen,
    /// The channel refused (e.g. [`StateError::NotReady`]: the session is still starting);
    /// the client carries on as before.
    #[error("cannot freeze the session: {0}")]
    Refused(StateError),
    /// The session is over (closed, or its task has ended); its end is in the events.
    #[error("cannot freeze the session: it is over")]
    Ended,
}

/// Which session [`resume_frozen`] carries on: it must be the one the state was frozen from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeTarget {
    /// The SSM session id.
    pub session_id: String,
    /// The target as passed to StartSession.
    pub target: String,
}

impl ClientHandle {
    /// Sends keystrokes or pasted bytes; waits while the channel is backed up. Errors once the
    /// session is over.
    pub async fn input(&self, bytes: impl Into<Bytes>) -> Result<(), String> {
        self.commands
            .send(Command::Input(bytes.into()))
            .await
            .map_err(|_| "session is over".into())
    }

    /// Sends a terminal size.
    pub async fn resize(&self, cols: u32, rows: u32) -> Result<(), String> {
        self.commands
            .send(Command::Resize(cols, rows))
            .await
            .map_err(|_| "session is over".into())
    }

    /// Asks the task to let go of buffers kept from earlier traffic ([`Channel::shrink`] and
    /// its own queue's spare room): the session is quiet. Best effort: when the task's queue is
    /// full the session is not quiet, and nothing is asked.
    pub fn compact(&self) {
        let _ = self.commands.try_send(Command::Compact); // full or over: nothing to do
    }

    /// Drops the current socket; the task resumes the session.
    pub async fn drop_socket(&self) -> Result<(), String> {
        self.commands
            .send(Command::DropSocket)
            .await
            .map_err(|_| "session is over".into())
    }

    /// Stops this client so that another one, here or in another process, carries the
    /// session on ([`resume_frozen`]), without losing or repeating a byte.
    ///
    /// The task stops reading its socket, takes in the input and sizes already sent to it
    /// ([`ClientHandle::input`] fails from then on), freezes its channel and closes its socket
    /// **without ending the SSM session**: the agent sees a lost connection and waits for a
    /// resume, as after any network failure. Then the task ends.
    ///
    /// The contract for the consumer: read [`ClientHandle::events`] until it yields `None`, then
    /// take [`Frozen::undelivered`]. Those events, in that order, hold every output byte the
    /// agent had an acknowledgement for; the rest comes from the resumed client. It works while
    /// the task holds output back for a consumer that reads nothing, and does not wait for the
    /// consumer: what did not fit the queue is in `undelivered`.
    ///
    /// Errors: [`FreezeError::Refused`] before the session is ready (the client carries on),
    /// [`FreezeError::Ended`] once it is over, [`FreezeError::AlreadyFrozen`] on a second call.
    ///
    /// Await it to the end: a freeze dropped after its request reached the task still stops
    /// the client, and the state is then lost (logged; the SSM session lives on, unattended,
    /// until its idle timeout).
    pub async fn freeze(&self) -> Result<Frozen, FreezeError> {
        if self.frozen.load(Ordering::SeqCst) {
            return Err(FreezeError::AlreadyFrozen);
        }
        let (reply, answer) = oneshot::channel();
        let answer = match self.freezes.send(reply).await {
            Ok(()) => answer.await.ok(),
            Err(_) => None,
        };
        match answer {
            Some(Ok(frozen)) => {
                self.frozen.store(true, Ordering::SeqCst);
                Ok(frozen)
            }
            Some(Err(StateError::Closed)) => Err(FreezeError::Ended),
            Some(Err(e)) => Err(FreezeError::Refused(e)),
            // The task has ended: frozen by another call meanwhile, or the session is over.
            None if self.frozen.load(Ordering::SeqCst) => Err(FreezeError::AlreadyFrozen),
            None => Err(FreezeError::Ended),
        }
    }
}

/// The socket's read buffer. tungstenite's default (128 KiB) is filled with zeros before each
/// read, so all of it stays resident for as long as the session lives; the agent's frames are
/// about a kilobyte, so a few pages read a burst's frames as well.
pub const READ_BUFFER: usize = 8 * 1024;

async fn connect(url: &str) -> Result<Socket, String> {
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(MAX_FRAME_LEN))
        .max_frame_size(Some(MAX_FRAME_LEN));
    let (socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .map_err(|e| format!("cannot open the data channel: {e}"))?;
    Ok(socket)
}

/// How a client behaves, beyond the protocol's fixed rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// How long one message may go unacknowledged (socket open, publication running) before
    /// the session is given up and terminated; 5 minutes by default, as the official client.
    pub give_up_after: Duration,
    /// How often the socket is pinged ([`PING_INTERVAL`] by default).
    pub ping_interval: Duration,
    /// How long past a ping interval without a pong the socket counts as dead
    /// ([`PONG_TIMEOUT`] by default).
    pub pong_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            give_up_after: super::channel::DEFAULT_GIVE_UP_AFTER,
            ping_interval: PING_INTERVAL,
            pong_timeout: PONG_TIMEOUT,
        }
    }
}

/// Opens the data channel and starts the session's task, with the default options.
pub async fn start(start: SessionStart, aws: AwsClients) -> Result<ClientHandle, String> {
    start_with(start, aws, ClientOptions::default()).await
}

/// Opens the data channel and starts the session's task.
pub async fn start_with(
    start: SessionStart,
    aws: AwsClients,
    options: ClientOptions,
) -> Result<ClientHandle, String> {
    let socket = connect(&start.stream_url).await?;
    let mut config = ChannelConfig::client(start.session_id.clone(), start.target.clone());
    config.give_up_after = options.give_up_after;
    let mut channel = Channel::new(config, std::time::Instant::now(), unix_ms());
    channel.socket_opened(std::time::Instant::now(), Some(&start.token));
    Ok(spawn(start, aws, options, channel, socket, None))
}

/// Carries on a session frozen by [`ClientHandle::freeze`] (here or in another process): calls
/// `ssm:ResumeSession` for a fresh token and stream URL, opens the socket and continues from
/// `state` with no second handshake. The agent sends again what it had not had acknowledged,
/// the client sends again its own unacknowledged input (and the input and sizes that were
/// still waiting): output continues exactly after the last byte of the frozen client's events.
/// The first event is [`ClientEvent::Reconnected`]; the handshake's outcome is
/// [`ChannelState::handshake`]. The channel keeps the frozen state's limits and give-up time;
/// of `options`, only the ping settings apply.
///
/// Errors name the problem: a state of another session, a state that does not restore,
/// ResumeSession refused (with AWS's error code, e.g. `DoesNotExistException` for a session
/// that has ended) or timed out, or a socket that does not open.
pub async fn resume_frozen(
    state: ChannelState,
    target: ResumeTarget,
    aws: AwsClients,
    options: ClientOptions,
) -> Result<ClientHandle, String> {
    if state.session_id() != target.session_id || state.target_id() != target.target {
        return Err(format!(
            "the frozen state is of session {} on {}, not of session {} on {}",
            state.session_id(),
            state.target_id(),
            target.session_id,
            target.target
        ));
    }
    let mut channel = Channel::restore(state, std::time::Instant::now(), unix_ms())
        .map_err(|e| format!("cannot restore the frozen session: {e}"))?;
    let call = aws
        .ssm
        .resume_session()
        .session_id(&target.session_id)
        .send();
    let reply = match tokio::time::timeout(API_TIMEOUT, call).await {
        Err(_) => {
            return Err(format!(
                "ResumeSession for session {} timed out after {API_TIMEOUT:?}",
                target.session_id
            ));
        }
        Ok(Err(e)) => {
            use aws_sdk_ssm::error::ProvideErrorMetadata as _;
            let why = match e.code() {
                Some(code) => format!("{code}: {}", e.message().unwrap_or("")),
                None => error_chain(&e),
            };
            return Err(format!(
                "ResumeSession refused for session {}: {why}",
                target.session_id
            ));
        }
        Ok(Ok(reply)) => reply,
    };
    let token = reply.token_value().unwrap_or_default();
    if token.is_empty() {
        return Err(format!(
            "ResumeSession gave no token for session {}: it has timed out",
            target.session_id
        ));
    }
    let stream_url = reply.stream_url().unwrap_or_default();
    if stream_url.is_empty() {
        return Err(format!(
            "ResumeSession gave no stream URL for session {}",
            target.session_id
        ));
    }
    let socket = connect(stream_url).await?;
    channel.socket_opened(std::time::Instant::now(), Some(token));
    let start = SessionStart {
        session_id: target.session_id,
        target: target.target,
        stream_url: stream_url.to_owned(),
        token: token.to_owned(),
    };
    info!(session_id = %start.session_id, "frozen session resumed");
    Ok(spawn(
        start,
        aws,
        options,
        channel,
        socket,
        Some(ClientEvent::Reconnected),
    ))
}

/// An error and its sources, joined.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Starts the task of `channel` on `socket`, with `first` queued as its first event.
fn spawn(
    start: SessionStart,
    aws: AwsClients,
    options: ClientOptions,
    channel: Channel,
    socket: Socket,
    first: Option<ClientEvent>,
) -> ClientHandle {
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    // One freeze at a time; a second waits for the first's answer.
    let (freezes_tx, freezes_rx) = mpsc::channel(1);
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let task = Task {
        start,
        options,
        aws,
        channel,
        events: events_tx,
        outbox: first.into_iter().collect(),
        refetch: false,
    };
    let inbox = Inbox {
        commands: commands_rx,
        freezes: Some(freezes_rx),
    };
    tokio::spawn(task.run(socket, inbox));
    ClientHandle {
        commands: commands_tx,
        freezes: freezes_tx,
        frozen: AtomicBool::new(false),
        events: events_rx,
    }
}

/// What the task receives from its handle.
struct Inbox {
    commands: mpsc::Receiver<Command>,
    /// `None` once the handle has gone.
    freezes: Option<mpsc::Receiver<FreezeRequest>>,
}

/// The next freeze request; never, once the handle has gone.
async fn next_freeze(freezes: &mut Option<mpsc::Receiver<FreezeRequest>>) -> FreezeRequest {
    loop {
        match freezes {
            Some(rx) => match rx.recv().await {
                Some(request) => return request,
                None => *freezes = None,
            },
            None => std::future::pending().await,
        }
    }
}

struct Task {
    start: SessionStart,
    options: ClientOptions,
    aws: AwsClients,
    channel: Channel,
    events: mpsc::Sender<ClientEvent>,
    /// Events waiting for room in the queue, oldest first.
    outbox: std::collections::VecDeque<ClientEvent>,
    /// Output was dropped beyond the hold buffer ([`Channel::take_hold_overflow`]): once the
    /// consumer has taken everything waiting, the task resumes on a new socket, on which the
    /// agent sends everything unacknowledged again.
    refetch: bool,
}

enum Step {
    SocketLost(String),
    /// Resume on a new socket to have the agent send again the output held back; the socket
    /// is fine, so the consumer is not told.
    Refetch,
    /// Frozen: close the socket, then answer.
    Frozen(Box<Frozen>, FreezeRequest),
    Done,
}

impl Task {
    async fn run(mut self, first: Socket, mut inbox: Inbox) {
        let mut socket = Some(first);
        let mut attempt = 0u32;
        // Whether the consumer was told of the outage (a refetch is not an outage).
        let mut announced = false;
        loop {
            let Some(mut ws) = socket.take() else {
                // Reconnect: ResumeSession for a token, then the original URL. A freeze may
                // come meanwhile: the state needs no socket.
                attempt += 1;
                // Boxed: the SDK call's future is large, and inline it would be part of
                // every session's task for its whole life, connected or not.
                let resumed = tokio::select! {
                    resumed = Box::pin(self.resume()) => resumed,
                    reply = next_freeze(&mut inbox.freezes) => {
                        match self.try_freeze(&mut inbox.commands) {
                            Ok(frozen) => return self.hand_back(frozen, reply),
                            Err(e) => {
                                let _ = reply.send(Err(e)); // the caller may have gone
                                continue;
                            }
                        }
                    }
                };
                match resumed {
                    Ok(ws) => {
                        attempt = 0;
                        socket = Some(ws);
                        if std::mem::take(&mut announced) {
                            self.emit(ClientEvent::Reconnected);
                        }
                        continue;
                    }
                    Err(Resume::Fatal(reason)) => {
                        self.finish(
                            ClientEvent::Closed(CloseReason::Local { reason }),
                            &mut inbox,
                        )
                        .await;
                        return;
                    }
                    Err(Resume::Retry(error)) => {
                        announced = true;
                        self.emit(ClientEvent::Reconnecting { attempt, error });
                        tokio::select! {
                            _ = tokio::time::sleep(backoff(attempt)) => {}
                            reply = next_freeze(&mut inbox.freezes) => {
                                match self.try_freeze(&mut inbox.commands) {
                                    Ok(frozen) => return self.hand_back(frozen, reply),
                                    Err(e) => {
                                        let _ = reply.send(Err(e)); // the caller may have gone
                                    }
                                }
                            }
                        }
                        continue;
                    }
                }
            };
            match self.drive(&mut ws, &mut inbox).await {
                Step::Done => {
                    let _ = ws.close(None).await; // best effort; the session is over
                    return;
                }
                Step::SocketLost(error) => {
                    info!(session_id = %self.start.session_id, %error, "data channel lost; resuming");
                    announced = true;
                    self.emit(ClientEvent::Reconnecting { attempt: 0, error });
                }
                Step::Refetch => {
                    debug!(session_id = %self.start.session_id, "resuming for the output held back");
                }
                Step::Frozen(frozen, reply) => {
                    // Closed without ending the session: the agent waits for a resume.
                    let _ = tokio::time::timeout(FREEZE_CLOSE_TIMEOUT, ws.close(None)).await;
                    drop(ws);
                    return self.hand_back(*frozen, reply);
                }
            }
        }
    }

    async fn resume(&mut self) -> Result<Socket, Resume> {
        let reply = self
            .aws
            .ssm
            .resume_session()
            .session_id(&self.start.session_id)
            .send()
            .await
            .map_err(|e| {
                use aws_sdk_ssm::error::ProvideErrorMetadata as _;
                let code = e.code().unwrap_or("").to_owned();
                let message = e.message().unwrap_or("").to_owned();
                if code == "DoesNotExistException" || code == "AccessDeniedException" {
                    Resume::Fatal(format!("ResumeSession failed: {code}: {message}"))
                } else {
                    Resume::Retry(format!("ResumeSession failed: {code} {message} {e}"))
                }
            })?;
        let token = reply.token_value().unwrap_or_default();
        if token.is_empty() {
            return Err(Resume::Fatal(format!(
                "Session {} timed out.",
                self.start.session_id
            )));
        }
        // Like the official client, reconnect to the original URL, not the returned one.
        let ws = connect(&self.start.stream_url)
            .await
            .map_err(Resume::Retry)?;
        self.channel
            .socket_opened(std::time::Instant::now(), Some(token));
        // The agent sends everything unacknowledged again on the new socket.
        self.refetch = false;
        let _ = self.channel.take_hold_overflow();
        Ok(ws)
    }

    /// Queues `event` behind those waiting and hands over what the consumer has room for,
    /// without waiting for it: a resume must not wait for a consumer that is busy (a page in
    /// a background tab). A `Reconnecting` replaces one still waiting, so a long outage
    /// queues one.
    fn emit(&mut self, event: ClientEvent) {
        if matches!(event, ClientEvent::Reconnecting { .. })
            && matches!(self.outbox.back(), Some(ClientEvent::Reconnecting { .. }))
        {
            self.outbox.pop_back();
        }
        self.outbox.push_back(event);
        while let Some(queued) = self.outbox.pop_front() {
            match self.events.try_send(queued) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(queued)) => {
                    self.outbox.push_front(queued);
                    break;
                }
                // The consumer has gone.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.outbox.clear();
                    break;
                }
            }
        }
    }

    /// Queues the last event and waits until the consumer has taken everything.
    async fn finish(&mut self, event: ClientEvent, inbox: &mut Inbox) {
        self.outbox.push_back(event);
        self.deliver_all(inbox).await;
    }

    /// Waits until the consumer has taken every event waiting (the session is over). A freeze
    /// asked for meanwhile is answered at once: the session is over.
    async fn deliver_all(&mut self, inbox: &mut Inbox) {
        for queued in std::mem::take(&mut self.outbox) {
            let permit = loop {
                tokio::select! {
                    permit = self.events.reserve() => break permit,
                    reply = next_freeze(&mut inbox.freezes) => {
                        let _ = reply.send(Err(StateError::Closed)); // the caller may have gone
                    }
                }
            };
            match permit {
                Ok(permit) => permit.send(queued),
                Err(_) => return, // nobody listens any more
            }
        }
    }

    /// Freezes the session, if it can be: see [`ClientHandle::freeze`]. On success the task
    /// must end without touching the channel again; on an error nothing has changed.
    fn try_freeze(&mut self, commands: &mut mpsc::Receiver<Command>) -> Result<Frozen, StateError> {
        if self.channel.is_closed() {
            // Its Closed event is handled (and delivered) by the loop as usual.
            return Err(StateError::Closed);
        }
        if !self.channel.is_ready() {
            return Err(StateError::NotReady);
        }
        // From here on it cannot fail. Events the channel has (acknowledged output) go into
        // the outbox; input and sizes already sent to the task go into the channel, and no
        // more are taken (`input` fails from now on).
        self.take_channel_events();
        commands.close();
        let now = std::time::Instant::now();
        while let Ok(command) = commands.try_recv() {
            let result = match command {
                Command::Input(bytes) => self.channel.send_input(&bytes, now),
                Command::Resize(cols, rows) => self.channel.resize(cols, rows, now),
                Command::DropSocket | Command::Compact => Ok(()),
            };
            if let Err(error) = result {
                debug!(%error, "command refused while freezing");
            }
        }
        self.take_channel_events();
        let state = self.channel.freeze()?;
        Ok(Frozen {
            state,
            undelivered: self.outbox.drain(..).collect(),
        })
    }

    /// Moves the channel's events into the outbox without waiting (a ready, open channel has
    /// only output to report).
    fn take_channel_events(&mut self) {
        while let Some(event) = self.channel.poll_event() {
            match event {
                Event::Output(bytes) | Event::StdErr(bytes) => {
                    self.outbox.push_back(ClientEvent::Output(bytes))
                }
                Event::ExitCode(code) => self.outbox.push_back(ClientEvent::ExitCode(code)),
                Event::Ready { handshake } => self.outbox.push_back(ClientEvent::Ready(handshake)),
                Event::Closed(reason) => self.outbox.push_back(ClientEvent::Closed(reason)),
                Event::Input(_)
                | Event::Resize(_)
                | Event::Flag(_)
                | Event::DataKeyNeeded { .. }
                | Event::DecryptNeeded { .. }
                | Event::Publication { .. } => {}
            }
        }
    }

    /// Answers a freeze; the task then ends (dropping the event queue's sender, so the
    /// consumer reads what is queued, then `None`).
    fn hand_back(&self, frozen: Frozen, reply: FreezeRequest) {
        info!(
            session_id = %self.start.session_id,
            unacked = frozen.state.unacked_len(),
            undelivered = frozen.undelivered.len(),
            "data channel frozen"
        );
        if reply.send(Ok(frozen)).is_err() {
            warn!(
                session_id = %self.start.session_id,
                "the caller of freeze went away; the frozen state is lost (the SSM session lives on until its idle timeout)"
            );
        }
    }

    /// Runs one socket until it is lost or the session ends.
    async fn drive(&mut self, ws: &mut Socket, inbox: &mut Inbox) -> Step {
        let mut ping = tokio::time::interval(self.options.ping_interval);
        ping.reset();
        let mut last_pong = Instant::now();
        loop {
            while let Some(t) = self.channel.poll_transmit() {
                let message = match t {
                    Transmit::Text(text) => Message::text(text),
                    Transmit::Binary(bytes) => Message::Binary(bytes),
                };
                match tokio::time::timeout(WRITE_TIMEOUT, ws.send(message)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Step::SocketLost(format!("send failed: {e}")),
                    Err(_) => return Step::SocketLost("send timed out".into()),
                }
            }
            if let Some(step) = self.collect_events(inbox).await {
                return step;
            }
            let timeout = self.channel.poll_timeout().map(Instant::from_std);
            // The socket is always read, so pings are answered, acknowledgements of our input
            // arrive and a close is seen at once. While the consumer has no room, new output is
            // held back instead: the next message is left unacknowledged (the agent sends it
            // again), later ones are kept up to the channel's hold buffer, beyond it dropped
            // unacknowledged. Those the agent would send again only one at a time (each once
            // the one before is acknowledged), but all at once on a new socket: so after such
            // an overflow, output stays held back until the consumer has taken everything
            // waiting, then the task resumes. Resuming any earlier, the agent's resends would
            // find no room and be dropped again, and again (that stalled the 20 MB
            // faults-and-cuts test).
            self.refetch |= self.channel.take_hold_overflow();
            if self.refetch && self.outbox.is_empty() {
                self.channel.hold_incoming(false);
                return Step::Refetch;
            }
            self.channel
                .hold_incoming(self.refetch || self.outbox.len() >= EVENT_QUEUE);
            let mut freeze = None;
            let read_commands = self.channel.pending_bytes() < INPUT_HIGH_WATER;
            tokio::select! {
                permit = self.events.reserve(), if !self.outbox.is_empty() => match permit {
                    Ok(permit) => if let Some(event) = self.outbox.pop_front() { permit.send(event) },
                    Err(_) => return Step::Done, // nobody listens any more
                },
                // Answered below, out of the select: the branches borrow parts of `self`.
                reply = next_freeze(&mut inbox.freezes) => freeze = Some(reply),
                command = inbox.commands.recv(), if read_commands => {
                    let now = std::time::Instant::now();
                    let result = match command {
                        Some(Command::Input(bytes)) => self.channel.send_input(&bytes, now),
                        Some(Command::Resize(cols, rows)) => self.channel.resize(cols, rows, now),
                        Some(Command::DropSocket) => return Step::SocketLost("dropped on request".into()),
                        Some(Command::Compact) => {
                            self.channel.shrink();
                            self.outbox.shrink_to_fit();
                            Ok(())
                        }
                        None => return Step::Done, // the handle was dropped
                    };
                    if let Err(e) = result {
                        debug!(error = %e, "command refused");
                    }
                },
                message = ws.next() => match message {
                    Some(Ok(Message::Binary(frame))) => {
                        if let Err(error) = self.channel.handle_incoming_bytes(&frame, std::time::Instant::now()) {
                            debug!(%error, "ignored a data-channel frame");
                        }
                    }
                    Some(Ok(Message::Pong(_))) => last_pong = Instant::now(),
                    Some(Ok(Message::Close(frame))) => {
                        return Step::SocketLost(format!("closed by the service: {frame:?}"));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Step::SocketLost(format!("socket error: {e}")),
                    None => return Step::SocketLost("socket ended".into()),
                },
                _ = sleep_until(timeout) => self.channel.handle_timeout(std::time::Instant::now()),
                _ = ping.tick() => {
                    if last_pong.elapsed() > self.options.ping_interval + self.options.pong_timeout {
                        return Step::SocketLost("no pong from the service".into());
                    }
                    let ping = ws.send(Message::Ping(Bytes::from_static(b"keepalive")));
                    if !matches!(tokio::time::timeout(WRITE_TIMEOUT, ping).await, Ok(Ok(()))) {
                        return Step::SocketLost("ping failed".into());
                    }
                },
            }
            if let Some(reply) = freeze {
                match self.try_freeze(&mut inbox.commands) {
                    Ok(frozen) => return Step::Frozen(Box::new(frozen), reply),
                    Err(e) => {
                        let _ = reply.send(Err(e)); // the caller may have gone
                    }
                }
            }
        }
    }

    /// Moves the channel's events into the outbox; handles KMS requests. Returns a step when
    /// the session ended.
    async fn collect_events(&mut self, inbox: &mut Inbox) -> Option<Step> {
        while let Some(event) = self.channel.poll_event() {
            match event {
                Event::Output(bytes) | Event::StdErr(bytes) => {
                    self.outbox.push_back(ClientEvent::Output(bytes))
                }
                Event::ExitCode(code) => self.outbox.push_back(ClientEvent::ExitCode(code)),
                Event::Ready { handshake } => self.outbox.push_back(ClientEvent::Ready(handshake)),
                Event::DataKeyNeeded {
                    key_id,
                    encryption_context,
                } => {
                    // Boxed, as below: once per session, and large.
                    Box::pin(self.fetch_data_key(key_id, encryption_context)).await;
                }
                Event::Closed(reason) => {
                    if matches!(reason, CloseReason::RetransmissionGaveUp { .. }) {
                        // Boxed: an SDK call's future inline here would be held by every
                        // session's task for its whole life (docs/performance.md, "Idle
                        // memory").
                        Box::pin(self.terminate_after_give_up()).await;
                    }
                    self.outbox.push_back(ClientEvent::Closed(reason));
                    self.deliver_all(inbox).await;
                    return Some(Step::Done);
                }
                Event::Input(_)
                | Event::Resize(_)
                | Event::Flag(_)
                | Event::DecryptNeeded { .. }
                | Event::Publication { .. } => {}
            }
        }
        None
    }

    /// Asks KMS for the session's data key (`DataKeyNeeded`) and hands it, or why there is
    /// none, to the channel.
    async fn fetch_data_key(
        &mut self,
        key_id: String,
        encryption_context: std::collections::BTreeMap<String, String>,
    ) {
        let now = std::time::Instant::now();
        let result = self
            .aws
            .kms
            .generate_data_key()
            .key_id(key_id)
            .number_of_bytes(crate::ssm::crypto::DATA_KEY_LEN as i32)
            .set_encryption_context(Some(encryption_context.into_iter().collect()))
            .send();
        let result = tokio::time::timeout(API_TIMEOUT, result).await;
        let outcome = match result {
            Err(_) => self
                .channel
                .data_key_failed("kms:GenerateDataKey timed out", now),
            Ok(Ok(reply)) => match (reply.plaintext(), reply.ciphertext_blob()) {
                (Some(plain), Some(blob)) => {
                    self.channel
                        .provide_data_key(plain.as_ref(), blob.as_ref(), now)
                }
                _ => self
                    .channel
                    .data_key_failed("GenerateDataKey returned no key", now),
            },
            Ok(Err(e)) => {
                use aws_sdk_kms::error::ProvideErrorMetadata as _;
                let text = format!(
                    "kms:GenerateDataKey failed: {} {}",
                    e.code().unwrap_or(""),
                    e.message().unwrap_or("")
                );
                warn!(session_id = %self.start.session_id, error = %text);
                self.channel.data_key_failed(&text, now)
            }
        };
        if let Err(e) = outcome {
            // An unusable key: tell the agent, which ends the session with a reason.
            warn!(error = %e, "the data key was not accepted");
            let reason = format!("unusable data key: {e}");
            let _ = self.channel.data_key_failed(&reason, now);
        }
    }

    /// As the official client does after giving up on retransmission: ends the session on the
    /// service too, so that the shell does not linger until the idle timeout.
    async fn terminate_after_give_up(&self) {
        let call = self
            .aws
            .ssm
            .terminate_session()
            .session_id(&self.start.session_id)
            .send();
        if !matches!(tokio::time::timeout(API_TIMEOUT, call).await, Ok(Ok(_))) {
            warn!(session_id = %self.start.session_id, "TerminateSession after give-up failed");
        }
    }
}

enum Resume {
    Retry(String),
    Fatal(String),
}

fn backoff(attempt: u32) -> Duration {
    use rand::Rng as _;
    let base = INITIAL_BACKOFF.saturating_mul(1u32 << attempt.saturating_sub(1).min(6));
    let base = base.min(MAX_BACKOFF);
    let jitter = rand::rng().next_u64() % (base.as_millis() as u64 / 2 + 1);
    base / 2 + Duration::from_millis(jitter)
}
