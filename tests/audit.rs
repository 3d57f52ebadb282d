//! The audit log on SQLite and PostgreSQL: the hash chain verifies when clean and names the
//! first row that was edited, deleted or reordered (by SQL, as someone with database access
//! would); `GET /api/v1/audit` filters, pages without duplicates or gaps, and refuses other
//! roles and bad parameters; the `/audit` page shows the same, escaped; and no code in the
//! server changes or removes an audit row.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::api::Api;
use common::gateway::{self, Backend, both_backends};
use porthole::gateway::identity::users::Role;
use porthole::gateway::store::audit::{self, Anchor, BreakKind, Client, Event, StoredEvent, kind};
use porthole::gateway::store::db::{Db, now_ms};
use reqwest::StatusCode;
use sqlx::Row;

both_backends!(verify_names_the_first_changed_row);
both_backends!(the_api_filters_pages_and_refuses);
both_backends!(the_page_filters_pages_and_escapes);

/// Appends one event in its own write transaction, as the gateway does; returns its id.
async fn append(
    db: &Db,
    kind: &'static str,
    actor: &str,
    target: Option<&str>,
    session: Option<&str>,
    reason: Option<&str>,
) -> i64 {
    let client = Client {
        addr: "10.1.2.3".into(),
        user_agent: "audit-test/1.0".into(),
    };
    let mut event = Event::new(kind, actor, &client).detail(serde_json::json!({"n": actor}));
    event.target = target;
    event.session_id = session;
    event.reason = reason;
    let mut tx = db.begin_write().await.unwrap();
    let id = audit::append(&mut tx.tx, &event).await.unwrap();
    tx.commit().await.unwrap();
    id
}

// ---------------------------------------------------------------------------------------------
// Tampering, by SQL

/// Every column of a row but the id.
#[derive(Debug, Clone)]
struct FullRow {
    at: i64,
    /// type, actor, target, session_id, reason, detail, client_addr, user_agent, prev_hash,
    /// hash.
    text: Vec<Option<String>>,
}

const TEXT_COLUMNS: [&str; 10] = [
    "type",
    "actor",
    "target",
    "session_id",
    "reason",
    "detail",
    "client_addr",
    "user_agent",
    "prev_hash",
    "hash",
];

async fn read_row(db: &Db, id: i64) -> FullRow {
    let row = sqlx::query(
        "SELECT at, type, actor, target, session_id, reason, detail, client_addr, user_agent, \
         prev_hash, hash FROM audit_events WHERE id = $1",
    )
    .bind(id)
    .fetch_one(db.pool())
    .await
    .unwrap();
    FullRow {
        at: row.try_get("at").unwrap(),
        text: TEXT_COLUMNS
            .iter()
            .map(|c| row.try_get::<Option<String>, _>(*c).unwrap())
            .collect(),
    }
}

/// Overwrites row `id` with `row`; with `content_only`, its two hashes stay.
async fn write_row(db: &Db, id: i64, row: &FullRow, content_only: bool) {
    // PostgreSQL wants every parameter used: the content-only form binds fewer.
    let (sql, columns) = if content_only {
        (
            "UPDATE audit_events SET at = $1, type = $2, actor = $3, target = $4, \
             session_id = $5, reason = $6, detail = $7, client_addr = $8, user_agent = $9 \
             WHERE id = $10",
            8,
        )
    } else {
        (
            "UPDATE audit_events SET at = $1, type = $2, actor = $3, target = $4, \
             session_id = $5, reason = $6, detail = $7, client_addr = $8, user_agent = $9, \
             prev_hash = $10, hash = $11 WHERE id = $12",
            10,
        )
    };
    let mut query = sqlx::query(sql).bind(row.at);
    for value in &row.text[..columns] {
        query = query.bind(value.clone());
    }
    let done = query.bind(id).execute(db.pool()).await.unwrap();
    assert_eq!(done.rows_affected(), 1);
}

