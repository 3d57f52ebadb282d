//! The JSON (and small binary) payloads carried inside data-channel frames.
//!
//! Field names and order match what the official client and agent write (Go's
//! `encoding/json`: compact, struct field order, byte arrays as base64). Decoding is lenient
//! about missing fields (`#[serde(default)]`), since peers of different versions omit some.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// `MessageSchemaVersion` of OpenDataChannel.
pub const OPEN_DATA_CHANNEL_SCHEMA: &str = "1.0";

/// ActionStatus values of a processed client action.
pub mod action_status {
    /// The action succeeded.
    pub const SUCCESS: i32 = 1;
    /// The action failed.
    pub const FAILED: i32 = 2;
    /// The client does not support the action.
    pub const UNSUPPORTED: i32 = 3;
}

/// Action types of a HandshakeRequest.
pub mod action_type {
    /// Tells the client which kind of session this is.
    pub const SESSION_TYPE: &str = "SessionType";
    /// Asks the client to set up KMS encryption.
    pub const KMS_ENCRYPTION: &str = "KMSEncryption";
}

/// Session types named in the SessionType action.
pub mod session_type {
    /// A plain shell (`SSM-SessionManagerRunShell`).
    pub const STANDARD_STREAM: &str = "Standard_Stream";
    /// `AWS-StartInteractiveCommand`.
    pub const INTERACTIVE_COMMANDS: &str = "InteractiveCommands";
    /// Non-interactive commands (output separation, exit codes).
    pub const NON_INTERACTIVE_COMMANDS: &str = "NonInteractiveCommands";
    /// Port forwarding.
    pub const PORT: &str = "Port";
}

/// Values of a Flag payload (PayloadType 10).
pub mod flag {
    /// The local TCP connection of a port session dropped.
    pub const DISCONNECT_TO_PORT: u32 = 1;
    /// End the session.
    pub const TERMINATE_SESSION: u32 = 2;
    /// The agent could not connect to the port.
    pub const CONNECT_TO_PORT_ERROR: u32 = 3;
}

/// The CustomerMessage of HandshakeComplete for an encrypted session.
pub const KMS_CUSTOMER_MESSAGE: &str = "This session is encrypted using AWS KMS.";

fn b64_serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&BASE64.encode(bytes))
}

fn b64_deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    BASE64
        .decode(s.as_bytes())
        .map_err(serde::de::Error::custom)
}

/// The first frame on every data-channel socket (a text frame), carrying the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDataChannel {
    /// Always `"1.0"`.
    #[serde(rename = "MessageSchemaVersion")]
    pub message_schema_version: String,
    /// A fresh UUID per open.
    #[serde(rename = "RequestId")]
    pub request_id: String,
    /// The token from StartSession or ResumeSession. Secret.
    #[serde(rename = "TokenValue")]
    pub token_value: String,
    /// One UUID per client session, reused on reconnect.
    #[serde(rename = "ClientId")]
    pub client_id: String,
    /// The client's version; older clients omit it.
    #[serde(
        rename = "ClientVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub client_version: String,
}

impl std::fmt::Debug for OpenDataChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenDataChannel")
            .field("message_schema_version", &self.message_schema_version)
            .field("request_id", &self.request_id)
            .field("token_value", &"[redacted]")
            .field("client_id", &self.client_id)
            .field("client_version", &self.client_version)
            .finish()
    }
}

/// The payload of an `acknowledge` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledge {
    /// The type of the message acknowledged.
    #[serde(rename = "AcknowledgedMessageType", default)]
    pub message_type: String,
    /// Its MessageId as a canonical lower-case string.
    #[serde(rename = "AcknowledgedMessageId", default)]
    pub message_id: String,
    /// Its SequenceNumber: the only field receivers act on.
    #[serde(rename = "AcknowledgedMessageSequenceNumber")]
    pub sequence_number: i64,
    /// Always true.
    #[serde(rename = "IsSequentialMessage", default)]
    pub is_sequential_message: bool,
}

/// Writes the acknowledge JSON for a message straight into `out`, byte for byte what
/// serialising [`Acknowledge`] gives, without an intermediate allocation (the relay's hot path).
pub fn write_acknowledge(out: &mut String, message_type: &str, id: &Uuid, seq: i64) {
    acknowledge_parts(message_type, id, seq, |part| out.push_str(part));
}

