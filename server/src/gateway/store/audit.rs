//! The audit log: append-only rows in `audit_events`, each carrying the SHA-256 of its own
//! canonical content and of the row before it, so an edited or deleted row breaks the chain.
//!
//! Events are appended inside the caller's write transaction ([`Db::begin_write`]), either in
//! the same transaction as the change they describe or committed before the action happens:
//! if the audit write fails, the action does not happen.
//!
//! Nothing in the code changes or removes a row once written (a test greps the source for
//! such statements). Reading: [`list`] and [`page`] (the API and the audit page, newest first
//! with filters), [`export`] (JSONL or CSV for a SIEM), and [`verify_chain`], which names the
//! first row that was edited, deleted or reordered. `docs/audit.md` describes the chain.
//!
//! [`Db::begin_write`]: super::db::Db::begin_write

use std::io::Write;

use futures_util::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::db::{Backend, Db, DbError, now_ms};
use crate::gateway::telemetry;

/// The hash that the first row chains to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Event types, as stored.
pub mod kind {
    /// A successful sign-in.
    pub const LOGIN: &str = "login";
    /// A refused sign-in (unknown user, wrong password, disabled user).
    pub const LOGIN_FAILED: &str = "login.failed";
    /// A sign-out.
    pub const LOGOUT: &str = "logout";
    /// A session start, with its reason (written before StartSession is called).
    pub const SESSION_START: &str = "session.start";
    /// A session start that policy refused.
    pub const SESSION_DENIED: &str = "session.denied";
    /// A browser attached to a session.
    pub const SESSION_ATTACH: &str = "session.attach";
    /// A browser detached from a session.
    pub const SESSION_DETACH: &str = "session.detach";
    /// Someone began observing a session read-only.
    pub const SESSION_OBSERVE: &str = "session.observe";
    /// An observer stopped.
    pub const SESSION_OBSERVE_END: &str = "session.observe_end";
    /// A person asked for a session to be terminated (written before TerminateSession).
    pub const SESSION_TERMINATE: &str = "session.terminate";
    /// A session ended; the detail says how.
    pub const SESSION_END: &str = "session.end";
    /// A live session moved from a stopping gateway to another (written by the receiver once
    /// it carries the session on); the detail names both and how long it took.
    pub const SESSION_HANDOVER: &str = "session.handover";
    /// A session's tags and note were set (the detail holds the new ones and the owner).
    pub const SESSION_LABEL: &str = "session.label";
    /// A session's owner invited a person into it (detail: the invitee, the mode, the owner).
    pub const PARTICIPANT_ADD: &str = "session.participant.add";
    /// A session's owner revoked an invitation (detail: the participant, their mode, whether
    /// their socket was closed).
    pub const PARTICIPANT_REMOVE: &str = "session.participant.remove";
    /// An invited person attached to the session (detail: the mode, the owner, the inviter).
    pub const PARTICIPANT_ATTACH: &str = "session.participant.attach";
    /// An invited person's socket closed (detail: why).
    pub const PARTICIPANT_DETACH: &str = "session.participant.detach";
    /// A file sent to a session's node: one row before the transfer (`"outcome": "started"`,
    /// with the path, size and SHA-256 of what is sent) and one after (`"ok"` or `"failed"`
    /// with the error).
    pub const FILE_UPLOAD: &str = "file.upload";
    /// A file read from a session's node: one row before (`"outcome": "started"`, the path)
    /// and one after (`"ok"` with the size and SHA-256, or `"failed"` with the error).
    pub const FILE_DOWNLOAD: &str = "file.download";
    /// A recording left in the spool by a failed upload was uploaded at a later start.
    pub const RECORDING_UPLOAD: &str = "recording.upload";
    /// A user was added (`porthole users add`); the detail names the user and the roles.
    pub const USER_ADD: &str = "user.add";
    /// A user was disabled.
    pub const USER_DISABLE: &str = "user.disable";
    /// A disabled user was enabled again.
    pub const USER_ENABLE: &str = "user.enable";
    /// A user's password was set.
    pub const USER_PASSWORD: &str = "user.password";
    /// Someone read (downloaded or played) a session's recording.
    pub const RECORDING_READ: &str = "recording.read";
    /// Someone searched the recordings; the detail has the query and the sessions matched.
    pub const RECORDING_SEARCH: &str = "recording.search";
    /// A person asked for access to a node (the detail has the request).
    pub const ACCESS_REQUEST: &str = "access.request";
    /// An approver approved a request, with their comment.
    pub const ACCESS_APPROVE: &str = "access.approve";
    /// An approver denied a request, with their comment.
    pub const ACCESS_DENY: &str = "access.deny";
    /// Enough approvals: a grant, until its end, naming who approved.
    pub const ACCESS_GRANT: &str = "access.grant";
    /// A person granted themselves access under a break-glass role.
    pub const ACCESS_BREAK_GLASS: &str = "access.break_glass";
    /// A request withdrawn or a grant revoked (its sessions are ended).
    pub const ACCESS_REVOKE: &str = "access.revoke";
    /// A request lapsed undecided, or a grant ran out.
    pub const ACCESS_EXPIRE: &str = "access.expire";
    /// A webhook took a notification (answered 2xx); the detail names the delivery, the
    /// webhook, the topic and the attempts it took.
    pub const NOTIFY_DELIVERED: &str = "notify.delivered";
    /// A notification was given up after its last attempt (or its webhook was no longer
    /// configured); the detail names the delivery, the webhook, the topic, the attempts and
    /// the last error.
    pub const NOTIFY_FAILED: &str = "notify.failed";

