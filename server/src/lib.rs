//! Porthole: a self-hosted web gateway to AWS Session Manager shells.
//!
//! The library holds everything; `main.rs` only parses the command line.

#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod clock;
#[cfg(feature = "server")]
pub mod emulator;
#[cfg(feature = "server")]
pub mod gateway;
pub mod ssm;
