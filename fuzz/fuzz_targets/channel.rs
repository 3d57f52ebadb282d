//! The data-channel state machine driven by a fuzzer-chosen sequence of operations.
//!
//! Input layout (all integers big-endian; a read past the end yields zeros):
//!
//! - byte 0, variant (mod 5): 0 client, 1 agent (plain flow), 2 agent with a handshake,
//!   3 agent with a KMS handshake, 4 agent with a KMS handshake and a RandomChallenge.
//! - byte 1, limits: with bit 7 set, small buffers (`reorder_capacity` 0..=7, `send_window`
//!   1..=8, `give_up_after` 1 or 401 ms) so the full-buffer and give-up paths are reachable.
//!   The hold buffer (`hold_bytes`) is then 16 to 2,048 bytes.
//! - then operations, one opcode byte each (mod 16), see [`Harness::step`]; 15 holds incoming
//!   data back or lets it through (`hold_incoming`).
//!
//! Checks: nothing panics (including the library's `debug_assert!`s and overflow checks);
//! every binary frame the channel transmits decodes, and its stream frames carry the channel's
//! own stream type; text frames (OpenDataChannel) come only from a client and are JSON; at most
//! one `Closed` event; once closed, an operation produces no event and no frame (except the
//! `channel_closed` frame that `close` still sends), incoming frames get
//! `IncomingError::Closed`, and `poll_timeout` is `None`.

#![no_main]

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use libfuzzer_sys::fuzz_target;
use porthole::ssm::channel::{
    AgentHandshake, Channel, ChannelConfig, Event, IncomingError, Role, Transmit,
};
use porthole::ssm::codec::{self, Message, MessageType, PayloadType};
use porthole::ssm::{crypto, payload};
use serde_json::{Value, json};
use uuid::Uuid;

/// Wall-clock anchor passed to `Channel::new` (2023-11-14).
const UNIX_MS: u64 = 1_700_000_000_000;
/// Operations per input at most, to bound the time of one run.
const MAX_OPS: usize = 4096;
/// Own and incoming frames remembered for replay.
const HISTORY: usize = 16;
/// Sequence numbers of transmitted stream frames remembered for acknowledgements.
const SENT_HISTORY: usize = 64;

/// With `FUZZ_TRACE` set, every operation, frame and event is printed to stderr (to see what
/// an input does: `FUZZ_TRACE=1 cargo fuzz run channel INPUT`).
fn tracing() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Reads the fuzz input; past the end every read gives zeros (or nothing).
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let src = self.bytes(N);
        out[..src.len()].copy_from_slice(src);
        out
    }

    fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }

    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.array())
    }

    /// A length byte, then that many bytes.
    fn short_bytes(&mut self) -> &'a [u8] {
        let n = self.u8() as usize;
        self.bytes(n)
    }

    /// A length (u16, below 4,096), then that many bytes.
    fn long_bytes(&mut self) -> &'a [u8] {
        let n = self.u16() as usize % 4096;
        self.bytes(n)
    }

    /// A length byte, then that many bytes as (lossy) UTF-8.
    fn string(&mut self) -> String {
        String::from_utf8_lossy(self.short_bytes()).into_owned()
    }
}

struct Harness {
    ch: Channel,
    role: Role,
    now: Instant,
    /// The 64-byte data key the channel accepted, if any.
    key: Option<[u8; 64]>,
    /// The agent's challenge plaintext, read back from its EncChallengeRequest.
    challenge: Option<Vec<u8>>,
    /// Sequence numbers of stream frames the channel transmitted (latest last).
    sent: VecDeque<i64>,
    /// Frames handed to the channel (latest last).
    delivered: VecDeque<Vec<u8>>,
    /// Binary frames the channel transmitted (latest last).
    own: VecDeque<Vec<u8>>,
    closed_events: u32,
    next_id: u128,
    next_nonce: u64,
}