    /// The types above, for the audit page's suggestions (a type missing here can still be
    /// typed into the filter).
    pub const ALL: &[&str] = &[
        LOGIN,
        LOGIN_FAILED,
        LOGOUT,
        SESSION_START,
        SESSION_DENIED,
        SESSION_ATTACH,
        SESSION_DETACH,
        SESSION_OBSERVE,
        SESSION_OBSERVE_END,
        SESSION_TERMINATE,
        SESSION_END,
        SESSION_LABEL,
        PARTICIPANT_ADD,
        PARTICIPANT_REMOVE,
        PARTICIPANT_ATTACH,
        PARTICIPANT_DETACH,
        FILE_UPLOAD,
        FILE_DOWNLOAD,
        RECORDING_UPLOAD,
        RECORDING_READ,
        RECORDING_SEARCH,
        ACCESS_REQUEST,
        ACCESS_APPROVE,
        ACCESS_DENY,
        ACCESS_GRANT,
        ACCESS_BREAK_GLASS,
        ACCESS_REVOKE,
        ACCESS_EXPIRE,
        USER_ADD,
        USER_DISABLE,
        USER_ENABLE,
        USER_PASSWORD,
        NOTIFY_DELIVERED,
        NOTIFY_FAILED,
    ];
}

/// Who did it from where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    /// The peer address (IP only).
    pub addr: String,
    /// The `User-Agent` header, cut to 512 characters.
    pub user_agent: String,
}

/// One event to append.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// One of [`kind`].
    pub kind: &'static str,
    /// The user name (or the name tried, for failed sign-ins; `porthole` for the gateway).
    pub actor: &'a str,
    /// The node.
    pub target: Option<&'a str>,
    /// Porthole's session id.
    pub session_id: Option<&'a str>,
    /// The reason given.
    pub reason: Option<&'a str>,
    /// More, as a JSON object.
    pub detail: serde_json::Value,
    /// Where from.
    pub client: &'a Client,
}

impl<'a> Event<'a> {
    /// An event with no target, session, reason or detail.
    pub fn new(kind: &'static str, actor: &'a str, client: &'a Client) -> Self {
        Self {
            kind,
            actor,
            target: None,
            session_id: None,
            reason: None,
            detail: serde_json::Value::Object(serde_json::Map::new()),
            client,
        }
    }

    /// Sets the session and its target.
    pub fn session(mut self, session_id: &'a str, target: &'a str) -> Self {
        self.session_id = Some(session_id);
        self.target = Some(target);
        self
    }

    /// Sets the node (an event about a node that is not a session's).
    pub fn target(mut self, target: &'a str) -> Self {
        self.target = Some(target);
        self
    }

    /// Sets the reason.
    pub fn reason(mut self, reason: &'a str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Sets the detail.
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// The fields that are hashed, in a fixed order.
#[derive(Serialize)]
struct Canonical<'a> {
    at: i64,
    #[serde(rename = "type")]
    kind: &'a str,
    actor: &'a str,
    target: Option<&'a str>,
    session_id: Option<&'a str>,
    reason: Option<&'a str>,
    detail: &'a str,
    client_addr: &'a str,
    user_agent: &'a str,
}

/// The hash of a row: SHA-256 over the previous hash, a newline and the canonical JSON.
fn row_hash(prev: &str, canonical: &Canonical<'_>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(b"\n");
    // Serialising a struct of strings and integers cannot fail.
    hasher.update(serde_json::to_vec(canonical).unwrap_or_default());
    hex::encode(hasher.finalize())
}

/// Appends `event` in the transaction `conn` belongs to; returns the new row's id.
pub async fn append(conn: &mut AnyConnection, event: &Event<'_>) -> Result<i64, DbError> {
    let started = std::time::Instant::now();
    let prev: String = sqlx::query("SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| DbError::new("read audit chain", e))?
        .map(|row| row.try_get::<String, _>("hash"))
        .transpose()
        .map_err(|e| DbError::new("read audit chain", e))?
        .unwrap_or_else(|| GENESIS.to_owned());
    let detail = event.detail.to_string();
    let canonical = Canonical {
        at: now_ms(),
        kind: event.kind,
        actor: event.actor,
        target: event.target,
        session_id: event.session_id,
        reason: event.reason,
        detail: &detail,
        client_addr: &event.client.addr,
        user_agent: &event.client.user_agent,
    };
    let hash = row_hash(&prev, &canonical);
    let row = sqlx::query(
        "INSERT INTO audit_events (at, type, actor, target, session_id, reason, detail, \
         client_addr, user_agent, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(canonical.at)
    .bind(canonical.kind)
    .bind(canonical.actor)
    .bind(canonical.target)
    .bind(canonical.session_id)
    .bind(canonical.reason)
    .bind(&detail)
    .bind(canonical.client_addr)
    .bind(canonical.user_agent)
    .bind(&prev)
    .bind(&hash)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| DbError::new("append audit event", e))?;
    telemetry::audit_appended(started.elapsed());
    row.try_get::<i64, _>("id")
        .map_err(|e| DbError::new("append audit event", e))
}

// ---------------------------------------------------------------------------------------------
// Reading

/// The columns every read takes, then `$rest` (a literal, so the SQL stays static).
macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "SELECT id, at, type, actor, target, session_id, reason, detail, client_addr, ",
            "user_agent, prev_hash, hash FROM audit_events ",
            $rest
        )
    };
}

