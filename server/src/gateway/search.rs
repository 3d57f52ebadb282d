//! Search inside recordings: the text each session printed, escape sequences removed, kept as
//! lines with the moment each began (`recording_lines`), and `GET /api/v1/recordings/search`.
//!
//! - [`Lines`] turns output into lines, with no IO: a `vte` parser (the terminal model's, so no
//!   second copy is built) keeps printable text and drops control and escape sequences; `\n`
//!   ends a line, backspace removes a character, a carriage return followed by more text
//!   also ends it (readline's line wrap and progress bars print that way: each state is kept,
//!   nothing printed is lost), and a line longer than [`MAX_LINE_CHARS`] is cut into several.
//! - [`Indexer`] is what the recorder holds: it only queues the output text (bounded) to one
//!   writer task per session, which runs [`Lines`] and inserts the lines in batches: when
//!   [`BATCH_LINES`] are ready, every second, and at the end. The session task never parses
//!   for the index nor waits on the database.
//! - [`find`] is the search: `LIKE` on the lower-cased line, the query's `%`, `_` and `!`
//!   escaped (they match literally), every value bound, only sessions the caller may read.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::json;
use sqlx::Row;
use tokio::sync::mpsc;

use super::auth::SignedIn;
use super::db::{Backend, Db, DbError};
use super::error::ApiError;
use super::ground::{Tracker, is_plain};
use super::policy;
use super::state::AppState;
use super::users::User;

/// Longest line indexed; a longer one continues as another line.
pub const MAX_LINE_CHARS: usize = 500;
/// Lines sent to the writer at once (also the most rows in one `INSERT`: 3 values each keeps
/// the statement within SQLite's 999 bound parameters).
pub const BATCH_LINES: usize = 200;
/// Output chunks queued towards a session's writer task (a chunk is what one data-channel
/// message carried, at most a few KiB). A writer that falls this far behind (a slow
/// database) makes output wait in the indexer, up to [`MAX_WAITING_BYTES`].
const WRITER_QUEUE: usize = 256;
/// Output bytes waiting in the indexer for room in the writer's queue; beyond this the oldest
/// are dropped and counted (logged once, and in total at the end): the recording keeps them,
/// the index does not.
const MAX_WAITING_BYTES: usize = 4 * 1024 * 1024;
/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Matches returned when `limit` is not given, and the most that may be asked for.
pub const DEFAULT_LIMIT: i64 = 50;
/// … the most.
pub const MAX_LIMIT: i64 = 500;

/// One line of output and when it began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Milliseconds from the start of the recording to the line's first character, rounded
    /// up: a player positioned there already shows that character.
    pub offset_ms: i64,
    /// The text, escape sequences removed, trailing blanks trimmed.
    pub text: String,
}

/// Output to lines, without IO.
pub struct Lines {
    parser: vte::Parser,
    state: LineState,
    /// Where the parser stands, so that plain text (most of any output) is split into lines
    /// here, a slice at a time, instead of a character at a time through the parser: the
    /// same lines, about five times less work.
    tracker: Option<Tracker>,
}

impl std::fmt::Debug for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines")
            .field("current", &self.state.current)
            .finish()
    }
}

#[derive(Default)]
struct LineState {
    /// The time of the chunk being parsed, in seconds.
    now: f64,
    current: String,
    chars: usize,
    /// When the current line's first character was printed.
    began: Option<f64>,
    /// A carriage return was seen: the next character starts another line.
    returned: bool,
    done: Vec<Line>,
}

impl LineState {
    fn end_line(&mut self) {
        let text = self.current.trim_end();
        if let (false, Some(began)) = (text.trim_start().is_empty(), self.began) {
            self.done.push(Line {
                offset_ms: (began * 1000.0).ceil() as i64,
                text: text.to_owned(),
            });
        }
        self.current.clear();
        self.chars = 0;
        self.began = None;
        self.returned = false;
    }
}

impl LineState {
    /// What [`vte::Perform::print`] and [`vte::Perform::execute`] do for each byte of `run`,
    /// plain text (see [`is_plain`]) read with the parser at rest.
    fn plain(&mut self, mut run: &[u8]) {
        while !run.is_empty() {
            let text = run
                .iter()
                .position(|b| !(0x20..=0x7e).contains(b))
                .unwrap_or(run.len());
            self.print_ascii(&run[..text]);
            if let Some(control) = run.get(text) {
                vte::Perform::execute(self, *control);
            }
            run = run.get(text + 1..).unwrap_or_default();
        }
    }