impl Harness {
    fn new(r: &mut Reader<'_>) -> Self {
        let variant = r.u8() % 5;
        let limits = r.u8();
        let mut config = if variant == 0 {
            ChannelConfig::client("s-1", "i-1")
        } else {
            ChannelConfig::agent("s-1", "i-1")
        };
        config.seed = Some(0);
        config.client_id = Uuid::from_u128(0x0d9a_0000_0000_4000_8000_0000_0000_0001);
        if variant >= 2 {
            config.handshake = Some(AgentHandshake {
                session_type: payload::session_type::STANDARD_STREAM.to_owned(),
                properties: Value::Null,
                kms_key_id: (variant >= 3).then(|| "alias/fuzz".to_owned()),
                random_challenge: variant == 4,
            });
        }
        if limits & 0x80 != 0 {
            config.reorder_capacity = usize::from(limits & 7);
            config.send_window = 1 + usize::from((limits >> 3) & 7);
            config.give_up_after = Duration::from_millis(u64::from((limits >> 6) & 1) * 400 + 1);
            config.hold_bytes = 16 << (limits & 7);
        }
        let role = config.role;
        let now = base();
        let ch = Channel::new(config, now, UNIX_MS);
        let mut h = Self {
            ch,
            role,
            now,
            key: None,
            challenge: None,
            sent: VecDeque::new(),
            delivered: VecDeque::new(),
            own: VecDeque::new(),
            closed_events: 0,
            next_id: 1,
            next_nonce: 1,
        };
        let token = (role == Role::Client).then_some("fuzz-token");
        h.ch.socket_opened(h.now, token);
        h.drain(false);
        h
    }

    /// The stream type the peer sends to this channel.
    fn peer_type(&self) -> MessageType {
        match self.role {
            Role::Client => MessageType::OutputStreamData,
            Role::Agent => MessageType::InputStreamData,
        }
    }

    /// The stream type this channel sends.
    fn own_type(&self) -> MessageType {
        match self.role {
            Role::Client => MessageType::InputStreamData,
            Role::Agent => MessageType::OutputStreamData,
        }
    }

    fn fresh_id(&mut self) -> Uuid {
        self.next_id += 1;
        Uuid::from_u128(self.next_id)
    }

    fn fresh_nonce(&mut self) -> [u8; crypto::NONCE_LEN] {
        self.next_nonce += 1;
        let mut n = [0u8; crypto::NONCE_LEN];
        n[4..].copy_from_slice(&self.next_nonce.to_be_bytes());
        n
    }

    /// Seals with the agent → client half (bytes 0..32) or the client → agent half (32..64).
    fn seal(&mut self, agent_to_client: bool, plain: &[u8]) -> Option<Vec<u8>> {
        let key = self.key?;
        let range = if agent_to_client { 0..32 } else { 32..64 };
        let half: [u8; 32] = key[range].try_into().ok()?;
        let nonce = self.fresh_nonce();
        Some(crypto::seal_with_nonce(&half, &nonce, plain))
    }

    /// Seals a stream body as the peer would (when asked and a key is known).
    fn maybe_seal(&mut self, body: Vec<u8>, encrypt: bool) -> Vec<u8> {
        if !encrypt {
            return body;
        }
        let from_agent = self.role == Role::Client;
        self.seal(from_agent, &body).unwrap_or(body)
    }

    /// Drains frames and events and checks the invariants. `was_closed`: the channel was
    /// closed before the operation, so it must produce nothing.
    fn drain(&mut self, was_closed: bool) {
        self.drain_with(was_closed, false);
    }