/// A row exactly as stored (the text columns are read as nullable so that a row tampered with
/// by hand still reads, and then fails its hash).
#[derive(Debug, Clone)]
struct RawRow {
    id: i64,
    at: i64,
    kind: String,
    actor: String,
    target: Option<String>,
    session_id: Option<String>,
    reason: Option<String>,
    detail: String,
    client_addr: String,
    user_agent: String,
    prev_hash: String,
    hash: String,
}

impl RawRow {
    fn read(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let text = |name: &str| -> Result<String, sqlx::Error> {
            Ok(row.try_get::<Option<String>, _>(name)?.unwrap_or_default())
        };
        Ok(Self {
            id: row.try_get("id")?,
            at: row.try_get("at")?,
            kind: text("type")?,
            actor: text("actor")?,
            target: row.try_get("target")?,
            session_id: row.try_get("session_id")?,
            reason: row.try_get("reason")?,
            detail: text("detail")?,
            client_addr: text("client_addr")?,
            user_agent: text("user_agent")?,
            prev_hash: text("prev_hash")?,
            hash: text("hash")?,
        })
    }

    /// The hash of this row's content over the previous hash it stores.
    fn content_hash(&self) -> String {
        let canonical = Canonical {
            at: self.at,
            kind: &self.kind,
            actor: &self.actor,
            target: self.target.as_deref(),
            session_id: self.session_id.as_deref(),
            reason: self.reason.as_deref(),
            detail: &self.detail,
            client_addr: &self.client_addr,
            user_agent: &self.user_agent,
        };
        row_hash(&self.prev_hash, &canonical)
    }

    /// The detail as JSON; stored text that is not JSON (a row edited by hand) is kept as a
    /// string, never dropped.
    fn detail_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.detail)
            .unwrap_or_else(|_| serde_json::Value::String(self.detail.clone()))
    }

    fn into_event(self) -> StoredEvent {
        let detail = self.detail_json();
        StoredEvent {
            id: self.id,
            at: self.at,
            kind: self.kind,
            actor: self.actor,
            target: self.target,
            session_id: self.session_id,
            reason: self.reason,
            detail,
            client_addr: self.client_addr,
            user_agent: self.user_agent,
        }
    }
}

/// A stored event, as the API and tests read it (the API's JSON is this, field for field).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct StoredEvent {
    /// Row id.
    pub id: i64,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// The type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Who.
    pub actor: String,
    /// The node.
    pub target: Option<String>,
    /// The session.
    pub session_id: Option<String>,
    /// The reason.
    pub reason: Option<String>,
    /// The detail (JSON).
    pub detail: serde_json::Value,
    /// The client address.
    pub client_addr: String,
    /// The user agent.
    pub user_agent: String,
}

fn events_of(rows: &[AnyRow], what: &'static str) -> Result<Vec<StoredEvent>, DbError> {
    rows.iter()
        .map(|row| RawRow::read(row).map(RawRow::into_event))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| DbError::new(what, e))
}

/// Appends `event` in a write transaction of its own (for events that describe an action
/// about to happen, not a change made in the same transaction).
pub async fn record(db: &Db, event: &Event<'_>) -> Result<i64, DbError> {
    let mut tx = db.begin_write().await?;
    let id = append(&mut tx.tx, event).await?;
    tx.commit().await?;
    Ok(id)
}

/// Events in order of id, optionally only those of one session.
pub async fn list(db: &Db, session_id: Option<&str>) -> Result<Vec<StoredEvent>, DbError> {
    let rows = sqlx::query(select_events!(
        "WHERE ($1 = '' OR session_id = $1) ORDER BY id"
    ))
    .bind(session_id.unwrap_or(""))
    .fetch_all(db.pool())
    .await
    .map_err(|e| DbError::new("list audit events", e))?;
    events_of(&rows, "list audit events")
}

