//! The gateway: what a person meets. Configuration, the database, users and sign-in, targets,
//! sessions with reasons, the relay to the browser terminal, audit.
//!
//! - [`config`]: the TOML file with `PORTHOLE_*` overrides, validated at start.
//! - [`db`]: the SQLite / PostgreSQL pool and migrations.
//! - [`users`]: users, roles and password hashes.

pub mod config;
pub mod db;
pub mod users;