    /// [`Harness::drain`]; `closing`: the operation was `close`, which sends `channel_closed`
    /// even on a closed channel (so the client learns why it failed).
    fn drain_with(&mut self, was_closed: bool, closing: bool) {
        while let Some(t) = self.ch.poll_transmit() {
            if was_closed {
                let is_channel_closed = matches!(&t, Transmit::Binary(f)
                    if codec::decode(f).is_ok_and(|m| m.message_type == MessageType::ChannelClosed));
                assert!(
                    closing && is_channel_closed,
                    "a closed channel transmitted {t:?}"
                );
            }
            match t {
                Transmit::Text(text) => {
                    assert_eq!(self.role, Role::Client, "only a client sends text frames");
                    if let Err(e) = serde_json::from_str::<Value>(&text) {
                        panic!("text frame is not JSON ({e}): {text:?}");
                    }
                }
                Transmit::Binary(frame) => {
                    let msg = match codec::decode(&frame) {
                        Ok(msg) => msg,
                        Err(e) => panic!(
                            "the channel transmitted a frame that does not decode: {e} \
                             ({} bytes)",
                            frame.len()
                        ),
                    };
                    if tracing() {
                        eprintln!(
                            "  out {} seq {} {:?} {} bytes",
                            msg.message_type.as_str(),
                            msg.sequence_number,
                            msg.payload_type,
                            msg.payload.len()
                        );
                    }
                    if msg.message_type.is_stream() {
                        assert_eq!(
                            msg.message_type,
                            self.own_type(),
                            "stream frame of the wrong direction"
                        );
                        if self.sent.len() == SENT_HISTORY {
                            self.sent.pop_front();
                        }
                        self.sent.push_back(msg.sequence_number);
                        if msg.payload_type == PayloadType::EncChallengeRequest {
                            self.read_challenge(msg.payload);
                        }
                    }
                    if self.own.len() == HISTORY {
                        self.own.pop_front();
                    }
                    self.own.push_back(frame.to_vec());
                }
            }
        }
        while let Some(event) = self.ch.poll_event() {
            if tracing() {
                eprintln!("  event {event:?}");
            }
            assert!(!was_closed, "a closed channel emitted {event:?}");
            if let Event::Closed(_) = event {
                self.closed_events += 1;
                assert_eq!(self.closed_events, 1, "more than one Closed event");
            } else {
                assert_eq!(self.closed_events, 0, "{event:?} after Closed");
            }
        }
        if self.ch.is_closed() {
            assert_eq!(
                self.ch.poll_timeout(),
                None,
                "a closed channel wants a timer"
            );
        }
    }

    /// Agent role: remembers the plaintext of the challenge it sent, to answer it correctly.
    fn read_challenge(&mut self, body: &[u8]) {
        let Some(key) = self.key else { return };
        let Ok(req) = serde_json::from_slice::<payload::EncryptionChallenge>(body) else {
            return;
        };
        let Ok(half) = <[u8; 32]>::try_from(&key[..32]) else {
            return;
        };
        if let Ok(plain) = crypto::open_with_key(&half, &req.challenge) {
            self.challenge = Some(plain);
        }
    }

    fn deliver(&mut self, frame: Vec<u8>) {
        let was_closed = self.ch.is_closed();
        let result = self.ch.handle_incoming(&frame, self.now);
        if tracing() {
            match codec::decode(&frame) {
                Ok(m) => eprintln!(
                    "  in {} seq {} {:?} {} bytes: {result:?}",
                    m.message_type.as_str(),
                    m.sequence_number,
                    m.payload_type,
                    m.payload.len()
                ),
                Err(_) => eprintln!("  in {} raw bytes: {result:?}", frame.len()),
            }
        }
        if was_closed {
            assert_eq!(
                result,
                Err(IncomingError::Closed),
                "a closed channel took a frame"
            );
        }
        if self.delivered.len() == HISTORY {
            self.delivered.pop_front();
        }
        self.delivered.push_back(frame);
        self.drain(was_closed);
    }

    fn deliver_message(
        &mut self,
        message_type: MessageType,
        sequence_number: i64,
        flags: u64,
        payload_type: PayloadType,
        payload: Vec<u8>,
    ) {
        let message = Message {
            message_type,
            schema_version: codec::SCHEMA_VERSION,
            created_date: UNIX_MS + (self.now - base()).as_millis() as u64,
            sequence_number,
            flags,
            message_id: self.fresh_id(),
            payload_type,
            payload,
        };
        // Oversized payloads cannot be framed; the operation is skipped.
        if let Ok(frame) = codec::encode(&message) {
            self.deliver(frame);
        }
    }

    fn pick_seq(&mut self, r: &mut Reader<'_>) -> i64 {
        let expected = self.ch.expected_sequence_number();
        match r.u8() % 16 {
            0..=9 => expected,
            10 => expected.saturating_add(1),
            11 => expected.saturating_add(2),
            12 => expected.saturating_add(i64::from(r.u8())),
            13 => expected.saturating_sub(1),
            14 => expected.saturating_sub(i64::from(r.u8())),
            _ => r.i64(),
        }
    }

    fn session_type(r: &mut Reader<'_>) -> String {
        match r.u8() % 5 {
            0 => payload::session_type::STANDARD_STREAM.to_owned(),
            1 => payload::session_type::INTERACTIVE_COMMANDS.to_owned(),
            2 => payload::session_type::NON_INTERACTIVE_COMMANDS.to_owned(),
            3 => payload::session_type::PORT.to_owned(),
            _ => r.string(),
        }
    }

