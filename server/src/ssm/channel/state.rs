//! Freezing a live client channel into plain data, and restoring it in this or another process:
//! the primitive of a hand-over, where a gateway being drained gives its live sessions to
//! another gateway, which carries each on with `ResumeSession`.
//!
//! [`Channel::freeze`] copies out everything the client role needs to carry on; a restored
//! channel ([`Channel::restore`]) has no socket, and the next [`Channel::socket_opened`] (with
//! the token of a new `ResumeSession`) sends OpenDataChannel and every unacknowledged message
//! again, exactly as after any resume. There is no second handshake: the agent sees one client
//! that lost its connection and came back.
//!
//! # What is carried, and why nothing is lost or repeated
//!
//! - Configuration: session id, target id, ClientId (the agent's view of "the same client"),
//!   our version string and the limits (reorder capacity, hold bytes, send window, give-up time).
//! - Sequence numbers: the next one we send and the next one we expect.
//! - Our unacknowledged messages, as the exact frames sent (same MessageId and CreatedDate), and
//!   how often each was resent. They go out again on the next socket; the agent drops those it
//!   already has (it acknowledged them, but the acknowledgement never reached us).
//! - The out-of-order buffer: messages ahead of order that we have **acknowledged** (so the agent
//!   will never send them again) but not delivered yet.
//! - User data not yet sequenced (keystrokes, a size), and the UTF-8 chunker's carried bytes.
//! - The RTT estimator (smoothed RTT, variation, RTO).
//! - What the start settled ([`HandshakeSummary`]), and for KMS sessions the 64-byte data key
//!   and the next nonce of our sealing counter.
//!
//! Not carried: frames not yet written (acknowledgements among them: the agent sends those
//! messages again and the restored channel, which expects past them, re-acknowledges them
//! without delivering them twice), the publication pause (a new socket ends it), counters
//! ([`ChannelStats`](super::ChannelStats) start again at zero) and the generator of message ids
//! (a restored channel draws a fresh seed from the operating system).
//!
//! Every message delivered as an event was acknowledged, and every acknowledged one was either
//! delivered as an event before the freeze or is in the out-of-order buffer: so the events
//! polled from the frozen channel, then those of the restored one, carry every output byte
//! exactly once and in order. [`Channel::freeze`] therefore refuses while events wait to be
//! polled ([`StateError::EventsPending`]).
//!
//! **Holding.** A channel may be frozen while it holds incoming data back
//! ([`Channel::hold_incoming`]). Messages refused meanwhile were never acknowledged, so the
//! agent sends them again on the next socket; those kept ahead of order are in the out-of-order
//! buffer. The restored channel does not hold: its new owner decides.
//!
//! **Nonces.** The frozen channel must not send again (its owner drops it): AES-GCM must never
//! seal two messages under one key and nonce. As a margin, the restored channel's sealing
//! counter starts 2⁶⁴ past the frozen one's, so a few messages sent by mistake after the freeze
//! cannot collide with the restored channel's.
//!
//! # Encoding (version 1)
//!
//! [`ChannelState::to_bytes`] writes compact JSON: an object with `"version":1` and the fields
//! below, byte strings in standard base64. [`ChannelState::from_bytes`] reads only version 1,
//! refuses unknown fields and checks consistency; any other input is a [`ChannelStateError`],
//! never a panic.
//!
//! ```text
//! version u32 · role "client" · session_id · target_id · client_id (UUID) · client_version
//! limits {reorder_capacity, hold_bytes, send_window, give_up_after_ms}
//! next_seq i64 · expected_seq i64
//! unacked [{seq, resends, frame (base64 of the whole frame)}]       ascending seq
//! reorder [{seq, payload_type u32, payload (base64)}]             ascending seq
//! pending [{payload_type u32, body (base64)}]                     in order
//! utf8_carry (base64) · rtt {srtt_us, rttvar_us, rto_us}
//! handshake null | {session_type, peer_version, customer_message, encrypted}
//! cipher null | {data_key (base64, 64 bytes), next_nonce (base64, 12 bytes)}   SECRET
//! ```
//!
//! The bytes hold the session's data key and the user's unsent keystrokes: seal them (and keep
//! them out of logs) wherever they go. `Debug` of [`ChannelState`] prints counts, never keys or
//! data.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Buffered, Channel, ChannelConfig, HandshakeSummary, Phase, Role, StateError, Unacked};
use crate::ssm::codec::{self, MessageType, PayloadType};
use crate::ssm::crypto::{self, KeySide, PayloadCipher};
use crate::ssm::rto::RttEstimator;
use crate::ssm::utf8::Utf8Chunker;

