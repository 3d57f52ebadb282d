//! The search index's table, `recording_lines`: lines written in batches by each session's
//! indexer, and the search itself ([`find`]): `LIKE` on the lower-cased line, the query's `%`,
//! `_` and `!` escaped (they match literally), every value bound, only sessions the caller may
//! read.
//!
//! An index keeps the search from reading every line (migration 0009):
//! - SQLite: an FTS5 table of the lines' trigrams (`recording_lines_fts`, kept in step by
//!   triggers). For a query of [`MIN_INDEXED_CHARS`] characters or more, the index gives the
//!   candidate lines and each is checked with the scan's own `LIKE`, so the answer is exactly
//!   the scan's (the index folds Unicode case, the `LIKE` only ASCII: it may give more
//!   candidates, never fewer). A shorter query reads every line, as a trigram needs 3.
//! - PostgreSQL: a GIN trigram index (pg_trgm) on `LOWER(line)`, which the same statement uses.
//!
//! [`scan`] is the search without the index, kept to check that both answer the same.

use serde::Serialize;
use sqlx::Row;

use super::db::{Backend, Db, DbError};

/// Lines sent to the writer at once (also the most rows in one `INSERT`: 3 values each keeps
/// the statement within SQLite's 999 bound parameters).
pub const BATCH_LINES: usize = 200;
/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Matches returned when `limit` is not given, and the most that may be asked for.
pub const DEFAULT_LIMIT: i64 = 50;
/// … the most.
pub const MAX_LIMIT: i64 = 500;
/// Shortest query, in characters, that SQLite's trigram index serves.
pub const MIN_INDEXED_CHARS: usize = 3;

/// One line of output and when it began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Milliseconds from the start of the recording to the line's first character, rounded
    /// up: a player positioned there already shows that character.
    pub offset_ms: i64,
    /// The text, escape sequences removed, trailing blanks trimmed.
    pub text: String,
}

/// The number of the next line of `session_id`: one past the last written, 0 for none.
pub async fn next_seq(db: &Db, session_id: &str) -> Result<i64, DbError> {
    let row = sqlx::query(
        "SELECT COALESCE(MAX(seq) + 1, 0) AS next FROM recording_lines WHERE session_id = $1",
    )
    .bind(session_id)
    .fetch_one(db.pool())
    .await
    .map_err(|e| DbError::new("next line number", e))?;
    row.try_get("next")
        .map_err(|e| DbError::new("next line number", e))
}

/// Inserts `lines` of `session_id`, numbered from `first_seq`, in one statement with three parameters: the session, the first line number and
/// the lines as a JSON array of `[offset_ms, text]`, unpacked by the database (`json_each` on
/// SQLite, `jsonb_array_elements` on PostgreSQL). Hundreds of bound parameters instead cost
/// SQLite's driver a lookup of each among all (7 % of the process's CPU during bulk output),
/// and one statement a line costs a round trip to the driver's thread a line.
pub async fn insert(
    db: &Db,
    session_id: &str,
    first_seq: i64,
    lines: &[Line],
) -> Result<(), DbError> {
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
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
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

/// Whose sessions a search reads: one user's, and (`everyone`, for roles that see all
/// sessions) everyone's that have ended: a running session's lines are its owner's alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reader {
    /// The user's id.
    pub user_id: i64,
    /// Whether every session may be read.
    pub everyone: bool,
}

/// The search's statement, reading the lines from `$lines` (which names them `l`). One text
/// for every plan, so that they can only differ in which lines they read.
macro_rules! search_sql {
    ($lines:literal) => {
        concat!(
            "SELECT l.session_id, l.offset_ms, l.line, u.name, s.target, s.reason FROM ",
            $lines,
            " JOIN sessions s ON s.id = l.session_id \
             JOIN users u ON u.id = s.user_id \
             WHERE (s.user_id = $2 OR ($1 = 1 AND s.state NOT IN ('starting', 'active'))) \
             AND LOWER(l.line) LIKE LOWER($3) ESCAPE '!' \
             ORDER BY s.started_at DESC, l.session_id, l.seq \
             LIMIT $4"
        )
    };
}

/// [`find`]'s statement where no index of ours is read by name: every query on PostgreSQL
/// (which picks its trigram index itself), queries shorter than [`MIN_INDEXED_CHARS`] on
/// SQLite.
const PLANNED_SQL: &str = search_sql!("recording_lines l");
/// [`scan`]'s statement: the same, as a text of its own, so that PostgreSQL prepares it apart
/// and no plan made for one serves the other.
const SCAN_SQL: &str = search_sql!("recording_lines l /* every line */");
/// SQLite: the lines whose trigrams match the phrase `$5`, found first (`CROSS JOIN` keeps
/// that order), then checked like the scan.
const SQLITE_INDEXED_SQL: &str = search_sql!(
    "(SELECT rowid AS id FROM recording_lines_fts WHERE recording_lines_fts MATCH $5) f \
     CROSS JOIN recording_lines l ON l.id = f.id"
);

