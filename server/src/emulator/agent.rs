//! The data-channel WebSocket and the per-session agent task.
//!
//! [`data_channel`] upgrades `GET /v1/data-channel/{session_id}`, reads the OpenDataChannel text
//! frame, checks its single-use token and hands the socket to the session's task. The task
//! ([`spawn_session`]) is one `select!` loop that owns the core's agent-role [`Channel`], the
//! shell's PTY and the current socket. It outlives sockets: a client that reconnects after
//! `ResumeSession` continues the same session with every counter and buffer. Faults (drop,
//! duplicate, reorder, forced disconnects) are applied here, to frames in both directions.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{sleep_until, unix_ms};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use super::State;
use super::nodes::Node;
use super::pty::{self, ShellSpec};
use super::sessions::{Session, SessionCommand, SessionStatus};
use crate::ssm::channel::{AgentHandshake, Channel, ChannelConfig, CloseReason, Event, Transmit};
use crate::ssm::codec::MAX_FRAME_LEN;
use crate::ssm::faults::FaultInjector;
use crate::ssm::payload::{self, OpenDataChannel};

/// Close code for a socket whose OpenDataChannel was missing, malformed or carried a wrong or
/// used token (policy violation).
pub const CLOSE_INVALID_TOKEN: u16 = 1008;
/// Close code for the periodic disconnect (`--disconnect-every`), as the real service's hourly
/// close: normal closure with reason "Bye".
pub const CLOSE_BYE: u16 = 1000;
/// Close code for a frame over the size limit (message too big).
pub const CLOSE_TOO_LARGE: u16 = 1009;
/// Close code when the session is over.
pub const CLOSE_SESSION_ENDED: u16 = 1000;
/// How long a new socket may take to send OpenDataChannel.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the agent waits for its output to be acknowledged when the shell exits.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a session may go without a client before it is terminated (the service's default
/// idle timeout).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How long after a ping a pong must arrive before the socket counts as dead.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(60);
/// Output bytes waiting in the channel above which the PTY is not read (backpressure on the
/// shell).
const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// Unacknowledged output messages in flight (≈1 MiB); beyond it output waits.
const SEND_WINDOW: usize = 1024;
/// Input chunks queued for the PTY writer: at most 64 KiB. While it is full the socket is not
/// read, so the client's input waits in its own buffers rather than here.
const INPUT_QUEUE: usize = 64;
/// How long one socket write may take before the socket counts as dead.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The data-channel socket's read buffer (see [`data_channel`]).
const READ_BUFFER: usize = 8 * 1024;
/// How long a frame held back for reordering may wait for a successor.
const REORDER_HOLD: Duration = Duration::from_millis(20);

/// `GET /v1/data-channel/{session_id}`.
pub async fn data_channel(
    AxState(state): AxState<Arc<State>>,
    Path(session_id): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(session) = state.registry.get(&session_id) else {
        return (StatusCode::NOT_FOUND, format!("no session {session_id}")).into_response();
    };
    // Input frames are small (keystrokes, acknowledgements): an 8 KiB read buffer instead of
    // tungstenite's 128 KiB keeps 10,000 sessions from reserving 1.25 GiB (it grows for a
    // large frame when one comes).
    ws.max_message_size(MAX_FRAME_LEN)
        .max_frame_size(MAX_FRAME_LEN)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| accept(session, socket))
}