    /// `print` of each character of printable ASCII `text`.
    fn print_ascii(&mut self, mut text: &[u8]) {
        while !text.is_empty() {
            if self.returned {
                self.end_line();
            }
            if self.began.is_none() {
                self.began = Some(self.now);
            }
            let take = (MAX_LINE_CHARS - self.chars).min(text.len());
            // Printable ASCII is UTF-8.
            self.current
                .push_str(std::str::from_utf8(&text[..take]).unwrap_or_default());
            self.chars += take;
            if self.chars >= MAX_LINE_CHARS {
                self.end_line();
            }
            text = &text[take..];
        }
    }
}

impl vte::Perform for LineState {
    fn print(&mut self, c: char) {
        if self.returned {
            // Text from the first column again (a wrapped line, a progress bar): the text
            // before it is a line of its own.
            self.end_line();
        }
        if self.began.is_none() {
            self.began = Some(self.now);
        }
        self.current.push(c);
        self.chars += 1;
        if self.chars >= MAX_LINE_CHARS {
            self.end_line();
        }
    }

    fn execute(&mut self, byte: u8) {
        match byte {
            b'\n' => self.end_line(),
            b'\r' => self.returned = true,
            b'\t' => self.print(' '),
            0x08 if self.current.pop().is_some() => self.chars -= 1,
            _ => {}
        }
    }
}

impl Default for Lines {
    fn default() -> Self {
        Self::new()
    }
}

impl Lines {
    /// An empty splitter.
    pub fn new() -> Self {
        Self {
            parser: vte::Parser::new(),
            state: LineState::default(),
            tracker: Some(Tracker::new()),
        }
    }

    /// Feeds output printed `seconds` after the start; returns the lines it finished.
    pub fn push(&mut self, seconds: f64, bytes: &[u8]) -> Vec<Line> {
        self.state.now = seconds;
        let Some(tracker) = &mut self.tracker else {
            self.parser.advance(&mut self.state, bytes);
            return std::mem::take(&mut self.state.done);
        };
        // bytes[parsed..at] are not plain (or not at rest) and go through the parser.
        let (mut parsed, mut at) = (0, 0);
        while at < bytes.len() {
            if tracker.at_rest() && is_plain(bytes[at]) {
                let end = bytes[at..]
                    .iter()
                    .position(|b| !is_plain(*b))
                    .map_or(bytes.len(), |n| at + n);
                self.parser.advance(&mut self.state, &bytes[parsed..at]);
                self.state.plain(&bytes[at..end]);
                (parsed, at) = (end, end);
                continue;
            }
            let _ = tracker.step(bytes[at]); // only where it stands matters here
            at += 1;
        }
        self.parser.advance(&mut self.state, &bytes[parsed..]);
        std::mem::take(&mut self.state.done)
    }

    /// Ends the line in progress (the end of the session); returns it, if it has text.
    pub fn finish(&mut self) -> Vec<Line> {
        self.state.end_line();
        std::mem::take(&mut self.state.done)
    }
}

/// The text index of one session's output, held by its recorder. It only queues the text:
/// parsing, batching and writing happen in the session's writer task, off the session's
/// data path.
pub struct Indexer {
    session_id: String,
    /// Output not yet handed to the writer (its queue was full), oldest first.
    waiting: VecDeque<ToWriter>,
    waiting_bytes: usize,
    tx: mpsc::Sender<ToWriter>,
    dropped_bytes: u64,
}

/// What the indexer sends its writer.
#[derive(Debug)]
enum ToWriter {
    /// Output text printed this many seconds after the start of the recording.
    Output(f64, String),
    /// Write the finished lines now (once a second).
    Flush,
}

impl std::fmt::Debug for Indexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexer")
            .field("session_id", &self.session_id)
            .field("waiting_bytes", &self.waiting_bytes)
            .finish()
    }
}

impl Indexer {
    /// Starts the session's writer task (it ends when the indexer is finished or dropped,
    /// after writing what it was sent). Needs a tokio runtime.
    pub fn spawn(db: Db, session_id: &str) -> Self {
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        tokio::spawn(write_lines(db, session_id.to_owned(), rx));
        Self {
            session_id: session_id.to_owned(),
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            tx,
            dropped_bytes: 0,
        }
    }