/// [`write_acknowledge`] appending to a byte buffer (e.g. the frame the JSON goes into).
pub fn append_acknowledge(out: &mut impl bytes::BufMut, message_type: &str, id: &Uuid, seq: i64) {
    acknowledge_parts(message_type, id, seq, |part| out.put_slice(part.as_bytes()));
}

/// The acknowledge JSON in pieces, in order; the one place its layout is written down.
fn acknowledge_parts(message_type: &str, id: &Uuid, seq: i64, mut push: impl FnMut(&str)) {
    let mut id_buf = Uuid::encode_buffer();
    let id = id.hyphenated().encode_lower(&mut id_buf);
    push("{\"AcknowledgedMessageType\":\"");
    // Only stream messages are acknowledged, and their type names are fixed identifiers.
    debug_assert!(
        message_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    );
    push(message_type);
    push("\",\"AcknowledgedMessageId\":\"");
    push(id);
    push("\",\"AcknowledgedMessageSequenceNumber\":");
    push(itoa::Buffer::new().format(seq));
    push(",\"IsSequentialMessage\":true}");
}

/// The payload of `channel_closed`. Only `Output` matters to a client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelClosed {
    /// A message id.
    #[serde(rename = "MessageId")]
    pub message_id: String,
    /// When, as text.
    #[serde(rename = "CreatedDate")]
    pub created_date: String,
    /// The receiving side's id.
    #[serde(rename = "DestinationId")]
    pub destination_id: String,
    /// The session.
    #[serde(rename = "SessionId")]
    pub session_id: String,
    /// `"channel_closed"`.
    #[serde(rename = "MessageType")]
    pub message_type: String,
    /// 1.
    #[serde(rename = "SchemaVersion")]
    pub schema_version: i32,
    /// Why the session ended; empty for a normal exit.
    #[serde(rename = "Output")]
    pub output: String,
}

/// A terminal size (PayloadType 3). Never encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size {
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
}

/// One action the agent asks the client to perform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestedClientAction {
    /// `SessionType`, `KMSEncryption`, or something this client does not know.
    #[serde(rename = "ActionType")]
    pub action_type: String,
    /// Parameters, shaped by the action type.
    #[serde(rename = "ActionParameters", default)]
    pub action_parameters: serde_json::Value,
}

/// HandshakeRequest (PayloadType 5, agent → client).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandshakeRequest {
    /// The agent's version.
    #[serde(rename = "AgentVersion", default)]
    pub agent_version: String,
    /// What the client must do, in order.
    #[serde(rename = "RequestedClientActions", default)]
    pub requested_client_actions: Vec<RequestedClientAction>,
}

/// Parameters of the SessionType action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionTypeRequest {
    /// One of [`session_type`].
    #[serde(rename = "SessionType", default)]
    pub session_type: String,
    /// Plugin properties (null for shells).
    #[serde(rename = "Properties", default)]
    pub properties: serde_json::Value,
}

/// Parameters of the KMSEncryption action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsEncryptionRequest {
    /// The key to ask GenerateDataKey for.
    #[serde(rename = "KMSKeyId", default)]
    pub kms_key_id: String,
    /// Base64 of 16 random bytes (agents ≥ 3.3.808.0).
    #[serde(rename = "Challenge", default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
}

/// One processed action in a HandshakeResponse, in the order requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessedClientAction {
    /// The action type echoed.
    #[serde(rename = "ActionType")]
    pub action_type: String,
    /// One of [`action_status`].
    #[serde(rename = "ActionStatus", default)]
    pub action_status: i32,
    /// Action-specific result (the KMS ciphertext key), or null.
    #[serde(rename = "ActionResult", default)]
    pub action_result: serde_json::Value,
    /// Error text, empty on success.
    #[serde(rename = "Error", default)]
    pub error: String,
}

/// HandshakeResponse (PayloadType 6, client → agent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandshakeResponse {
    /// The client's version.
    #[serde(rename = "ClientVersion", default)]
    pub client_version: String,
    /// One entry per requested action.
    #[serde(rename = "ProcessedClientActions", default)]
    pub processed_client_actions: Vec<ProcessedClientAction>,
    /// Error strings, or null.
    #[serde(rename = "Errors", default)]
    pub errors: Option<Vec<String>>,
}

