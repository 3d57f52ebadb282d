//! The binary frame codec of the Session Manager data channel (`ClientMessage` on the plugin
//! side, `AgentMessage` on the agent side; one layout for both).
//!
//! Pure functions, no IO. [`encode`] writes a frame for a [`Message`]; [`decode`] reads an
//! untrusted frame into a borrowed [`MessageRef`] with checked reads only and returns a typed
//! [`DecodeError`] naming the field at fault.
//!
//! Layout (all integers big-endian; offsets in bytes):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | HeaderLength, always 116 (the offset of PayloadLength) |
//! | 4 | 32 | MessageType, ASCII, right-padded with spaces |
//! | 36 | 4 | SchemaVersion, 1 |
//! | 40 | 8 | CreatedDate, milliseconds since the Unix epoch |
//! | 48 | 8 | SequenceNumber, signed |
//! | 56 | 8 | Flags (bit 0 SYN, bit 1 FIN) |
//! | 64 | 16 | MessageId, the UUID with its two 8-byte halves swapped |
//! | 80 | 32 | PayloadDigest, SHA-256 of the payload as sent |
//! | 112 | 4 | PayloadType |
//! | 116 | 4 | PayloadLength |
//! | 120 | n | Payload |
//!
//! Leniency follows the official client where it is lenient: the type is trimmed of NULs and
//! whitespace, and `start_publication` / `pause_publication` skip validation (header length,
//! empty type, zero date, digest). Everything else is strict: a wrong HeaderLength, a
//! PayloadLength that disagrees with the bytes that follow, or a digest mismatch is an error.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The value of the HeaderLength field: the offset of the PayloadLength field.
pub const HEADER_LENGTH: u32 = 116;
/// Where the payload starts: HeaderLength plus the 4-byte PayloadLength field.
pub const PAYLOAD_OFFSET: usize = HEADER_LENGTH as usize + 4;
/// The SchemaVersion written into every frame.
pub const SCHEMA_VERSION: u32 = 1;
/// Width of the space-padded MessageType field.
pub const MESSAGE_TYPE_LEN: usize = 32;
/// The largest payload accepted or produced. Stream payloads are at most 1,024 bytes; control
/// and handshake payloads are small JSON. 64 KiB leaves ample room and bounds memory.
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024;
/// The largest frame [`decode`] accepts; longer input is rejected before any other check.
pub const MAX_FRAME_LEN: usize = PAYLOAD_OFFSET + MAX_PAYLOAD_LEN;

/// Flag bit 0: first message of a stream.
pub const FLAG_SYN: u64 = 1;
/// Flag bit 1: last message of a stream.
pub const FLAG_FIN: u64 = 2;

const OFF_TYPE: usize = 4;
const OFF_SCHEMA: usize = 36;
const OFF_CREATED: usize = 40;
const OFF_SEQ: usize = 48;
const OFF_FLAGS: usize = 56;
const OFF_ID: usize = 64;
const OFF_DIGEST: usize = 80;
const OFF_PAYLOAD_TYPE: usize = 112;
const OFF_PAYLOAD_LEN: usize = 116;

/// The MessageType of a frame. Unknown types are kept (the channel ignores them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Client → agent stream data (keystrokes, resize, handshake replies, flags).
    InputStreamData,
    /// Agent → client stream data (output, handshake requests).
    OutputStreamData,
    /// Acknowledgement of one stream message; unsequenced.
    Acknowledge,
    /// The service ends the session; unsequenced, never acknowledged.
    ChannelClosed,
    /// The service says the peer is active again.
    StartPublication,
    /// The service says the peer is inactive.
    PausePublication,
    /// Anything else (e.g. `agent_session_state`); ignored by the channel.
    Unknown(String),
}