    /// A HandshakeRequest (agent → client): well-formed JSON with fuzzer-chosen actions.
    fn handshake_request(r: &mut Reader<'_>) -> Value {
        let agent_version = r.string();
        let n = r.u8();
        let count = if n & 0x80 != 0 {
            usize::from(n & 0x7f) * 16
        } else {
            usize::from(n % 8)
        };
        let mut actions = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = r.u8();
            actions.push(match kind % 6 {
                0 | 1 => json!({
                    "ActionType": payload::action_type::SESSION_TYPE,
                    "ActionParameters": {
                        "SessionType": Self::session_type(r),
                        "Properties": Value::Null,
                    },
                }),
                2 => {
                    let mut params = json!({ "KMSKeyId": r.string() });
                    if kind & 0x80 != 0 {
                        params["Challenge"] = json!(BASE64.encode(r.bytes(16)));
                    }
                    json!({
                        "ActionType": payload::action_type::KMS_ENCRYPTION,
                        "ActionParameters": params,
                    })
                }
                3 => json!({ "ActionType": r.string() }),
                4 => json!({
                    "ActionType": payload::action_type::SESSION_TYPE,
                    "ActionParameters": r.u32(),
                }),
                _ => json!({
                    "ActionType": payload::action_type::KMS_ENCRYPTION,
                    "ActionParameters": r.string(),
                }),
            });
        }
        json!({ "AgentVersion": agent_version, "RequestedClientActions": actions })
    }

    fn status(r: &mut Reader<'_>) -> i32 {
        let s = r.u8();
        if s < 200 {
            payload::action_status::SUCCESS
        } else {
            i32::from(s % 4)
        }
    }

    /// A HandshakeResponse (client → agent) with fuzzer-chosen entries and statuses.
    fn handshake_response(r: &mut Reader<'_>) -> Value {
        let sel = r.u8();
        let mut actions = Vec::new();
        if sel & 1 == 0 {
            actions.push(json!({
                "ActionType": payload::action_type::SESSION_TYPE,
                "ActionStatus": Self::status(r),
                "ActionResult": Value::Null,
                "Error": "",
            }));
        }
        if sel & 2 == 0 {
            let result = if sel & 4 == 0 {
                json!({
                    "KMSCipherTextKey": BASE64.encode(r.short_bytes()),
                    "KMSCipherTextHash": Value::Null,
                    "ChallengeAcknowledgement": sel & 8 != 0,
                })
            } else {
                json!(r.string())
            };
            actions.push(json!({
                "ActionType": payload::action_type::KMS_ENCRYPTION,
                "ActionStatus": Self::status(r),
                "ActionResult": result,
                "Error": r.string(),
            }));
        }
        if sel & 16 != 0 {
            actions.push(json!({ "ActionType": r.string(), "ActionStatus": Self::status(r) }));
        }
        if sel & 32 != 0 {
            actions.reverse();
        }
        let errors = if sel & 64 != 0 {
            json!([r.string()])
        } else {
            Value::Null
        };
        json!({
            "ClientVersion": r.string(),
            "ProcessedClientActions": actions,
            "Errors": errors,
        })
    }

    /// `{"Challenge": base64}` for an EncChallengeRequest (8) or EncChallengeResponse (9).
    fn challenge_body(
        &mut self,
        r: &mut Reader<'_>,
        payload_type: PayloadType,
        form: u8,
    ) -> Vec<u8> {
        let request = payload_type == PayloadType::EncChallengeRequest;
        let plain = match (&self.challenge, request || form & 0x40 != 0) {
            (Some(c), false) => c.clone(),
            _ => r.short_bytes().to_vec(),
        };
        let sealed = if form & 0x20 == 0 {
            self.seal(request, &plain)
        } else {
            None
        };
        let challenge = sealed.unwrap_or_else(|| r.short_bytes().to_vec());
        let body = payload::EncryptionChallenge { challenge };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    fn payload_for(&mut self, r: &mut Reader<'_>, payload_type: PayloadType) -> Vec<u8> {
        let form = r.u8();
        if form % 8 == 7 {
            return r.long_bytes().to_vec();
        }
        let encrypt = form & 0x80 != 0;
        match payload_type {
            PayloadType::Output | PayloadType::StdErr => {
                let body = r.long_bytes().to_vec();
                self.maybe_seal(body, encrypt)
            }
            PayloadType::ExitCode => {
                let body = payload::format_exit_code(r.u32() as i32).into_bytes();
                self.maybe_seal(body, encrypt)
            }
            PayloadType::Size => json!({ "cols": r.u32(), "rows": r.u32() })
                .to_string()
                .into_bytes(),
            PayloadType::HandshakeRequest => Self::handshake_request(r).to_string().into_bytes(),
            PayloadType::HandshakeResponse => Self::handshake_response(r).to_string().into_bytes(),
            PayloadType::HandshakeComplete => json!({
                "HandshakeTimeToComplete": r.i64(),
                "CustomerMessage": r.string(),
            })
            .to_string()
            .into_bytes(),
            PayloadType::EncChallengeRequest | PayloadType::EncChallengeResponse => {
                self.challenge_body(r, payload_type, form)
            }
            PayloadType::Flag => payload::encode_flag(r.u32()).to_vec(),
            _ => r.short_bytes().to_vec(),
        }
    }

    /// A well-formed stream frame with fuzzer-chosen fields.
    fn stream(&mut self, r: &mut Reader<'_>) {
        let dir = r.u8();
        let message_type = if dir % 8 == 7 {
            self.own_type()
        } else {
            self.peer_type()
        };
        let seq = self.pick_seq(r);
        let payload_type = match r.u8() % 14 {
            13 => PayloadType::from_u32(r.u32()),
            v => PayloadType::from_u32(u32::from(v)),
        };
        let flags = if dir & 0x80 != 0 {
            r.i64() as u64
        } else {
            u64::from((dir >> 3) & 3)
        };
        let body = self.payload_for(r, payload_type);
        self.deliver_message(message_type, seq, flags, payload_type, body);
    }

    fn acknowledge(&mut self, r: &mut Reader<'_>) {
        let sel = r.u8();
        let seq = if sel & 0x80 == 0 && !self.sent.is_empty() {
            self.sent[usize::from(sel) % self.sent.len()]
        } else if sel & 0x40 == 0 {
            self.ch
                .next_sequence_number()
                .saturating_sub(1 + i64::from(sel & 0xf))
        } else {
            r.i64()
        };
        let body = match r.u8() % 4 {
            0 | 1 => {
                let mut out = String::new();
                let id = self.fresh_id();
                payload::write_acknowledge(&mut out, self.own_type().as_str(), &id, seq);
                out.into_bytes()
            }
            2 => json!({ "AcknowledgedMessageSequenceNumber": seq })
                .to_string()
                .into_bytes(),
            _ => r.short_bytes().to_vec(),
        };
        self.deliver_message(
            MessageType::Acknowledge,
            0,
            codec::FLAG_SYN | codec::FLAG_FIN,
            PayloadType::None,
            body,
        );
    }

    fn control(&mut self, r: &mut Reader<'_>) {
        let kind = r.u8();
        let (message_type, body) = match kind % 4 {
            0 => {
                let body = if kind & 0x80 == 0 {
                    serde_json::to_vec(&payload::ChannelClosed {
                        message_id: self.fresh_id().to_string(),
                        session_id: "s-1".to_owned(),
                        message_type: "channel_closed".to_owned(),
                        schema_version: 1,
                        output: r.string(),
                        ..Default::default()
                    })
                    .unwrap_or_default()
                } else {
                    r.short_bytes().to_vec()
                };
                (MessageType::ChannelClosed, body)
            }
            1 => (MessageType::PausePublication, Vec::new()),
            2 => (MessageType::StartPublication, Vec::new()),
            _ => {
                let mut name: String = r
                    .short_bytes()
                    .iter()
                    .map(|&b| char::from(b))
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(codec::MESSAGE_TYPE_LEN)
                    .collect();
                if name.is_empty() {
                    name = "agent_session_state".to_owned();
                }
                (MessageType::from_wire(&name), r.short_bytes().to_vec())
            }
        };
        self.deliver_message(
            message_type,
            0,
            codec::FLAG_SYN | codec::FLAG_FIN,
            PayloadType::None,
            body,
        );
    }

    fn advance(&mut self, r: &mut Reader<'_>) {
        let was_closed = self.ch.is_closed();
        match r.u8() % 4 {
            0 => self.now += Duration::from_millis(u64::from(r.u8())),
            1 => self.now += Duration::from_millis(u64::from(r.u16())),
            2 => self.now += Duration::from_millis(u64::from(r.u32())),
            _ => {
                if let Some(at) = self.ch.poll_timeout() {
                    self.now = self.now.max(at);
                }
            }
        }
        self.ch.handle_timeout(self.now);
        self.drain(was_closed);
    }

    fn send(&mut self, r: &mut Reader<'_>) {
        let was_closed = self.ch.is_closed();
        let bytes = r.long_bytes();
        let _ = match self.role {
            Role::Client => self.ch.send_input(bytes, self.now),
            Role::Agent => self.ch.send_output(bytes, self.now),
        };
        self.drain(was_closed);
    }

    fn resize(&mut self, r: &mut Reader<'_>) {
        let was_closed = self.ch.is_closed();
        let (cols, rows) = (r.u32(), r.u32());
        let _ = self.ch.resize(cols, rows, self.now);
        self.drain(was_closed);
    }

    fn misc(&mut self, r: &mut Reader<'_>) {
        let was_closed = self.ch.is_closed();
        let now = self.now;
        match r.u8() % 8 {
            0 => {
                let _ = self.ch.send_flag(r.u32(), now);
            }
            1 => {
                let _ = self.ch.flush_output(now);
            }
            2 => {
                let _ = self.ch.send_exit_code(r.u32() as i32, now);
            }
            3 => {
                // The other role's calls: typed errors, no state change.
                let bytes = r.short_bytes();
                let _ = match self.role {
                    Role::Client => self.ch.send_output(bytes, now),
                    Role::Agent => self.ch.send_input(bytes, now),
                };
            }
            4 => {
                let reason = r.string();
                self.ch.close(&reason, now);
                return self.drain_with(was_closed, true);
            }
            5 => {
                // A new socket (ResumeSession). A closed channel ignores it.
                let token = (self.role == Role::Client).then_some("fuzz-token-2");
                self.ch.socket_opened(now, token);
            }
            6 => self.ch.handle_timeout(now),
            _ => {
                // Replays one of the channel's own frames to it (wrong direction, or an ack).
                if !self.own.is_empty() {
                    let i = usize::from(r.u8()) % self.own.len();
                    let frame = self.own[i].clone();
                    return self.deliver(frame);
                }
            }
        }
        self.drain(was_closed);
    }

    fn key_op(&mut self, r: &mut Reader<'_>) {
        let was_closed = self.ch.is_closed();
        let now = self.now;
        let kind = r.u8();
        let key: Vec<u8> = if kind & 0x40 != 0 {
            // A key of the wrong length.
            let len = usize::from(r.u8() % 80);
            r.bytes(len).to_vec()
        } else if kind & 0x20 != 0 {
            let mut k = [0u8; 64];
            k.copy_from_slice(&r.array::<64>());
            k.to_vec()
        } else {
            (0u8..64).collect()
        };
        let accepted = match kind % 4 {
            0 => {
                let blob = r.short_bytes().to_vec();
                self.ch.provide_data_key(&key, &blob, now).is_ok()
            }
            1 => {
                let error = r.string();
                let _ = self.ch.data_key_failed(&error, now);
                false
            }
            2 => self.ch.provide_decrypted_key(&key, now).is_ok(),
            _ => {
                let error = r.string();
                let _ = self.ch.decrypt_failed(&error);
                false
            }
        };
        if accepted {
            self.key = <[u8; 64]>::try_from(key.as_slice()).ok();
        }
        self.drain(was_closed);
    }

    /// Shortcut to the deep states: the next in-order handshake message a correct peer sends.
    fn handshake(&mut self, r: &mut Reader<'_>) {
        let seq = self.ch.expected_sequence_number();
        let sel = r.u8();
        let (payload_type, body) = match self.role {
            Role::Client => match sel % 3 {
                0 => {
                    let mut actions = vec![json!({
                        "ActionType": payload::action_type::SESSION_TYPE,
                        "ActionParameters": {
                            "SessionType": payload::session_type::STANDARD_STREAM,
                            "Properties": Value::Null,
                        },
                    })];
                    if sel & 0x80 != 0 {
                        let mut params = json!({ "KMSKeyId": "alias/fuzz" });
                        if sel & 0x40 != 0 {
                            params["Challenge"] = json!(BASE64.encode([7u8; 16]));
                        }
                        actions.push(json!({
                            "ActionType": payload::action_type::KMS_ENCRYPTION,
                            "ActionParameters": params,
                        }));
                    }
                    let body = json!({
                        "AgentVersion": "3.3.2299.0",
                        "RequestedClientActions": actions,
                    });
                    (PayloadType::HandshakeRequest, body.to_string().into_bytes())
                }
                1 => {
                    let plain = r.short_bytes().to_vec();
                    let challenge = self.seal(true, &plain).unwrap_or(plain);
                    let body = payload::EncryptionChallenge { challenge };
                    let body = serde_json::to_vec(&body).unwrap_or_default();
                    (PayloadType::EncChallengeRequest, body)
                }
                _ => {
                    let body = json!({
                        "HandshakeTimeToComplete": 1_000_000,
                        "CustomerMessage": r.string(),
                    });
                    (
                        PayloadType::HandshakeComplete,
                        body.to_string().into_bytes(),
                    )
                }
            },
            Role::Agent => match sel % 2 {
                0 => {
                    let mut actions = vec![json!({
                        "ActionType": payload::action_type::SESSION_TYPE,
                        "ActionStatus": payload::action_status::SUCCESS,
                        "ActionResult": Value::Null,
                        "Error": "",
                    })];
                    if self
                        .ch
                        .config()
                        .handshake
                        .as_ref()
                        .is_some_and(|h| h.kms_key_id.is_some())
                    {
                        actions.push(json!({
                            "ActionType": payload::action_type::KMS_ENCRYPTION,
                            "ActionStatus": payload::action_status::SUCCESS,
                            "ActionResult": {
                                "KMSCipherTextKey": BASE64.encode(b"fuzz-blob"),
                                "KMSCipherTextHash": Value::Null,
                                "ChallengeAcknowledgement": sel & 0x80 != 0,
                            },
                            "Error": "",
                        }));
                    }
                    let body = json!({
                        "ClientVersion": "1.2.814.0",
                        "ProcessedClientActions": actions,
                        "Errors": Value::Null,
                    });
                    (
                        PayloadType::HandshakeResponse,
                        body.to_string().into_bytes(),
                    )
                }
                _ => {
                    let plain = self.challenge.clone().unwrap_or_default();
                    let challenge = self.seal(false, &plain).unwrap_or(plain);
                    let body = payload::EncryptionChallenge { challenge };
                    let body = serde_json::to_vec(&body).unwrap_or_default();
                    (PayloadType::EncChallengeResponse, body)
                }
            },
        };
        let message_type = self.peer_type();
        self.deliver_message(message_type, seq, 0, payload_type, body);
    }

    fn replay(&mut self, r: &mut Reader<'_>) {
        if self.delivered.is_empty() {
            return;
        }
        let i = usize::from(r.u8()) % self.delivered.len();
        let frame = self.delivered[i].clone();
        self.deliver(frame);
    }

    fn raw(&mut self, r: &mut Reader<'_>) {
        let len = usize::from(r.u16());
        let frame = r.bytes(len).to_vec();
        self.deliver(frame);
    }

    /// Holds incoming data back or lets it through (`hold_incoming`), as the client task does
    /// while its consumer has no room, and asks whether the hold buffer overflowed.
    fn hold(&mut self, r: &mut Reader<'_>) {
        let hold = r.u8() & 1 == 1;
        self.ch.hold_incoming(hold);
        let _ = self.ch.take_hold_overflow();
        assert_eq!(self.ch.is_holding(), hold);
    }

    fn step(&mut self, r: &mut Reader<'_>) {
        let op = r.u8() % 16;
        if tracing() {
            eprintln!("op {op} at +{:?}", self.now - base());
        }
        match op {
            0 => self.raw(r),
            1 | 2 | 3 => self.stream(r),
            4 => self.acknowledge(r),
            5 => self.control(r),
            6 | 7 => self.advance(r),
            8 => self.send(r),
            9 => self.resize(r),
            10 => self.misc(r),
            11 => self.key_op(r),
            12 | 13 => self.handshake(r),
            14 => self.replay(r),
            _ => self.hold(r),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader { data };
    let mut h = Harness::new(&mut r);
    for _ in 0..MAX_OPS {
        if r.is_empty() {
            break;
        }
        h.step(&mut r);
    }
});