    /// Output text, printed `seconds` after the start of the recording.
    pub fn output(&mut self, seconds: f64, text: &str) {
        self.waiting_bytes += text.len();
        self.waiting
            .push_back(ToWriter::Output(seconds, text.to_owned()));
        while self.waiting_bytes > MAX_WAITING_BYTES {
            let Some(ToWriter::Output(_, old)) = self.waiting.pop_front() else {
                break;
            };
            if self.dropped_bytes == 0 {
                tracing::warn!(session = %self.session_id, "search index: the database is behind; output not yet indexed is dropped");
            }
            self.waiting_bytes -= old.len();
            self.dropped_bytes += old.len() as u64;
        }
        self.send_waiting();
    }

    /// Hands what waits to the writer, as far as its queue has room.
    fn send_waiting(&mut self) {
        while let Some(message) = self.waiting.pop_front() {
            match self.tx.try_reserve() {
                Ok(permit) => {
                    if let ToWriter::Output(_, text) = &message {
                        self.waiting_bytes -= text.len();
                    }
                    permit.send(message);
                }
                Err(_) => {
                    // Full (the rest waits) or the writer has gone (it logged why).
                    self.waiting.push_front(message);
                    return;
                }
            }
        }
    }

    /// Asks the writer to write the lines it has (called every second).
    pub fn flush(&mut self) {
        self.send_waiting();
        if self.waiting.is_empty() {
            let _ = self.tx.try_send(ToWriter::Flush); // full: it is writing already
        }
    }

    /// Hands everything to the writer, which ends the last line, writes and ends.
    pub fn finish(mut self) {
        self.send_waiting();
        if self.dropped_bytes > 0 {
            tracing::warn!(session = %self.session_id, bytes = self.dropped_bytes, "search index: output dropped");
        }
        if self.waiting.is_empty() {
            return;
        }
        // The queue is full: wait for room in a task of its own (the session is ending; its
        // task must not wait on the database).
        let (tx, waiting) = (self.tx.clone(), std::mem::take(&mut self.waiting));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for message in waiting {
                    if tx.send(message).await.is_err() {
                        break; // the writer has gone; it logged why
                    }
                }
            });
        }
    }
}

/// The writer task of one session: turns output into lines and inserts them in batches, with
/// their line numbers; the last line when the indexer is done.
async fn write_lines(db: Db, session_id: String, mut rx: mpsc::Receiver<ToWriter>) {
    let mut lines = Lines::new();
    let mut done: Vec<Line> = Vec::new();
    let mut seq: i64 = 0;
    loop {
        let message = rx.recv().await;
        let last = message.is_none();
        let flush = match message {
            Some(ToWriter::Output(seconds, text)) => {
                done.extend(lines.push(seconds, text.as_bytes()));
                done.len() >= BATCH_LINES
            }
            Some(ToWriter::Flush) => true,
            None => {
                done.extend(lines.finish());
                true
            }
        };
        if flush {
            for batch in done.chunks(BATCH_LINES) {
                let n = batch.len() as i64;
                if let Err(e) = insert(&db, &session_id, seq, batch).await {
                    tracing::warn!(session = %session_id, lines = n, "search index: {e}");
                }
                seq += n;
            }
            done.clear();
        }
        if last {
            break;
        }
    }
}

/// The lines in one statement with three parameters: the session, the first line number and
/// the lines as a JSON array of `[offset_ms, text]`, unpacked by the database (`json_each` on
/// SQLite, `jsonb_array_elements` on PostgreSQL). Hundreds of bound parameters instead cost
/// SQLite's driver a lookup of each among all (7 % of the process's CPU during bulk output),
/// and one statement a line costs a round trip to the driver's thread a line.
async fn insert(db: &Db, session_id: &str, first_seq: i64, lines: &[Line]) -> Result<(), DbError> {
    if lines.is_empty() {
        return Ok(());
    }
    let rows: Vec<(i64, &str)> = lines
        .iter()
        .map(|l| (l.offset_ms, l.text.as_str()))
        .collect();
    // Numbers and strings: encoding cannot fail.
    let rows = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_owned());
    let sql = match db.backend() {
        Backend::Sqlite => {
            "INSERT INTO recording_lines (session_id, seq, offset_ms, line) \
             SELECT $1, $2 + CAST(key AS INTEGER), json_extract(value, '$[0]'), json_extract(value, '$[1]') \
             FROM json_each($3)"
        }
        Backend::Postgres => {
            "INSERT INTO recording_lines (session_id, seq, offset_ms, line) \
             SELECT $1, $2 + ord - 1, (elem->>0)::BIGINT, elem->>1 \
             FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS t(elem, ord)"
        }
    };
    // Under the process's write lock: on SQLite, a commit between an audit append's read and
    // write makes that append fail.
    let _writing = db.lock_writes().await;
    sqlx::query(sql)
        .bind(session_id)
        .bind(first_seq)
        .bind(rows)
        .execute(db.pool())
        .await
        .map_err(|e| DbError::new("write recording lines", e))?;
    Ok(())
}

