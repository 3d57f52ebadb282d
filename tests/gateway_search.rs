//! Search inside recordings, end to end on SQLite and on PostgreSQL: real sessions in front of
//! the emulator print markers; `GET /api/v1/recordings/search` (and the `/search` page) finds
//! them at the moment they were printed, only in sessions the caller may read, with `%` and `_`
//! matching literally and bad queries refused with 422.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::api::{Api, WAIT};
use common::audit_log;
use common::emulator::NODE;
use common::gateway::{self, Backend, both_backends};
use porthole::gateway::identity::users::Role;
use reqwest::StatusCode;
use serde_json::Value;

both_backends!(a_marker_is_found_where_it_was_printed);
both_backends!(only_readable_sessions_are_searched_and_queries_are_checked);
both_backends!(a_running_session_is_read_by_others_only_once_it_has_ended);

/// Opens a session, types `command` (then `exit`), waits until `needle` was printed and the
/// session ended. Returns the id and the bounds, in seconds from the start of the recording,
/// within which `needle`'s line was printed.
async fn run(api: &mut Api, command: &str, needle: &str) -> (String, f64, f64) {
    let posted = Instant::now();
    let id = api.open(NODE, "INC-5150 looking for a marker").await;
    let answered = Instant::now();
    let mut term = api.attach(&id).await.unwrap();
    let typed = Instant::now();
    term.type_text(&format!("{command}\n")).await;
    term.expect(needle).await;
    let seen = Instant::now();
    term.type_text("exit\n").await;
    term.closed().await;
    wait_ended(api, &id).await;
    // The recording starts while the POST is answered: between `posted` and `answered`.
    let earliest = typed.duration_since(answered).as_secs_f64();
    let latest = seen.duration_since(posted).as_secs_f64();
    (id, earliest, latest)
}

