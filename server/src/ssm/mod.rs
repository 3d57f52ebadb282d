//! The Session Manager data channel, sans IO.
//!
//! - [`codec`]: binary frames ⇄ messages (pure functions, checked reads, typed errors).
//! - [`payload`]: the JSON payloads inside frames.
//! - [`crypto`]: KMS payload encryption (AES-256-GCM, key split, nonces).
//! - [`rto`]: the retransmission-timeout estimator.
//! - [`utf8`]: output chunking that never ends a payload inside a UTF-8 sequence.
//! - [`channel`]: the state machine for both roles, client and agent.
//! - [`client`]: the client role over a real WebSocket, with ResumeSession and KMS (the only
//!   module here that does IO).
//! - [`faults`]: seeded drop/duplicate/reorder injection for tests and the emulator.
//!
//! The wire facts come from `shared/ssm-protocol.md`; `docs/protocol.md` describes how a frame
//! travels through these modules.

pub mod channel;
#[cfg(feature = "server")]
pub mod client;
pub mod codec;
pub mod crypto;
pub mod faults;
pub mod payload;
pub mod rto;
pub mod utf8;

pub use channel::{Channel, ChannelConfig, CloseReason, Event, Role, Transmit};