/// How [`run`] finds the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// With the index where it serves the query.
    Indexed,
    /// Reading every line.
    Scan,
}

/// An FTS5 query matching `text` as one phrase: in double quotes, its own doubled. Within a
/// phrase, no character of the text is an operator.
pub fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// Lines containing `q` (case-insensitive: ASCII on SQLite, all letters on PostgreSQL) in the
/// sessions `reader` may read, newest session first, in order within a session; at most
/// `limit`, and whether there were more. Uses the trigram index (see the module's doc).
pub async fn find(
    db: &Db,
    reader: Reader,
    q: &str,
    limit: i64,
    timeout: std::time::Duration,
) -> Result<(Vec<Match>, bool), DbError> {
    run(db, reader, q, limit, timeout, Plan::Indexed).await
}

/// [`find`] without the index: every line is read. The reference the index is checked
/// against (tests and the benchmark).
pub async fn scan(
    db: &Db,
    reader: Reader,
    q: &str,
    limit: i64,
    timeout: std::time::Duration,
) -> Result<(Vec<Match>, bool), DbError> {
    run(db, reader, q, limit, timeout, Plan::Scan).await
}

async fn run(
    db: &Db,
    reader: Reader,
    q: &str,
    limit: i64,
    timeout: std::time::Duration,
    plan: Plan,
) -> Result<(Vec<Match>, bool), DbError> {
    // PostgreSQL cancels the scan itself after `timeout`; SQLite cannot, so the caller stops
    // waiting instead.
    let mut tx = db
        .pool()
        .begin()
        .await
        .map_err(|e| DbError::new("begin search", e))?;
    if db.backend() == Backend::Postgres {
        // An integer of ours: nothing to bind (SET takes no parameters).
        let ms = timeout.as_millis().max(1);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET LOCAL statement_timeout = {ms}"
        )))
        .execute(&mut *tx)
        .await
        .map_err(|e| DbError::new("limit the search's time", e))?;
        // Planned for each search with its own pattern: a generic plan, made for any pattern,
        // can read the trigram index once per session (PostgreSQL switches to one after five
        // runs of a prepared statement when it looks no costlier).
        sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
            .execute(&mut *tx)
            .await
            .map_err(|e| DbError::new("plan the search", e))?;
        if plan == Plan::Scan {
            // The trigram index is GIN, read only through bitmap scans.
            sqlx::query("SET LOCAL enable_bitmapscan = off")
                .execute(&mut *tx)
                .await
                .map_err(|e| DbError::new("plan the search", e))?;
        }
    }
    let indexed = plan == Plan::Indexed
        && db.backend() == Backend::Sqlite
        && q.chars().count() >= MIN_INDEXED_CHARS;
    let query = match (plan, indexed) {
        (Plan::Scan, _) => sqlx::query(SCAN_SQL),
        (Plan::Indexed, true) => sqlx::query(SQLITE_INDEXED_SQL),
        (Plan::Indexed, false) => sqlx::query(PLANNED_SQL),
    };
    let query = query
        .bind(i64::from(reader.everyone))
        .bind(reader.user_id)
        .bind(like_pattern(q))
        .bind(limit + 1);
    let query = if indexed {
        query.bind(fts_phrase(q))
    } else {
        query
    };
    let rows = query
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| DbError::new("search recordings", e))?;
    // Read only: nothing to keep.
    tx.rollback()
        .await
        .map_err(|e| DbError::new("end search", e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(like_pattern("100%_done!"), "%100!%!_done!!%");
        assert_eq!(like_pattern("plain"), "%plain%");
    }

    #[test]
    fn fts_phrases_quote_the_whole_text() {
        assert_eq!(fts_phrase("disk full"), "\"disk full\"");
        assert_eq!(fts_phrase("say \"hi\" OR x*"), "\"say \"\"hi\"\" OR x*\"");
    }

    #[test]
    fn queries_are_checked() {
        assert_eq!(check_query("  disk  ").as_deref(), Ok("disk"));
        assert!(check_query("   ").unwrap_err().starts_with("q:"));
        assert!(check_query(&"x".repeat(201)).unwrap_err().contains("200"));
        assert!(check_query(&"é".repeat(200)).is_ok());
        assert!(check_query("a\u{7}b").is_err());
    }
}