/// The first event of `kind` of session `session_id` (its `session.start`, say), if any.
pub async fn first_of(
    db: &Db,
    session_id: &str,
    kind: &str,
) -> Result<Option<StoredEvent>, DbError> {
    let rows = sqlx::query(select_events!(
        "WHERE session_id = $1 AND type = $2 ORDER BY id LIMIT 1"
    ))
    .bind(session_id)
    .bind(kind)
    .fetch_all(db.pool())
    .await
    .map_err(|e| DbError::new("find audit event", e))?;
    Ok(events_of(&rows, "find audit event")?.into_iter().next())
}

/// Which events to read. `None` and empty strings mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// At or after this moment (ms since the epoch).
    pub from: Option<i64>,
    /// Before this moment (ms, exclusive).
    pub to: Option<i64>,
    /// This actor exactly.
    pub actor: String,
    /// This target exactly.
    pub target: String,
    /// This type exactly.
    pub kind: String,
    /// This session exactly.
    pub session_id: String,
}

/// Up to `limit` events matching `filter` with an id below `before` (all when `None`), newest
/// (highest id) first. The SQL is fixed; every value is bound.
pub async fn page(
    db: &Db,
    filter: &Filter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<StoredEvent>, DbError> {
    let rows = sqlx::query(select_events!(
        "WHERE id < $1 AND at >= $2 AND at < $3 \
         AND ($4 = '' OR actor = $4) AND ($5 = '' OR target = $5) \
         AND ($6 = '' OR type = $6) AND ($7 = '' OR session_id = $7) \
         ORDER BY id DESC LIMIT $8"
    ))
    .bind(before.unwrap_or(i64::MAX))
    .bind(filter.from.unwrap_or(i64::MIN))
    .bind(filter.to.unwrap_or(i64::MAX))
    .bind(filter.actor.as_str())
    .bind(filter.target.as_str())
    .bind(filter.kind.as_str())
    .bind(filter.session_id.as_str())
    .bind(limit)
    .fetch_all(db.pool())
    .await
    .map_err(|e| DbError::new("read audit events", e))?;
    events_of(&rows, "read audit events")
}

// ---------------------------------------------------------------------------------------------
// Times

/// `2026-11-18T11:06:40.123Z`: RFC 3339 in UTC with milliseconds (so no precision is lost).
/// A value beyond the years 1 to 9999 (only a row edited by hand has one) is printed as its
/// number of milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    let nanos = i128::from(ms).saturating_mul(1_000_000);
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(at) if (1..=9999).contains(&at.year()) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            at.millisecond()
        ),
        _ => ms.to_string(),
    }
}

/// Parses a moment given by a person: milliseconds since the Unix epoch (`1795000000123`), RFC
/// 3339 (`2026-11-18T11:06:40Z`, `2026-11-18T12:06:40.5+01:00`) or a date (`2026-11-18`,
/// midnight UTC). Returns milliseconds since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .map_err(|_| format!("{text} is too large for milliseconds since the Unix epoch"));
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!(
            "{text:?} is not a time: give milliseconds since the Unix epoch or RFC 3339, \
             such as 2026-01-02T15:04:05Z"
        )
    })
}

fn parse_rfc3339(text: &str) -> Option<i64> {
    use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};
    let b = text.as_bytes();
    let num = |from: usize, to: usize| -> Option<u32> {
        let digits = b.get(from..to)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let at = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(at(4, b"-") && at(7, b"-")) {
        return None;
    }
    let month = Month::try_from(u8::try_from(num(5, 7)?).ok()?).ok()?;
    let year = i32::try_from(num(0, 4)?).ok()?;
    let date = Date::from_calendar_date(year, month, u8::try_from(num(8, 10)?).ok()?).ok()?;
    let (time, offset) = if b.len() == 10 {
        (Time::MIDNIGHT, UtcOffset::UTC)
    } else {
        if !(at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
            return None;
        }
        let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
        let mut i = 19;
        let mut nanos = 0u32;
        if at(i, b".") {
            let start = i + 1;
            i = start;
            while at(i, b"0123456789") {
                i += 1;
            }
            let digits = b.get(start..i)?;
            if digits.is_empty() {
                return None;
            }
            for k in 0..9 {
                nanos = nanos * 10 + digits.get(k).map_or(0, |d| u32::from(d - b'0'));
            }
        }
        let rest = b.get(i..)?;
        let offset = match rest {
            b"Z" | b"z" => UtcOffset::UTC,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (h, m) = (num(i + 1, i + 3)?, num(i + 4, i + 6)?);
                if h > 23 || m > 59 {
                    return None;
                }
                let secs = i32::try_from(h * 3600 + m * 60).ok()?;
                UtcOffset::from_whole_seconds(if *sign == b'-' { -secs } else { secs }).ok()?
            }
            _ => return None,
        };
        let time = Time::from_hms_nano(
            u8::try_from(hour).ok()?,
            u8::try_from(minute).ok()?,
            u8::try_from(second).ok()?,
            nanos,
        )
        .ok()?;
        (time, offset)
    };
    let moment = PrimitiveDateTime::new(date, time).assume_offset(offset);
    i64::try_from(moment.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

// ---------------------------------------------------------------------------------------------
// Verification

/// A row id and hash written down elsewhere (`ID:HASH`, as `porthole audit verify` prints the
/// head), so that rows deleted from the end, or a chain rewritten from the start, are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The row.
    pub id: i64,
    /// Its hash (64 lowercase hex digits).
    pub hash: String,
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not ID:HASH (a row id, a colon, 64 hex digits)");
        let (id, hash) = text.trim().split_once(':').ok_or_else(bad)?;
        let id: i64 = id.parse().map_err(|_| bad())?;
        let hash = hash.to_ascii_lowercase();
        if id < 1 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Self { id, hash })
    }
}

