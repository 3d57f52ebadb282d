//! Quiet sessions compact themselves (issue 18): after `sessions.compact_after_seconds` without
//! output, input or an attach, a session's ring of output is compressed and its terminal model
//! reduced to the bytes that rebuild it. Through the real gateway and the emulator: a reattach
//! (from an offset, or as a new page) gets exactly what a never-compacted twin fed the same
//! output gives, output that arrives while the session is compacted is all there at the right
//! offsets, and the recording and the search index hold everything. Memory is measured in
//! `benches/sessions.rs` (docs/performance.md, "Idle memory"), not here.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::api::{Api, Attach, WAIT};
use common::audit_log;
use common::emulator::NODE;
use common::gateway::{self, Backend};
use porthole::gateway::identity::users::Role;
use porthole::gateway::sessions::live::{LiveSession, MODEL_SCROLLBACK_LINES};
use porthole::gateway::sessions::screen::Model;
use reqwest::StatusCode;

const REASON: &str = "INC-18 quiet sessions compact themselves";

/// Waits until the session has compacted itself (a second of quiet, checked every second).
async fn compacted(live: &LiveSession) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !live.is_compacted() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session never compacted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads until the session has been quiet for a moment (its output is complete).
async fn settle(tab: &mut Attach) {
    while tab.read_within(Duration::from_millis(1500)).await {}
}

