//! The search index's table, `recording_lines`: lines written in batches by each session's
//! indexer, and the search itself ([`find`]): `LIKE` on the lower-cased line, the query's `%`,
//! `_` and `!` escaped (they match literally), every value bound, only sessions the caller may
//! read.
//!
//! The answer is the newest sessions' matches first, in order within a session. [`find`] gets
//! it in two ways, and picks per query:
//! - **The walk**: the sessions the caller may read, newest first, read in chunks of lines
//!   (growing from [`Walk::first_chunk`]), each chunk's matches in the answer's order, until
//!   `limit` + 1 are found. A common text is answered from the first chunk or two, without
//!   reading (or sorting) the matches of older sessions.
//! - **The index** (migration 0009), once the walk has read [`Walk::lines_before_index`] lines
//!   without finding enough: the text is rare, so the index's candidates are few. It answers
//!   the whole query again (the walk's matches are its first ones), so the two never need to
//!   be stitched together.
//!   - SQLite: an FTS5 table of the lines' trigrams (`recording_lines_fts`, kept in step by
//!     triggers). For a query of [`MIN_INDEXED_CHARS`] characters or more, the index gives the
//!     candidate lines and each is checked with the scan's own `LIKE`, so the answer is
//!     exactly the scan's (the index folds Unicode case, the `LIKE` only ASCII: it may give
//!     more candidates, never fewer). A shorter query is walked to the end, as a trigram
//!     needs 3.
//!   - PostgreSQL: a GIN trigram index (pg_trgm) on `LOWER(line)`, which the same statement
//!     uses.
//!
//! Every statement of a search reads one snapshot (one read transaction; repeatable read on
//! PostgreSQL), so a walk over lines being written answers as one statement would.
//! [`scan`] is the search in one statement without the index, kept to check that both answer
//! the same.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

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
    // Under the process's write lock on SQLite: a commit between an audit append's read and
    // write makes that append fail.
    let _writing = db.lock_single_writer().await;
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

/// The walk's statement on SQLite: the lines of the ranges `$5` (a JSON array of
/// `{"sid", "lo", "hi"}`: a session and an inclusive range of its line numbers), read through
/// the `(session_id, seq)` key.
const SQLITE_WALK_SQL: &str = search_sql!(
    "json_each($5) c CROSS JOIN recording_lines l \
     ON l.session_id = json_extract(c.value, '$.sid') \
     AND l.seq BETWEEN json_extract(c.value, '$.lo') AND json_extract(c.value, '$.hi')"
);
/// The walk's statement on PostgreSQL (planned with [`WALK_PLAN`], so that each range is read
/// through the `(session_id, seq)` key).
const POSTGRES_WALK_SQL: &str = search_sql!(
    "jsonb_to_recordset($5::jsonb) AS c(sid TEXT, lo BIGINT, hi BIGINT) \
     JOIN recording_lines l ON l.session_id = c.sid AND l.seq BETWEEN c.lo AND c.hi"
);
/// PostgreSQL: the walk's plan (see [`walk_newest_first`]).
const WALK_PLAN: [&str; 4] = [
    "SET LOCAL enable_bitmapscan = off",
    "SET LOCAL enable_seqscan = off",
    "SET LOCAL enable_hashjoin = off",
    "SET LOCAL enable_mergejoin = off",
];
/// PostgreSQL: the planner's own choices again, after the walk.
const PLAN_AGAIN: [&str; 4] = [
    "SET LOCAL enable_bitmapscan TO DEFAULT",
    "SET LOCAL enable_seqscan TO DEFAULT",
    "SET LOCAL enable_hashjoin TO DEFAULT",
    "SET LOCAL enable_mergejoin TO DEFAULT",
];
/// The sessions a search reads, newest first (the answer's order), after the cursor
/// (`$3` = 1: after started_at `$4`, id `$5`), with their line count (one past the highest
/// line number; 0: none).
const WALK_SESSIONS_SQL: &str = "SELECT s.id, s.started_at, \
     (SELECT COALESCE(MAX(r.seq) + 1, 0) FROM recording_lines r WHERE r.session_id = s.id) \
     AS lines FROM sessions s \
     WHERE (s.user_id = $2 OR ($1 = 1 AND s.state NOT IN ('starting', 'active'))) \
     AND ($3 = 0 OR s.started_at < $4 OR (s.started_at = $4 AND s.id > $5)) \
     ORDER BY s.started_at DESC, s.id LIMIT $6";