/// Puts a deleted row back with its old id.
async fn insert_row(db: &Db, id: i64, row: &FullRow) {
    let mut query = sqlx::query(
        "INSERT INTO audit_events (at, type, actor, target, session_id, reason, detail, \
         client_addr, user_agent, prev_hash, hash, id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(row.at);
    for value in &row.text {
        query = query.bind(value.clone());
    }
    query.bind(id).execute(db.pool()).await.unwrap();
}

async fn delete_row(db: &Db, id: i64) {
    let done = sqlx::query("DELETE FROM audit_events WHERE id = $1")
        .bind(id)
        .execute(db.pool())
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
}

async fn ids(db: &Db) -> Vec<i64> {
    audit::list(db, None)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect()
}

async fn expect_intact(db: &Db) {
    let report = audit::verify_chain(db, None).await.unwrap();
    assert_eq!(report.broken, None, "{}", report.summary());
    assert_eq!(report.checked, ids(db).await.len() as u64);
    assert!(
        report.summary().starts_with("audit log intact: "),
        "{}",
        report.summary()
    );
}

/// Verifies and expects the first break at `row`, of `kind`, in exactly these words; every
/// row before it is reported as checked.
async fn expect_break(db: &Db, row: i64, kind: BreakKind, message: &str) {
    let report = audit::verify_chain(db, None).await.unwrap();
    let found = report
        .broken
        .clone()
        .unwrap_or_else(|| panic!("not detected: {}", report.summary()));
    assert_eq!((found.row, found.kind), (row, kind), "{}", found.message);
    assert_eq!(found.message, message);
    let summary = report.summary();
    assert!(
        summary.starts_with(&format!("audit log BROKEN: {message}\n")),
        "{summary}"
    );
    let before = ids(db).await.iter().filter(|id| **id < row).count() as u64;
    assert_eq!(report.checked, before, "{summary}");
    assert_eq!(audit::verify(db).await.unwrap(), Err(row));
}

async fn verify_names_the_first_changed_row(backend: Backend) {
    let gw = gateway::start(backend, |_| {}).await;
    let db = &gw.state.engine.db;
    let mut rows = Vec::new();
    for i in 0..8 {
        let session = format!("session-{i}");
        let id = append(
            db,
            kind::SESSION_START,
            &format!("user{i}"),
            Some("i-0123456789abcdef0"),
            Some(&session),
            Some("INC-1234 checking the disks"),
        )
        .await;
        rows.push(id);
    }
    let all = ids(db).await;
    assert_eq!(&all[all.len() - 8..], &rows[..]);

    // Clean: every row checked, the head is the last row and its hash.
    let clean = audit::verify_chain(db, None).await.unwrap();
    assert_eq!(clean.broken, None, "{}", clean.summary());
    assert_eq!(clean.checked, all.len() as u64);
    let last = *rows.last().unwrap();
    let (head_id, head_hash) = clean.head.clone().unwrap();
    assert_eq!(head_id, last);
    assert_eq!(Some(head_hash.clone()), read_row(db, last).await.text[9]);
    let summary = clean.summary();
    assert!(
        summary.starts_with(&format!(
            "audit log intact: {} rows checked (rows {} to {last})\nhead: row {last} hash {head_hash}\n",
            all.len(),
            all[0]
        )),
        "{summary}"
    );
    assert_eq!(audit::verify(db).await.unwrap(), Ok(all.len() as u64));

    // An edited reason.
    let row = rows[3];
    let original = read_row(db, row).await;
    sqlx::query("UPDATE audit_events SET reason = $1 WHERE id = $2")
        .bind("nothing to see here")
        .bind(row)
        .execute(db.pool())
        .await
        .unwrap();
    expect_break(
        db,
        row,
        BreakKind::Edited,
        &format!("row {row}: content does not match its hash (edited)"),
    )
    .await;
    write_row(db, row, &original, false).await;
    expect_intact(db).await;

    // An edited time only (a row moved to look older).
    let original = read_row(db, rows[6]).await;
    sqlx::query("UPDATE audit_events SET at = at - 3600000 WHERE id = $1")
        .bind(rows[6])
        .execute(db.pool())
        .await
        .unwrap();
    expect_break(
        db,
        rows[6],
        BreakKind::Edited,
        &format!("row {}: content does not match its hash (edited)", rows[6]),
    )
    .await;
    write_row(db, rows[6], &original, false).await;
    expect_intact(db).await;

    // A deleted row in the middle: the next row's previous hash points nowhere.
    let gone = read_row(db, rows[4]).await;
    delete_row(db, rows[4]).await;
    expect_break(
        db,
        rows[5],
        BreakKind::Deleted,
        &format!(
            "row {}: previous hash does not match row {} (row {} is missing: deleted)",
            rows[5], rows[3], rows[4]
        ),
    )
    .await;
    insert_row(db, rows[4], &gone).await;
    expect_intact(db).await;

    // Two rows swapped whole (content and hashes): the first of them chains to the other.
    let (a, b) = (read_row(db, rows[1]).await, read_row(db, rows[2]).await);
    write_row(db, rows[1], &b, false).await;
    write_row(db, rows[2], &a, false).await;
    expect_break(
        db,
        rows[1],
        BreakKind::Reordered,
        &format!(
            "row {}: previous hash does not match row {} (it is the hash of row {}: rows were \
             reordered or inserted)",
            rows[1], rows[0], rows[2]
        ),
    )
    .await;
    write_row(db, rows[1], &a, false).await;
    write_row(db, rows[2], &b, false).await;
    expect_intact(db).await;

    // Two rows' contents swapped, their hashes left in place.
    write_row(db, rows[1], &b, true).await;
    write_row(db, rows[2], &a, true).await;
    expect_break(
        db,
        rows[1],
        BreakKind::Edited,
        &format!("row {}: content does not match its hash (edited)", rows[1]),
    )
    .await;
    write_row(db, rows[1], &a, false).await;
    write_row(db, rows[2], &b, false).await;
    expect_intact(db).await;

    // The first row deleted.
    let first = all[0];
    let first_row = read_row(db, first).await;
    delete_row(db, first).await;
    expect_break(
        db,
        all[1],
        BreakKind::Deleted,
        &format!(
            "row {}: previous hash is not the start of the chain (row {first} is missing: \
             deleted)",
            all[1]
        ),
    )
    .await;
    insert_row(db, first, &first_row).await;
    expect_intact(db).await;

    // An anchor that matches; one whose hash does not (a rewritten chain).
    let anchor = Anchor {
        id: last,
        hash: head_hash.clone(),
    };
    let report = audit::verify_chain(db, Some(&anchor)).await.unwrap();
    assert!(
        report.broken.is_none() && report.anchor_matched,
        "{}",
        report.summary()
    );
    assert!(report.summary().contains("anchor: matches"));
    let wrong = Anchor {
        id: rows[2],
        hash: "ab".repeat(32),
    };
    let report = audit::verify_chain(db, Some(&wrong)).await.unwrap();
    let found = report.broken.unwrap();
    assert_eq!(
        (found.row, found.kind),
        (rows[2], BreakKind::AnchorMismatch)
    );

    // The last row deleted: nothing points at it. SQLite's id counter gives it away; on
    // PostgreSQL (whose sequences skip ids of rolled-back transactions) it is a warning, and
    // the anchor proves it.
    let tail = read_row(db, last).await;
    delete_row(db, last).await;
    let report = audit::verify_chain(db, None).await.unwrap();
    match backend {
        Backend::Sqlite => {
            let found = report.broken.clone().unwrap();
            assert_eq!((found.row, found.kind), (last, BreakKind::DeletedAtEnd));
            assert_eq!(
                found.message,
                format!(
                    "row {last}: deleted from the end (row {last} is missing; the table's id \
                     counter is at {last} but the last row is {})",
                    rows[6]
                )
            );
        }
        Backend::Postgres => {
            assert_eq!(report.broken, None);
            assert_eq!(report.warnings.len(), 1, "{}", report.summary());
            assert!(
                report.warnings[0].contains(&format!(
                    "the id sequence has issued up to {last} but the last row is {}",
                    rows[6]
                )),
                "{}",
                report.summary()
            );
            assert!(report.summary().contains("\nwarning: the id sequence"));
        }
    }
    let report = audit::verify_chain(db, Some(&anchor)).await.unwrap();
    let found = report.broken.unwrap();
    assert_eq!((found.row, found.kind), (last, BreakKind::DeletedAtEnd));
    if backend == Backend::Postgres {
        assert_eq!(
            found.message,
            format!(
                "row {last}: missing, but the anchor says it was written (the log ends at row \
                 {}; rows were deleted from the end)",
                rows[6]
            )
        );
    }

    // ... and then the chain continued over the hole by the next append: intact as a chain,
    // but on SQLite the hole in the ids is proof.
    let next = append(db, kind::LOGIN, "after", None, None, None).await;
    assert_eq!(next, last + 1);
    let report = audit::verify_chain(db, None).await.unwrap();
    match backend {
        Backend::Sqlite => {
            let found = report.broken.unwrap();
            assert_eq!((found.row, found.kind), (last, BreakKind::Deleted));
            assert_eq!(
                found.message,
                format!(
                    "row {last}: deleted (row {last} is missing before row {next}; the chain \
                     was re-linked over the hole)"
                )
            );
        }
        Backend::Postgres => {
            assert_eq!(report.broken, None, "{}", report.summary());
            assert!(
                report.warnings[0].starts_with(&format!("row {last} is missing (the chain")),
                "{:?}",
                report.warnings
            );
        }
    }
    // Putting the row back does not help: the new row chained to the one before it.
    insert_row(db, last, &tail).await;
    expect_break(
        db,
        next,
        BreakKind::Reordered,
        &format!(
            "row {next}: previous hash does not match row {last} (it is the hash of row {}: \
             rows were reordered or inserted)",
            rows[6]
        ),
    )
    .await;
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The API

/// The keys of an event in the API.
const EVENT_KEYS: [&str; 10] = [
    "id",
    "at",
    "type",
    "actor",
    "target",
    "session_id",
    "reason",
    "detail",
    "client_addr",
    "user_agent",
];

/// Walks every page of `query` with the cursor; returns the ids in order and the page count.
/// Every page but the last is full.
async fn walk(api: &mut Api, query: &str, limit: usize) -> (Vec<i64>, usize) {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => format!("/api/v1/audit?{query}"),
            Some(c) => format!("/api/v1/audit?{query}&cursor={c}"),
        };
        let reply = api.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
        pages += 1;
        let events = reply.body["events"].as_array().unwrap();
        ids.extend(events.iter().map(|e| e["id"].as_i64().unwrap()));
        match reply.body["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(events.len(), limit, "a page before the last is full");
                cursor = Some(next.to_owned());
            }
            None => {
                assert!(reply.body["next_cursor"].is_null(), "{}", reply.text);
                break;
            }
        }
        assert!(pages < 1000, "the cursor does not end");
    }
    (ids, pages)
}