impl MessageType {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InputStreamData => "input_stream_data",
            Self::OutputStreamData => "output_stream_data",
            Self::Acknowledge => "acknowledge",
            Self::ChannelClosed => "channel_closed",
            Self::StartPublication => "start_publication",
            Self::PausePublication => "pause_publication",
            Self::Unknown(s) => s,
        }
    }

    /// Parses a (trimmed) wire name.
    pub fn from_wire(s: &str) -> Self {
        match s {
            "input_stream_data" => Self::InputStreamData,
            "output_stream_data" => Self::OutputStreamData,
            "acknowledge" => Self::Acknowledge,
            "channel_closed" => Self::ChannelClosed,
            "start_publication" => Self::StartPublication,
            "pause_publication" => Self::PausePublication,
            other => Self::Unknown(other.to_owned()),
        }
    }

    /// Parses a (trimmed) ASCII wire name without building a `str` first.
    pub fn from_wire_bytes(b: &[u8]) -> Self {
        match b {
            b"input_stream_data" => Self::InputStreamData,
            b"output_stream_data" => Self::OutputStreamData,
            b"acknowledge" => Self::Acknowledge,
            b"channel_closed" => Self::ChannelClosed,
            b"start_publication" => Self::StartPublication,
            b"pause_publication" => Self::PausePublication,
            other => Self::Unknown(String::from_utf8_lossy(other).into_owned()),
        }
    }

    /// Whether messages of this type carry a sequence number and must be acknowledged.
    pub fn is_stream(&self) -> bool {
        matches!(self, Self::InputStreamData | Self::OutputStreamData)
    }

    fn is_publication(&self) -> bool {
        matches!(self, Self::StartPublication | Self::PausePublication)
    }
}

/// The PayloadType field. Unknown values are kept as [`PayloadType::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadType {
    /// 0: control messages (acknowledge, channel_closed, publication).
    None,
    /// 1: terminal output (agent → client) and keystrokes (client → agent).
    Output,
    /// 2: defined, unused on these paths.
    Error,
    /// 3: terminal size JSON, client → agent.
    Size,
    /// 4: defined, unused on these paths.
    Parameter,
    /// 5: agent → client.
    HandshakeRequest,
    /// 6: client → agent.
    HandshakeResponse,
    /// 7: agent → client.
    HandshakeComplete,
    /// 8: agent → client.
    EncChallengeRequest,
    /// 9: client → agent.
    EncChallengeResponse,
    /// 10: a 4-byte big-endian flag value.
    Flag,
    /// 11: stderr, agent → client.
    StdErr,
    /// 12: `EXIT_CODE: <n>`, agent → client.
    ExitCode,
    /// Any other value.
    Other(u32),
}

impl PayloadType {
    /// The wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Output => 1,
            Self::Error => 2,
            Self::Size => 3,
            Self::Parameter => 4,
            Self::HandshakeRequest => 5,
            Self::HandshakeResponse => 6,
            Self::HandshakeComplete => 7,
            Self::EncChallengeRequest => 8,
            Self::EncChallengeResponse => 9,
            Self::Flag => 10,
            Self::StdErr => 11,
            Self::ExitCode => 12,
            Self::Other(v) => v,
        }
    }

    /// Parses a wire value.
    pub fn from_u32(v: u32) -> Self {
        match v {
            0 => Self::None,
            1 => Self::Output,
            2 => Self::Error,
            3 => Self::Size,
            4 => Self::Parameter,
            5 => Self::HandshakeRequest,
            6 => Self::HandshakeResponse,
            7 => Self::HandshakeComplete,
            8 => Self::EncChallengeRequest,
            9 => Self::EncChallengeResponse,
            10 => Self::Flag,
            11 => Self::StdErr,
            12 => Self::ExitCode,
            other => Self::Other(other),
        }
    }
}

/// Why a frame could not be decoded or encoded. Each variant names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the fixed header and the PayloadLength field.
    #[error("frame too short: {len} bytes, a frame needs at least {PAYLOAD_OFFSET}")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// Longer than [`MAX_FRAME_LEN`].
    #[error("frame too large: {len} bytes, the limit is {MAX_FRAME_LEN}")]
    Oversized {
        /// Bytes received.
        len: usize,
    },
    /// HeaderLength is not 116.
    #[error("HeaderLength is {found}, expected {HEADER_LENGTH}")]
    HeaderLength {
        /// The value in the frame.
        found: u32,
    },
    /// MessageType is empty after trimming.
    #[error("MessageType is empty")]
    EmptyMessageType,
    /// MessageType is not ASCII text.
    #[error("MessageType is not ASCII text")]
    MessageTypeNotAscii,
    /// CreatedDate is zero.
    #[error("CreatedDate is 0")]
    ZeroCreatedDate,
    /// PayloadLength disagrees with the number of bytes after the header.
    #[error("PayloadLength says {declared} bytes but {actual} follow the header")]
    PayloadLength {
        /// The PayloadLength field.
        declared: u32,
        /// The bytes actually present.
        actual: usize,
    },
    /// PayloadDigest is not the SHA-256 of the payload.
    #[error("PayloadDigest does not match the SHA-256 of the {len}-byte payload")]
    DigestMismatch {
        /// Payload length.
        len: usize,
    },
}