async fn wait_ended(api: &mut Api, id: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let reply = api.get(&format!("/api/v1/sessions/{id}")).await;
        if reply.body["state"] == "ended" {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", reply.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /api/v1/recordings/search?q=…`, asserting 200; the matches.
async fn search(api: &mut Api, q: &str) -> Vec<Value> {
    let reply = api
        .get(&format!("/api/v1/recordings/search?q={}", urlencode(q)))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{q:?}: {}", reply.text);
    reply.body["matches"].as_array().unwrap().clone()
}

/// Searches until a match of `q` in session `id` appears (the index is written by a task of
/// its own, moments after the output); returns the matches.
async fn search_until(api: &mut Api, q: &str, id: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let matches = search(api, q).await;
        if matches.iter().any(|m| m["session_id"] == id) {
            return matches;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{q:?} never found in {id}: {matches:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn urlencode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn lines(matches: &[Value]) -> Vec<&str> {
    matches
        .iter()
        .map(|m| m["line"].as_str().unwrap())
        .collect()
}

async fn a_marker_is_found_where_it_was_printed(backend: Backend) {
    let gw = gateway::start(backend, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let mut api = Api::new(&gw);
    api.login("alice").await;

    // The marker is computed by the shell two seconds after the command arrives, so neither
    // the echo of the typed line nor the start of the session contains it.
    let (first, earliest, latest) = run(
        &mut api,
        "sleep 2; echo MARK-$((6*7))-ALPHA; echo '100%_done'; echo 10$((0))0xdone",
        "1000xdone",
    )
    .await;
    let (second, ..) = run(&mut api, "echo OTHER-$((6*7))-BETA", "OTHER-42-BETA").await;

    let matches = search_until(&mut api, "mark-42-alpha", &first).await;
    assert_eq!(matches.len(), 1, "{matches:?}");
    let found = &matches[0];
    assert_eq!(found["line"], "MARK-42-ALPHA");
    assert_eq!(found["user"], "alice");
    assert_eq!(found["target"], NODE);
    assert_eq!(found["reason"], "INC-5150 looking for a marker");
    let offset = found["offset_seconds"].as_f64().unwrap();
    assert!(
        offset >= 2.0 && offset >= earliest && offset <= latest,
        "printed between {earliest:.3} s and {latest:.3} s (and after the sleep), found at {offset}"
    );
    // The other session printed its own marker, not this one.
    let other = search_until(&mut api, "OTHER-42-BETA", &second).await;
    assert_eq!(lines(&other), ["OTHER-42-BETA"]);
    assert_eq!(other[0]["session_id"], second.as_str());

    // `%` and `_` match themselves: "1000xdone" would match them as wildcards.
    let literal = search_until(&mut api, "0%_d", &first).await;
    assert!(lines(&literal).contains(&"100%_done"), "{literal:?}");
    assert!(
        literal
            .iter()
            .all(|m| m["line"].as_str().unwrap().contains("0%_d")),
        "{literal:?}"
    );
    assert!(search(&mut api, "100_x").await.is_empty());
    assert!(
        search(&mut api, "%")
            .await
            .iter()
            .all(|m| m["line"].as_str().unwrap().contains('%'))
    );

    // The search page links each match to the player at its moment.
    let page = api.get("/search?q=MARK-42-ALPHA").await;
    assert_eq!(page.status, StatusCode::OK);
    let link = format!("/sessions/{first}/play?t={offset}");
    assert!(page.text.contains(&link), "{link} in {}", page.text);
    let play = api.get(&link).await;
    assert_eq!(play.status, StatusCode::OK);
    assert!(
        play.text.contains(&format!(r#"data-start-at="{offset}""#)),
        "{}",
        play.text
    );
    gw.stop().await;
}

async fn only_readable_sessions_are_searched_and_queries_are_checked(backend: Backend) {
    let gw = gateway::start(backend, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    gw.user("bob", &[Role::Operator]).await;
    gw.user("root", &[Role::Admin]).await;
    gw.user("audrey", &[Role::Auditor]).await;
    let mut alice = Api::new(&gw);
    alice.login("alice").await;
    let mut bob = Api::new(&gw);
    bob.login("bob").await;
    let mut root = Api::new(&gw);
    root.login("root").await;
    let mut audrey = Api::new(&gw);
    audrey.login("audrey").await;

    let (alice_id, ..) = run(&mut alice, "echo SECRET-$((6*7))-ALICE", "SECRET-42-ALICE").await;
    let (bob_id, ..) = run(&mut bob, "echo BOB-$((6*7))-LINE", "BOB-42-LINE").await;
    search_until(&mut root, "-42-", &alice_id).await;
    let all = search_until(&mut root, "-42-", &bob_id).await;
    assert_eq!(lines(&all).len(), 2, "{all:?}");

    // An operator reads their own sessions only; roles that see every session read all.
    assert!(search(&mut bob, "SECRET-42").await.is_empty());
    assert_eq!(lines(&search(&mut bob, "-42-").await), ["BOB-42-LINE"]);
    assert_eq!(
        lines(&search(&mut alice, "-42-").await),
        ["SECRET-42-ALICE"]
    );
    let audited = search(&mut audrey, "SECRET-42").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["user"], "alice");
    let page = bob.get("/search?q=SECRET-42").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains("SECRET-42-ALICE"), "{}", page.text);
    assert!(
        page.text.contains("Nothing printed matches"),
        "{}",
        page.text
    );
    // … and the player of another's session is not theirs to open.
    let play = bob.get(&format!("/sessions/{alice_id}/play")).await;
    assert_eq!(play.status, StatusCode::NOT_FOUND);
    let play = root.get(&format!("/sessions/{alice_id}/play")).await;
    assert_eq!(play.status, StatusCode::OK);
    let csp = play.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self' 'wasm-unsafe-eval';"),
        "{csp}"
    );
    let other = root.get("/sessions").await;
    let csp = other.headers["content-security-policy"].to_str().unwrap();
    assert!(
        !csp.contains("wasm"),
        "only the player's page allows WebAssembly: {csp}"
    );

    // The limit.
    let reply = root.get("/api/v1/recordings/search?q=-42-&limit=1").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["matches"].as_array().unwrap().len(), 1);
    assert_eq!(reply.body["more"], true);

    // Bad queries: 422 with a message that names the parameter.
    let long = "x".repeat(201);
    for (query, words) in [
        ("", "q: give the text"),
        ("q=", "q: give the text"),
        ("q=%20%20", "q: give the text"),
        (&*format!("q={long}"), "at most 200 characters"),
        ("q=disk&limit=0", "limit: a whole number from 1 to 500"),
        ("q=disk&limit=many", "limit: a whole number from 1 to 500"),
    ] {
        let reply = alice
            .get(&format!("/api/v1/recordings/search?{query}"))
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(reply.code(), "invalid_query", "{query}");
        assert!(reply.message().contains(words), "{query}: {}", reply.text);
    }
    let reply = alice.get("/api/v1/recordings/search?q=disk&user=bob").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let page = alice.get(&format!("/search?q={long}")).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.text.contains("at most 200 characters"),
        "{}",
        page.text
    );
    // Signed out: 401.
    let mut anonymous = Api::new(&gw);
    let reply = anonymous.get("/api/v1/recordings/search?q=disk").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    gw.stop().await;
}

/// A running session's output reaches others only through observing it: its recording answers
/// 409 `session_running` to an admin and an auditor (the API and the player page), a search
/// leaves its lines out, while its owner reads both. Once it has ended, both open to them.
/// Every read and every search is audited, with the owner and the sessions matched.
async fn a_running_session_is_read_by_others_only_once_it_has_ended(backend: Backend) {
    let gw = gateway::start(backend, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    gw.user("root", &[Role::Admin]).await;
    gw.user("audrey", &[Role::Auditor]).await;
    let mut alice = Api::new(&gw);
    alice.login("alice").await;
    let mut root = Api::new(&gw);
    root.login("root").await;
    let mut audrey = Api::new(&gw);
    audrey.login("audrey").await;

    let id = alice.open(NODE, "INC-5151 still typing").await;
    let mut term = alice.attach(&id).await.unwrap();
    term.type_text("echo RUNNING-$((6*7))-MARK\n").await;
    term.expect("RUNNING-42-MARK").await;
    // The owner finds it while it runs (the index is written moments after the output) …
    search_until(&mut alice, "RUNNING-42", &id).await;
    let own = alice.get(&format!("/api/v1/sessions/{id}/recording")).await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.text.contains("RUNNING-42-MARK"), "{}", own.text);
    // … nobody else does.
    for api in [&mut root, &mut audrey] {
        assert!(search(api, "RUNNING-42").await.is_empty());
        let reply = api.get(&format!("/api/v1/sessions/{id}/recording")).await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
        assert_eq!(reply.code(), "session_running");
        assert!(
            reply.message().contains("still running: watch it live"),
            "{}",
            reply.text
        );
        assert!(!reply.text.contains("RUNNING-42-MARK"));
        let page = api.get(&format!("/sessions/{id}/play")).await;
        assert_eq!(page.status, StatusCode::CONFLICT);
        assert!(page.text.contains("still running"), "{}", page.text);
    }
    let reads =
        audit_log::wait_for_events_of(&gw.state.engine.db, Some(&id), "recording.read", 1).await;
    assert_eq!(reads.len(), 1, "only the read that happened is audited");
    assert_eq!(reads[0].actor, "alice");
    assert_eq!(reads[0].detail["owner"], "alice");
    assert_eq!(reads[0].detail["state"], "active");

    term.type_text("exit\n").await;
    term.closed().await;
    wait_ended(&mut alice, &id).await;
    let found = search(&mut audrey, "RUNNING-42").await;
    assert_eq!(lines(&found), ["RUNNING-42-MARK"]);
    let reply = root.get(&format!("/api/v1/sessions/{id}/recording")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text.contains("RUNNING-42-MARK"));
    let page = root.get(&format!("/sessions/{id}/play")).await;
    assert_eq!(page.status, StatusCode::OK);

    let reads =
        audit_log::wait_for_events_of(&gw.state.engine.db, Some(&id), "recording.read", 2).await;
    assert_eq!(reads[1].actor, "root");
    assert_eq!(reads[1].detail["owner"], "alice");
    assert_eq!(reads[1].detail["state"], "ended");
    assert_eq!(reads[1].detail["bytes"], reply.text.len() as u64);
    let searches =
        audit_log::wait_for_events_of(&gw.state.engine.db, None, "recording.search", 1).await;
    let audrey_found: Vec<_> = searches
        .iter()
        .filter(|e| e.actor == "audrey" && e.detail["matches"] == 1)
        .collect();
    assert_eq!(audrey_found.len(), 1, "{searches:?}");
    assert_eq!(audrey_found[0].detail["q"], "RUNNING-42");
    assert_eq!(audrey_found[0].detail["sessions"], serde_json::json!([id]));
    assert!(
        searches
            .iter()
            .any(|e| e.actor == "root" && e.detail["matches"] == 0),
        "a search that found nothing is audited too"
    );
    gw.stop().await;
}

/// Searching scans lines with a leading wildcard, so it is bounded: a person starts at most
/// `recordings.searches_per_minute` a minute (429 `rate_limited` with `Retry-After` beyond),
/// one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_are_limited_per_minute() {
    let gw = gateway::start(Backend::Sqlite, |c| c.recordings.searches_per_minute = 3).await;
    gw.user("alice", &[Role::Operator]).await;
    gw.user("bob", &[Role::Operator]).await;
    let mut alice = Api::new(&gw);
    alice.login("alice").await;
    for _ in 0..3 {
        search(&mut alice, "anything").await;
    }
    let reply = alice.get("/api/v1/recordings/search?q=anything").await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        "{}",
        reply.text
    );
    assert!(
        reply
            .message()
            .starts_with("at most 3 searches a minute; try again in "),
        "{}",
        reply.message()
    );
    let wait: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Another person is not held back by alice.
    let mut bob = Api::new(&gw);
    bob.login("bob").await;
    search(&mut bob, "anything").await;
    gw.stop().await;
}

both_backends!(a_search_that_takes_too_long_is_given_up);

/// A search that takes longer than `recordings.search_timeout_ms` answers 503
/// `search_timeout` (PostgreSQL cancels the query; on SQLite the answer is given up on), here
/// over 200,000 lines with a 1 ms limit.
async fn a_search_that_takes_too_long_is_given_up(backend: Backend) {
    let gw = gateway::start(backend, |c| c.recordings.search_timeout_ms = 1).await;
    gw.user("alice", &[Role::Operator]).await;
    let mut alice = Api::new(&gw);
    alice.login("alice").await;
    let id = alice.open(NODE, "INC-5152 a long log").await;
    let lines: Vec<porthole::gateway::store::search::Line> = (0..200_000)
        .map(|i| porthole::gateway::store::search::Line {
            offset_ms: i,
            text: format!("log line {i} of a very chatty service that never stops talking"),
        })
        .collect();
    porthole::gateway::store::search::insert(&gw.state.engine.db, &id, 1_000_000, &lines)
        .await
        .unwrap();
    let reply = alice
        .get("/api/v1/recordings/search?q=no-such-text-anywhere")
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "search_timeout"),
        "{}",
        reply.text
    );
    assert!(
        reply
            .message()
            .starts_with("the search took longer than 1 ms"),
        "{}",
        reply.message()
    );
    gw.stop().await;
}

/// A line a node printed with markup in it is shown escaped on the search page (a hostile
/// node's output never becomes the page's markup).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_markup_is_escaped_on_the_search_page() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let mut alice = Api::new(&gw);
    alice.login("alice").await;
    // Printed by the shell from pieces, so the typed command itself does not match.
    let (id, ..) = run(
        &mut alice,
        "printf '%s%s\\n' '<img src=x onerror=alert(1)>' 'MARKUP-MARK'",
        "MARKUP-MARK",
    )
    .await;
    search_until(&mut alice, "MARKUP-MARK", &id).await;
    let page = alice.get("/search?q=MARKUP-MARK").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains("<img src=x"), "{}", page.text);
    assert!(
        page.text.contains("&lt;img src=x")
            || page.text.contains("&#60;img src=x")
            || page.text.contains("&#x3c;img src=x"),
        "{}",
        page.text
    );
    gw.stop().await;
}