/// One match.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Match {
    /// The session.
    pub session_id: String,
    /// Who opened it.
    pub user: String,
    /// The node.
    pub target: String,
    /// The reason given.
    pub reason: String,
    /// Seconds from the start of the recording to the line (a player started there shows it).
    pub offset_seconds: f64,
    /// The line, as printed (escape sequences removed).
    pub line: String,
}

/// The query, trimmed, when it is one: not empty, at most [`MAX_QUERY_CHARS`] characters.
pub fn check_query(q: &str) -> Result<String, String> {
    let q = q.trim();
    if q.is_empty() {
        return Err("q: give the text to search for".into());
    }
    let n = q.chars().count();
    if n > MAX_QUERY_CHARS {
        return Err(format!("q: at most {MAX_QUERY_CHARS} characters (got {n})"));
    }
    if q.chars().any(char::is_control) {
        return Err("q: no control characters".into());
    }
    Ok(q.to_owned())
}

/// A `LIKE … ESCAPE '!'` pattern that matches `text` anywhere, literally.
pub fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Lines containing `q` (case-insensitive: ASCII on SQLite, all letters on PostgreSQL) in the
/// sessions `user` may read, newest session first, in order within a session; at most
/// `limit`, and whether there were more.
pub async fn find(
    db: &Db,
    user: &User,
    q: &str,
    limit: i64,
) -> Result<(Vec<Match>, bool), DbError> {
    let rows = sqlx::query(
        "SELECT l.session_id, l.offset_ms, l.line, u.name, s.target, s.reason \
         FROM recording_lines l \
         JOIN sessions s ON s.id = l.session_id \
         JOIN users u ON u.id = s.user_id \
         WHERE ($1 = 1 OR s.user_id = $2) AND LOWER(l.line) LIKE LOWER($3) ESCAPE '!' \
         ORDER BY s.started_at DESC, l.session_id, l.seq \
         LIMIT $4",
    )
    .bind(i64::from(policy::sees_all_sessions(user)))
    .bind(user.id)
    .bind(like_pattern(q))
    .bind(limit + 1)
    .fetch_all(db.pool())
    .await
    .map_err(|e| DbError::new("search recordings", e))?;
    let read = |e| DbError::new("read search match", e);
    let mut matches = Vec::with_capacity(rows.len());
    for row in &rows {
        let offset_ms: i64 = row.try_get("offset_ms").map_err(read)?;
        matches.push(Match {
            session_id: row.try_get("session_id").map_err(read)?,
            user: row.try_get("name").map_err(read)?,
            target: row.try_get("target").map_err(read)?,
            reason: row.try_get("reason").map_err(read)?,
            offset_seconds: offset_ms as f64 / 1000.0,
            line: row.try_get("line").map_err(read)?,
        });
    }
    let more = matches.len() as i64 > limit;
    matches.truncate(usize::try_from(limit).unwrap_or(0));
    Ok((matches, more))
}

/// A search request: the query and the limit, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The text, trimmed.
    pub q: String,
    /// 1 to [`MAX_LIMIT`].
    pub limit: i64,
}

fn unprocessable(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", message)
}

/// Reads `q` and `limit` from a query string's pairs. Errors name the parameter.
pub fn parse(pairs: &[(String, String)]) -> Result<Request, ApiError> {
    let mut q = None;
    let mut limit = None;
    for (k, v) in pairs {
        let slot = match k.as_str() {
            "q" => &mut q,
            "limit" => &mut limit,
            other => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    format!("{other}: not a parameter of this API (q, limit)"),
                ));
            }
        };
        if slot.replace(v.clone()).is_some() {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("{k}: given more than once"),
            ));
        }
    }
    let q = check_query(q.as_deref().unwrap_or("")).map_err(unprocessable)?;
    let limit = match limit.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                unprocessable(format!(
                    "limit: a whole number from 1 to {MAX_LIMIT} (got {text:?})"
                ))
            })?,
    };
    Ok(Request { q, limit })
}

