//! The data-channel state machine, sans IO, for both roles: the client (Porthole's gateway, like
//! the official session-manager-plugin) and the agent (the emulator's side).
//!
//! The machine owns everything a session needs on the wire: per-direction sequence counters, the
//! buffer of unacknowledged messages with its retransmission timer, the bounded out-of-order
//! buffer, acknowledgements (including re-acks of duplicates), both start flows (plain shell
//! without a handshake; handshake with or without KMS and its challenge), input and output
//! chunking, publication pause, `channel_closed`, and the socket-replacement step used by
//! `ResumeSession`. It never touches a socket, a task or a clock: the IO layer feeds it frames,
//! user data and the current [`Instant`], then drains [`Channel::poll_transmit`] and
//! [`Channel::poll_event`] and sleeps until [`Channel::poll_timeout`].
//!
//! The machine never drops user data: input or output it cannot send yet (session not ready,
//! publication paused, send window full) waits in a queue whose size the IO layer reads through
//! [`Channel::pending_bytes`] to apply backpressure.
//!
//! A ready client channel can move to another process: [`Channel::freeze`] copies it into a
//! plain-data [`ChannelState`] (versioned bytes through [`ChannelState::to_bytes`] and
//! [`ChannelState::from_bytes`]; they hold the KMS data key), and [`Channel::restore`] makes a
//! channel of it again with no socket, which the next [`Channel::socket_opened`] continues like
//! any resume. The [`state`] module documents what is carried, the encoding and why no byte is
//! lost or delivered twice.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{BufMut as _, Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use super::codec::{
    self, DecodeError, FLAG_FIN, FLAG_SYN, Header, MessageType, PayloadType, PrefixedSha256,
};
use super::crypto::{self, KeySide, PayloadCipher};
use super::payload::{self, action_status, action_type};
use super::rto::RttEstimator;
use super::utf8::Utf8Chunker;

pub mod state;
pub use state::{CHANNEL_STATE_VERSION, ChannelState, ChannelStateError};

/// The most bytes of user data in one stream payload (keystrokes or output).
pub const MAX_STREAM_PAYLOAD: usize = 1024;
/// Out-of-order messages buffered before further ones are dropped unacknowledged (the
/// official client's capacity).
pub const DEFAULT_REORDER_CAPACITY: usize = 10_000;
/// Unacknowledged messages in flight before new data waits (the official client's capacity).
pub const DEFAULT_SEND_WINDOW: usize = 10_000;
/// Default [`ChannelConfig::hold_bytes`]: 1 MiB, about a second of the agent's bulk output.
pub const DEFAULT_HOLD_BYTES: usize = 1 << 20;
/// How long one message may go unacknowledged (while a socket is open and publication is not
/// paused) before the channel gives up: the official client's 3,000 resends at its 100 ms tick.
pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(300);
/// How long the agent waits for each handshake reply before failing the session.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// The most actions a HandshakeRequest may ask for (real agents send one or two); more would
/// make a HandshakeResponse too large to frame.
pub const MAX_HANDSHAKE_ACTIONS: usize = 16;

/// The client version reported in OpenDataChannel and HandshakeResponse: a realistic 4-part
/// version above every feature threshold the agent checks.
pub const DEFAULT_CLIENT_VERSION: &str = "1.2.814.0";
/// The agent version reported in HandshakeRequest (re-acks, RandomChallenge, heartbeat).
pub const DEFAULT_AGENT_VERSION: &str = "3.3.2299.0";

/// Encryption-context key naming the session.
pub const CONTEXT_SESSION_ID: &str = "aws:ssm:SessionId";
/// Encryption-context key naming the target.
pub const CONTEXT_TARGET_ID: &str = "aws:ssm:TargetId";
/// Encryption-context key carrying the agent's random challenge.
pub const CONTEXT_RANDOM_CHALLENGE: &str = "aws:ssm:RandomChallenge";

/// Which side of the data channel this machine plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends `input_stream_data`, receives `output_stream_data`.
    Client,
    /// Sends `output_stream_data`, receives `input_stream_data`.
    Agent,
}

/// What the agent asks for in its HandshakeRequest. Without one, the agent runs the plain
/// flow: no handshake, output straight away.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentHandshake {
    /// `Standard_Stream`, `InteractiveCommands`, …
    pub session_type: String,
    /// The document's plugin properties (null for shells).
    pub properties: serde_json::Value,
    /// Turn on KMS encryption with this key.
    pub kms_key_id: Option<String>,
    /// Send a RandomChallenge with the KMS action (agents ≥ 3.3.808.0).
    pub random_challenge: bool,
}

/// Settings of one channel.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Client or agent.
    pub role: Role,
    /// The SSM session id (for the KMS encryption context and `channel_closed`).
    pub session_id: String,
    /// The target as passed to StartSession (for the KMS encryption context).
    pub target_id: String,
    /// The client's id, reused on every reconnect.
    pub client_id: Uuid,
    /// Our version string (ClientVersion or AgentVersion).
    pub version: String,
    /// Agent role only: the handshake to run, or `None` for the plain flow.
    pub handshake: Option<AgentHandshake>,
    /// Out-of-order messages kept at most.
    pub reorder_capacity: usize,
    /// While incoming data is held back ([`Channel::hold_incoming`]): the payload bytes of
    /// messages ahead of order kept at most; beyond them, messages are dropped unacknowledged.
    pub hold_bytes: usize,
    /// Unacknowledged messages in flight at most.
    pub send_window: usize,
    /// How long one message may stay unacknowledged (counting only time with a socket open and
    /// publication running) before the channel gives up.
    pub give_up_after: Duration,
    /// Seed of the machine's generator (message ids, nonces, challenges); `None` draws one from
    /// the operating system. Tests fix it for reproducible runs.
    pub seed: Option<u64>,
}

impl ChannelConfig {
    /// Defaults for a client of `session_id` on `target_id`.
    pub fn client(session_id: impl Into<String>, target_id: impl Into<String>) -> Self {
        Self {
            role: Role::Client,
            session_id: session_id.into(),
            target_id: target_id.into(),
            client_id: Uuid::new_v4(),
            version: DEFAULT_CLIENT_VERSION.to_owned(),
            handshake: None,
            reorder_capacity: DEFAULT_REORDER_CAPACITY,
            hold_bytes: DEFAULT_HOLD_BYTES,
            send_window: DEFAULT_SEND_WINDOW,
            give_up_after: DEFAULT_GIVE_UP_AFTER,
            seed: None,
        }
    }

    /// Defaults for an agent of `session_id` on `target_id`, plain flow.
    pub fn agent(session_id: impl Into<String>, target_id: impl Into<String>) -> Self {
        Self {
            role: Role::Agent,
            version: DEFAULT_AGENT_VERSION.to_owned(),
            ..Self::client(session_id, target_id)
        }
    }
}

/// A frame for the IO layer to write to the WebSocket.
#[derive(Clone, PartialEq, Eq)]
pub enum Transmit {
    /// A text frame (OpenDataChannel).
    Text(String),
    /// A binary frame (one data-channel message).
    Binary(Bytes),
}

impl std::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // OpenDataChannel carries the token: never print it.
            Self::Text(_) => f.write_str("Text([redacted])"),
            Self::Binary(b) => write!(f, "Binary({} bytes)", b.len()),
        }
    }
}

/// What the handshake settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeSummary {
    /// The session type the agent named.
    pub session_type: String,
    /// The peer's version as it reported it (agent version on the client, client version on
    /// the agent).
    pub peer_version: String,
    /// HandshakeComplete's CustomerMessage, possibly empty.
    pub customer_message: String,
    /// Whether payloads are KMS-encrypted.
    pub encrypted: bool,
}