/// What kind of break verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    /// A row's content does not match its hash.
    Edited,
    /// A row's previous hash matches no row (it was deleted), or rows are missing.
    Deleted,
    /// A row's previous hash is the hash of a row elsewhere in the table.
    Reordered,
    /// Rows are missing after the last one.
    DeletedAtEnd,
    /// The anchor's row has another hash: the chain was rewritten.
    AnchorMismatch,
}

/// The first place where the log is not what was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The first row that is wrong (or, for deletions, the first row that is missing).
    pub row: i64,
    /// What is wrong.
    pub kind: BreakKind,
    /// In words, starting with the row: `row 17: content does not match its hash (edited)`.
    pub message: String,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The result of [`verify_chain`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// Rows checked and found intact (all rows when there is no break; the rows before it
    /// otherwise).
    pub checked: u64,
    /// The first row's id.
    pub first: Option<i64>,
    /// The last intact row: its id and hash (the value to keep elsewhere as an anchor).
    pub head: Option<(i64, String)>,
    /// The first break; `None` when the log is intact.
    pub broken: Option<Break>,
    /// Signs that are not proof (PostgreSQL skips ids of rolled-back transactions).
    pub warnings: Vec<String>,
    /// Whether an anchor was given and matched.
    pub anchor_matched: bool,
}

impl Verification {
    /// The report `porthole audit verify` prints: the verdict on the first line, then the
    /// head (or the last intact row) to keep elsewhere, then any warnings.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let span = match (self.first, &self.head) {
            (Some(first), Some((last, _))) if first != *last => {
                format!(" (rows {first} to {last})")
            }
            (Some(first), _) => format!(" (row {first})"),
            _ => String::new(),
        };
        let rows = |n: u64| if n == 1 { "row" } else { "rows" };
        match &self.broken {
            None if self.checked == 0 => {
                out.push_str("audit log intact: 0 rows checked (the log is empty)\n");
            }
            None => {
                out.push_str(&format!(
                    "audit log intact: {} {} checked{span}\n",
                    self.checked,
                    rows(self.checked)
                ));
            }
            Some(b) => {
                out.push_str(&format!("audit log BROKEN: {b}\n"));
                out.push_str(&format!(
                    "{} {} before it verified{span}\n",
                    self.checked,
                    rows(self.checked)
                ));
            }
        }
        if let Some((id, hash)) = &self.head {
            if self.broken.is_none() {
                out.push_str(&format!("head: row {id} hash {hash}\n"));
                if self.anchor_matched {
                    out.push_str("anchor: matches\n");
                } else {
                    out.push_str(&format!(
                        "keep the head where the database's writers cannot change it; \
                         `porthole audit verify --anchor {id}:{hash}` then also detects \
                         rows deleted from the end\n"
                    ));
                }
            } else {
                out.push_str(&format!("last intact row: {id} hash {hash}\n"));
            }
        }
        for warning in &self.warnings {
            out.push_str(&format!("warning: {warning}\n"));
        }
        out
    }
}

/// `row 5 is missing`, `rows 5 to 9 are missing`.
fn missing_text(from: i64, to: i64) -> String {
    if from == to {
        format!("row {from} is missing")
    } else {
        format!("rows {from} to {to} are missing")
    }
}

/// A break found while reading, resolved once the rows are no longer being streamed.
enum Pending {
    Edited(i64),
    Chain {
        row: i64,
        prev: Option<i64>,
        points_to: String,
        missing: Option<(i64, i64)>,
    },
    Gap {
        row: i64,
        missing: (i64, i64),
    },
}