/// The version of [`ChannelState`]'s encoding this build writes and reads.
pub const CHANNEL_STATE_VERSION: u32 = 1;

/// How far past the frozen sealing counter a restored one starts (see the module docs).
const NONCE_MARGIN: u128 = 1 << 64;
const NONCE_MASK: u128 = (1u128 << 96) - 1;

/// Everything a client [`Channel`] needs to carry on in another process: plain data, made by
/// [`Channel::freeze`], turned into bytes and back by [`ChannelState::to_bytes`] and
/// [`ChannelState::from_bytes`], and made a channel again by [`Channel::restore`]. See the
/// module documentation for what it holds and the encoding. It holds secrets (the KMS data
/// key, unsent keystrokes); its `Debug` does not show them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelState {
    version: u32,
    role: StateRole,
    session_id: String,
    target_id: String,
    client_id: String,
    client_version: String,
    limits: Limits,
    next_seq: i64,
    expected_seq: i64,
    unacked: Vec<UnackedMessage>,
    reorder: Vec<HeldMessage>,
    pending: Vec<PendingPayload>,
    #[serde(with = "b64")]
    utf8_carry: Vec<u8>,
    rtt: RttState,
    handshake: Option<Handshake>,
    cipher: Option<CipherKeys>,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StateRole {
    Client,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    reorder_capacity: usize,
    hold_bytes: usize,
    send_window: usize,
    give_up_after_ms: u64,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnackedMessage {
    seq: i64,
    resends: u32,
    #[serde(with = "b64")]
    frame: Vec<u8>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeldMessage {
    seq: i64,
    payload_type: u32,
    #[serde(with = "b64")]
    payload: Vec<u8>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PendingPayload {
    payload_type: u32,
    #[serde(with = "b64")]
    body: Vec<u8>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RttState {
    srtt_us: u64,
    rttvar_us: u64,
    rto_us: u64,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Handshake {
    session_type: String,
    peer_version: String,
    customer_message: String,
    encrypted: bool,
}

/// The KMS data key and the sealing counter: secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CipherKeys {
    #[serde(with = "b64")]
    data_key: Vec<u8>,
    #[serde(with = "b64")]
    next_nonce: Vec<u8>,
}

/// Byte strings as standard base64 strings.
mod b64 {
    use super::BASE64;
    use base64::Engine as _;
    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        BASE64
            .decode(text.as_bytes())
            .map_err(|e| D::Error::custom(format!("invalid base64: {e}")))
    }
}

impl std::fmt::Debug for ChannelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelState")
            .field("version", &self.version)
            .field("session_id", &self.session_id)
            .field("target_id", &self.target_id)
            .field("next_seq", &self.next_seq)
            .field("expected_seq", &self.expected_seq)
            .field("unacked", &self.unacked.len())
            .field("reorder", &self.reorder.len())
            .field("pending_bytes", &self.pending_bytes())
            .field("encrypted", &self.cipher.is_some())
            .field("cipher", &self.cipher.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// Why bytes or a state cannot become a channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelStateError {
    /// Not a frozen channel state at all (not JSON, fields missing or of the wrong kind).
    #[error("not a frozen channel state: {0}")]
    Malformed(String),
    /// A state written by another version of the format.
    #[error(
        "frozen channel state has format version {found}; this build reads version {supported} only"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u64,
        /// The version this build reads.
        supported: u32,
    },
    /// Well-formed, but its parts do not fit together (e.g. a key of the wrong length).
    #[error("frozen channel state is inconsistent: {0}")]
    Inconsistent(String),
}

impl ChannelState {
    /// The encoding described in the module documentation (compact JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        match serde_json::to_vec(self) {
            Ok(bytes) => bytes,
            Err(error) => {
                // Plain structs of strings, numbers and lists: serialising cannot fail.
                super::unreachable_json("ChannelState", &error);
                Vec::new()
            }
        }
    }

    /// Reads [`ChannelState::to_bytes`]'s output. Anything else (garbage, another version, a
    /// state whose parts do not fit) is a clear error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ChannelStateError> {
        #[derive(Deserialize)]
        struct Probe {
            version: Option<serde_json::Value>,
        }
        let probe: Probe = serde_json::from_slice(bytes)
            .map_err(|e| ChannelStateError::Malformed(format!("expected a JSON object: {e}")))?;
        match probe.version {
            None => {
                return Err(ChannelStateError::Malformed(
                    "it has no \"version\" field".into(),
                ));
            }
            Some(v) => match v.as_u64() {
                Some(found) if found == u64::from(CHANNEL_STATE_VERSION) => {}
                Some(found) => {
                    return Err(ChannelStateError::UnsupportedVersion {
                        found,
                        supported: CHANNEL_STATE_VERSION,
                    });
                }
                None => {
                    return Err(ChannelStateError::Malformed(format!(
                        "\"version\" is {v}, not a number"
                    )));
                }
            },
        }
        let state: Self = serde_json::from_slice(bytes)
            .map_err(|e| ChannelStateError::Malformed(e.to_string()))?;
        state.validate()?;
        Ok(state)
    }

    /// The SSM session id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The target as passed to StartSession.
    pub fn target_id(&self) -> &str {
        &self.target_id
    }

    /// What the start settled (`None` for a session without a handshake).
    pub fn handshake(&self) -> Option<HandshakeSummary> {
        self.handshake.as_ref().map(|h| HandshakeSummary {
            session_type: h.session_type.clone(),
            peer_version: h.peer_version.clone(),
            customer_message: h.customer_message.clone(),
            encrypted: h.encrypted,
        })
    }

    /// Whether the session is KMS-encrypted (the state then holds the data key).
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// The next sequence number the client sends.
    pub fn next_sequence_number(&self) -> i64 {
        self.next_seq
    }

    /// The next sequence number expected from the agent.
    pub fn expected_sequence_number(&self) -> i64 {
        self.expected_seq
    }

    /// Messages sent and not acknowledged (sent again after the restore).
    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    /// Messages acknowledged ahead of order, not delivered yet.
    pub fn reorder_len(&self) -> usize {
        self.reorder.len()
    }

    /// User bytes not sequenced yet.
    pub fn pending_bytes(&self) -> usize {
        self.pending.iter().map(|p| p.body.len()).sum::<usize>() + self.utf8_carry.len()
    }

    /// Checks the parts fit together, naming the first that does not.
    fn validate(&self) -> Result<(), ChannelStateError> {
        let bad = |what: String| Err(ChannelStateError::Inconsistent(what));
        if self.version != CHANNEL_STATE_VERSION {
            return Err(ChannelStateError::UnsupportedVersion {
                found: u64::from(self.version),
                supported: CHANNEL_STATE_VERSION,
            });
        }
        if Uuid::parse_str(&self.client_id).is_err() {
            return bad(format!("client_id {:?} is not a UUID", self.client_id));
        }
        if self.next_seq < 0 || self.expected_seq < 0 {
            return bad("negative sequence number".into());
        }
        if self.limits.send_window == 0 || self.limits.reorder_capacity == 0 {
            return bad("send_window and reorder_capacity must be at least 1".into());
        }
        let mut last = -1;
        for m in &self.unacked {
            if m.seq <= last || m.seq >= self.next_seq {
                return bad(format!(
                    "unacknowledged message {} is out of order or not below next_seq {}",
                    m.seq, self.next_seq
                ));
            }
            last = m.seq;
            match codec::decode(&m.frame) {
                Ok(msg)
                    if msg.sequence_number == m.seq
                        && msg.message_type == MessageType::InputStreamData => {}
                Ok(_) => {
                    return bad(format!(
                        "unacknowledged message {} holds another message's frame",
                        m.seq
                    ));
                }
                Err(e) => {
                    return bad(format!(
                        "unacknowledged message {} does not decode: {e}",
                        m.seq
                    ));
                }
            }
        }
        let mut last = self.expected_seq;
        for m in &self.reorder {
            if m.seq <= last {
                return bad(format!(
                    "buffered message {} is out of order or not above expected_seq {}",
                    m.seq, self.expected_seq
                ));
            }
            last = m.seq;
        }
        if self.utf8_carry.len() > 3 {
            return bad(format!(
                "{} carried UTF-8 bytes (at most 3)",
                self.utf8_carry.len()
            ));
        }
        if let Some(keys) = &self.cipher {
            if keys.data_key.len() != crypto::DATA_KEY_LEN {
                return bad(format!(
                    "data key of {} bytes, expected {}",
                    keys.data_key.len(),
                    crypto::DATA_KEY_LEN
                ));
            }
            if keys.next_nonce.len() != crypto::NONCE_LEN {
                return bad(format!(
                    "nonce of {} bytes, expected {}",
                    keys.next_nonce.len(),
                    crypto::NONCE_LEN
                ));
            }
        }
        let said_encrypted = self.handshake.as_ref().is_some_and(|h| h.encrypted);
        if said_encrypted != self.cipher.is_some() {
            return bad("the handshake summary and the keys disagree about encryption".into());
        }
        Ok(())
    }
}

