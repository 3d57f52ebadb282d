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

use std::time::Duration;

use crate::clock::{sleep_until, unix_ms};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn};

use super::channel::{Channel, ChannelConfig, CloseReason, Event, HandshakeSummary, Transmit};
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
}

/// The caller's side of a running data-channel client.
#[derive(Debug)]
pub struct ClientHandle {
    commands: mpsc::Sender<Command>,
    /// Events from the task, in order; `None` once the task has ended.
    pub events: mpsc::Receiver<ClientEvent>,
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

    /// Drops the current socket; the task resumes the session.
    pub async fn drop_socket(&self) -> Result<(), String> {
        self.commands
            .send(Command::DropSocket)
            .await
            .map_err(|_| "session is over".into())
    }
}

async fn connect(url: &str) -> Result<Socket, String> {
    let config = WebSocketConfig::default()
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
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let mut config = ChannelConfig::client(start.session_id.clone(), start.target.clone());
    config.give_up_after = options.give_up_after;
    let mut channel = Channel::new(config, std::time::Instant::now(), unix_ms());
    channel.socket_opened(std::time::Instant::now(), Some(&start.token));
    let task = Task {
        start,
        options,
        aws,
        channel,
        events: events_tx,
        outbox: std::collections::VecDeque::new(),
        refetch: false,
    };
    tokio::spawn(task.run(socket, commands_rx));
    Ok(ClientHandle {
        commands: commands_tx,
        events: events_rx,
    })
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
    Done,
}

impl Task {
    async fn run(mut self, first: Socket, mut commands: mpsc::Receiver<Command>) {
        let mut socket = Some(first);
        let mut attempt = 0u32;
        // Whether the consumer was told of the outage (a refetch is not an outage).
        let mut announced = false;
        loop {
            let Some(mut ws) = socket.take() else {
                // Reconnect: ResumeSession for a token, then the original URL.
                attempt += 1;
                match self.resume().await {
                    Ok(ws) => {
                        attempt = 0;
                        socket = Some(ws);
                        if std::mem::take(&mut announced) {
                            self.emit(ClientEvent::Reconnected);
                        }
                        continue;
                    }
                    Err(Resume::Fatal(reason)) => {
                        self.finish(ClientEvent::Closed(CloseReason::Local { reason }))
                            .await;
                        return;
                    }
                    Err(Resume::Retry(error)) => {
                        announced = true;
                        self.emit(ClientEvent::Reconnecting { attempt, error });
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                }
            };
            match self.drive(&mut ws, &mut commands).await {
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
    async fn finish(&mut self, event: ClientEvent) {
        self.outbox.push_back(event);
        for queued in std::mem::take(&mut self.outbox) {
            if self.events.send(queued).await.is_err() {
                return;
            }
        }
    }

    /// Runs one socket until it is lost or the session ends.
    async fn drive(&mut self, ws: &mut Socket, commands: &mut mpsc::Receiver<Command>) -> Step {
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
            if let Some(step) = self.collect_events().await {
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
            let read_commands = self.channel.pending_bytes() < INPUT_HIGH_WATER;
            tokio::select! {
                permit = self.events.reserve(), if !self.outbox.is_empty() => match permit {
                    Ok(permit) => if let Some(event) = self.outbox.pop_front() { permit.send(event) },
                    Err(_) => return Step::Done, // nobody listens any more
                },
                command = commands.recv(), if read_commands => {
                    let now = std::time::Instant::now();
                    let result = match command {
                        Some(Command::Input(bytes)) => self.channel.send_input(&bytes, now),
                        Some(Command::Resize(cols, rows)) => self.channel.resize(cols, rows, now),
                        Some(Command::DropSocket) => return Step::SocketLost("dropped on request".into()),
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
        }
    }

    /// Moves the channel's events into the outbox; handles KMS requests. Returns a step when
    /// the session ended.
    async fn collect_events(&mut self) -> Option<Step> {
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
                Event::Closed(reason) => {
                    if matches!(reason, CloseReason::RetransmissionGaveUp { .. }) {
                        // As the official client does: end the session on the service too, so
                        // the shell does not linger until the idle timeout.
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
                    self.outbox.push_back(ClientEvent::Closed(reason));
                    let pending = std::mem::take(&mut self.outbox);
                    for event in pending {
                        if self.events.send(event).await.is_err() {
                            break;
                        }
                    }
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