/// Checks the whole chain in order of id and reports the first row that was edited, deleted or
/// reordered:
///
/// - each row's `hash` must be the hash of its content over the `prev_hash` it stores
///   (otherwise: edited);
/// - each row's `prev_hash` must be the previous row's `hash`, the first row's [`GENESIS`]
///   (otherwise: if it is another row's hash, reordered; if no row has it, deleted);
/// - on SQLite, ids have no holes (`AUTOINCREMENT` reuses nothing and a rolled-back insert
///   gives its id back), and the table's id counter (`sqlite_sequence`) is not ahead of the
///   last row: a hole, or a counter ahead, is a deleted row even when the chain was re-linked
///   over it or the row was the last one. PostgreSQL skips the ids of rolled-back and crashed
///   transactions, so there those are warnings only;
/// - with an `anchor` (a row id and hash kept elsewhere), that row must exist with that hash:
///   this catches the last rows deleted (on PostgreSQL) and a chain rewritten from the start.
///
/// Without an anchor, a chain recomputed from some row onwards by someone who can write to the
/// database verifies: the hash chain makes tampering evident, an anchor kept elsewhere makes
/// it provable.
pub async fn verify_chain(db: &Db, anchor: Option<&Anchor>) -> Result<Verification, DbError> {
    let read = |e| DbError::new("verify audit chain", e);
    let dense_ids = db.backend() == Backend::Sqlite;
    let mut report = Verification::default();
    let mut last: Option<(i64, String)> = None;
    let mut anchor_hash: Option<String> = None;
    let mut pending = None;
    // The id counter is read before the rows: a row committed in between (a gateway writing
    // while this runs) then only makes the rows reach past it. Read after the rows, it could
    // count a row the read did not see, as if it had been deleted from the end.
    let issued = ids_issued(db).await?;
    {
        let mut rows = sqlx::query(select_events!("ORDER BY id")).fetch(db.pool());
        while let Some(row) = rows.try_next().await.map_err(read)? {
            let row = RawRow::read(&row).map_err(read)?;
            if row.content_hash() != row.hash {
                pending = Some(Pending::Edited(row.id));
                break;
            }
            let prev = last.as_ref().map(|(id, _)| *id);
            let expected = last.as_ref().map_or(GENESIS, |(_, hash)| hash.as_str());
            let next_id = prev.map_or(1, |p| p.saturating_add(1));
            let missing = (row.id > next_id).then(|| (next_id, row.id - 1));
            if row.prev_hash != expected {
                pending = Some(Pending::Chain {
                    row: row.id,
                    prev,
                    points_to: row.prev_hash,
                    missing,
                });
                break;
            }
            if let Some((from, to)) = missing {
                if dense_ids {
                    pending = Some(Pending::Gap {
                        row: row.id,
                        missing: (from, to),
                    });
                    break;
                }
                report.warnings.push(format!(
                    "{} (the chain is intact over the hole; PostgreSQL skips the ids of \
                     rolled-back transactions, so this is not proof of a deletion)",
                    missing_text(from, to)
                ));
            }
            if anchor.is_some_and(|a| a.id == row.id) {
                anchor_hash = Some(row.hash.clone());
            }
            report.checked += 1;
            report.first.get_or_insert(row.id);
            last = Some((row.id, row.hash));
        }
    }
    report.head = last.clone();
    if let Some(pending) = pending {
        report.broken = Some(resolve(db, pending).await?);
        return Ok(report);
    }

    let last_id = last.as_ref().map_or(0, |(id, _)| *id);
    if let Some(issued) = issued
        && issued > last_id
    {
        let (from, to) = (last_id + 1, issued);
        let after = if last_id == 0 {
            "the table is empty".to_owned()
        } else {
            format!("the last row is {last_id}")
        };
        if dense_ids {
            report.broken = Some(Break {
                row: from,
                kind: BreakKind::DeletedAtEnd,
                message: format!(
                    "row {from}: deleted from the end ({}; the table's id counter is at \
                     {issued} but {after})",
                    missing_text(from, to)
                ),
            });
            return Ok(report);
        }
        report.warnings.push(format!(
            "the id sequence has issued up to {issued} but {after}: rows {from} to {to} may \
             have been deleted from the end (PostgreSQL also uses up ids in rolled-back \
             transactions, so this is not proof; verify with --anchor)"
        ));
    }

    if let Some(anchor) = anchor {
        match anchor_hash {
            Some(hash) if hash == anchor.hash => report.anchor_matched = true,
            Some(_) => {
                report.broken = Some(Break {
                    row: anchor.id,
                    kind: BreakKind::AnchorMismatch,
                    message: format!(
                        "row {}: its hash is not the anchor's (the chain was rewritten at \
                         or before this row)",
                        anchor.id
                    ),
                });
            }
            None if anchor.id > last_id => {
                report.broken = Some(Break {
                    row: anchor.id,
                    kind: BreakKind::DeletedAtEnd,
                    message: format!(
                        "row {}: missing, but the anchor says it was written ({}; rows were \
                         deleted from the end)",
                        anchor.id,
                        if last_id == 0 {
                            "the table is empty".to_owned()
                        } else {
                            format!("the log ends at row {last_id}")
                        }
                    ),
                });
            }
            None => {
                report.broken = Some(Break {
                    row: anchor.id,
                    kind: BreakKind::Deleted,
                    message: format!(
                        "row {}: missing, but the anchor says it was written (deleted)",
                        anchor.id
                    ),
                });
            }
        }
    }
    Ok(report)
}

