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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    ws.max_message_size(MAX_FRAME_LEN)
        .max_frame_size(MAX_FRAME_LEN)
        .on_upgrade(move |socket| accept(session, socket))
}

async fn accept(session: Arc<Session>, mut socket: WebSocket) {
    let id = session.info().id;
    let open = match tokio::time::timeout(OPEN_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<OpenDataChannel>(&text).ok(),
        _ => None,
    };
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

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
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

/// The socket and its per-socket state.
struct Conn {
    socket: WebSocket,
    opened: Instant,
    last_pong: Instant,
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
    let first = match commands.recv().await {
        Some(SessionCommand::Attach(socket)) => socket,
        Some(SessionCommand::Terminate) | None => return Ok(SessionStatus::Terminated),
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
    let (mut reader, writer_tx, mut child) = if modes.echo {
        (None, None, None)
    } else {
        let shell =
            pty::spawn(&spec, 80, 24).map_err(|e| format!("cannot start the shell: {e}"))?;
        info!(pid = shell.child.id(), "shell started");
        let (read, write) = shell.pty.into_split();
        let (tx, rx) = mpsc::channel::<PtyWrite>(INPUT_QUEUE);
        tokio::spawn(pty_writer(write, rx));
        (Some(read), Some(tx), Some(shell.child))
    };

    let config = ChannelConfig {
        handshake: modes.handshake.clone(),
        send_window: SEND_WINDOW,
        seed: None,
        ..ChannelConfig::agent(info.id.clone(), node.id.clone())
    };
    let mut channel = Channel::new(config, std::time::Instant::now(), unix_ms());
    let seed = state.config.seed ^ fnv(&info.id);
    let mut out_faults = FaultInjector::<Bytes>::new(state.config.faults, seed);
    let mut in_faults = FaultInjector::<Bytes>::new(state.config.faults, seed.rotate_left(17));

    let mut conn = Some(Conn {
        socket: *first,
        opened: Instant::now(),
        last_pong: Instant::now(),
    });
    session.set_status(SessionStatus::Connected, None);
    channel.socket_opened(std::time::Instant::now(), None);

    let mut pending_input: VecDeque<PtyWrite> = VecDeque::new();
    let mut buf = vec![0u8; if modes.pace { 1024 } else { 16 * 1024 }];
    let mut ping = tokio::time::interval(state.config.ping_interval);
    ping.reset();
    let mut disconnected_at: Option<Instant> = None;
    let mut held_since: Option<Instant> = None;
    let mut shell_done = false;
    let mut drain_deadline: Option<Instant> = None;
    let mut frames = Vec::new();

    let status = loop {
        // Write what the machine produced, through the outgoing faults.
        while let Some(t) = channel.poll_transmit() {
            let Transmit::Binary(frame) = t else { continue };
            out_faults.apply(frame, &mut frames);
        }
        if let Some(c) = conn.as_mut() {
            for frame in frames.drain(..) {
                if c.socket.send(Message::Binary(frame)).await.is_err() {
                    break;
                }
            }
        }
        frames.clear();
        if out_faults.is_holding() || in_faults.is_holding() {
            held_since.get_or_insert_with(Instant::now);
        } else {
            held_since = None;
        }

        // Act on the machine's events.
        let mut ended: Option<CloseReason> = None;
        while let Some(event) = channel.poll_event() {
            match event {
                Event::Input(bytes) => match &writer_tx {
                    Some(_) => pending_input.push_back(PtyWrite::Input(bytes)),
                    None => {
                        // Echo mode: input comes straight back as output.
                        let _ = channel.send_output(&bytes, std::time::Instant::now());
                    }
                },
                Event::Resize(size) => {
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
                Event::Ready { handshake } => {
                    debug!(
                        encrypted = handshake.as_ref().is_some_and(|h| h.encrypted),
                        "session ready"
                    )
                }
                _ => {}
            }
        }
        if let Some(reason) = ended {
            // A handshake failure is reported to the client like the agent does: the service
            // closes the channel with the reason as its Output.
            let text = match &reason {
                CloseReason::HandshakeFailed { reason } => format!("Handshake failed: {reason}"),
                other => other.to_string(),
            };
            finish(&mut channel, &mut conn, &text).await;
            if let Some(child) = child.as_mut() {
                pty::kill(child).await;
            }
            break SessionStatus::Failed;
        }
        if shell_done {
            let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
            if channel.is_drained()
                || Instant::now() >= deadline
                || conn.is_none() && channel.unacked_len() == 0
            {
                finish(&mut channel, &mut conn, "").await;
                break SessionStatus::Terminated;
            }
        }

        let read_output = reader.is_some()
            && !shell_done
            && channel.pending_bytes() < OUTPUT_HIGH_WATER
            && channel.unacked_len() < SEND_WINDOW;
        let timeout = channel.poll_timeout().map(Instant::from_std);
        let disconnect_at = match (&conn, state.config.disconnect_every) {
            (Some(c), Some(every)) => Some(c.opened + every),
            _ => None,
        };
        let idle_deadline = disconnected_at.map(|t| t + IDLE_TIMEOUT);
        let flush_at = held_since.map(|t| t + REORDER_HOLD);
        let drain_tick = drain_deadline.map(|_| Instant::now() + Duration::from_millis(20));

        tokio::select! {
            command = commands.recv() => match command {
                Some(SessionCommand::Attach(socket)) => {
                    if let Some(mut old) = conn.take() {
                        close(&mut old.socket, CLOSE_SESSION_ENDED, "replaced by a new connection").await;
                    }
                    info!("client reconnected");
                    conn = Some(Conn { socket: *socket, opened: Instant::now(), last_pong: Instant::now() });
                    disconnected_at = None;
                    channel.socket_opened(std::time::Instant::now(), None);
                    session.set_status(SessionStatus::Connected, None);
                }
                Some(SessionCommand::Terminate) | None => {
                    info!("session terminated");
                    session.set_status(SessionStatus::Terminating, None);
                    if let Some(child) = child.as_mut() {
                        pty::kill(child).await;
                    }
                    finish(&mut channel, &mut conn, "").await;
                    break SessionStatus::Terminated;
                }
            },
            incoming = recv(&mut conn) => match incoming {
                Incoming::Message(Message::Binary(frame)) => {
                    in_faults.apply(frame, &mut frames);
                    for frame in frames.drain(..) {
                        if let Err(error) = channel.handle_incoming(&frame, std::time::Instant::now()) {
                            debug!(%error, "ignored an incoming frame");
                        }
                    }
                }
                Incoming::Message(Message::Pong(_)) => {
                    if let Some(c) = conn.as_mut() {
                        c.last_pong = Instant::now();
                    }
                }
                Incoming::Message(Message::Text(_) | Message::Ping(_)) => {}
                Incoming::TooLarge | Incoming::Message(Message::Close(_)) | Incoming::Gone => {
                    if let (Incoming::TooLarge, Some(c)) = (&incoming, conn.as_mut()) {
                        warn!(limit = MAX_FRAME_LEN, "closing a socket that sent an oversized frame");
                        close(&mut c.socket, CLOSE_TOO_LARGE, "frame too large").await;
                    }
                    debug!("client socket closed");
                    conn = None;
                    disconnected_at = Some(Instant::now());
                    session.set_status(SessionStatus::Disconnected, None);
                }
            },
            read = read_pty(&mut reader, &mut buf), if read_output => match read {
                Ok(0) | Err(_) => {
                    // EIO or EOF: every holder of the terminal has gone.
                    debug!("shell exited");
                    shell_done = true;
                    let _ = channel.flush_output(std::time::Instant::now());
                    if let Some(child) = child.as_mut() {
                        let _ = child.wait().await;
                    }
                }
                Ok(n) => {
                    let _ = channel.send_output(&buf[..n], std::time::Instant::now());
                    if modes.pace {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            },
            permit = reserve(&writer_tx), if !pending_input.is_empty() => {
                if let (Ok(permit), Some(write)) = (permit, pending_input.pop_front()) {
                    permit.send(write);
                }
            },
            _ = sleep_until(timeout) => {
                channel.handle_timeout(std::time::Instant::now());
            },
            _ = sleep_until(disconnect_at) => {
                if let Some(mut c) = conn.take() {
                    info!("forced disconnect (--disconnect-every)");
                    close(&mut c.socket, CLOSE_BYE, "Bye").await;
                    disconnected_at = Some(Instant::now());
                    session.set_status(SessionStatus::Disconnected, None);
                }
            },
            _ = sleep_until(idle_deadline) => {
                info!("no client for the idle timeout; terminating");
                if let Some(child) = child.as_mut() {
                    pty::kill(child).await;
                }
                break SessionStatus::Terminated;
            },
            _ = sleep_until(flush_at) => {
                out_faults.flush(&mut frames);
                if let Some(c) = conn.as_mut() {
                    for frame in frames.drain(..) {
                        let _ = c.socket.send(Message::Binary(frame)).await;
                    }
                }
                frames.clear();
                in_faults.flush(&mut frames);
                for frame in frames.drain(..) {
                    let _ = channel.handle_incoming(&frame, std::time::Instant::now());
                }
                held_since = None;
            },
            _ = sleep_until(drain_tick) => {},
            _ = ping.tick(), if conn.is_some() => {
                if let Some(c) = conn.as_mut() {
                    if c.last_pong.elapsed() > state.config.ping_interval + PONG_TIMEOUT {
                        warn!("no pong; dropping the socket");
                        conn = None;
                        disconnected_at = Some(Instant::now());
                        session.set_status(SessionStatus::Disconnected, None);
                    } else {
                        let _ = c.socket.send(Message::Ping(Bytes::from_static(b"keepalive"))).await;
                    }
                }
            },
        }
    };
    if let Some(child) = child.as_mut() {
        pty::kill(child).await;
    }
    Ok(status)
}

/// Sends `channel_closed` with `output` and closes the socket.
async fn finish(channel: &mut Channel, conn: &mut Option<Conn>, output: &str) {
    channel.close(output, std::time::Instant::now());
    if let Some(mut c) = conn.take() {
        while let Some(t) = channel.poll_transmit() {
            if let Transmit::Binary(frame) = t {
                let _ = c.socket.send(Message::Binary(frame)).await;
            }
        }
        close(&mut c.socket, CLOSE_SESSION_ENDED, "session ended").await;
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
                let too_large = error
                    .into_inner()
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

async fn reserve(
    tx: &Option<mpsc::Sender<PtyWrite>>,
) -> Result<mpsc::Permit<'_, PtyWrite>, mpsc::error::SendError<()>> {
    match tx {
        Some(tx) => tx.reserve().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
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
