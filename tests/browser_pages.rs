#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Browser tests of the recording and oversight pages: the player plays a recorded session,
//! the audit page filters events and links to the recording, the search page finds a marker
//! and opens the player at its moment, and the live-sessions page lists a running session,
//! observes it and terminates it. Debian's Chromium, headless, through chromedriver (the
//! set-up of tests/browser.rs); the sessions themselves are run through the API client.

#[path = "common/browser.rs"]
#[allow(dead_code)] // shared with tests/browser.rs, which uses all of it
mod browser;
mod common;

use fantoccini::Locator;
use porthole::gateway::http::attach::CLOSE_SESSION_ENDED;
use porthole::gateway::identity::users::Role;
use reqwest::StatusCode;

use browser::Browser;
use common::api::Api;
use common::emulator::NODE;
use common::gateway::{self, Backend, Gateway, PASSWORD};

const REASON: &str = "INC-6000 <i>replay</i> the disk clean-up";

/// Fails with a clear message when the web build has not run (or is older than the player).
async fn assert_assets_built(gw: &Gateway) {
    let response = reqwest::get(format!(
        "{}/assets/vendor/asciinema-player/asciinema-player.min.js",
        gw.url
    ))
    .await
    .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the browser assets are missing: run scripts/web-build (it fills web/dist)"
    );
}

/// The text the player shows (asciinema-player renders its lines as DOM text).
async fn player_text(b: &Browser) -> String {
    let text = b
        .js(
            "const t = document.querySelector('#player .ap-term-text'); \
             return t ? t.textContent : '';",
            vec![],
        )
        .await;
    text.as_str().unwrap_or("").replace('\u{a0}', " ")
}

/// Waits until the player's text contains `needle`.
async fn wait_for_player(b: &Browser, needle: &str) -> String {
    b.wait_for(&format!("the player to show {needle:?}"), || async {
        let text = player_text(b).await;
        text.contains(needle).then_some(text)
    })
    .await
}

/// The player's position, in seconds.
async fn player_time(b: &Browser) -> f64 {
    b.js("return window.portholePlayer.getCurrentTime();", vec![])
        .await
        .as_f64()
        .unwrap()
}