/// A decoded frame that borrows its payload from the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef<'a> {
    /// The trimmed MessageType.
    pub message_type: MessageType,
    /// The SchemaVersion field (not checked, like the official client).
    pub schema_version: u32,
    /// CreatedDate in ms since the Unix epoch.
    pub created_date: u64,
    /// SequenceNumber.
    pub sequence_number: i64,
    /// Flags.
    pub flags: u64,
    /// MessageId in canonical byte order.
    pub message_id: Uuid,
    /// PayloadType.
    pub payload_type: PayloadType,
    /// The payload bytes.
    pub payload: &'a [u8],
}

impl MessageRef<'_> {
    /// Copies the payload into an owned [`Message`].
    pub fn to_owned(&self) -> Message {
        Message {
            message_type: self.message_type.clone(),
            schema_version: self.schema_version,
            created_date: self.created_date,
            sequence_number: self.sequence_number,
            flags: self.flags,
            message_id: self.message_id,
            payload_type: self.payload_type,
            payload: self.payload.to_vec(),
        }
    }
}

/// A frame's fields with an owned payload, for building frames to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// MessageType.
    pub message_type: MessageType,
    /// SchemaVersion; [`SCHEMA_VERSION`] for frames we build.
    pub schema_version: u32,
    /// CreatedDate in ms since the Unix epoch.
    pub created_date: u64,
    /// SequenceNumber.
    pub sequence_number: i64,
    /// Flags.
    pub flags: u64,
    /// MessageId in canonical byte order.
    pub message_id: Uuid,
    /// PayloadType.
    pub payload_type: PayloadType,
    /// The payload bytes, as sent (after any encryption).
    pub payload: Vec<u8>,
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The MessageType does not fit the 32-byte field or is not ASCII.
    #[error("MessageType {0:?} is not ASCII of at most 32 bytes")]
    MessageType(String),
    /// The payload is longer than [`MAX_PAYLOAD_LEN`].
    #[error("payload of {len} bytes exceeds the limit of {MAX_PAYLOAD_LEN}")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
    },
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Writes the MessageId with its halves swapped (bytes 8..16 first, then 0..8).
pub fn message_id_to_wire(id: &Uuid) -> [u8; 16] {
    let b = id.as_bytes();
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&b[8..]);
    out[8..].copy_from_slice(&b[..8]);
    out
}

/// Reads a MessageId written by [`message_id_to_wire`].
pub fn message_id_from_wire(w: &[u8; 16]) -> Uuid {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&w[8..]);
    b[8..].copy_from_slice(&w[..8]);
    Uuid::from_bytes(b)
}

/// Encodes a message into a new frame. The digest and lengths are computed here.
pub fn encode(msg: &Message) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(PAYLOAD_OFFSET + msg.payload.len());
    encode_parts(
        &mut out,
        &Header {
            message_type: msg.message_type.as_str(),
            schema_version: msg.schema_version,
            created_date: msg.created_date,
            sequence_number: msg.sequence_number,
            flags: msg.flags,
            message_id: msg.message_id,
            payload_type: msg.payload_type,
        },
        &msg.payload,
    )?;
    Ok(out)
}

/// The header fields of a frame to encode, without the payload.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    /// MessageType wire name.
    pub message_type: &'a str,
    /// SchemaVersion.
    pub schema_version: u32,
    /// CreatedDate, ms.
    pub created_date: u64,
    /// SequenceNumber.
    pub sequence_number: i64,
    /// Flags.
    pub flags: u64,
    /// MessageId.
    pub message_id: Uuid,
    /// PayloadType.
    pub payload_type: PayloadType,
}

/// Appends the frame for `header` and `payload` to `out` (which is not cleared), so callers
/// on hot paths can reuse a buffer and skip building a [`Message`].
pub fn encode_parts(
    out: &mut Vec<u8>,
    header: &Header<'_>,
    payload: &[u8],
) -> Result<(), EncodeError> {
    encode_parts_with_digest(out, header, payload, sha256(payload))
}

/// [`encode_parts`] with the payload's SHA-256 already computed by the caller.
pub fn encode_parts_with_digest(
    out: &mut Vec<u8>,
    header: &Header<'_>,
    payload: &[u8],
    digest: [u8; 32],
) -> Result<(), EncodeError> {
    let mut fixed = [0u8; PAYLOAD_OFFSET];
    write_header(&mut fixed, header, payload.len(), &digest)?;
    out.reserve(PAYLOAD_OFFSET + payload.len());
    out.extend_from_slice(&fixed);
    out.extend_from_slice(payload);
    Ok(())
}