/// How [`find`] walks before it asks the index. [`Walk::DEFAULT`] in the gateway; the tests
/// use small numbers to split sessions across chunks and to reach the index mid-way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    /// Lines in the first chunk; each next chunk is four times as many, up to
    /// [`Walk::max_chunk`].
    pub first_chunk: i64,
    /// The most lines in one chunk.
    pub max_chunk: i64,
    /// Lines read without finding enough matches, after which the index answers instead (for
    /// queries it serves; a shorter query on SQLite is walked to the end).
    pub lines_before_index: i64,
    /// The most sessions listed at once (the first list has at most 8, each next 4× as many).
    pub session_page: i64,
}

impl Walk {
    /// The gateway's: a common text (≥ 1 match in 400 lines, spread evenly) is answered by the
    /// walk within 20,000 lines; a rarer one has few candidates in the index.
    pub const DEFAULT: Walk = Walk {
        first_chunk: 1_000,
        max_chunk: 64_000,
        lines_before_index: 20_000,
        session_page: 256,
    };
}

/// How [`run`] finds the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// The walk, then the index where it serves the query.
    Indexed(Walk),
    /// Reading every line in one statement.
    Scan,
}

/// An FTS5 query matching `text` as one phrase: in double quotes, its own doubled. Within a
/// phrase, no character of the text is an operator.
pub fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// Lines containing `q` (case-insensitive: ASCII on SQLite, all letters on PostgreSQL) in the
/// sessions `reader` may read, newest session first, in order within a session; at most
/// `limit`, and whether there were more. Walks the newest sessions, then asks the trigram
/// index (see the module's doc).
pub async fn find(
    db: &Db,
    reader: Reader,
    q: &str,
    limit: i64,
    timeout: std::time::Duration,
) -> Result<(Vec<Match>, bool), DbError> {
    run(db, reader, q, limit, timeout, Plan::Indexed(Walk::DEFAULT)).await
}

/// [`find`] with another [`Walk`] (tests: the answer must not depend on it).
pub async fn find_walking(
    db: &Db,
    reader: Reader,
    q: &str,
    limit: i64,
    timeout: std::time::Duration,
    walk: Walk,
) -> Result<(Vec<Match>, bool), DbError> {
    run(db, reader, q, limit, timeout, Plan::Indexed(walk)).await
}

/// [`find`] without the walk or the index: every line is read, in one statement. The
/// reference the others are checked against (tests and the benchmark).
pub async fn scan(
    db: &Db,
    reader: Reader,
    q: &str,
    limit: i64,
    timeout: std::time::Duration,
) -> Result<(Vec<Match>, bool), DbError> {
    run(db, reader, q, limit, timeout, Plan::Scan).await
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

async fn set_local(tx: &mut Tx, sql: &'static str) -> Result<(), DbError> {
    sqlx::query(sql)
        .execute(&mut **tx)
        .await
        .map(|_| ())
        .map_err(|e| DbError::new("plan the search", e))
}

async fn run(
    db: &Db,
    reader: Reader,
    q: &str,
    limit: i64,
    timeout: std::time::Duration,
    plan: Plan,
) -> Result<(Vec<Match>, bool), DbError> {
    // PostgreSQL cancels a statement itself after `timeout`; SQLite cannot, so the caller
    // stops waiting instead. One snapshot for every statement of the search.
    let begin = match db.backend() {
        Backend::Sqlite => db.pool().begin().await,
        Backend::Postgres => {
            db.pool()
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await
        }
    };
    let mut tx = begin.map_err(|e| DbError::new("begin search", e))?;
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
        set_local(&mut tx, "SET LOCAL plan_cache_mode = force_custom_plan").await?;
    }
    let want = limit.saturating_add(1);
    let rows = match plan {
        Plan::Scan => {
            if db.backend() == Backend::Postgres {
                // The trigram index is GIN, read only through bitmap scans.
                set_local(&mut tx, "SET LOCAL enable_bitmapscan = off").await?;
            }
            statement(&mut tx, SCAN_SQL, reader, q, want, None).await?
        }
        Plan::Indexed(walk) => {
            let indexed =
                db.backend() == Backend::Postgres || q.chars().count() >= MIN_INDEXED_CHARS;
            let budget = if indexed {
                walk.lines_before_index
            } else {
                i64::MAX
            };
            match walk_newest_first(&mut tx, db.backend(), reader, q, want, walk, budget).await? {
                Some(rows) => rows,
                None => match db.backend() {
                    Backend::Sqlite => {
                        statement(
                            &mut tx,
                            SQLITE_INDEXED_SQL,
                            reader,
                            q,
                            want,
                            Some(fts_phrase(q)),
                        )
                        .await?
                    }
                    Backend::Postgres => {
                        for plan in PLAN_AGAIN {
                            set_local(&mut tx, plan).await?;
                        }
                        statement(&mut tx, PLANNED_SQL, reader, q, want, None).await?
                    }
                },
            }
        }
    };
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

/// Runs one of the search statements ([`search_sql!`]) with its parameters; `$5`, when
/// given, is `extra`.
async fn statement(
    tx: &mut Tx,
    sql: &'static str,
    reader: Reader,
    q: &str,
    want: i64,
    extra: Option<String>,
) -> Result<Vec<AnyRow>, DbError> {
    let query = sqlx::query(sql)
        .bind(i64::from(reader.everyone))
        .bind(reader.user_id)
        .bind(like_pattern(q))
        .bind(want);
    let query = match extra {
        Some(extra) => query.bind(extra),
        None => query,
    };
    query
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| DbError::new("search recordings", e))
}

