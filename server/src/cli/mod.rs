//! What the `porthole` command composes from the gateway's layers beyond serving: the demo's
//! set-up ([`demo`]) and `porthole policy check` ([`policy_check`]). `main.rs` parses the
//! command line and calls these and the layers' own functions.

pub mod demo;
pub mod policy_check;