/// `GET /api/v1/recordings/search?q=TEXT[&limit=N]`.
pub async fn search(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(pairs) = query.map_err(|e| {
        ApiError::bad_request(
            "invalid_request",
            format!("the query string is malformed: {e}"),
        )
    })?;
    let request = parse(&pairs)?;
    let (matches, more) = find(&state.db, &signed.user, &request.q, request.limit).await?;
    Ok(Json(json!({ "matches": matches, "more": more })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn texts(lines: &[Line]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn escapes_are_removed_and_lines_keep_their_start() {
        let mut lines = Lines::new();
        let first = lines.push(
            1.5,
            b"\x1b[1;32muser@web-1\x1b[0m:~$ echo hi\r\nhi\r\n\x1b]0;title\x07par",
        );
        assert_eq!(texts(&first), ["user@web-1:~$ echo hi", "hi"]);
        assert_eq!(first[0].offset_ms, 1500);
        // A line split over chunks began when its first character came; offsets round up.
        let second = lines.push(2.0004, b"tial line\nnext\n");
        assert_eq!(
            second,
            [
                Line {
                    offset_ms: 1500,
                    text: "partial line".into()
                },
                Line {
                    offset_ms: 2001,
                    text: "next".into()
                }
            ]
        );
        assert!(lines.finish().is_empty());
    }

    #[test]
    fn backspaces_returns_tabs_and_long_lines() {
        let mut lines = Lines::new();
        let done = lines.push(0.0, b"ecoh\x08\x08ho\tx\r\n10%\r55%\r100%\n\n   \n");
        assert_eq!(texts(&done), ["echo x", "10%", "55%", "100%"]);
        let long = "a".repeat(MAX_LINE_CHARS + 10);
        let done = lines.push(3.0, long.as_bytes());
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].text.chars().count(), MAX_LINE_CHARS);
        assert_eq!(texts(&lines.finish()), ["a".repeat(10)]);
        // Multi-byte text and invalid bytes never panic.
        let done = lines.push(4.0, "héllo ✓ 🦀\n".as_bytes());
        assert_eq!(texts(&done), ["héllo ✓ 🦀"]);
        let _ = lines.push(4.0, b"\xff\xfe\x1b[\x1b]\x07\x08\x08\x08\n");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        /// Plain text split here gives the lines the parser gives, whatever surrounds it.
        #[test]
        fn the_plain_text_shortcut_gives_the_same_lines(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => "[ -~\t\x08\r\n]{0,700}",
                    1 => proptest::sample::select(vec![
                        "\x1b[31m", "\x1b]0;x\ny\x07", "\x1b]0;x", "\x1bP1$r\n", "\x1b\\", "\x18",
                        "\x1b[", "\x1b[1;", "é", "✓ 🦀", "\u{9b}", "\x0b", "\x07", "\x1b_a\n",
                    ]).prop_map(str::to_owned),
                ],
                0..40,
            ),
            times in proptest::collection::vec(0.0f64..100.0, 40),
        ) {
            let (mut fast, mut reference) = (Lines::new(), Lines::new());
            reference.tracker = None;
            for (piece, t) in pieces.iter().zip(&times) {
                proptest::prop_assert_eq!(fast.push(*t, piece.as_bytes()), reference.push(*t, piece.as_bytes()));
            }
            proptest::prop_assert_eq!(fast.finish(), reference.finish());
        }
    }

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(like_pattern("100%_done!"), "%100!%!_done!!%");
        assert_eq!(like_pattern("plain"), "%plain%");
    }

    #[test]
    fn queries_are_checked() {
        assert_eq!(check_query("  disk  ").as_deref(), Ok("disk"));
        assert!(check_query("   ").unwrap_err().starts_with("q:"));
        assert!(check_query(&"x".repeat(201)).unwrap_err().contains("200"));
        assert!(check_query(&"é".repeat(200)).is_ok());
        assert!(check_query("a\u{7}b").is_err());
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            parse(&pairs(&[("q", "x"), ("limit", "5")])).unwrap(),
            Request {
                q: "x".into(),
                limit: 5
            }
        );
        assert_eq!(parse(&pairs(&[("q", "x")])).unwrap().limit, DEFAULT_LIMIT);
        let status = |v: &[(&str, &str)]| parse(&pairs(v)).unwrap_err().status.as_u16();
        assert_eq!(status(&[]), 422);
        assert_eq!(status(&[("q", "x"), ("limit", "0")]), 422);
        assert_eq!(status(&[("q", "x"), ("limit", "501")]), 422);
        assert_eq!(status(&[("q", "x"), ("nope", "1")]), 400);
        assert_eq!(status(&[("q", "x"), ("q", "y")]), 400);
    }
}
