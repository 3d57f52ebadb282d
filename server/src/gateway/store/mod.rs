//! Storage: the database and what is kept in it or beside it. Knows nothing of HTTP, the
//! policy or the session engine; imports only `config`, `facts` and `aws` (the S3 client).
//!
//! - [`db`]: the SQLite / PostgreSQL pool, migrations, the write lock.
//! - [`audit`]: the append-only, hash-chained audit log (append, read, verify, export).
//! - [`sessions`]: the `sessions` table (rows as the API shows them).
//! - [`gateways`]: the gateways sharing the database, and the sessions handed between them.
//! - [`participants`]: the people a session's owner invited into it (sharing).
//! - [`notices`]: the `notifications` table, the queue of webhook deliveries.
//! - [`requests`]: access requests, their approvals and denials, and the grants they make.
//! - [`recordings`]: where finished recordings are kept (the local folder or an S3 bucket).
//! - [`search`]: the `recording_lines` table and the search over it.
//! - [`settings`]: the `user_settings` table (each person's settings, as JSON text).

pub mod audit;
pub mod db;
pub mod gateways;
pub mod labels;
pub mod notices;
pub mod participants;
pub mod recordings;
pub mod requests;
pub mod search;
pub mod sessions;
pub mod settings;