/// Words for a break found while reading; looks up where a dangling previous hash points.
async fn resolve(db: &Db, pending: Pending) -> Result<Break, DbError> {
    Ok(match pending {
        Pending::Edited(row) => Break {
            row,
            kind: BreakKind::Edited,
            message: format!("row {row}: content does not match its hash (edited)"),
        },
        Pending::Gap { row, missing } => Break {
            row: missing.0,
            kind: BreakKind::Deleted,
            message: format!(
                "row {}: deleted ({} before row {row}; the chain was re-linked over the hole)",
                missing.0,
                missing_text(missing.0, missing.1)
            ),
        },
        Pending::Chain {
            row,
            prev,
            points_to,
            missing,
        } => {
            let owner: Option<i64> =
                sqlx::query("SELECT id FROM audit_events WHERE hash = $1 ORDER BY id LIMIT 1")
                    .bind(&points_to)
                    .fetch_optional(db.pool())
                    .await
                    .and_then(|r| r.map(|r| r.try_get::<i64, _>("id")).transpose())
                    .map_err(|e| DbError::new("verify audit chain", e))?;
            let what = match prev {
                Some(p) => format!("previous hash does not match row {p}"),
                None => "previous hash is not the start of the chain".to_owned(),
            };
            let (kind, why) = match (owner, missing, prev) {
                (Some(other), _, _) => (
                    BreakKind::Reordered,
                    format!("it is the hash of row {other}: rows were reordered or inserted"),
                ),
                (None, Some((from, to)), _) => (
                    BreakKind::Deleted,
                    format!("{}: deleted", missing_text(from, to)),
                ),
                (None, None, None) => (
                    BreakKind::Deleted,
                    "the rows before it were deleted".to_owned(),
                ),
                (None, None, Some(p)) => (
                    BreakKind::Deleted,
                    format!(
                        "a row before it was deleted, or row {p} was rewritten with a \
                         recomputed hash"
                    ),
                ),
            };
            Break {
                row,
                kind,
                message: format!("row {row}: {what} ({why})"),
            }
        }
    })
}

/// The highest id the table's id counter has handed out, when the backend says.
async fn ids_issued(db: &Db) -> Result<Option<i64>, DbError> {
    let sql = match db.backend() {
        Backend::Sqlite => "SELECT seq AS n FROM sqlite_sequence WHERE name = 'audit_events'",
        // NULL until the sequence is first used (or without the privilege to read it).
        Backend::Postgres => {
            "SELECT last_value AS n FROM pg_sequences \
             WHERE format('%I.%I', schemaname, sequencename) = \
             pg_get_serial_sequence('audit_events', 'id')"
        }
    };
    let row = sqlx::query(sql)
        .fetch_optional(db.pool())
        .await
        .map_err(|e| DbError::new("read the audit id counter", e))?;
    row.map(|r| r.try_get::<Option<i64>, _>("n"))
        .transpose()
        .map(Option::flatten)
        .map_err(|e| DbError::new("read the audit id counter", e))
}

/// The chain check as the first tests used it: the number of rows when intact, else the first
/// bad row's id. [`verify_chain`] says what is wrong.
pub async fn verify(db: &Db) -> Result<Result<u64, i64>, DbError> {
    let report = verify_chain(db, None).await?;
    Ok(match report.broken {
        None => Ok(report.checked),
        Some(b) => Err(b.row),
    })
}

// ---------------------------------------------------------------------------------------------
// Export

/// The formats of [`export`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// RFC 4180 CSV with a header line; `detail` is its JSON text.
    Csv,
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Writing the output failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}

/// One exported event, fields in this order.
#[derive(Serialize)]
struct ExportLine<'a> {
    id: i64,
    at: String,
    #[serde(rename = "type")]
    kind: &'a str,
    actor: &'a str,
    target: Option<&'a str>,
    session_id: Option<&'a str>,
    reason: Option<&'a str>,
    detail: serde_json::Value,
    client_addr: &'a str,
    user_agent: &'a str,
    hash: &'a str,
}

/// The CSV header.
const CSV_HEADER: &str =
    "id,at,type,actor,target,session_id,reason,detail,client_addr,user_agent,hash\r\n";

/// A CSV field: quoted when it holds a comma, a quote, a line break or edge spaces; a value
/// that starts like a formula gets a leading `'` (the CSV is for spreadsheets; JSON lines are
/// the exact copy).
fn csv_field(out: &mut String, value: &str) {
    // A cell that starts like a formula (`=`, `+`, `-`, `@`, a tab or a carriage return) is run
    // by spreadsheets that open the export: an actor name or a reason must not become one. A
    // leading `'` makes it text (OWASP's advice for CSV injection).
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let value: std::borrow::Cow<'_, str> = if formula {
        format!("'{value}").into()
    } else {
        value.into()
    };
    let quote =
        value.contains([',', '"', '\n', '\r']) || value.starts_with(' ') || value.ends_with(' ');
    if quote {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&value);
    }
}

