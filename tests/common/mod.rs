//! Helpers shared by the integration tests; each test binary uses a part of them.
#![allow(dead_code)]

pub mod api;
pub mod audit_log;
pub mod emulator;
pub mod gateway;
pub mod oidc;
pub mod procs;
pub mod python;
pub mod sim;