async fn accept(session: Arc<Session>, mut socket: WebSocket) {
    let id = session.info().id;
    // The official client pings right after connecting, possibly before OpenDataChannel.
    let first_text = async {
        loop {
            match socket.recv().await {
                Some(Ok(Message::Text(text))) => {
                    break serde_json::from_str::<OpenDataChannel>(&text).ok();
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => break None,
            }
        }
    };
    let open = tokio::time::timeout(OPEN_TIMEOUT, first_text)
        .await
        .ok()
        .flatten();
    let Some(open) = open else {
        debug!(session_id = %id, "data channel opened without a valid OpenDataChannel");
        close(&mut socket, CLOSE_INVALID_TOKEN, "expected OpenDataChannel").await;
        return;
    };
    if !session.take_token(&open.token_value) {
        warn!(session_id = %id, "data channel refused: wrong or used token");
        close(&mut socket, CLOSE_INVALID_TOKEN, "invalid token").await;
        return;
    }
    if let Err(mut socket) = session.attach(Box::new(socket)) {
        close(&mut socket, CLOSE_SESSION_ENDED, "session is over").await;
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    // The peer may be gone already; there is nothing more to tell it.
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// The modes of one session: the node's settings over the command-line defaults.
#[derive(Debug, Clone)]
struct Modes {
    handshake: Option<AgentHandshake>,
    pace: bool,
    echo: bool,
}

fn modes(state: &State, node: &Node, document: &str) -> Modes {
    let c = &state.config;
    let kms_key_id = node.kms_key_id.clone().or_else(|| c.kms_key_id.clone());
    let session_type = if document == "AWS-StartInteractiveCommand" {
        payload::session_type::INTERACTIVE_COMMANDS
    } else {
        payload::session_type::STANDARD_STREAM
    };
    let handshake =
        (node.handshake.unwrap_or(c.handshake) || kms_key_id.is_some()).then(|| AgentHandshake {
            session_type: session_type.into(),
            properties: serde_json::Value::Null,
            random_challenge: c.kms_challenge && kms_key_id.is_some(),
            kms_key_id,
        });
    Modes {
        handshake,
        pace: node.pace.unwrap_or(c.pace),
        echo: node.echo.unwrap_or(c.echo),
    }
}

/// Starts the agent task of a new session. It runs until the shell exits or the session is
/// terminated, taking data-channel sockets from `commands` as clients (re)connect.
pub fn spawn_session(
    state: Arc<State>,
    session: Arc<Session>,
    commands: mpsc::Receiver<SessionCommand>,
) {
    let info = session.info();
    let span = info_span!("emulated_session", session_id = %info.id, target = %info.target);
    tokio::spawn(
        async move {
            let outcome = run(state, &session, commands).await;
            match outcome {
                Ok(status) => session.set_status(status, None),
                Err(error) => {
                    warn!(%error, "session failed");
                    session.set_status(SessionStatus::Failed, Some(error));
                }
            }
        }
        .instrument(span),
    );
}

/// A message for the PTY writer task.
enum PtyWrite {
    Input(Vec<u8>),
    Resize(u32, u32),
}

/// The current data-channel socket, if any, and when the last one went away.
struct Link {
    conn: Option<Conn>,
    disconnected_at: Option<Instant>,
}

/// The socket and its per-socket state.
struct Conn {
    socket: WebSocket,
    opened: Instant,
    last_pong: Instant,
}

impl Link {
    fn attach(&mut self, socket: WebSocket, channel: &mut Channel, session: &Session) {
        if let Some(old) = self.conn.take() {
            // Closing may block on a dead peer: do it aside, bounded.
            tokio::spawn(async move {
                let mut old = old;
                close(
                    &mut old.socket,
                    CLOSE_SESSION_ENDED,
                    "replaced by a new connection",
                )
                .await;
            });
        }
        let now = Instant::now();
        self.conn = Some(Conn {
            socket,
            opened: now,
            last_pong: now,
        });
        self.disconnected_at = None;
        channel.socket_opened(std::time::Instant::now(), None);
        session.set_status(SessionStatus::Connected, None);
    }

    fn lose(&mut self, channel: &mut Channel, session: &Session, why: &str) {
        if self.conn.take().is_some() {
            debug!(why, "data channel socket gone");
            self.disconnected_at = Some(Instant::now());
            channel.socket_closed();
            session.set_status(SessionStatus::Disconnected, None);
        }
    }

    /// Closes the socket with 1000 "Bye", as the service does every hour; the session waits
    /// for the client to resume.
    fn bye(&mut self, channel: &mut Channel, session: &Session) {
        if let Some(mut c) = self.conn.take() {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(WRITE_TIMEOUT, close(&mut c.socket, CLOSE_BYE, "Bye"))
                    .await;
            });
            self.disconnected_at = Some(Instant::now());
            channel.socket_closed();
            session.set_status(SessionStatus::Disconnected, None);
        }
    }

    /// Writes `frames`, each within [`WRITE_TIMEOUT`]; a failed or stuck write loses the socket.
    async fn send(&mut self, frames: &mut Vec<Bytes>, channel: &mut Channel, session: &Session) {
        let Some(c) = self.conn.as_mut() else {
            frames.clear();
            return;
        };
        let mut failed = false;
        for frame in frames.drain(..) {
            if failed {
                continue; // the rest are in the channel's unacked buffer and go out again
            }
            let sent =
                tokio::time::timeout(WRITE_TIMEOUT, c.socket.send(Message::Binary(frame))).await;
            failed = !matches!(sent, Ok(Ok(())));
        }
        if failed {
            self.lose(channel, session, "write failed or timed out");
        }
    }
}

/// The shell process: its pid (also its session id), whether it has exited, and whether its
/// terminal reported end of file (nothing holds it any more).
struct ShellState {
    child: tokio::process::Child,
    sid: Option<i32>,
    exited: bool,
    eof: bool,
}

async fn run(
    state: Arc<State>,
    session: &Session,
    mut commands: mpsc::Receiver<SessionCommand>,
) -> Result<SessionStatus, String> {
    let info = session.info();
    let node = state
        .node(&info.target)
        .cloned()
        .ok_or("the node is gone")?;
    let modes = modes(&state, &node, &info.document);

    // Nothing runs until a client connects (or the session is terminated first).
    let first = loop {
        match commands.recv().await {
            Some(SessionCommand::Attach(socket)) => break socket,
            Some(SessionCommand::Disconnect) => {} // no socket yet
            Some(SessionCommand::Terminate) | None => return Ok(SessionStatus::Terminated),
        }
    };

    let home = state
        .config
        .data_dir
        .join("nodes")
        .join(&node.id)
        .join("home");
    let spec = match info.parameters.get("command").and_then(|v| v.first()) {
        Some(command) if info.document == "AWS-StartInteractiveCommand" => {
            ShellSpec::command(command, home)
        }
        _ => ShellSpec::login(state.config.shell.as_deref(), home),
    };
    let (mut reader, writer, mut shell) = if modes.echo {
        (None, None, None)
    } else {
        let spawned =
            pty::spawn(&spec, 80, 24).map_err(|e| format!("cannot start the shell: {e}"))?;
        let sid = spawned.child.id().and_then(|p| i32::try_from(p).ok());
        info!(pid = sid, "shell started");
        let (read, write) = spawned.pty.into_split();
        let (writer, rx) = mpsc::channel::<PtyWrite>(INPUT_QUEUE);
        tokio::spawn(pty_writer(write, rx));
        let state = ShellState {
            child: spawned.child,
            sid,
            exited: false,
            eof: false,
        };
        (Some(read), Some(writer), Some(state))
    };

    let config = ChannelConfig {
        handshake: modes.handshake.clone(),
        send_window: SEND_WINDOW,
        ..ChannelConfig::agent(info.id.clone(), node.id.clone())
    };
    let mut channel = Channel::new(config, std::time::Instant::now(), unix_ms());
    let seed = state.config.seed ^ fnv(&info.id);
    let mut out_faults = FaultInjector::<Bytes>::new(state.config.faults, seed);
    let mut in_faults = FaultInjector::<Bytes>::new(state.config.faults, seed.rotate_left(17));

    let mut link = Link {
        conn: None,
        disconnected_at: None,
    };
    link.attach(*first, &mut channel, session);
    if shell.is_none() {
        // An echo agent has no shell prompt; it greets instead, which is what lets a client
        // in the plain flow start.
        let _ = channel.send_output(b"porthole echo agent\r\n", std::time::Instant::now());
    }

    let mut pending_input: VecDeque<PtyWrite> = VecDeque::new();
    // The PTY read buffer; an echo agent reads no PTY, and at 10,000 sessions 16 KiB each
    // would be 160 MiB for nothing.
    let mut buf = match (&reader, modes.pace) {
        (None, _) => Vec::new(),
        (Some(_), true) => vec![0u8; 1024],
        (Some(_), false) => vec![0u8; 16 * 1024],
    };
    let mut ping = tokio::time::interval(state.config.ping_interval);
    ping.reset();
    let mut held_since: Option<Instant> = None;
    let mut drain_deadline: Option<Instant> = None;
    let mut frames = Vec::new();

    let status = loop {
        // Act on the machine's events.
        let mut ended: Option<CloseReason> = None;
        while let Some(event) = channel.poll_event() {
            match event {
                Event::Input(bytes) => match &shell {
                    Some(_) => pending_input.push_back(PtyWrite::Input(bytes)),
                    // Echo mode: input comes straight back as output.
                    None => {
                        let _ = channel.send_output(&bytes, std::time::Instant::now());
                    }
                },
                Event::Resize(size) if shell.is_some() => {
                    if pty::valid_size(size.cols, size.rows) {
                        pending_input.push_back(PtyWrite::Resize(size.cols, size.rows));
                    } else {
                        warn!(
                            cols = size.cols,
                            rows = size.rows,
                            "ignored an out-of-range terminal size"
                        );
                    }
                }
                Event::DecryptNeeded {
                    ciphertext_blob,
                    encryption_context,
                } => {
                    let now = std::time::Instant::now();
                    let result = match state.kms.decrypt(&ciphertext_blob, &encryption_context) {
                        Ok((key, _)) => channel.provide_decrypted_key(&key, now),
                        Err(error) => channel.decrypt_failed(&error.to_string()),
                    };
                    if let Err(error) = result {
                        ended = Some(CloseReason::HandshakeFailed {
                            reason: error.to_string(),
                        });
                    }
                }
                Event::Closed(reason) => ended = Some(reason),
                _ => {}
            }
        }
        if let Some(reason) = ended {
            // Reported the way the service does: channel_closed with the reason as Output.
            let text = match &reason {
                CloseReason::HandshakeFailed { reason } => format!("Handshake failed: {reason}"),
                other => other.to_string(),
            };
            warn!(reason = %text, "session failed");
            kill_shell(&mut shell).await;
            finish(&mut channel, &mut link, &text).await;
            break SessionStatus::Failed;
        }

        // Write what the machine produced (after its events: an echo agent's output for the
        // input just read goes out now, not at the next wake-up), through the outgoing faults.
        while let Some(t) = channel.poll_transmit() {
            if let Transmit::Binary(frame) = t {
                out_faults.apply(frame, &mut frames);
            }
        }
        link.send(&mut frames, &mut channel, session).await;
        held_since = if out_faults.is_holding() || in_faults.is_holding() {
            held_since.or_else(|| Some(Instant::now()))
        } else {
            None
        };

        let shell_over = shell.as_ref().is_some_and(|s| s.eof);
        if shell_over {
            let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
            if channel.is_drained() || Instant::now() >= deadline {
                kill_shell(&mut shell).await;
                finish(&mut channel, &mut link, "").await;
                break SessionStatus::Terminated;
            }
        }

        let read_output = shell.as_ref().is_some_and(|s| !s.eof)
            && channel.pending_bytes() < OUTPUT_HIGH_WATER
            && channel.unacked_len() < SEND_WINDOW;
        // Incoming frames become PTY input (or echo output): stop reading while those back up.
        let read_socket =
            pending_input.len() < INPUT_QUEUE && channel.pending_bytes() < OUTPUT_HIGH_WATER;
        let shell_running = shell.as_ref().is_some_and(|s| !s.exited);
        let timeout = channel.poll_timeout().map(Instant::from_std);
        let disconnect_at = match (&link.conn, state.config.disconnect_every) {
            (Some(c), Some(every)) => c.opened.checked_add(every),
            _ => None,
        };
        let idle_deadline = link
            .disconnected_at
            .and_then(|t| t.checked_add(IDLE_TIMEOUT));
        let flush_at = held_since.map(|t| t + REORDER_HOLD);

        tokio::select! {
            command = commands.recv() => match command {
                Some(SessionCommand::Attach(socket)) => {
                    info!("client reconnected");
                    link.attach(*socket, &mut channel, session);
                }
                Some(SessionCommand::Disconnect) => {
                    info!("forced disconnect (asked for)");
                    link.bye(&mut channel, session);
                }
                Some(SessionCommand::Terminate) | None => {
                    info!("session terminated");
                    session.set_status(SessionStatus::Terminating, None);
                    kill_shell(&mut shell).await;
                    finish(&mut channel, &mut link, "").await;
                    break SessionStatus::Terminated;
                }
            },
            incoming = recv(&mut link.conn), if read_socket => match incoming {
                Incoming::Message(Message::Binary(_)) if session.is_frozen() => {}
                Incoming::Message(Message::Binary(frame)) => {
                    in_faults.apply(frame, &mut frames);
                    for frame in frames.drain(..) {
                        if let Err(error) = channel.handle_incoming(&frame, std::time::Instant::now()) {
                            debug!(%error, "ignored an incoming frame");
                        }
                    }
                }
                Incoming::Message(Message::Pong(_)) => {
                    if let Some(c) = link.conn.as_mut() {
                        c.last_pong = Instant::now();
                    }
                }
                Incoming::Message(Message::Text(_) | Message::Ping(_)) => {}
                Incoming::TooLarge => {
                    if let Some(c) = link.conn.as_mut() {
                        warn!(limit = MAX_FRAME_LEN, "closing a socket that sent an oversized frame");
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, close(&mut c.socket, CLOSE_TOO_LARGE, "frame too large")).await;
                    }
                    link.lose(&mut channel, session, "oversized frame");
                }
                Incoming::Message(Message::Close(_)) | Incoming::Gone => {
                    link.lose(&mut channel, session, "closed by the client");
                }
            },
            read = read_pty(&mut reader, &mut buf), if read_output => match read {
                Ok(0) | Err(_) => {
                    // EOF or EIO: nothing holds the terminal any more.
                    debug!("terminal closed");
                    if let Some(s) = shell.as_mut() {
                        s.eof = true;
                    }
                    let _ = channel.flush_output(std::time::Instant::now());
                }
                Ok(n) => {
                    let _ = channel.send_output(&buf[..n], std::time::Instant::now());
                    if modes.pace {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            },
            _ = wait_shell(&mut shell), if shell_running => {
                // The shell exited. Whatever it left running (background jobs) goes with it, as
                // the session ends; the terminal then reports EOF once its output is read.
                debug!("shell exited");
                if let Some(s) = shell.as_mut() {
                    s.exited = true;
                    kill_session(s.sid);
                }
            },
            permit = reserve(&writer), if !pending_input.is_empty() => {
                if let (Ok(permit), Some(write)) = (permit, pending_input.pop_front()) {
                    permit.send(write);
                }
            },
            _ = sleep_until(timeout) => {
                channel.handle_timeout(std::time::Instant::now());
            },
            _ = sleep_until(disconnect_at) => {
                info!("forced disconnect (--disconnect-every)");
                link.bye(&mut channel, session);
            },
            _ = sleep_until(idle_deadline) => {
                info!("no client for the idle timeout; terminating");
                kill_shell(&mut shell).await;
                break SessionStatus::Terminated;
            },
            _ = sleep_until(flush_at) => {
                out_faults.flush(&mut frames);
                link.send(&mut frames, &mut channel, session).await;
                in_faults.flush(&mut frames);
                for frame in frames.drain(..) {
                    let _ = channel.handle_incoming(&frame, std::time::Instant::now());
                }
                held_since = None;
            },
            _ = sleep_until(drain_deadline) => {},
            _ = ping.tick(), if link.conn.is_some() => {
                let dead = link.conn.as_ref().is_some_and(|c| c.last_pong.elapsed() > state.config.ping_interval + PONG_TIMEOUT);
                if dead {
                    warn!("no pong; dropping the socket");
                    link.lose(&mut channel, session, "no pong");
                } else if let Some(c) = link.conn.as_mut() {
                    let ping = c.socket.send(Message::Ping(Bytes::from_static(b"keepalive")));
                    if !matches!(tokio::time::timeout(WRITE_TIMEOUT, ping).await, Ok(Ok(()))) {
                        link.lose(&mut channel, session, "ping failed");
                    }
                }
            },
        }
    };
    kill_shell(&mut shell).await;
    Ok(status)
}

/// Kills the shell's whole session and reaps the shell (idempotent).
async fn kill_shell(shell: &mut Option<ShellState>) {
    if let Some(s) = shell.as_mut() {
        pty::kill(s.sid, &mut s.child).await;
        s.exited = true;
    }
}

fn kill_session(sid: Option<i32>) {
    if let Some(sid) = sid {
        pty::kill_session(sid);
    }
}

/// Sends `channel_closed` with `output` and closes the socket, each step bounded.
async fn finish(channel: &mut Channel, link: &mut Link, output: &str) {
    channel.close(output, std::time::Instant::now());
    if let Some(mut c) = link.conn.take() {
        let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
            while let Some(t) = channel.poll_transmit() {
                if let Transmit::Binary(frame) = t
                    && c.socket.send(Message::Binary(frame)).await.is_err()
                {
                    break;
                }
            }
            close(&mut c.socket, CLOSE_SESSION_ENDED, "session ended").await;
        })
        .await;
    }
}