/// Writes the events with `from <= at < to` (ms; `None`: unbounded) in order of id to `out`;
/// returns how many. Rows are streamed, not collected.
pub async fn export(
    db: &Db,
    from: Option<i64>,
    to: Option<i64>,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let read = |e| DbError::new("export audit events", e);
    if format == ExportFormat::Csv {
        out.write_all(CSV_HEADER.as_bytes())?;
    }
    let mut rows = sqlx::query(select_events!("WHERE at >= $1 AND at < $2 ORDER BY id"))
        .bind(from.unwrap_or(i64::MIN))
        .bind(to.unwrap_or(i64::MAX))
        .fetch(db.pool());
    let mut count = 0u64;
    let mut line = String::new();
    while let Some(row) = rows.try_next().await.map_err(read)? {
        let row = RawRow::read(&row).map_err(read)?;
        line.clear();
        match format {
            ExportFormat::Jsonl => {
                let record = ExportLine {
                    id: row.id,
                    at: rfc3339_ms(row.at),
                    kind: &row.kind,
                    actor: &row.actor,
                    target: row.target.as_deref(),
                    session_id: row.session_id.as_deref(),
                    reason: row.reason.as_deref(),
                    detail: row.detail_json(),
                    client_addr: &row.client_addr,
                    user_agent: &row.user_agent,
                    hash: &row.hash,
                };
                line = serde_json::to_string(&record).map_err(std::io::Error::other)?;
                line.push('\n');
            }
            ExportFormat::Csv => {
                let fields = [
                    row.id.to_string(),
                    rfc3339_ms(row.at),
                    row.kind.clone(),
                    row.actor.clone(),
                    row.target.clone().unwrap_or_default(),
                    row.session_id.clone().unwrap_or_default(),
                    row.reason.clone().unwrap_or_default(),
                    row.detail.clone(),
                    row.client_addr.clone(),
                    row.user_agent.clone(),
                    row.hash.clone(),
                ];
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    csv_field(&mut line, field);
                }
                line.push_str("\r\n");
            }
        }
        out.write_all(line.as_bytes())?;
        count += 1;
    }
    out.flush()?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_to_the_millisecond() {
        assert_eq!(rfc3339_ms(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_time("2026-11-18T11:06:40.123Z"),
            Ok(1_795_000_000_123)
        );
        assert_eq!(
            parse_time("2026-11-18t11:06:40.1239z"),
            Ok(1_795_000_000_123)
        );
        assert_eq!(
            parse_time("2026-11-18T12:06:40+01:00"),
            Ok(1_795_000_000_000)
        );
        assert_eq!(
            parse_time("2026-11-18 10:36:40-00:30"),
            Ok(1_795_000_000_000)
        );
        assert_eq!(parse_time("2026-11-18"), Ok(1_795_000_000_000 - 40_000_000));
        assert_eq!(parse_time(" 1795000000123 "), Ok(1_795_000_000_123));
        assert_eq!(parse_time("0"), Ok(0));
        for bad in [
            "",
            "yesterday",
            "-5",
            "2026-13-01",
            "2026-02-30",
            "2026-11-18T25:00:00Z",
            "2026-11-18T11:06:40",
            "2026-11-18T11:06:40.Z",
            "2026-11-18T11:06:40+1:00",
            "2026-11-18T11:06:40+24:00",
            "99999999999999999999",
            "2026-11-18T11:06:40Zjunk",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?} parsed");
        }
        let err = parse_time("soon").unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
    }

    #[test]
    fn anchors_parse() {
        let hash = "AB".repeat(32);
        let anchor: Anchor = format!("17:{hash}").parse().unwrap();
        assert_eq!(anchor.id, 17);
        assert_eq!(anchor.hash, "ab".repeat(32));
        for bad in [
            "17".to_owned(),
            "x:ab".to_owned(),
            format!("0:{hash}"),
            format!("17:{}", &hash[1..]),
            format!("17:{}", "g".repeat(64)),
        ] {
            assert!(bad.parse::<Anchor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        let mut out = String::new();
        for v in ["plain", "a,b", "say \"hi\"", "two\nlines", " edge", ""] {
            csv_field(&mut out, v);
            out.push('|');
        }
        assert_eq!(
            out,
            "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"|\" edge\"||"
        );
    }

    #[test]
    fn csv_fields_that_look_like_formulas_stay_text() {
        let mut out = String::new();
        for v in [
            "=HYPERLINK(\"x\")",
            "+1",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "a=b",
        ] {
            csv_field(&mut out, v);
            out.push('|');
        }
        assert_eq!(
            out,
            "\"'=HYPERLINK(\"\"x\"\")\"|'+1|'-2|'@SUM(A1)|'\tx|\"'\rx\"|a=b|"
        );
    }

    #[test]
    fn the_row_hash_covers_the_previous_hash_and_every_field() {
        let canonical = Canonical {
            at: 1,
            kind: "login",
            actor: "alice",
            target: None,
            session_id: None,
            reason: None,
            detail: "{}",
            client_addr: "127.0.0.1",
            user_agent: "ua",
        };
        let base = row_hash(GENESIS, &canonical);
        assert_eq!(base.len(), 64);
        assert_ne!(base, row_hash(&"1".repeat(64), &canonical));
        let other = Canonical {
            reason: Some(""),
            ..canonical
        };
        assert_ne!(base, row_hash(GENESIS, &other), "None and \"\" differ");
    }
}