impl Channel {
    /// Copies out everything this client channel needs to carry on elsewhere
    /// ([`Channel::restore`]); see the [module documentation](self) for the contract.
    ///
    /// Refused for an agent ([`StateError::WrongRole`]), before the session is ready
    /// ([`StateError::NotReady`]: nothing to carry on; start the session again), once closed
    /// ([`StateError::Closed`]) and while events wait to be polled
    /// ([`StateError::EventsPending`]: they would be lost). Allowed while incoming data is held
    /// back, with or without a socket. The channel is left as it was; its owner must not send
    /// on it again (see "Nonces" in the module documentation).
    pub fn freeze(&self) -> Result<ChannelState, StateError> {
        self.require(Role::Client, "freeze")?;
        if !self.is_ready() {
            return Err(StateError::NotReady);
        }
        if !self.events.is_empty() {
            return Err(StateError::EventsPending {
                count: self.events.len(),
            });
        }
        let config = &self.config;
        Ok(ChannelState {
            version: CHANNEL_STATE_VERSION,
            role: StateRole::Client,
            session_id: config.session_id.clone(),
            target_id: config.target_id.clone(),
            client_id: config.client_id.to_string(),
            client_version: config.version.clone(),
            limits: Limits {
                reorder_capacity: config.reorder_capacity,
                hold_bytes: config.hold_bytes,
                send_window: config.send_window,
                give_up_after_ms: u64::try_from(config.give_up_after.as_millis())
                    .unwrap_or(u64::MAX),
            },
            next_seq: self.next_seq,
            expected_seq: self.expected_seq,
            unacked: self
                .unacked
                .iter()
                .map(|(&seq, u)| UnackedMessage {
                    seq,
                    resends: u.resends,
                    frame: u.frame.to_vec(),
                })
                .collect(),
            reorder: self
                .reorder
                .iter()
                .map(|(&seq, b)| HeldMessage {
                    seq,
                    payload_type: b.payload_type.to_u32(),
                    payload: b.payload.to_vec(),
                })
                .collect(),
            pending: self
                .pending
                .iter()
                .map(|(t, body)| PendingPayload {
                    payload_type: t.to_u32(),
                    body: body.clone(),
                })
                .collect(),
            utf8_carry: self.chunker.carried_bytes().to_vec(),
            rtt: RttState {
                srtt_us: micros(self.rtt.srtt()),
                rttvar_us: micros(self.rtt.rttvar()),
                rto_us: micros(self.rtt.rto()),
            },
            handshake: self.summary.as_ref().map(|h| Handshake {
                session_type: h.session_type.clone(),
                peer_version: h.peer_version.clone(),
                customer_message: h.customer_message.clone(),
                encrypted: h.encrypted,
            }),
            cipher: self.cipher.as_ref().map(|c| CipherKeys {
                data_key: c.data_key().to_vec(),
                next_nonce: c.next_nonce().to_vec(),
            }),
        })
    }