/// Runs a session of `user` through the API that prints `PLAY-42-MARK` about a second in,
/// then exits. Returns its id.
async fn recorded_session(gw: &Gateway, user: &str) -> String {
    let mut api = Api::new(gw);
    api.login(user).await;
    let id = api.open(NODE, REASON).await;
    let mut term = api.attach(&id).await.unwrap();
    term.type_text("sleep 1; echo PLAY-$((6*7))-MARK; sleep 1\n")
        .await;
    term.expect("PLAY-42-MARK").await;
    term.type_text("exit\n").await;
    let (code, _) = term.closed().await;
    assert_eq!(code, CLOSE_SESSION_ENDED);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_are_played_searched_and_linked_from_the_audit_log() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    gw.user("root", &[Role::Admin]).await;
    assert_assets_built(&gw).await;
    let id = recorded_session(&gw, "alice").await;
    // Another session, so that the audit filters have something to leave out.
    let other = {
        let mut api = Api::new(&gw);
        api.login("alice").await;
        let other = api.open(NODE, "INC-6001 a second, quiet session").await;
        api.delete(&format!("/api/v1/sessions/{other}")).await;
        other
    };

    let b = Browser::start().await;
    b.sign_in(&gw.url, "root", PASSWORD).await;

    // The audit page: both sessions' events; filtered by session and type, one row, with a
    // link to the recording.
    b.client.goto(&format!("{}/audit", gw.url)).await.unwrap();
    b.wait_for_shown("#audit tr[data-type='session.start']")
        .await;
    let sessions_shown = b
        .js(
            "return Array.from(document.querySelectorAll('#audit td.session code'), \
             (c) => c.textContent);",
            vec![],
        )
        .await;
    let shown: Vec<&str> = sessions_shown
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        shown.contains(&id.as_str()) && shown.contains(&other.as_str()),
        "{shown:?}"
    );
    b.fill("#audit-session", &id).await;
    b.fill("#audit-type", "session.start").await;
    b.click(".filters button[type='submit']").await;
    b.wait_for("the filtered audit page", || async {
        let url = b.client.current_url().await.ok()?;
        url.query()?.contains("session_id=").then_some(())
    })
    .await;
    let rows = b
        .js(
            "return Array.from(document.querySelectorAll('#audit tbody tr'), \
             (tr) => [tr.dataset.type, tr.querySelector('td.session code').textContent, \
             tr.querySelector('td.reason').textContent]);",
            vec![],
        )
        .await;
    assert_eq!(
        rows,
        serde_json::json!([["session.start", id, REASON]]),
        "one start event, the reason as text"
    );
    b.screenshot("audit-filtered.png").await;
    b.click(&format!(
        "#audit td.session a.play[href='/sessions/{id}/play']"
    ))
    .await;
    b.wait_for_path(&format!("/sessions/{id}/play")).await;

    // The playback page: the facts, the player with its controls; 4× plays it, and the
    // marker appears on the player's screen.
    let facts = b.wait_for_text(".facts", "alice").await;
    assert!(facts.contains(REASON), "the reason, as text: {facts}");
    b.wait_for_shown("#player .ap-player").await;
    assert!(
        b.client
            .find(Locator::Css(
                "#player .ap-player .ap-control-bar, #player .ap-player .ap-progressbar"
            ))
            .await
            .is_ok(),
        "the player has its controls (seek bar)"
    );
    assert!(
        !player_text(&b).await.contains("PLAY-42-MARK"),
        "not played yet"
    );
    b.client
        .find(Locator::Css("#play-speed"))
        .await
        .unwrap()
        .select_by_value("4")
        .await
        .unwrap();
    wait_for_player(&b, "PLAY-42-MARK").await;
    let shot = b.screenshot("play.png").await;
    println!("browser test screenshot: {}", shot.display());

    // The search page: the marker, linked to the player at its moment; the player opens
    // there, paused, showing the line.
    b.client.goto(&format!("{}/search", gw.url)).await.unwrap();
    b.fill("#search-q", "play-42-mark").await;
    b.click(".search-form button[type='submit']").await;
    let result = b
        .wait_for_shown(&format!(
            "#search-results tr[data-session-id='{id}'] td.line a"
        ))
        .await;
    assert_eq!(result.text().await.unwrap(), "PLAY-42-MARK");
    let offset: f64 = b
        .client
        .find(Locator::Css(&format!(
            "#search-results tr[data-session-id='{id}']"
        )))
        .await
        .unwrap()
        .attr("data-offset")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert!(offset >= 1.0, "printed after `sleep 1`: {offset}");
    b.screenshot("search.png").await;
    result.click().await.unwrap();
    let query = b.wait_for_path(&format!("/sessions/{id}/play")).await;
    assert_eq!(query, Some(format!("t={offset}")));
    wait_for_player(&b, "PLAY-42-MARK").await;
    let at = player_time(&b).await;
    assert!(
        (at - offset).abs() < 0.5,
        "the player stands at the match: {at} s, the line at {offset} s"
    );
    b.screenshot("play-at-match.png").await;

    b.close().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_lists_observes_and_terminates_sessions() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    gw.user("audrey", &[Role::Auditor]).await;
    gw.user("root", &[Role::Admin]).await;
    assert_assets_built(&gw).await;

    // Only roles that observe or terminate others' sessions see the page and the API.
    for user in ["alice", "audrey"] {
        let mut api = Api::new(&gw);
        api.login(user).await;
        let page = api.get("/live").await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{user}");
        let list = api.get("/api/v1/sessions?scope=all").await;
        assert_eq!(list.status, StatusCode::FORBIDDEN, "{user}");
        assert!(
            !page.text.contains(r#"href="/live""#),
            "{user}: no Live entry"
        );
    }

    // Alice's session, attached, with some output.
    let mut alice = Api::new(&gw);
    alice.login("alice").await;
    let id = alice.open(NODE, "INC-6002 watch me fix it").await;
    let mut term = alice.attach(&id).await.unwrap();
    term.type_text("echo LIVE-$((6*7))-ONE\n").await;
    let after = term.expect("LIVE-42-ONE").await;

    let mut root = Api::new(&gw);
    root.login("root").await;
    let list = root.get("/api/v1/sessions?scope=all&state=active").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let listed = &list.body["sessions"][0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["user"], "alice");
    assert_eq!(listed["live"]["attached"], true);
    assert!(
        listed["live"]["bytes_out"].as_u64().unwrap() > 0,
        "{listed}"
    );

    let b = Browser::start().await;
    b.sign_in(&gw.url, "root", PASSWORD).await;
    b.client.goto(&format!("{}/live", gw.url)).await.unwrap();
    let tr = format!("#live tr[data-session-id='{id}']");
    b.wait_for_shown(&tr).await;
    assert_eq!(
        b.wait_for_text(&format!("{tr} td.user"), "alice").await,
        "alice"
    );
    b.wait_for_text(&format!("{tr} td.node"), NODE).await;
    b.wait_for_text(&format!("{tr} td.reason"), "INC-6002")
        .await;
    b.wait_for_text(&format!("{tr} td.attached"), "attached")
        .await;
    let out = b.wait_for_text(&format!("{tr} td.bytes-out"), "B").await;
    assert!(!out.starts_with("0 B") && !out.starts_with('?'), "{out}");
    b.screenshot("live.png").await;

    // The list keeps itself current without a reload: a session started now appears, and
    // goes once it ends, while the rows that stay are the same elements.
    b.js("window.porthole_test_mark = 1; return 1;", vec![])
        .await;
    let second = alice.open(NODE, "INC-6003 a second look").await;
    let tr2 = format!("#live tr[data-session-id='{second}']");
    b.wait_for_shown(&tr2).await;
    b.wait_for_text(&format!("{tr2} td.reason"), "INC-6003")
        .await;
    b.wait_for_text("#live-updated", "Updated").await;
    b.screenshot("live-updated.png").await;
    let ended = alice.delete(&format!("/api/v1/sessions/{second}")).await;
    assert!(ended.status.is_success(), "{}", ended.text);
    b.wait_for("the ended session's row to go", || async {
        b.client
            .find(Locator::Css(&tr2))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    b.wait_for_shown(&tr).await;
    let mark = b
        .js("return window.porthole_test_mark ?? null;", vec![])
        .await;
    assert_eq!(mark, serde_json::json!(1), "the page was not reloaded");

    // Observe: the terminal page, read-only, with what the session shows and prints next.
    b.click(&format!("{tr} a.observe")).await;
    let query = b.wait_for_path(&format!("/sessions/{id}")).await;
    assert_eq!(query.as_deref(), Some("mode=observe"));
    b.wait_for_screen("the session's screen", |s| s.contains("LIVE-42-ONE"))
        .await;
    b.wait_for_text("#banner", "read-only").await;
    term.type_text("echo LIVE-$((6*7))-TWO\n").await;
    term.expect_from(after, "LIVE-42-TWO").await;
    b.wait_for_screen("the next output", |s| s.contains("LIVE-42-TWO"))
        .await;
    b.screenshot("observe.png").await;

    // Terminate from the live page: the session ends, the owner's socket closes, the row goes.
    b.client.goto(&format!("{}/live", gw.url)).await.unwrap();
    b.wait_for_shown(&tr).await;
    b.click(&format!("{tr} button.terminate")).await;
    b.accept_confirm().await;
    let (code, reason) = term.closed().await;
    assert_eq!(code, CLOSE_SESSION_ENDED);
    assert_eq!(reason, "terminated by root");
    b.wait_for("the row to go", || async {
        b.client
            .find(Locator::Css(&tr))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    b.wait_for_shown("#live-empty").await;
    let row = porthole::gateway::store::sessions::load(&gw.state.engine.db, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, "ended");
    assert_eq!(row.end_reason.as_deref(), Some("terminated by root"));
    b.screenshot("live-after-terminate.png").await;

    b.close().await;
    gw.stop().await;
}