/// Writes the fixed part of a frame (everything before the payload) for `header`, a payload
/// of `payload_len` bytes and its SHA-256 `digest`. For callers that write the payload into its
/// final place first and fill in the header afterwards.
pub fn write_header(
    out: &mut [u8; PAYLOAD_OFFSET],
    header: &Header<'_>,
    payload_len: usize,
    digest: &[u8; 32],
) -> Result<(), EncodeError> {
    let ty = header.message_type.as_bytes();
    if ty.len() > MESSAGE_TYPE_LEN || !header.message_type.is_ascii() {
        return Err(EncodeError::MessageType(header.message_type.to_owned()));
    }
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(EncodeError::PayloadTooLarge { len: payload_len });
    }
    out[..OFF_TYPE].copy_from_slice(&HEADER_LENGTH.to_be_bytes());
    let (type_field, _) = out[OFF_TYPE..].split_at_mut(MESSAGE_TYPE_LEN);
    let (name, pad) = type_field.split_at_mut(ty.len());
    name.copy_from_slice(ty);
    pad.fill(b' ');
    out[OFF_SCHEMA..OFF_CREATED].copy_from_slice(&header.schema_version.to_be_bytes());
    out[OFF_CREATED..OFF_SEQ].copy_from_slice(&header.created_date.to_be_bytes());
    out[OFF_SEQ..OFF_FLAGS].copy_from_slice(&header.sequence_number.to_be_bytes());
    out[OFF_FLAGS..OFF_ID].copy_from_slice(&header.flags.to_be_bytes());
    out[OFF_ID..OFF_DIGEST].copy_from_slice(&message_id_to_wire(&header.message_id));
    out[OFF_DIGEST..OFF_PAYLOAD_TYPE].copy_from_slice(digest);
    out[OFF_PAYLOAD_TYPE..OFF_PAYLOAD_LEN]
        .copy_from_slice(&header.payload_type.to_u32().to_be_bytes());
    // The length fits: it was checked against MAX_PAYLOAD_LEN above.
    out[OFF_PAYLOAD_LEN..].copy_from_slice(&(payload_len as u32).to_be_bytes());
    Ok(())
}

/// SHA-256 of messages that all start with the same bytes: the whole 64-byte blocks of that
/// prefix are compressed once, and each [`PrefixedSha256::digest`] only compresses the rest.
/// Used for acknowledgements, whose JSON starts with the same 64 bytes every time.
#[derive(Debug, Clone)]
pub struct PrefixedSha256 {
    /// The absorbed bytes: a whole number of blocks (possibly none).
    prefix: Vec<u8>,
    /// The compression state after `prefix`.
    state: [u32; 8],
}

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

impl PrefixedSha256 {
    /// Absorbs the whole 64-byte blocks at the start of `prefix`; a partial block at its end
    /// is not kept (it is hashed with the rest of each message).
    pub fn new(prefix: &[u8]) -> Self {
        let (blocks, _) = prefix.as_chunks::<64>();
        let mut state = SHA256_IV;
        sha2::block_api::compress256(&mut state, blocks);
        Self {
            prefix: prefix.get(..blocks.len() * 64).unwrap_or_default().to_vec(),
            state,
        }
    }

    /// The absorbed prefix (a multiple of 64 bytes long).
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// SHA-256 of `message`, or `None` when `message` does not start with the prefix.
    pub fn digest(&self, message: &[u8]) -> Option<[u8; 32]> {
        let rest = message.strip_prefix(self.prefix.as_slice())?;
        let mut state = self.state;
        let (blocks, tail) = rest.as_chunks::<64>();
        sha2::block_api::compress256(&mut state, blocks);
        // Padding: 0x80, zeros, then the message length in bits, big-endian, ending a block.
        let mut last = [[0u8; 64]; 2];
        let bits = (message.len() as u64).wrapping_mul(8).to_be_bytes();
        let used = if tail.len() < 56 { 1 } else { 2 };
        {
            let flat = last.as_flattened_mut();
            flat[..tail.len()].copy_from_slice(tail);
            flat[tail.len()] = 0x80;
            flat[used * 64 - 8..used * 64].copy_from_slice(&bits);
        }
        sha2::block_api::compress256(&mut state, &last[..used]);
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        Some(out)
    }
}

fn array_at<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    array_at(buf, at).map(u32::from_be_bytes).unwrap_or(0)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    array_at(buf, at).map(u64::from_be_bytes).unwrap_or(0)
}