/// Why the channel is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The service sent `channel_closed`; `output` is its text (empty for a normal exit).
    Remote {
        /// The `Output` field.
        output: String,
    },
    /// Closed locally with [`Channel::close`].
    Local {
        /// The reason given.
        reason: String,
    },
    /// One message went unacknowledged through the resend limit.
    RetransmissionGaveUp {
        /// The message's sequence number.
        sequence_number: i64,
        /// Resends made.
        attempts: u32,
    },
    /// The handshake failed.
    HandshakeFailed {
        /// What went wrong, for a person.
        reason: String,
    },
    /// An encrypted payload did not decrypt.
    DecryptionFailed {
        /// The message's sequence number.
        sequence_number: i64,
    },
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Remote { output } if output.is_empty() => f.write_str("session ended"),
            Self::Remote { output } => write!(f, "session ended: {output}"),
            Self::Local { reason } => write!(f, "closed: {reason}"),
            Self::RetransmissionGaveUp {
                sequence_number,
                attempts,
            } => write!(
                f,
                "gave up after {attempts} resends of message {sequence_number} without an acknowledgement"
            ),
            Self::HandshakeFailed { reason } => write!(f, "handshake failed: {reason}"),
            Self::DecryptionFailed { sequence_number } => {
                write!(f, "message {sequence_number} failed to decrypt")
            }
        }
    }
}

/// Something the IO layer must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The session takes user data now: the handshake completed (`Some`) or, without one, the
    /// first output arrived (client) or the socket opened (agent).
    Ready {
        /// The handshake's outcome, if there was one.
        handshake: Option<HandshakeSummary>,
    },
    /// Client: terminal output (PayloadType 1), decrypted. Without encryption and with the
    /// frame fed through [`Channel::handle_incoming_bytes`], a slice of that frame (no copy,
    /// so it keeps the frame's buffer alive while it is held).
    Output(Bytes),
    /// Client: stderr output (PayloadType 11), decrypted; shared like [`Event::Output`].
    StdErr(Bytes),
    /// Client: the command's exit code (PayloadType 12).
    ExitCode(i32),
    /// Agent: keystrokes, decrypted.
    Input(Vec<u8>),
    /// Agent: the client's terminal size.
    Resize(payload::Size),
    /// A Flag payload (PayloadType 10).
    Flag(u32),
    /// Client: call `kms:GenerateDataKey` (64 bytes, this key and context), then
    /// [`Channel::provide_data_key`] or [`Channel::data_key_failed`].
    DataKeyNeeded {
        /// The KMS key id.
        key_id: String,
        /// The encryption context.
        encryption_context: BTreeMap<String, String>,
    },
    /// Agent: call `kms:Decrypt` on the blob with this context, then
    /// [`Channel::provide_decrypted_key`] or [`Channel::decrypt_failed`].
    DecryptNeeded {
        /// The CiphertextBlob the client sent.
        ciphertext_blob: Vec<u8>,
        /// The encryption context.
        encryption_context: BTreeMap<String, String>,
    },
    /// The service paused (`true`) or restarted (`false`) publication.
    Publication {
        /// Whether sending is paused.
        paused: bool,
    },
    /// The channel is over; nothing more will be sent or delivered.
    Closed(CloseReason),
}

/// Why an incoming frame was not processed. The channel state is unchanged unless noted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncomingError {
    /// The frame did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A MessageType this channel does not handle (e.g. `agent_session_state`): ignored.
    #[error("ignored message of unknown type {0:?}")]
    UnknownMessageType(String),
    /// Stream data travelling the wrong way (e.g. `input_stream_data` sent to the client).
    #[error("ignored {0} sent to the wrong side")]
    WrongDirection(&'static str),
    /// The out-of-order buffer is full; the frame was dropped without an acknowledgement.
    #[error("out-of-order buffer full ({capacity} messages); dropped message {sequence_number}")]
    ReorderBufferFull {
        /// The dropped message.
        sequence_number: i64,
        /// The buffer's capacity.
        capacity: usize,
    },
    /// A control payload was not valid.
    #[error("malformed {what} payload: {error}")]
    MalformedPayload {
        /// Which payload.
        what: &'static str,
        /// The parser's message.
        error: String,
    },
    /// The channel is closed; the frame was ignored.
    #[error("channel is closed")]
    Closed,
}

/// A call that does not fit the channel's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The call belongs to the other role.
    #[error("{0} is not available in this role")]
    WrongRole(&'static str),
    /// Nothing is waiting for this answer.
    #[error("{0} was not requested")]
    NotRequested(&'static str),
    /// The key material was unusable.
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    /// The channel is closed.
    #[error("channel is closed")]
    Closed,
    /// The session is not ready yet: the handshake has not completed (or, without one, no
    /// output has arrived). There is nothing to carry on elsewhere: start the session again.
    #[error("the session is not ready (its handshake has not completed), so it cannot be frozen")]
    NotReady,
    /// Events are waiting in [`Channel::poll_event`]; they would be lost by a freeze.
    #[error("{count} events are waiting to be polled; poll them before freezing")]
    EventsPending {
        /// How many.
        count: usize,
    },
}

/// Counters for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Stream messages sent (first transmissions).
    pub messages_sent: u64,
    /// Resends by timeout.
    pub resends: u64,
    /// Stream messages delivered in order.
    pub messages_delivered: u64,
    /// Duplicates received (and re-acknowledged).
    pub duplicates: u64,
    /// Messages that arrived ahead of order.
    pub out_of_order: u64,
    /// Stream messages left unacknowledged because the reader was holding incoming data
    /// ([`Channel::hold_incoming`]); the sender sends them again.
    pub held_back: u64,
    /// User bytes delivered (output on the client, input on the agent), after decryption.
    pub bytes_delivered: u64,
    /// User bytes queued for sending (input on the client, output on the agent).
    pub bytes_queued: u64,
    /// Sockets opened.
    pub sockets: u64,
}

#[derive(Debug)]
struct Unacked {
    frame: Bytes,
    /// Start of the give-up clock (reset when a socket opens or publication restarts).
    first_sent: Instant,
    last_sent: Instant,
    resends: u32,
    /// Sent more than once: its acknowledgement gives no RTT sample (Karn's rule).
    retransmitted: bool,
}

#[derive(Debug)]
struct Buffered {
    payload_type: PayloadType,
    payload: Bytes,
}

#[derive(Debug)]
enum Phase {
    /// Client: nothing received yet; the flow is not known.
    AwaitingFirst,
    /// Client: HandshakeResponse sent (or being built), waiting for HandshakeComplete.
    Handshaking {
        session_type: String,
        peer_version: String,
    },
    /// Client: waiting for the IO layer's GenerateDataKey result.
    AwaitingDataKey {
        session_type: String,
        peer_version: String,
        actions: Vec<payload::ProcessedClientAction>,
        kms_index: usize,
        challenge: bool,
    },
    /// Agent: HandshakeRequest not sent yet (no socket so far).
    AgentIdle,
    /// Agent: waiting for the HandshakeResponse.
    AwaitingResponse { since: Instant },
    /// Agent: waiting for the IO layer's Decrypt result.
    AwaitingDecrypt {
        since: Instant,
        peer_version: String,
    },
    /// Agent: EncChallengeRequest sent, waiting for the response.
    AwaitingChallenge {
        since: Instant,
        deadline: Instant,
        challenge: Vec<u8>,
        peer_version: String,
    },
    /// User data flows.
    Ready,
    /// Over.
    Closed,
}

/// Room an acknowledge frame needs at most: the header and its JSON with the longest
/// stream type name (32 bytes) and sequence number (20 characters).
const ACK_FRAME_ROOM: usize = codec::PAYLOAD_OFFSET + 256;
/// Acknowledge frames are carved out of blocks of this size (about 13 acks each).
const ACK_BLOCK: usize = 4096;