fn newest_first(events: &[StoredEvent], keep: impl Fn(&StoredEvent) -> bool) -> Vec<i64> {
    events
        .iter()
        .rev()
        .filter(|e| keep(e))
        .map(|e| e.id)
        .collect()
}

/// Waits until the clock has moved past `at`, so that the next event has a later time.
async fn next_ms(at: i64) {
    while now_ms() <= at {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

async fn the_api_filters_pages_and_refuses(backend: Backend) {
    let gw = gateway::start(backend, |_| {}).await;
    gw.user("root", &[Role::Admin]).await;
    gw.user("audrey", &[Role::Auditor]).await;
    gw.user("oscar", &[Role::Operator]).await;
    let mut auditor = Api::new(&gw);
    auditor.login("audrey").await;
    let db = &gw.state.engine.db;
    let kinds = [kind::SESSION_START, kind::SESSION_END, kind::LOGIN];
    for i in 0..230usize {
        let (actor, target, session) = (
            format!("actor{}", i % 5),
            format!("i-{:017}", i % 3),
            format!("session-{}", i % 10),
        );
        append(
            db,
            kinds[i % 3],
            &actor,
            Some(&target),
            Some(&session),
            Some("INC-1 a reason"),
        )
        .await;
        if i % 40 == 39 {
            // A few distinct moments for the time filters.
            next_ms(now_ms()).await;
        }
    }
    let all = audit::list(db, None).await.unwrap();
    assert!(all.len() > 230);

    // The first page: the newest 100, the listed fields only, a cursor.
    let reply = auditor.get("/api/v1/audit").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let events = reply.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 100);
    let got: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(got, newest_first(&all, |_| true)[..100]);
    let mut keys: Vec<&str> = events[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected_keys = EVENT_KEYS.to_vec();
    expected_keys.sort_unstable();
    assert_eq!(keys, expected_keys);
    let newest = all.last().unwrap();
    assert_eq!(
        events[0],
        serde_json::to_value(newest).unwrap(),
        "the event as stored"
    );
    assert_eq!(events[0]["at"].as_i64(), Some(newest.at));
    assert_eq!(events[0]["detail"]["n"], newest.actor.as_str());
    assert!(reply.body["next_cursor"].is_string(), "{}", reply.text);

    // Walking every page: each event once, in order, no gaps.
    let (got, pages) = walk(&mut auditor, "limit=37", 37).await;
    assert_eq!(got, newest_first(&all, |_| true));
    assert_eq!(pages, all.len().div_ceil(37));
    let unique: HashSet<i64> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len());
    let (got, pages) = walk(&mut auditor, "limit=500", 500).await;
    assert_eq!((got.len(), pages), (all.len(), 1));

    // Each filter, and filters together, across pages.
    let at = |i: usize| all[i].at;
    let (t1, t2) = (at(60), at(180));
    assert!(t1 < t2, "the events span several milliseconds");
    let t1_text = audit::rfc3339_ms(t1);
    let t2_text = audit::rfc3339_ms(t2);
    type Keep = Box<dyn Fn(&StoredEvent) -> bool>;
    let cases: Vec<(String, Keep)> = vec![
        ("actor=actor2".into(), Box::new(|e| e.actor == "actor2")),
        (
            "target=i-00000000000000001".into(),
            Box::new(|e| e.target.as_deref() == Some("i-00000000000000001")),
        ),
        (
            "type=session.end".into(),
            Box::new(|e| e.kind == "session.end"),
        ),
        (
            "session_id=session-7".into(),
            Box::new(|e| e.session_id.as_deref() == Some("session-7")),
        ),
        (format!("from={t1}"), Box::new(move |e| e.at >= t1)),
        (format!("to={t2}"), Box::new(move |e| e.at < t2)),
        (
            format!("from={t1_text}&to={t2_text}"),
            Box::new(move |e| e.at >= t1 && e.at < t2),
        ),
        (
            format!("from={t1}&actor=actor1&type=session.start&target=i-00000000000000000"),
            Box::new(move |e| {
                e.at >= t1
                    && e.actor == "actor1"
                    && e.kind == "session.start"
                    && e.target.as_deref() == Some("i-00000000000000000")
            }),
        ),
        // Empty values are no filter (what a form sends).
        (
            "actor=&target=&type=login&session_id=&from=&to=".into(),
            Box::new(|e| e.kind == "login"),
        ),
    ];
    for (query, keep) in &cases {
        let expected = newest_first(&all, keep);
        assert!(
            !expected.is_empty() && expected.len() < all.len(),
            "{query} selects something"
        );
        let (got, _) = walk(&mut auditor, &format!("{query}&limit=7"), 7).await;
        assert_eq!(got, expected, "{query}");
    }

    // Values are bound, never spliced into SQL.
    let reply = auditor
        .get("/api/v1/audit?actor=actor1%27%20OR%20%271%27%3D%271")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["events"].as_array().unwrap().len(), 0);
    assert!(reply.body["next_cursor"].is_null());

    // Bad parameters: 400 invalid_request, naming the parameter.
    for (query, name) in [
        ("from=yesterday", "from"),
        ("to=2026-02-30T00:00:00Z", "to"),
        ("from=2000&to=1000", "to"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=many", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=12", "cursor"),
        ("user=alice", "user"),
        ("actor=a&actor=b", "actor"),
    ] {
        let reply = auditor.get(&format!("/api/v1/audit?{query}")).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{query}: {}",
            reply.text
        );
        assert!(
            reply.message().contains(name),
            "{query}: {}",
            reply.message()
        );
    }
    let long = "x".repeat(300);
    let reply = auditor.get(&format!("/api/v1/audit?target={long}")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.message().starts_with("target: "), "{}", reply.text);

    // Roles: admin and auditor only.
    let mut admin = Api::new(&gw);
    admin.login("root").await;
    assert_eq!(
        admin.get("/api/v1/audit?limit=1").await.status,
        StatusCode::OK
    );
    let mut operator = Api::new(&gw);
    operator.login("oscar").await;
    let reply = operator.get("/api/v1/audit").await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::FORBIDDEN, "forbidden"),
        "{}",
        reply.text
    );
    // Refused before the parameters are looked at.
    let reply = operator.get("/api/v1/audit?limit=0").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let mut anonymous = Api::new(&gw);
    let reply = anonymous.get("/api/v1/audit").await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    assert_eq!(
        reply.headers["cache-control"], "no-store",
        "audit answers are not cached"
    );
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The page