/// Reattaches from offset `all.len()`: the bytes from there on (a replay, not a snapshot) are
/// appended to `all`, and the offsets must agree.
async fn reattach_from_end(api: &Api, id: &str, all: &mut Vec<u8>) -> Attach {
    let mut tab = api.attach_since(id, Some(all.len() as u64)).await.unwrap();
    tab.until_synced().await;
    assert!(!tab.before_sync.starts_with(b"\x1bc"), "a replay");
    all.extend_from_slice(&tab.before_sync);
    assert_eq!(tab.offset, all.len() as u64, "the offset after the replay");
    tab
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_session_reattaches_exactly_and_loses_no_output() {
    let gw = gateway::start(Backend::Sqlite, |c| c.sessions.compact_after_seconds = 1).await;
    gw.user("alice", &[Role::Operator]).await;
    let mut api = Api::new(&gw);
    api.login("alice").await;
    let id = api.open(NODE, REASON).await;
    let live: Arc<LiveSession> = gw.state.engine.live.get(&id).unwrap();
    let trigger = tempfile::tempdir().unwrap();
    let go = trigger.path().join("go");

    // Everything the session printed, from offset 0.
    let mut all = Vec::new();
    let mut tab = reattach_from_end(&api, &id, &mut all).await;
    tab.type_text(
        "printf '\\033[1;33mbefore\\033[m\\n'; seq 1 3000; echo FILL''-DONE; \
         printf '\\033[7m$ \\033[m'\n",
    )
    .await;
    tab.expect("FILL-DONE").await;
    settle(&mut tab).await;
    all.extend_from_slice(&tab.live);
    drop(tab);
    compacted(&live).await;

    // A reattach from the start: the same bytes, the same offsets.
    let mut from_zero = api.attach_since(&id, Some(0)).await.unwrap();
    from_zero.until_synced().await;
    assert!(
        from_zero.before_sync == all,
        "the replay from 0 is every byte"
    );
    assert_eq!(from_zero.offset, all.len() as u64);
    drop(from_zero);
    compacted(&live).await;

    // A new page: the screen snapshot a never-compacted twin fed the same output gives.
    let twin = Model::spawn(24, 80, MODEL_SCROLLBACK_LINES);
    twin.output(Bytes::from(all.clone())).await;
    let expected = twin.snapshot(vec![Bytes::from(all.clone())]).await;
    let mut page = api.attach(&id).await.unwrap();
    page.until_synced().await;
    assert!(
        page.before_sync == expected,
        "the snapshot after compaction is the twin's:\n{:?}\n{:?}",
        common::api::tail(&page.before_sync),
        common::api::tail(&expected)
    );
    assert_eq!(page.offset, all.len() as u64);
    assert_eq!(live.screen_text().await.unwrap(), twin.text().await);

    // Output that arrives while the session is compacted (no browser, nothing typed).
    page.type_text(&format!(
        "while [ ! -e {} ]; do sleep 0.1; done; seq 3001 3100; echo LATE''-DONE\n",
        go.display()
    ))
    .await;
    settle(&mut page).await;
    all.extend_from_slice(&page.live);
    drop(page);
    compacted(&live).await;
    std::fs::write(&go, b"").unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while live.stats().await.unwrap().bytes_out < all.len() as u64 + 400 {
        assert!(tokio::time::Instant::now() < deadline, "no late output");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // the prompt after it
    let late: String = (3001..=3100).map(|i| format!("{i}\r\n")).collect();
    let mut tab = reattach_from_end(&api, &id, &mut all).await;
    let replayed = String::from_utf8_lossy(&tab.before_sync).into_owned();
    assert!(
        replayed.starts_with(&format!("{late}LATE-DONE\r\n")),
        "every late byte, in order: {replayed:?}"
    );
    settle(&mut tab).await;
    all.extend_from_slice(&tab.live);
    drop(tab);

    // And the new page after that: the twin again, fed the late output too.
    compacted(&live).await;
    twin.output(Bytes::from(all[all.len() - replayed.len()..].to_vec()))
        .await;
    let expected = twin.snapshot(vec![Bytes::from(all.clone())]).await;
    let mut page = api.attach(&id).await.unwrap();
    page.until_synced().await;
    assert!(
        page.before_sync == expected,
        "the snapshot after output while compacted is the twin's:\n{:?}\n{:?}",
        common::api::tail(&page.before_sync),
        common::api::tail(&expected)
    );

    // The recording and the search index hold it all.
    page.type_text("exit\n").await;
    page.closed().await;
    audit_log::wait_for_event(&gw.state.engine.db, Some(&id), "session.end").await;
    let reply = api.get(&format!("/api/v1/sessions/{id}/recording")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let output: String = reply
        .text
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap().to_owned())
        .collect();
    assert!(
        output.as_bytes().starts_with(&all),
        "the recording's output is every byte printed"
    );
    for needle in ["FILL-DONE", "LATE-DONE", "3100"] {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let reply = api
                .get(&format!("/api/v1/recordings/search?q={needle}"))
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            if reply.body["matches"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["session_id"] == id.as_str())
            {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{needle} not found");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_vim_session_gets_its_screen_back() {
    let gw = gateway::start(Backend::Sqlite, |c| c.sessions.compact_after_seconds = 1).await;
    gw.user("alice", &[Role::Operator]).await;
    let mut api = Api::new(&gw);
    api.login("alice").await;
    let id = api.open(NODE, REASON).await;
    let live = gw.state.engine.live.get(&id).unwrap();
    let mut all = Vec::new();
    let mut tab = reattach_from_end(&api, &id, &mut all).await;
    tab.type_text("seq 1 200; echo MARK''-BEFORE; vim -u NONE -N notes.txt\n")
        .await;
    tab.expect("notes.txt").await;
    // Left in insert mode: a lone Escape is read only after vim's key timeout.
    tab.type_text("iHELLO-FROM-VIM").await;
    tab.expect("HELLO-FROM-VIM").await;
    settle(&mut tab).await;
    all.extend_from_slice(&tab.live);
    drop(tab);
    compacted(&live).await;

    let twin = Model::spawn(24, 80, MODEL_SCROLLBACK_LINES);
    twin.output(Bytes::from(all.clone())).await;
    let expected = twin.snapshot(vec![Bytes::from(all.clone())]).await;
    let mut page = api.attach(&id).await.unwrap();
    page.until_synced().await;
    assert!(
        page.before_sync == expected,
        "vim's screen after compaction is the twin's:\n{:?}\n{:?}",
        common::api::tail(&page.before_sync),
        common::api::tail(&expected)
    );
    // Leaving vim shows the main screen as it was, in the model as in the twin.
    page.type_text("\x1b:q!\r").await;
    settle(&mut page).await;
    twin.output(Bytes::from(page.live.clone())).await;
    let text = live.screen_text().await.unwrap();
    assert!(text.contains("MARK-BEFORE"), "{text}");
    assert_eq!(text, twin.text().await);
    gw.stop().await;
}