/// The ActionResult of a successful KMSEncryption action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsEncryptionResponse {
    /// The CiphertextBlob from GenerateDataKey.
    #[serde(
        rename = "KMSCipherTextKey",
        serialize_with = "b64_serialize",
        deserialize_with = "b64_deserialize"
    )]
    pub kms_cipher_text_key: Vec<u8>,
    /// Unused; null.
    #[serde(rename = "KMSCipherTextHash", default)]
    pub kms_cipher_text_hash: Option<String>,
    /// True when the client put the RandomChallenge into its encryption context.
    #[serde(
        rename = "ChallengeAcknowledgement",
        default,
        skip_serializing_if = "is_false"
    )]
    pub challenge_acknowledgement: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// HandshakeComplete (PayloadType 7, agent → client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeComplete {
    /// Nanoseconds the handshake took.
    #[serde(rename = "HandshakeTimeToComplete", default)]
    pub handshake_time_to_complete: i64,
    /// Text to show the user, possibly empty.
    #[serde(rename = "CustomerMessage", default)]
    pub customer_message: String,
}

/// EncChallengeRequest (8) and EncChallengeResponse (9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionChallenge {
    /// The encrypted challenge (`nonce ‖ ciphertext ‖ tag`).
    #[serde(
        rename = "Challenge",
        serialize_with = "b64_serialize",
        deserialize_with = "b64_deserialize"
    )]
    pub challenge: Vec<u8>,
}

/// Encodes a Flag payload (PayloadType 10).
pub fn encode_flag(value: u32) -> [u8; 4] {
    value.to_be_bytes()
}

/// Decodes a Flag payload; `None` unless exactly four bytes.
pub fn decode_flag(payload: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(payload).ok().map(u32::from_be_bytes)
}

/// Parses an ExitCode payload (`EXIT_CODE: <n>`).
pub fn parse_exit_code(payload: &[u8]) -> Option<i32> {
    let text = std::str::from_utf8(payload).ok()?;
    text.trim().strip_prefix("EXIT_CODE:")?.trim().parse().ok()
}

/// Formats an ExitCode payload.
pub fn format_exit_code(code: i32) -> String {
    format!("EXIT_CODE: {code}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_acknowledge_matches_serde() {
        let id = Uuid::parse_str("dd01e56b-ff48-483e-a508-b5f073f31b16").unwrap();
        let mut fast = String::new();
        write_acknowledge(&mut fast, "output_stream_data", &id, -7);
        let slow = serde_json::to_string(&Acknowledge {
            message_type: "output_stream_data".into(),
            message_id: id.to_string(),
            sequence_number: -7,
            is_sequential_message: true,
        })
        .unwrap();
        assert_eq!(fast, slow);
        let mut bytes = b"xy".to_vec();
        append_acknowledge(&mut bytes, "output_stream_data", &id, -7);
        assert_eq!(&bytes[2..], slow.as_bytes());
    }

    #[test]
    fn open_data_channel_debug_hides_the_token() {
        let open = OpenDataChannel {
            message_schema_version: "1.0".into(),
            request_id: "r".into(),
            token_value: "secret-token".into(),
            client_id: "c".into(),
            client_version: String::new(),
        };
        assert!(!format!("{open:?}").contains("secret-token"));
        assert_eq!(
            serde_json::to_string(&open).unwrap(),
            r#"{"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":"secret-token","ClientId":"c"}"#
        );
    }

    #[test]
    fn handshake_response_matches_the_plugin_shape() {
        let resp = HandshakeResponse {
            client_version: "1.2.0.0".into(),
            processed_client_actions: vec![ProcessedClientAction {
                action_type: "SessionType".into(),
                action_status: action_status::SUCCESS,
                action_result: serde_json::Value::Null,
                error: String::new(),
            }],
            errors: None,
        };
        assert_eq!(
            serde_json::to_string(&resp).unwrap(),
            r#"{"ClientVersion":"1.2.0.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#
        );
    }

    #[test]
    fn exit_code_and_flag_round_trip() {
        assert_eq!(parse_exit_code(format_exit_code(-3).as_bytes()), Some(-3));
        assert_eq!(parse_exit_code(b"EXIT_CODE: x"), None);
        assert_eq!(decode_flag(&encode_flag(flag::TERMINATE_SESSION)), Some(2));
        assert_eq!(decode_flag(&[0, 0, 2]), None);
    }
}