/// What one read of the data-channel socket gave.
enum Incoming {
    Message(Message),
    /// The peer sent a frame over [`MAX_FRAME_LEN`].
    TooLarge,
    /// Closed or broken.
    Gone,
}

async fn recv(conn: &mut Option<Conn>) -> Incoming {
    match conn {
        Some(c) => match c.socket.recv().await {
            Some(Ok(message)) => Incoming::Message(message),
            Some(Err(error)) => {
                let inner = error.into_inner();
                let too_large = inner
                    .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
                    .is_some_and(|e| {
                        matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_))
                    });
                if too_large {
                    Incoming::TooLarge
                } else {
                    Incoming::Gone
                }
            }
            None => Incoming::Gone,
        },
        None => std::future::pending().await,
    }
}

async fn read_pty(
    reader: &mut Option<pty_process::OwnedReadPty>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match reader {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn wait_shell(shell: &mut Option<ShellState>) {
    match shell {
        Some(s) => {
            let _ = s.child.wait().await; // an error also means there is nothing to wait for
        }
        None => std::future::pending().await,
    }
}

async fn reserve(
    writer: &Option<mpsc::Sender<PtyWrite>>,
) -> Result<mpsc::Permit<'_, PtyWrite>, mpsc::error::SendError<()>> {
    match writer {
        Some(w) => w.reserve().await,
        None => std::future::pending().await,
    }
}

async fn pty_writer(mut write: pty_process::OwnedWritePty, mut rx: mpsc::Receiver<PtyWrite>) {
    while let Some(message) = rx.recv().await {
        match message {
            PtyWrite::Input(bytes) => {
                if write.write_all(&bytes).await.is_err() {
                    break; // the shell is gone
                }
            }
            PtyWrite::Resize(cols, rows) => {
                if let Err(error) = write.resize(pty::pty_size(cols, rows)) {
                    debug!(%error, "resize failed");
                }
            }
        }
    }
}

/// FNV-1a, to derive a per-session fault seed from the session id.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