/// An incoming stream payload: its bytes and, when the frame came as [`Bytes`], that frame,
/// so that the payload can be handed on as a slice of it instead of a copy.
#[derive(Debug, Clone, Copy)]
struct Body<'a> {
    bytes: &'a [u8],
    shared: Option<&'a Bytes>,
}

impl Body<'_> {
    fn to_bytes(self) -> Bytes {
        match self.shared {
            Some(frame) => frame.slice_ref(self.bytes),
            None => Bytes::copy_from_slice(self.bytes),
        }
    }
}

/// One side of one data channel. See the module documentation.
#[derive(Debug)]
pub struct Channel {
    config: ChannelConfig,
    rng: StdRng,
    origin: Instant,
    origin_unix_ms: u64,
    phase: Phase,
    next_seq: i64,
    expected_seq: i64,
    unacked: BTreeMap<i64, Unacked>,
    reorder: BTreeMap<i64, Buffered>,
    pending: VecDeque<(PayloadType, Vec<u8>)>,
    pending_bytes: usize,
    transmit: VecDeque<Transmit>,
    events: VecDeque<Event>,
    rtt: RttEstimator,
    paused: bool,
    /// Whether new stream messages are refused (not acknowledged) because the reader above
    /// has no room for them: [`Channel::hold_incoming`].
    holding: bool,
    /// Whether a message was dropped while holding because [`ChannelConfig::hold_bytes`] was
    /// reached (see [`Channel::take_hold_overflow`]).
    hold_overflowed: bool,
    /// Payload bytes in `reorder`.
    reorder_bytes: usize,
    /// Whether a socket is open; without one nothing is sent or resent.
    connected: bool,
    cipher: Option<PayloadCipher>,
    chunker: Utf8Chunker,
    /// Where acknowledge frames are written and split off: the acks share an allocation,
    /// which is reused once the IO layer has dropped them, instead of one allocation each.
    ack_buf: BytesMut,
    /// SHA-256 state after the first 64 bytes of our acknowledge JSON, which never change
    /// for this role (`{"AcknowledgedMessageType":"<type>","AcknowledgedMes`).
    ack_hasher: Option<PrefixedSha256>,
    /// Agent: the RandomChallenge sent in the HandshakeRequest.
    sent_challenge: Option<String>,
    /// What the start settled, once ready (`None` without a handshake).
    summary: Option<HandshakeSummary>,
    stats: ChannelStats,
}

impl Channel {
    /// A new channel. `now` and `unix_ms` anchor the monotonic clock the IO layer passes in to
    /// wall-clock time, for the CreatedDate of frames.
    pub fn new(config: ChannelConfig, now: Instant, unix_ms: u64) -> Self {
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        let phase = match (config.role, &config.handshake) {
            (Role::Client, _) => Phase::AwaitingFirst,
            (Role::Agent, _) => Phase::AgentIdle,
        };
        Self {
            config,
            rng,
            origin: now,
            origin_unix_ms: unix_ms,
            phase,
            next_seq: 0,
            expected_seq: 0,
            unacked: BTreeMap::new(),
            reorder: BTreeMap::new(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            rtt: RttEstimator::default(),
            paused: false,
            holding: false,
            hold_overflowed: false,
            reorder_bytes: 0,
            connected: true,
            cipher: None,
            chunker: Utf8Chunker::default(),
            ack_buf: BytesMut::new(),
            ack_hasher: None,
            sent_challenge: None,
            summary: None,
            stats: ChannelStats::default(),
        }
    }

    // ----- queries -----

    /// The role.
    pub fn role(&self) -> Role {
        self.config.role
    }

    /// The configuration.
    pub fn config(&self) -> &ChannelConfig {
        &self.config
    }

    /// Whether user data flows (handshake done or not needed).
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// Whether the channel is over.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// What the handshake settled, once ready; `None` before, and for a session without a
    /// handshake.
    pub fn handshake(&self) -> Option<&HandshakeSummary> {
        self.summary.as_ref()
    }

    /// Whether publication is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether payloads are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// Holds back incoming data while `hold` is true, as the official client does while its
    /// display is not ready: the next message in order is dropped without an acknowledgement
    /// (so nothing is delivered and the sender keeps it for resending), messages after it are
    /// acknowledged and kept, up to [`ChannelConfig::hold_bytes`], and beyond that dropped
    /// unacknowledged too. Duplicates are still acknowledged and every control message
    /// (acknowledgements, pauses, the channel's close) is handled. The IO layer holds while
    /// its reader has no room, so that it keeps reading the socket, answering pings and seeing
    /// closes, with what waits bounded.
    pub fn hold_incoming(&mut self, hold: bool) {
        self.holding = hold;
    }

    /// Whether incoming data is held back ([`Channel::hold_incoming`]).
    pub fn is_holding(&self) -> bool {
        self.holding
    }

    /// Lets go of what earlier traffic left allocated: the block acknowledgements are written
    /// in (the next acknowledgement takes a new one) and the queues' spare room. For a quiet
    /// channel: the gateway calls it when a session compacts (docs/performance.md, "Idle
    /// memory"). Nothing sent, held or waiting is touched.
    pub fn shrink(&mut self) {
        self.ack_buf = BytesMut::new();
        self.pending.shrink_to_fit();
        self.transmit.shrink_to_fit();
        self.events.shrink_to_fit();
    }

    /// Bytes of spare room held by the channel's own buffers (the acknowledgement block and the
    /// queues' unused capacity): what [`Channel::shrink`] lets go of.
    pub fn spare_bytes(&self) -> usize {
        fn spare<T>(q: &VecDeque<T>) -> usize {
            (q.capacity() - q.len()) * std::mem::size_of::<T>()
        }
        self.ack_buf.capacity() + spare(&self.pending) + spare(&self.transmit) + spare(&self.events)
    }

    /// Whether messages were dropped while holding because the hold buffer was full, since
    /// the last call. The sender resends only its oldest unacknowledged message at a time, so
    /// the IO layer then reconnects: a sender resends everything unacknowledged on a new
    /// socket.
    pub fn take_hold_overflow(&mut self) -> bool {
        std::mem::take(&mut self.hold_overflowed)
    }

    /// User bytes waiting to be sent (not yet sequenced). The IO layer stops reading its
    /// source (browser or PTY) while this is above its bound.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes + self.chunker.carried()
    }

    /// Stream messages sent and not yet acknowledged.
    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    /// Out-of-order messages buffered.
    pub fn reorder_len(&self) -> usize {
        self.reorder.len()
    }

    /// Whether everything queued was sent and acknowledged.
    pub fn is_drained(&self) -> bool {
        self.unacked.is_empty() && self.pending.is_empty() && self.chunker.carried() == 0
    }

    /// The next sequence number this side will send.
    pub fn next_sequence_number(&self) -> i64 {
        self.next_seq
    }