/// The `data-event-id`s of the rows on an audit page, in order.
fn row_ids(html: &str) -> Vec<i64> {
    html.split("data-event-id=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
        .collect()
}

/// The `href` of the element with `id`, unescaped.
fn href_of(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[at..];
    let href = rest.split("href=\"").nth(1)?.split('"').next()?;
    Some(href.replace("&#38;", "&").replace("&amp;", "&"))
}

async fn the_page_filters_pages_and_escapes(backend: Backend) {
    let gw = gateway::start(backend, |_| {}).await;
    gw.user("audrey", &[Role::Auditor]).await;
    gw.user("oscar", &[Role::Operator]).await;
    let mut auditor = Api::new(&gw);
    auditor.login("audrey").await;
    let db = &gw.state.engine.db;
    let evil = "<script>alert(1)</script> & \"quoted\" INC-9";
    let evil_id = append(
        db,
        kind::SESSION_START,
        "mallory<b>",
        Some("i-0123456789abcdef0"),
        Some("f0e1d2c3-0000-4000-8000-000000000001"),
        Some(evil),
    )
    .await;
    let mut alice = Vec::new();
    for _ in 0..3 {
        alice.push(append(db, kind::LOGIN, "alice", None, None, None).await);
    }

    // Everything, escaped by askama.
    let page = auditor.get("/audit").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let html = &page.text;
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; &#34;quoted&#34; INC-9"),
        "{html}"
    );
    assert!(html.contains("mallory&#60;b&#62;"), "{html}");
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("mallory<b>"), "{html}");
    assert!(
        html.contains(r#"<a href="/audit" aria-current="page">Audit</a>"#),
        "{html}"
    );
    assert!(html.contains("/sessions/f0e1d2c3-0000-4000-8000-000000000001"));
    assert!(html.contains("i-0123456789abcdef0"));
    let ids = row_ids(html);
    assert_eq!(ids.first(), Some(alice.last().unwrap()), "newest first");
    assert!(ids.contains(&evil_id));
    // No inline script: every script element has a src (the CSP would block the rest).
    for tag in html.split("<script").skip(1) {
        assert!(
            tag.trim_start()
                .starts_with("type=\"module\" src=\"/assets/"),
            "{tag}"
        );
    }
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(page.headers["cache-control"], "no-store");

    // A filter, and paging with it.
    let page = auditor.get("/audit?actor=alice&limit=2").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(row_ids(&page.text), vec![alice[2], alice[1]]);
    assert!(
        page.text.contains(r#"name="actor" value="alice""#),
        "{}",
        page.text
    );
    assert!(href_of(&page.text, "audit-newest").is_none(), "first page");
    let older = href_of(&page.text, "audit-older").unwrap();
    assert!(
        older.starts_with("/audit?actor=alice&limit=2&cursor="),
        "{older}"
    );
    let page = auditor.get(&older).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(row_ids(&page.text), vec![alice[0]]);
    assert!(href_of(&page.text, "audit-older").is_none(), "last page");
    assert_eq!(
        href_of(&page.text, "audit-newest").as_deref(),
        Some("/audit?actor=alice&limit=2")
    );
    let page = auditor
        .get("/audit?type=session.start&actor=mallory%3Cb%3E")
        .await;
    assert_eq!(row_ids(&page.text), vec![evil_id]);
    assert!(
        page.text.contains(r#"value="mallory&#60;b&#62;""#),
        "{}",
        page.text
    );

    // A bad filter: 400, the message, and the form as typed (escaped).
    let page = auditor.get("/audit?from=%3Cb%3Enow").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.text.contains("id=\"audit-error\""), "{}", page.text);
    assert!(page.text.contains("from: "), "{}", page.text);
    assert!(
        page.text.contains(r#"name="from" value="&#60;b&#62;now""#),
        "{}",
        page.text
    );
    assert!(row_ids(&page.text).is_empty());

    // Other roles: no link, and a 403 page; signed out: to the sign-in page.
    let mut operator = Api::new(&gw);
    operator.login("oscar").await;
    let sessions = operator.get("/sessions").await;
    assert_eq!(sessions.status, StatusCode::OK);
    assert!(
        !sessions.text.contains("href=\"/audit\""),
        "{}",
        sessions.text
    );
    let auditor_sessions = auditor.get("/sessions").await;
    assert!(auditor_sessions.text.contains("href=\"/audit\""));
    let page = operator.get("/audit").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!page.text.contains("alice"), "no audit rows on the refusal");
    let page = Api::new(&gw).get("/audit?actor=alice").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.headers["location"],
        "/login?next=/audit%3Factor%3Dalice"
    );
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// No update or delete path

/// The statements in `text` that would change or remove audit rows (case, quotes, line
/// continuations and whitespace do not hide them).
fn row_changing_statements(text: &str) -> Vec<String> {
    let lowered = text.to_lowercase().replace(['"', '\\', '`', '(', ','], " ");
    let words: Vec<&str> = lowered
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.')))
        .collect();
    let table = |w: &str| w.rsplit('.').next() == Some("audit_events");
    let mut found = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let rest = |n: usize| words[i + 1..(i + 1 + n).min(words.len())].to_vec();
        let hit = match *word {
            "update" => {
                let r = rest(2);
                r.first().is_some_and(|w| table(w))
                    || (r.first() == Some(&"only") && r.get(1).is_some_and(|w| table(w)))
            }
            "delete" | "truncate" | "drop" => {
                let r = rest(4);
                let skip = r
                    .iter()
                    .take_while(|w| matches!(**w, "from" | "only" | "table" | "if" | "exists"))
                    .count();
                r.get(skip).is_some_and(|w| table(w))
            }
            _ => false,
        };
        if hit {
            found.push(words[i..(i + 4).min(words.len())].join(" "));
        }
    }
    found
}