/// One range of a session's lines for the walk.
#[derive(Debug, Serialize)]
struct Range<'a> {
    sid: &'a str,
    lo: i64,
    hi: i64,
}

/// The walk (see the module's doc): the first `want` matches of the sessions `reader` may
/// read, newest first, reading chunks of lines; all of them when there are fewer. `None` when
/// `budget` lines were read without finding `want` (the index answers instead).
async fn walk_newest_first(
    tx: &mut Tx,
    backend: Backend,
    reader: Reader,
    q: &str,
    want: i64,
    walk: Walk,
    budget: i64,
) -> Result<Option<Vec<AnyRow>>, DbError> {
    let sql = match backend {
        Backend::Sqlite => SQLITE_WALK_SQL,
        Backend::Postgres => {
            // The ranges' lines through the `(session_id, seq)` key, a range at a time: left
            // to itself, the planner reads every matching line (a sequential or trigram scan)
            // and joins the ranges to them.
            for plan in WALK_PLAN {
                set_local(tx, plan).await?;
            }
            POSTGRES_WALK_SQL
        }
    };
    let read = |e| DbError::new("list the sessions to search", e);
    // Sessions listed and not yet read to their end: (id, next line, lines).
    let mut listed: std::collections::VecDeque<(String, i64, i64)> = Default::default();
    let mut cursor: Option<(i64, String)> = None;
    let mut listed_all = false;
    let mut found: Vec<AnyRow> = Vec::new();
    let mut walked: i64 = 0;
    let mut chunk = walk.first_chunk.max(1);
    // Sessions are listed a few first (each one's line count is an index lookup, and a common
    // text needs the newest only), then 4× as many each time, up to `walk.session_page`.
    let mut page_size = walk.session_page.clamp(1, 8);
    loop {
        // The next chunk: ranges of the next sessions' lines, `chunk` lines in all.
        let mut ranges: Vec<(String, i64, i64)> = Vec::new();
        let mut lines = 0;
        while lines < chunk {
            if listed.is_empty() {
                if listed_all {
                    break;
                }
                let (after, at, id) = match &cursor {
                    Some((at, id)) => (1_i64, *at, id.as_str()),
                    None => (0, 0, ""),
                };
                let page = sqlx::query(WALK_SESSIONS_SQL)
                    .bind(i64::from(reader.everyone))
                    .bind(reader.user_id)
                    .bind(after)
                    .bind(at)
                    .bind(id)
                    .bind(page_size)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(read)?;
                listed_all = (page.len() as i64) < page_size;
                page_size = page_size
                    .saturating_mul(4)
                    .min(walk.session_page.max(1))
                    .max(1);
                for row in &page {
                    let id: String = row.try_get("id").map_err(read)?;
                    let at: i64 = row.try_get("started_at").map_err(read)?;
                    let count: i64 = row.try_get("lines").map_err(read)?;
                    if count > 0 {
                        listed.push_back((id.clone(), 0, count));
                    }
                    cursor = Some((at, id));
                }
                continue;
            }
            let Some((id, next, count)) = listed.front_mut() else {
                break;
            };
            let take = (*count - *next).min(chunk - lines);
            ranges.push((id.clone(), *next, *next + take - 1));
            *next += take;
            lines += take;
            if *next >= *count {
                listed.pop_front();
            }
        }
        if ranges.is_empty() {
            return Ok(Some(found));
        }
        let ranges: Vec<Range<'_>> = ranges
            .iter()
            .map(|(sid, lo, hi)| Range {
                sid,
                lo: *lo,
                hi: *hi,
            })
            .collect();
        // Strings and integers: encoding cannot fail.
        let ranges = serde_json::to_string(&ranges).unwrap_or_else(|_| "[]".to_owned());
        let rows = statement(tx, sql, reader, q, want - found.len() as i64, Some(ranges)).await?;
        found.extend(rows);
        walked += lines;
        if found.len() as i64 >= want {
            return Ok(Some(found));
        }
        if walked >= budget {
            return Ok(None);
        }
        chunk = chunk
            .saturating_mul(4)
            .min(walk.max_chunk.max(1))
            .min(budget.saturating_sub(walked).max(1));
    }
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