    /// The sequence number expected next from the peer.
    pub fn expected_sequence_number(&self) -> i64 {
        self.expected_seq
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    /// Counters.
    pub fn stats(&self) -> ChannelStats {
        self.stats
    }

    // ----- IO-layer outputs -----

    /// The next frame to write, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmit.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Channel::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let handshake = match &self.phase {
            Phase::AwaitingResponse { since } => Some(*since + HANDSHAKE_TIMEOUT),
            Phase::AwaitingChallenge { deadline, .. } => Some(*deadline),
            Phase::Closed => return None,
            _ => None,
        };
        let resend = if self.paused || !self.connected {
            None
        } else {
            self.unacked
                .values()
                .next()
                .map(|u| u.last_sent + self.rtt.rto())
        };
        match (handshake, resend) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers: resends the oldest unacknowledged message when its RTO has passed,
    /// gives up past the resend limit, and fails an agent handshake that timed out.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &self.phase {
            Phase::AwaitingResponse { since } if now >= *since + HANDSHAKE_TIMEOUT => {
                return self.fail(CloseReason::HandshakeFailed {
                    reason: "no HandshakeResponse within 15 s; the client may need updating".into(),
                });
            }
            Phase::AwaitingChallenge { deadline, .. } if now >= *deadline => {
                return self.fail(CloseReason::HandshakeFailed {
                    reason: "no encryption challenge response within 15 s".into(),
                });
            }
            Phase::Closed => return,
            _ => {}
        }
        if self.paused || !self.connected {
            return;
        }
        let rto = self.rtt.rto();
        let give_up_after = self.config.give_up_after;
        let Some((&seq, oldest)) = self.unacked.iter_mut().next() else {
            return;
        };
        if now < oldest.last_sent + rto {
            return;
        }
        if now.saturating_duration_since(oldest.first_sent) >= give_up_after {
            let attempts = oldest.resends;
            return self.fail(CloseReason::RetransmissionGaveUp {
                sequence_number: seq,
                attempts,
            });
        }
        oldest.resends += 1;
        oldest.retransmitted = true;
        oldest.last_sent = now;
        self.transmit
            .push_back(Transmit::Binary(oldest.frame.clone()));
        self.stats.resends += 1;
    }

    // ----- IO-layer inputs -----

    /// A (new) WebSocket is open. The client passes the token to send OpenDataChannel first.
    /// Every counter and buffer is kept; frames not yet written to the old socket are
    /// discarded, every unacknowledged message is sent again, and a pause ends. The agent's
    /// first socket starts its handshake (or makes it ready, in the plain flow).
    pub fn socket_opened(&mut self, now: Instant, token: Option<&str>) {
        if self.is_closed() {
            return;
        }
        self.stats.sockets += 1;
        self.transmit.clear();
        if let (Role::Client, Some(token)) = (self.config.role, token) {
            let open = payload::OpenDataChannel {
                message_schema_version: payload::OPEN_DATA_CHANNEL_SCHEMA.to_owned(),
                request_id: self.random_uuid().to_string(),
                token_value: token.to_owned(),
                client_id: self.config.client_id.to_string(),
                client_version: self.config.version.clone(),
            };
            match serde_json::to_string(&open) {
                Ok(text) => self.transmit.push_back(Transmit::Text(text)),
                Err(error) => unreachable_json("OpenDataChannel", &error),
            }
        }
        self.connected = true;
        if self.paused {
            self.paused = false;
            self.events.push_back(Event::Publication { paused: false });
        }
        for entry in self.unacked.values_mut() {
            entry.first_sent = now;
            entry.last_sent = now;
            entry.retransmitted = true;
            self.transmit
                .push_back(Transmit::Binary(entry.frame.clone()));
        }
        if matches!(self.phase, Phase::AgentIdle) {
            self.start_agent(now);
        }
        self.flush_pending(now);
    }

    /// The socket is gone. Until [`Channel::socket_opened`], nothing is sent, nothing is resent
    /// and the give-up clock stands still; user data waits in the queue.
    pub fn socket_closed(&mut self) {
        self.connected = false;
        self.transmit.clear();
    }

    /// Feeds one binary frame received from the socket. Output is copied out of `frame`; an IO
    /// layer that holds the frame as [`Bytes`] uses [`Channel::handle_incoming_bytes`] instead.
    pub fn handle_incoming(&mut self, frame: &[u8], now: Instant) -> Result<(), IncomingError> {
        self.incoming(frame, None, now)
    }

    /// [`Channel::handle_incoming`] for a frame held as [`Bytes`] (as WebSocket libraries hand
    /// them over): unencrypted output is passed on as a slice of `frame`, without a copy.
    pub fn handle_incoming_bytes(
        &mut self,
        frame: &Bytes,
        now: Instant,
    ) -> Result<(), IncomingError> {
        self.incoming(frame, Some(frame), now)
    }

    /// `shared` is `frame` itself when the caller holds it as [`Bytes`].
    fn incoming(
        &mut self,
        frame: &[u8],
        shared: Option<&Bytes>,
        now: Instant,
    ) -> Result<(), IncomingError> {
        if self.is_closed() {
            return Err(IncomingError::Closed);
        }
        let msg = codec::decode(frame)?;
        match &msg.message_type {
            MessageType::Acknowledge => self.on_acknowledge(msg.payload, now),
            MessageType::ChannelClosed => {
                let closed: payload::ChannelClosed =
                    serde_json::from_slice(msg.payload).unwrap_or_default();
                self.fail(CloseReason::Remote {
                    output: closed.output,
                });
                Ok(())
            }
            MessageType::PausePublication => {
                if !self.paused {
                    self.paused = true;
                    self.events.push_back(Event::Publication { paused: true });
                }
                Ok(())
            }
            MessageType::StartPublication => {
                self.resume_publication(now);
                Ok(())
            }
            MessageType::InputStreamData | MessageType::OutputStreamData => {
                let expected = match self.config.role {
                    Role::Client => MessageType::OutputStreamData,
                    Role::Agent => MessageType::InputStreamData,
                };
                if msg.message_type != expected {
                    return Err(IncomingError::WrongDirection(match msg.message_type {
                        MessageType::InputStreamData => "input_stream_data",
                        _ => "output_stream_data",
                    }));
                }
                if self.config.role == Role::Agent {
                    self.resume_publication(now);
                }
                let body = Body {
                    bytes: msg.payload,
                    shared,
                };
                self.on_stream(&msg, body, now)
            }
            MessageType::Unknown(name) => Err(IncomingError::UnknownMessageType(name.clone())),
        }
    }

    /// Client: keystrokes or pasted bytes, split into payloads of at most 1,024 bytes. Held
    /// until the session is ready.
    pub fn send_input(&mut self, bytes: &[u8], now: Instant) -> Result<(), StateError> {
        self.require(Role::Client, "send_input")?;
        for chunk in bytes.chunks(MAX_STREAM_PAYLOAD) {
            self.queue(PayloadType::Output, chunk.to_vec());
        }
        self.flush_pending(now);
        Ok(())
    }

    /// Client: the terminal's size. A size still waiting in the queue is replaced.
    pub fn resize(&mut self, cols: u32, rows: u32, now: Instant) -> Result<(), StateError> {
        self.require(Role::Client, "resize")?;
        let body = format!("{{\"cols\":{cols},\"rows\":{rows}}}").into_bytes();
        if let Some((PayloadType::Size, last)) = self.pending.back_mut() {
            self.pending_bytes = self.pending_bytes - last.len() + body.len();
            *last = body;
        } else {
            self.queue(PayloadType::Size, body);
        }
        self.flush_pending(now);
        Ok(())
    }

    /// Sends a Flag payload (PayloadType 10), e.g. [`payload::flag::TERMINATE_SESSION`].
    pub fn send_flag(&mut self, value: u32, now: Instant) -> Result<(), StateError> {
        if self.is_closed() {
            return Err(StateError::Closed);
        }
        self.queue(PayloadType::Flag, payload::encode_flag(value).to_vec());
        self.flush_pending(now);
        Ok(())
    }

    /// Agent: terminal output as read from the PTY. Split into payloads of at most 1,024 bytes
    /// that never end inside a UTF-8 sequence; an incomplete sequence waits for the next call.
    pub fn send_output(&mut self, bytes: &[u8], now: Instant) -> Result<(), StateError> {
        self.require(Role::Agent, "send_output")?;
        let mut chunks = Vec::new();
        self.chunker
            .push(bytes, MAX_STREAM_PAYLOAD, |c| chunks.push(c.to_vec()));
        for chunk in chunks {
            self.queue(PayloadType::Output, chunk);
        }
        self.flush_pending(now);
        Ok(())
    }

    /// Agent: sends any incomplete UTF-8 tail held back by [`Channel::send_output`] (at the end
    /// of the output).
    pub fn flush_output(&mut self, now: Instant) -> Result<(), StateError> {
        self.require(Role::Agent, "flush_output")?;
        let mut tail = Vec::new();
        self.chunker.flush(|c| tail.extend_from_slice(c));
        if !tail.is_empty() {
            self.queue(PayloadType::Output, tail);
        }
        self.flush_pending(now);
        Ok(())
    }

    /// Agent: sends an ExitCode payload (PayloadType 12).
    pub fn send_exit_code(&mut self, code: i32, now: Instant) -> Result<(), StateError> {
        self.require(Role::Agent, "send_exit_code")?;
        self.queue(
            PayloadType::ExitCode,
            payload::format_exit_code(code).into_bytes(),
        );
        self.flush_pending(now);
        Ok(())
    }

    /// Agent (playing the service): sends `channel_closed` with `reason` as its Output and
    /// closes. Call it once [`Channel::is_drained`] (or after a bounded wait).
    /// After a failure (e.g. a failed handshake) it still sends `channel_closed`, so the client
    /// learns why.
    pub fn close(&mut self, reason: &str, now: Instant) {
        if self.config.role != Role::Agent {
            // Only the service side sends channel_closed; a client ends a session with
            // TerminateSession.
            return;
        }
        let id = self.random_uuid();
        let created = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(self.unix_ms(now)) * 1_000_000,
        )
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
        let body = payload::ChannelClosed {
            message_id: id.to_string(),
            created_date: created,
            destination_id: self.config.client_id.to_string(),
            session_id: self.config.session_id.clone(),
            message_type: "channel_closed".to_owned(),
            schema_version: 1,
            output: reason.to_owned(),
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let frame = self.encode(
            "channel_closed",
            0,
            FLAG_SYN | FLAG_FIN,
            id,
            PayloadType::None,
            &body,
            now,
        );
        self.transmit.push_back(Transmit::Binary(frame));
        self.fail(CloseReason::Local {
            reason: reason.to_owned(),
        });
    }

    /// Client: the result of `kms:GenerateDataKey` asked for by [`Event::DataKeyNeeded`].
    /// Encryption starts now; the HandshakeResponse goes out.
    pub fn provide_data_key(
        &mut self,
        plaintext: &[u8],
        ciphertext_blob: &[u8],
        now: Instant,
    ) -> Result<(), StateError> {
        self.require(Role::Client, "provide_data_key")?;
        let Phase::AwaitingDataKey { .. } = self.phase else {
            return Err(StateError::NotRequested("a data key"));
        };
        let cipher = PayloadCipher::new(KeySide::Client, plaintext, self.random_nonce())?;
        let Phase::AwaitingDataKey {
            session_type,
            peer_version,
            mut actions,
            kms_index,
            challenge,
        } = std::mem::replace(&mut self.phase, Phase::AwaitingFirst)
        else {
            return Err(StateError::NotRequested("a data key"));
        };
        if let Some(action) = actions.get_mut(kms_index) {
            action.action_status = action_status::SUCCESS;
            action.action_result = serde_json::to_value(payload::KmsEncryptionResponse {
                kms_cipher_text_key: ciphertext_blob.to_vec(),
                kms_cipher_text_hash: None,
                challenge_acknowledgement: challenge,
            })
            .unwrap_or_default();
        }
        self.cipher = Some(cipher);
        self.phase = Phase::Handshaking {
            session_type,
            peer_version,
        };
        self.send_handshake_response(actions, now);
        Ok(())
    }

    /// Client: `kms:GenerateDataKey` failed; the agent is told and will end the session.
    pub fn data_key_failed(&mut self, error: &str, now: Instant) -> Result<(), StateError> {
        self.require(Role::Client, "data_key_failed")?;
        let Phase::AwaitingDataKey {
            session_type,
            peer_version,
            mut actions,
            kms_index,
            ..
        } = std::mem::replace(&mut self.phase, Phase::AwaitingFirst)
        else {
            return Err(StateError::NotRequested("a data key"));
        };
        if let Some(action) = actions.get_mut(kms_index) {
            action.action_status = action_status::FAILED;
            action.error = error.to_owned();
        }
        self.phase = Phase::Handshaking {
            session_type,
            peer_version,
        };
        self.send_handshake_response(actions, now);
        Ok(())
    }

    /// Agent: the result of `kms:Decrypt` asked for by [`Event::DecryptNeeded`]. Sends the
    /// encryption challenge.
    pub fn provide_decrypted_key(
        &mut self,
        plaintext: &[u8],
        now: Instant,
    ) -> Result<(), StateError> {
        self.require(Role::Agent, "provide_decrypted_key")?;
        let Phase::AwaitingDecrypt {
            since,
            peer_version,
        } = std::mem::replace(&mut self.phase, Phase::AgentIdle)
        else {
            return Err(StateError::NotRequested("a decrypted key"));
        };
        let mut cipher = match PayloadCipher::new(KeySide::Agent, plaintext, self.random_nonce()) {
            Ok(c) => c,
            Err(e) => {
                self.phase = Phase::AwaitingDecrypt {
                    since,
                    peer_version,
                };
                return Err(e.into());
            }
        };
        let mut challenge = vec![0u8; 64];
        self.rng.fill_bytes(&mut challenge);
        let sealed = cipher.seal(&challenge);
        self.cipher = Some(cipher);
        let body = payload::EncryptionChallenge { challenge: sealed };
        self.send_json(PayloadType::EncChallengeRequest, &body, now);
        self.phase = Phase::AwaitingChallenge {
            since,
            deadline: now + HANDSHAKE_TIMEOUT,
            challenge,
            peer_version,
        };
        Ok(())
    }

    /// Agent: `kms:Decrypt` failed; the session ends.
    pub fn decrypt_failed(&mut self, error: &str) -> Result<(), StateError> {
        self.require(Role::Agent, "decrypt_failed")?;
        let Phase::AwaitingDecrypt { .. } = self.phase else {
            return Err(StateError::NotRequested("a decrypted key"));
        };
        self.fail(CloseReason::HandshakeFailed {
            reason: format!("kms:Decrypt failed: {error}"),
        });
        Ok(())
    }

    // ----- internals -----

    fn require(&self, role: Role, what: &'static str) -> Result<(), StateError> {
        if self.config.role != role {
            return Err(StateError::WrongRole(what));
        }
        if self.is_closed() {
            return Err(StateError::Closed);
        }
        Ok(())
    }

    fn unix_ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_millis();
        self.origin_unix_ms
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }

    fn random_uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    fn random_nonce(&mut self) -> [u8; crypto::NONCE_LEN] {
        let mut n = [0u8; crypto::NONCE_LEN];
        self.rng.fill_bytes(&mut n);
        n
    }

    fn stream_type(&self) -> &'static str {
        match self.config.role {
            Role::Client => "input_stream_data",
            Role::Agent => "output_stream_data",
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn encode(
        &self,
        message_type: &str,
        seq: i64,
        flags: u64,
        id: Uuid,
        payload_type: PayloadType,
        body: &[u8],
        now: Instant,
    ) -> Bytes {
        let header = Header {
            message_type,
            schema_version: codec::SCHEMA_VERSION,
            created_date: self.unix_ms(now),
            sequence_number: seq,
            flags,
            message_id: id,
            payload_type,
        };
        let mut out = Vec::with_capacity(codec::PAYLOAD_OFFSET + body.len());
        if let Err(error) = codec::encode_parts(&mut out, &header, body) {
            // Only our own fixed type names and bounded payloads reach here.
            debug_assert!(false, "encoding our own frame failed: {error}");
        }
        Bytes::from(out)
    }

    fn queue(&mut self, payload_type: PayloadType, body: Vec<u8>) {
        self.stats.bytes_queued += body.len() as u64;
        self.pending_bytes += body.len();
        self.pending.push_back((payload_type, body));
    }

    fn flush_pending(&mut self, now: Instant) {
        while self.is_ready()
            && self.connected
            && !self.paused
            && self.unacked.len() < self.config.send_window
        {
            let Some((payload_type, body)) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes -= body.len();
            self.send_stream(payload_type, body, now);
        }
    }

    /// Sequences, encrypts where the sheet says so, buffers for resend and transmits.
    fn send_stream(&mut self, payload_type: PayloadType, body: Vec<u8>, now: Instant) {
        let encrypt = match self.config.role {
            Role::Client => payload_type == PayloadType::Output,
            Role::Agent => matches!(
                payload_type,
                PayloadType::Output | PayloadType::StdErr | PayloadType::ExitCode
            ),
        };
        let body = match (&mut self.cipher, encrypt) {
            (Some(cipher), true) => cipher.seal(&body),
            _ => body,
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let flags = if self.config.role == Role::Agent && seq == 0 {
            FLAG_SYN
        } else {
            0
        };
        let id = self.random_uuid();
        let frame = self.encode(self.stream_type(), seq, flags, id, payload_type, &body, now);
        let entry = Unacked {
            frame: frame.clone(),
            first_sent: now,
            last_sent: now,
            resends: 0,
            retransmitted: false,
        };
        self.unacked.insert(seq, entry);
        self.transmit.push_back(Transmit::Binary(frame));
        self.stats.messages_sent += 1;
    }

    fn send_json<T: serde::Serialize>(
        &mut self,
        payload_type: PayloadType,
        body: &T,
        now: Instant,
    ) {
        match serde_json::to_vec(body) {
            Ok(bytes) => self.send_stream(payload_type, bytes, now),
            Err(error) => unreachable_json("handshake payload", &error),
        }
    }

    fn send_ack(&mut self, message_type: &str, id: &Uuid, seq: i64, now: Instant) {
        let header = Header {
            message_type: "acknowledge",
            schema_version: codec::SCHEMA_VERSION,
            created_date: self.unix_ms(now),
            sequence_number: 0,
            flags: FLAG_SYN | FLAG_FIN,
            message_id: self.random_uuid(),
            payload_type: PayloadType::None,
        };
        // Reclaims the block once every ack split off it has been dropped, or starts a new one.
        if self.ack_buf.capacity() < ACK_FRAME_ROOM {
            self.ack_buf.reserve(ACK_BLOCK);
        }
        self.ack_buf.clear();
        // The header goes first but needs the digest: reserve its place, fill it in last.
        self.ack_buf.put_bytes(0, codec::PAYLOAD_OFFSET);
        payload::append_acknowledge(&mut self.ack_buf, message_type, id, seq);
        let Some((head, body)) = self
            .ack_buf
            .split_first_chunk_mut::<{ codec::PAYLOAD_OFFSET }>()
        else {
            return; // cannot happen: the header's place was just written
        };
        let digest = match self.ack_hasher.as_ref().and_then(|h| h.digest(body)) {
            Some(digest) => digest,
            None => {
                let hasher = PrefixedSha256::new(body.get(..64).unwrap_or_default());
                let digest = hasher.digest(body).unwrap_or_else(|| codec::sha256(body));
                self.ack_hasher = Some(hasher);
                digest
            }
        };
        if let Err(error) = codec::write_header(head, &header, body.len(), &digest) {
            // Only our own fixed type names and bounded payloads reach here.
            debug_assert!(false, "encoding our own acknowledge failed: {error}");
            self.ack_buf.clear();
            return;
        }
        let frame = self.ack_buf.split().freeze();
        self.transmit.push_back(Transmit::Binary(frame));
    }

    /// Records what the start settled and tells the IO layer (the phase is set by the caller).
    fn become_ready(&mut self, handshake: Option<HandshakeSummary>) {
        self.summary.clone_from(&handshake);
        self.events.push_back(Event::Ready { handshake });
    }

    fn fail(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        self.phase = Phase::Closed;
        self.pending.clear();
        self.pending_bytes = 0;
        self.unacked.clear();
        self.reorder.clear();
        self.reorder_bytes = 0;
        self.events.push_back(Event::Closed(reason));
    }

    fn resume_publication(&mut self, now: Instant) {
        if self.paused {
            self.paused = false;
            for entry in self.unacked.values_mut() {
                entry.first_sent = now;
            }
            self.events.push_back(Event::Publication { paused: false });
            self.flush_pending(now);
        }
    }

    fn on_acknowledge(&mut self, body: &[u8], now: Instant) -> Result<(), IncomingError> {
        let ack: payload::Acknowledge =
            serde_json::from_slice(body).map_err(|e| IncomingError::MalformedPayload {
                what: "acknowledge",
                error: e.to_string(),
            })?;
        if let Some(entry) = self.unacked.remove(&ack.sequence_number)
            && !entry.retransmitted
        {
            self.rtt
                .on_sample(now.saturating_duration_since(entry.last_sent));
        }
        if self.config.role == Role::Agent {
            self.resume_publication(now);
        }
        self.flush_pending(now);
        Ok(())
    }

    fn on_stream(
        &mut self,
        msg: &codec::MessageRef<'_>,
        body: Body<'_>,
        now: Instant,
    ) -> Result<(), IncomingError> {
        let seq = msg.sequence_number;
        let type_name = msg.message_type.as_str();
        if seq < self.expected_seq {
            // A duplicate: our earlier ack may have been lost, so acknowledge it again.
            self.stats.duplicates += 1;
            self.send_ack(type_name, &msg.message_id, seq, now);
            return Ok(());
        }
        if self.holding
            && (seq == self.expected_seq
                || (!self.reorder.contains_key(&seq)
                    && self.reorder_bytes + body.bytes.len() > self.config.hold_bytes))
        {
            // No room above: as if it were lost; the sender will send it again.
            self.stats.held_back += 1;
            self.hold_overflowed |= seq != self.expected_seq;
            return Ok(());
        }
        if seq > self.expected_seq {
            if !self.reorder.contains_key(&seq) {
                // Only a window of capacity messages ahead is kept: a message far ahead could
                // never be delivered and would hold its slot (and memory) for good.
                let ahead = seq.saturating_sub(self.expected_seq);
                let capacity = i64::try_from(self.config.reorder_capacity).unwrap_or(i64::MAX);
                if self.reorder.len() >= self.config.reorder_capacity || ahead > capacity {
                    return Err(IncomingError::ReorderBufferFull {
                        sequence_number: seq,
                        capacity: self.config.reorder_capacity,
                    });
                }
                self.stats.out_of_order += 1;
                self.reorder_bytes += body.bytes.len();
                self.reorder.insert(
                    seq,
                    Buffered {
                        payload_type: msg.payload_type,
                        // A copy, not a slice: a buffered message may wait long, and a slice
                        // would keep the whole receive buffer it came in alive meanwhile.
                        payload: Bytes::copy_from_slice(body.bytes),
                    },
                );
            } else {
                self.stats.duplicates += 1;
            }
            self.send_ack(type_name, &msg.message_id, seq, now);
            return Ok(());
        }
        self.send_ack(type_name, &msg.message_id, seq, now);
        self.expected_seq += 1;
        self.process(seq, msg.payload_type, body, now);
        while !self.is_closed() {
            let Some(next) = self.reorder.remove(&self.expected_seq) else {
                break;
            };
            self.reorder_bytes -= next.payload.len();
            let seq = self.expected_seq;
            self.expected_seq += 1;
            let body = Body {
                bytes: &next.payload,
                shared: Some(&next.payload),
            };
            self.process(seq, next.payload_type, body, now);
        }
        Ok(())
    }

    /// Handles one in-order stream message (already acknowledged).
    fn process(&mut self, seq: i64, payload_type: PayloadType, body: Body<'_>, now: Instant) {
        self.stats.messages_delivered += 1;
        match self.config.role {
            Role::Client => self.process_client(seq, payload_type, body, now),
            Role::Agent => self.process_agent(seq, payload_type, body.bytes, now),
        }
    }

    /// The plaintext of a user-data payload as [`Bytes`]: a slice of the frame where possible.
    fn decrypt_shared(&mut self, seq: i64, body: Body<'_>) -> Option<Bytes> {
        match self.cipher {
            None => Some(body.to_bytes()),
            Some(_) => self.decrypt(seq, body.bytes).map(Bytes::from),
        }
    }

    fn decrypt(&mut self, seq: i64, body: &[u8]) -> Option<Vec<u8>> {
        match &self.cipher {
            None => Some(body.to_vec()),
            Some(cipher) => match cipher.open(body) {
                Ok(plain) => Some(plain),
                Err(_) => {
                    self.fail(CloseReason::DecryptionFailed {
                        sequence_number: seq,
                    });
                    None
                }
            },
        }
    }

    fn process_client(
        &mut self,
        seq: i64,
        payload_type: PayloadType,
        body: Body<'_>,
        now: Instant,
    ) {
        match payload_type {
            PayloadType::Output | PayloadType::StdErr | PayloadType::ExitCode => {
                if matches!(self.phase, Phase::AwaitingFirst) {
                    // No handshake: the first output makes this a shell session.
                    self.phase = Phase::Ready;
                    self.become_ready(None);
                    self.flush_pending(now);
                }
                let Some(plain) = self.decrypt_shared(seq, body) else {
                    return;
                };
                self.stats.bytes_delivered += plain.len() as u64;
                let event = match payload_type {
                    PayloadType::StdErr => Event::StdErr(plain),
                    PayloadType::ExitCode => match payload::parse_exit_code(&plain) {
                        Some(code) => Event::ExitCode(code),
                        None => Event::Output(plain),
                    },
                    _ => Event::Output(plain),
                };
                self.events.push_back(event);
            }
            PayloadType::HandshakeRequest => self.on_handshake_request(body.bytes, now),
            PayloadType::EncChallengeRequest => self.on_challenge_request(body.bytes, now),
            PayloadType::HandshakeComplete => {
                let complete: payload::HandshakeComplete = match serde_json::from_slice(body.bytes)
                {
                    Ok(c) => c,
                    Err(e) => {
                        return self.fail(CloseReason::HandshakeFailed {
                            reason: format!("malformed HandshakeComplete: {e}"),
                        });
                    }
                };
                let (session_type, peer_version) =
                    match std::mem::replace(&mut self.phase, Phase::Ready) {
                        Phase::Handshaking {
                            session_type,
                            peer_version,
                        } => (session_type, peer_version),
                        Phase::Ready => return, // a repeated HandshakeComplete changes nothing
                        other => {
                            self.phase = other;
                            return self.fail(CloseReason::HandshakeFailed {
                                reason: "HandshakeComplete before the handshake finished".into(),
                            });
                        }
                    };
                self.become_ready(Some(HandshakeSummary {
                    session_type,
                    peer_version,
                    customer_message: complete.customer_message,
                    encrypted: self.cipher.is_some(),
                }));
                self.flush_pending(now);
            }
            PayloadType::Flag => {
                if let Some(v) = payload::decode_flag(body.bytes) {
                    self.events.push_back(Event::Flag(v));
                }
            }
            _ => {}
        }
    }

    fn on_handshake_request(&mut self, body: &[u8], now: Instant) {
        let request: payload::HandshakeRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return self.fail(CloseReason::HandshakeFailed {
                    reason: format!("malformed HandshakeRequest: {e}"),
                });
            }
        };
        if request.requested_client_actions.len() > MAX_HANDSHAKE_ACTIONS {
            return self.fail(CloseReason::HandshakeFailed {
                reason: format!(
                    "HandshakeRequest asks for {} actions; at most {MAX_HANDSHAKE_ACTIONS} are accepted",
                    request.requested_client_actions.len()
                ),
            });
        }
        let mut session_type = String::new();
        let mut actions = Vec::with_capacity(request.requested_client_actions.len());
        let mut kms: Option<(usize, payload::KmsEncryptionRequest)> = None;
        for action in request.requested_client_actions {
            let mut processed = payload::ProcessedClientAction {
                action_type: action.action_type.clone(),
                action_status: action_status::SUCCESS,
                action_result: serde_json::Value::Null,
                error: String::new(),
            };
            match action.action_type.as_str() {
                action_type::SESSION_TYPE => {
                    match serde_json::from_value::<payload::SessionTypeRequest>(
                        action.action_parameters,
                    ) {
                        Ok(p) => session_type = p.session_type,
                        Err(e) => {
                            processed.action_status = action_status::FAILED;
                            processed.error =
                                short(&format!("malformed SessionType parameters: {e}"));
                        }
                    }
                }
                action_type::KMS_ENCRYPTION => {
                    match serde_json::from_value::<payload::KmsEncryptionRequest>(
                        action.action_parameters,
                    ) {
                        Ok(p) => kms = Some((actions.len(), p)),
                        Err(e) => {
                            processed.action_status = action_status::FAILED;
                            processed.error =
                                short(&format!("malformed KMSEncryption parameters: {e}"));
                        }
                    }
                }
                other => {
                    processed.action_status = action_status::UNSUPPORTED;
                    let shown: String = other.chars().take(64).collect();
                    processed.error = format!("unsupported action {shown}");
                }
            }
            actions.push(processed);
        }
        let peer_version = request.agent_version;
        match kms {
            Some((kms_index, params)) => {
                let mut context = BTreeMap::new();
                context.insert(
                    CONTEXT_SESSION_ID.to_owned(),
                    self.config.session_id.clone(),
                );
                context.insert(CONTEXT_TARGET_ID.to_owned(), self.config.target_id.clone());
                let challenge = params.challenge.filter(|c| !c.is_empty());
                if let Some(c) = &challenge {
                    context.insert(CONTEXT_RANDOM_CHALLENGE.to_owned(), c.clone());
                }
                self.phase = Phase::AwaitingDataKey {
                    session_type,
                    peer_version,
                    actions,
                    kms_index,
                    challenge: challenge.is_some(),
                };
                self.events.push_back(Event::DataKeyNeeded {
                    key_id: params.kms_key_id,
                    encryption_context: context,
                });
            }
            None => {
                self.phase = Phase::Handshaking {
                    session_type,
                    peer_version,
                };
                self.send_handshake_response(actions, now);
            }
        }
    }

    fn send_handshake_response(
        &mut self,
        actions: Vec<payload::ProcessedClientAction>,
        now: Instant,
    ) {
        let response = payload::HandshakeResponse {
            client_version: self.config.version.clone(),
            processed_client_actions: actions,
            errors: None,
        };
        self.send_json(PayloadType::HandshakeResponse, &response, now);
    }

    fn on_challenge_request(&mut self, body: &[u8], now: Instant) {
        let reply = (|| {
            let request: payload::EncryptionChallenge = serde_json::from_slice(body)
                .map_err(|e| format!("malformed EncChallengeRequest: {e}"))?;
            let cipher = self
                .cipher
                .as_mut()
                .ok_or("EncChallengeRequest without a data key")?;
            let plain = cipher
                .open(&request.challenge)
                .map_err(|e| format!("challenge: {e}"))?;
            Ok::<_, String>(payload::EncryptionChallenge {
                challenge: cipher.seal(&plain),
            })
        })();
        match reply {
            Ok(reply) => self.send_json(PayloadType::EncChallengeResponse, &reply, now),
            Err(reason) => self.fail(CloseReason::HandshakeFailed { reason }),
        }
    }

    fn start_agent(&mut self, now: Instant) {
        let Some(hs) = self.config.handshake.clone() else {
            self.phase = Phase::Ready;
            self.become_ready(None);
            return;
        };
        let mut actions = vec![payload::RequestedClientAction {
            action_type: action_type::SESSION_TYPE.to_owned(),
            action_parameters: serde_json::json!({
                "SessionType": hs.session_type,
                "Properties": hs.properties,
            }),
        }];
        if let Some(key_id) = &hs.kms_key_id {
            let challenge = hs.random_challenge.then(|| {
                let mut c = [0u8; 16];
                self.rng.fill_bytes(&mut c);
                BASE64.encode(c)
            });
            self.sent_challenge = challenge.clone();
            let params = payload::KmsEncryptionRequest {
                kms_key_id: key_id.clone(),
                challenge,
            };
            actions.push(payload::RequestedClientAction {
                action_type: action_type::KMS_ENCRYPTION.to_owned(),
                action_parameters: serde_json::to_value(params).unwrap_or_default(),
            });
        }
        let request = payload::HandshakeRequest {
            agent_version: self.config.version.clone(),
            requested_client_actions: actions,
        };
        self.phase = Phase::AwaitingResponse { since: now };
        self.send_json(PayloadType::HandshakeRequest, &request, now);
    }

    fn process_agent(&mut self, seq: i64, payload_type: PayloadType, body: &[u8], now: Instant) {
        match (&self.phase, payload_type) {
            (Phase::Ready, PayloadType::Output) => {
                let Some(plain) = self.decrypt(seq, body) else {
                    return;
                };
                self.stats.bytes_delivered += plain.len() as u64;
                self.events.push_back(Event::Input(plain));
            }
            (Phase::Ready, PayloadType::Size) => {
                // The agent ignores a size it cannot read.
                if let Ok(size) = serde_json::from_slice(body) {
                    self.events.push_back(Event::Resize(size));
                }
            }
            (Phase::Ready, PayloadType::Flag) => {
                if let Some(v) = payload::decode_flag(body) {
                    self.events.push_back(Event::Flag(v));
                }
            }
            (Phase::AwaitingResponse { .. }, PayloadType::HandshakeResponse) => {
                self.on_handshake_response(body, now)
            }
            (Phase::AwaitingChallenge { .. }, PayloadType::EncChallengeResponse) => {
                self.on_challenge_response(body, now)
            }
            // Before the handshake completes, the agent acknowledges and discards everything
            // else: the data is lost, which is why clients hold input back until ready.
            _ => {}
        }
    }

    fn on_handshake_response(&mut self, body: &[u8], now: Instant) {
        let response: payload::HandshakeResponse = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return self.fail(CloseReason::HandshakeFailed {
                    reason: format!("malformed HandshakeResponse: {e}"),
                });
            }
        };
        let Phase::AwaitingResponse { since } = self.phase else {
            return;
        };
        let hs = self.config.handshake.clone();
        let wants_kms = hs.as_ref().is_some_and(|h| h.kms_key_id.is_some());
        let mut requested = vec![action_type::SESSION_TYPE];
        if wants_kms {
            requested.push(action_type::KMS_ENCRYPTION);
        }
        let mut kms_result = None;
        for name in requested {
            let Some(action) = response
                .processed_client_actions
                .iter()
                .find(|a| a.action_type == name)
            else {
                return self.fail(CloseReason::HandshakeFailed {
                    reason: format!("client did not process {name}"),
                });
            };
            if action.action_status != action_status::SUCCESS {
                return self.fail(CloseReason::HandshakeFailed {
                    reason: format!(
                        "client reported {name} with status {}: {}",
                        action.action_status, action.error
                    ),
                });
            }
            if name == action_type::KMS_ENCRYPTION {
                kms_result = Some(action.action_result.clone());
            }
        }
        let peer_version = response.client_version;
        match kms_result {
            None => self.complete_agent_handshake(since, String::new(), peer_version, now),
            Some(result) => {
                let result: payload::KmsEncryptionResponse = match serde_json::from_value(result) {
                    Ok(r) => r,
                    Err(e) => {
                        return self.fail(CloseReason::HandshakeFailed {
                            reason: format!("malformed KMSEncryption result: {e}"),
                        });
                    }
                };
                let mut context = BTreeMap::new();
                context.insert(
                    CONTEXT_SESSION_ID.to_owned(),
                    self.config.session_id.clone(),
                );
                context.insert(CONTEXT_TARGET_ID.to_owned(), self.config.target_id.clone());
                if result.challenge_acknowledgement
                    && let Some(challenge) = self.sent_challenge.clone()
                {
                    context.insert(CONTEXT_RANDOM_CHALLENGE.to_owned(), challenge);
                }
                self.phase = Phase::AwaitingDecrypt {
                    since,
                    peer_version,
                };
                self.events.push_back(Event::DecryptNeeded {
                    ciphertext_blob: result.kms_cipher_text_key,
                    encryption_context: context,
                });
            }
        }
    }

    fn on_challenge_response(&mut self, body: &[u8], now: Instant) {
        let Phase::AwaitingChallenge {
            since,
            challenge,
            peer_version,
            ..
        } = std::mem::replace(&mut self.phase, Phase::AgentIdle)
        else {
            return;
        };
        let verdict = (|| {
            let response: payload::EncryptionChallenge = serde_json::from_slice(body)
                .map_err(|e| format!("malformed EncChallengeResponse: {e}"))?;
            let cipher = self.cipher.as_ref().ok_or("no data key")?;
            let plain = cipher
                .open(&response.challenge)
                .map_err(|e| format!("challenge: {e}"))?;
            if plain != challenge {
                return Err("the client's challenge response does not match".to_owned());
            }
            Ok(())
        })();
        match verdict {
            Ok(()) => self.complete_agent_handshake(
                since,
                payload::KMS_CUSTOMER_MESSAGE.to_owned(),
                peer_version,
                now,
            ),
            Err(reason) => self.fail(CloseReason::HandshakeFailed { reason }),
        }
    }

    fn complete_agent_handshake(
        &mut self,
        since: Instant,
        message: String,
        peer_version: String,
        now: Instant,
    ) {
        let took = now.saturating_duration_since(since);
        let complete = payload::HandshakeComplete {
            handshake_time_to_complete: i64::try_from(took.as_nanos()).unwrap_or(i64::MAX),
            customer_message: message.clone(),
        };
        self.send_json(PayloadType::HandshakeComplete, &complete, now);
        let session_type = self
            .config
            .handshake
            .as_ref()
            .map(|h| h.session_type.clone())
            .unwrap_or_default();
        self.phase = Phase::Ready;
        self.become_ready(Some(HandshakeSummary {
            session_type,
            peer_version,
            customer_message: message,
            encrypted: self.cipher.is_some(),
        }));
        self.flush_pending(now);
    }
}

/// Error text echoed to the peer, bounded so that a reply always fits a frame.
fn short(text: &str) -> String {
    text.chars().take(200).collect()
}

fn unreachable_json(what: &str, error: &serde_json::Error) {
    // Serialising our own structs to JSON cannot fail (no maps with non-string keys, no
    // fallible Serialize impls); keep debug builds loud if that ever changes.
    debug_assert!(false, "serialising {what} failed: {error}");
}