fn scan(dir: &Path, files: &mut usize, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan(&path, files, found);
        } else if path.extension().is_some_and(|e| e == "rs" || e == "sql") {
            *files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            for hit in row_changing_statements(&text) {
                found.push(format!("{}: {hit}", path.display()));
            }
        }
    }
}

#[test]
fn no_code_updates_or_deletes_audit_rows() {
    // The scanner finds what it must, and nothing else.
    for statement in [
        "sqlx::query(\"UPDATE audit_events SET reason = $1\")",
        "\"update  Audit_Events \\\n set x = 1\"",
        "\"DELETE FROM audit_events WHERE id = $1\"",
        "DELETE\nFROM\n\"audit_events\"",
        "delete from public.audit_events",
        "UPDATE ONLY audit_events SET x = 1",
        "TRUNCATE audit_events",
        "TRUNCATE TABLE audit_events",
        "DROP TABLE IF EXISTS audit_events",
    ] {
        assert_eq!(
            row_changing_statements(statement).len(),
            1,
            "missed {statement:?}"
        );
    }
    for fine in [
        "INSERT INTO audit_events (at) VALUES ($1)",
        "SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1",
        "LOCK TABLE audit_events IN EXCLUSIVE MODE",
        "UPDATE sessions SET state = 'ended'",
        "DELETE FROM logins WHERE id = $1",
        "the code has no UPDATE or DELETE for this table",
        "UPDATE audit_events_archive SET x = 1",
    ] {
        assert!(row_changing_statements(fine).is_empty(), "flagged {fine:?}");
    }

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (mut files, mut found) = (0, Vec::new());
    scan(&root.join("server/src"), &mut files, &mut found);
    scan(&root.join("migrations"), &mut files, &mut found);
    assert!(files > 20, "scanned {files} files");
    assert!(
        found.is_empty(),
        "the audit table must have no update or delete path: {found:#?}"
    );
}

/// Verifying while a gateway writes never reports the log broken: rows committed during the
/// check are not taken for rows deleted from the end (the id counter is read before the rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifying_while_events_are_written_finds_nothing_wrong() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    let db = gw.state.engine.db.clone();
    let writer = tokio::spawn({
        let db = db.clone();
        async move {
            for n in 0..400 {
                append(&db, kind::LOGIN_FAILED, &format!("w{n}"), None, None, None).await;
            }
        }
    });
    let mut checks = 0;
    while !writer.is_finished() {
        let report = audit::verify_chain(&db, None).await.unwrap();
        assert!(report.broken.is_none(), "{:?}", report.broken);
        checks += 1;
    }
    writer.await.unwrap();
    assert!(checks > 5, "only {checks} checks ran while writing");
    gw.stop().await;
}