/// `name` as senders write it into the MessageType field: left-aligned, padded with spaces.
const fn space_padded(name: &str) -> [u8; MESSAGE_TYPE_LEN] {
    let mut out = [b' '; MESSAGE_TYPE_LEN];
    let name = name.as_bytes();
    let mut i = 0;
    while i < name.len() && i < MESSAGE_TYPE_LEN {
        out[i] = name[i];
        i += 1;
    }
    out
}

const PADDED_OUTPUT: [u8; MESSAGE_TYPE_LEN] = space_padded("output_stream_data");
const PADDED_INPUT: [u8; MESSAGE_TYPE_LEN] = space_padded("input_stream_data");
const PADDED_ACKNOWLEDGE: [u8; MESSAGE_TYPE_LEN] = space_padded("acknowledge");

/// The frequent types in exactly the form every sender writes them, matched whole before the
/// general path (ASCII check, trimming, name lookup), which gives the same result for them.
fn padded_type(raw: &[u8; MESSAGE_TYPE_LEN]) -> Option<MessageType> {
    if *raw == PADDED_OUTPUT {
        Some(MessageType::OutputStreamData)
    } else if *raw == PADDED_INPUT {
        Some(MessageType::InputStreamData)
    } else if *raw == PADDED_ACKNOWLEDGE {
        Some(MessageType::Acknowledge)
    } else {
        None
    }
}

/// Decodes one untrusted frame. Never panics; every read is bounds-checked.
pub fn decode(buf: &[u8]) -> Result<MessageRef<'_>, DecodeError> {
    if buf.len() > MAX_FRAME_LEN {
        return Err(DecodeError::Oversized { len: buf.len() });
    }
    let Some(fixed) = buf.get(..PAYLOAD_OFFSET) else {
        return Err(DecodeError::TooShort { len: buf.len() });
    };
    let header_length = u32_at(fixed, 0);
    let raw_type: [u8; MESSAGE_TYPE_LEN] = array_at(fixed, OFF_TYPE).unwrap_or_default();
    let (message_type, type_empty) = match padded_type(&raw_type) {
        Some(known) => (known, false),
        None => {
            if !raw_type.is_ascii() {
                return Err(DecodeError::MessageTypeNotAscii);
            }
            // One pass over NULs and whitespace together, so that decoding what we re-encode
            // gives the same type (trimming NULs and then whitespace is not idempotent:
            // "\t\0a"). Byte-wise: the field is ASCII, checked above.
            let pad = |b: &u8| *b == 0 || b.is_ascii_whitespace();
            let start = raw_type
                .iter()
                .position(|b| !pad(b))
                .unwrap_or(raw_type.len());
            let end = raw_type
                .iter()
                .rposition(|b| !pad(b))
                .map_or(start, |i| i + 1);
            let type_bytes = raw_type.get(start..end).unwrap_or_default();
            (
                MessageType::from_wire_bytes(type_bytes),
                type_bytes.is_empty(),
            )
        }
    };
    let created_date = u64_at(fixed, OFF_CREATED);
    let declared = u32_at(fixed, OFF_PAYLOAD_LEN);
    let payload = buf.get(PAYLOAD_OFFSET..).unwrap_or_default();
    let digest = array_at::<32>(fixed, OFF_DIGEST).unwrap_or_default();

    if !message_type.is_publication() {
        if header_length != HEADER_LENGTH {
            return Err(DecodeError::HeaderLength {
                found: header_length,
            });
        }
        if type_empty {
            return Err(DecodeError::EmptyMessageType);
        }
        if created_date == 0 {
            return Err(DecodeError::ZeroCreatedDate);
        }
        if declared as usize != payload.len() {
            return Err(DecodeError::PayloadLength {
                declared,
                actual: payload.len(),
            });
        }
        if declared != 0 && sha256(payload) != digest {
            return Err(DecodeError::DigestMismatch { len: payload.len() });
        }
    }

    Ok(MessageRef {
        message_type,
        schema_version: u32_at(fixed, OFF_SCHEMA),
        created_date,
        sequence_number: u64_at(fixed, OFF_SEQ) as i64,
        flags: u64_at(fixed, OFF_FLAGS),
        message_id: message_id_from_wire(&array_at(fixed, OFF_ID).unwrap_or_default()),
        payload_type: PayloadType::from_u32(u32_at(fixed, OFF_PAYLOAD_TYPE)),
        payload,
    })
}