    /// A client channel carrying on from `state`, with no socket: ready, nothing sent until
    /// [`Channel::socket_opened`] with the token of a new `ResumeSession`, which sends
    /// OpenDataChannel and every unacknowledged message again. `now` and `unix_ms` anchor the
    /// clock as in [`Channel::new`]. Checks the state first (it may come from elsewhere).
    pub fn restore(
        state: ChannelState,
        now: Instant,
        unix_ms: u64,
    ) -> Result<Channel, ChannelStateError> {
        state.validate()?;
        let inconsistent = |e: crypto::CryptoError| ChannelStateError::Inconsistent(e.to_string());
        let client_id = Uuid::parse_str(&state.client_id)
            .map_err(|e| ChannelStateError::Inconsistent(format!("client_id: {e}")))?;
        let mut config = ChannelConfig::client(state.session_id, state.target_id);
        config.client_id = client_id;
        config.version = state.client_version;
        config.reorder_capacity = state.limits.reorder_capacity;
        config.hold_bytes = state.limits.hold_bytes;
        config.send_window = state.limits.send_window;
        config.give_up_after = Duration::from_millis(state.limits.give_up_after_ms);
        let mut channel = Channel::new(config, now, unix_ms);
        channel.phase = Phase::Ready;
        channel.connected = false;
        channel.next_seq = state.next_seq;
        channel.expected_seq = state.expected_seq;
        for m in state.unacked {
            channel.unacked.insert(
                m.seq,
                Unacked {
                    frame: Bytes::from(m.frame),
                    first_sent: now,
                    last_sent: now,
                    resends: m.resends,
                    retransmitted: true,
                },
            );
        }
        for m in state.reorder {
            channel.reorder_bytes += m.payload.len();
            channel.reorder.insert(
                m.seq,
                Buffered {
                    payload_type: PayloadType::from_u32(m.payload_type),
                    payload: Bytes::from(m.payload),
                },
            );
        }
        for p in state.pending {
            channel.pending_bytes += p.body.len();
            channel
                .pending
                .push_back((PayloadType::from_u32(p.payload_type), p.body));
        }
        channel.chunker = Utf8Chunker::with_carry(state.utf8_carry);
        channel.rtt = RttEstimator::restored(
            Duration::from_micros(state.rtt.srtt_us),
            Duration::from_micros(state.rtt.rttvar_us),
            Duration::from_micros(state.rtt.rto_us),
        );
        channel.summary = state.handshake.map(|h| HandshakeSummary {
            session_type: h.session_type,
            peer_version: h.peer_version,
            customer_message: h.customer_message,
            encrypted: h.encrypted,
        });
        if let Some(keys) = state.cipher {
            channel.cipher = Some(
                PayloadCipher::new(
                    KeySide::Client,
                    &keys.data_key,
                    advance_nonce(&keys.next_nonce),
                )
                .map_err(inconsistent)?,
            );
        }
        Ok(channel)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The nonce [`NONCE_MARGIN`] past `nonce` (12 bytes, little-endian counter, 96-bit wrap).
fn advance_nonce(nonce: &[u8]) -> [u8; crypto::NONCE_LEN] {
    let mut wide = [0u8; 16];
    let n = nonce.len().min(crypto::NONCE_LEN);
    wide[..n].copy_from_slice(&nonce[..n]);
    let next = (u128::from_le_bytes(wide).wrapping_add(NONCE_MARGIN)) & NONCE_MASK;
    let mut out = [0u8; crypto::NONCE_LEN];
    out.copy_from_slice(&next.to_le_bytes()[..crypto::NONCE_LEN]);
    out
}

#[cfg(test)]
mod tests;
