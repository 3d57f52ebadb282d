#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Browser test of the labels on a recording: the owner opens an ended session's play page,
//! gives it tags and a note with markup in it, sees them as stored (lower case, sorted, the
//! markup as text), is told what is wrong with a bad tag next to the box (nothing typed is
//! lost), and follows a tag to the search page, which lists the session under its labels.
//! Debian's Chromium, headless, through chromedriver (tests/common/browser.rs).

#[path = "common/browser.rs"]
#[allow(dead_code)] // shared with tests/browser.rs, which uses all of it
mod browser;
mod common;

use porthole::gateway::identity::users::Role;
use reqwest::StatusCode;
use serde_json::json;

use browser::Browser;
use common::api::Api;
use common::emulator::NODE;
use common::gateway::{self, Backend, PASSWORD};

const NOTE: &str = "disk <b>full</b>; rotated logs";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_is_labelled_on_its_page_and_found_by_its_tag() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let response = reqwest::get(format!("{}/assets/labels.js", gw.url))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the browser assets are missing: run scripts/web-build (it fills web/dist)"
    );
    let mut api = Api::new(&gw);
    api.login("alice").await;
    let id = api.open(NODE, "INC-9100 labels in the browser").await;
    api.delete(&format!("/api/v1/sessions/{id}")).await;
    api.wait_ended(&id).await;

    let b = Browser::start().await;
    b.sign_in(&gw.url, "alice", PASSWORD).await;
    b.client
        .goto(&format!("{}/sessions/{id}/play", gw.url))
        .await
        .unwrap();
    b.wait_for_shown("#labels-form").await;

    // A bad tag: the gateway's words beside the box, marked invalid; what was typed stays.
    b.fill("#labels-input", "INC-9100 a<b").await;
    b.fill("#labels-note-input", NOTE).await;
    b.click("#labels-form button[type='submit']").await;
    let error = b.wait_for_text("#labels-error", "not allowed").await;
    assert!(error.contains("'<'"), "{error}");
    b.wait_for_attr("#labels-input", "aria-invalid", "true")
        .await;
    assert_eq!(b.value("#labels-input").await, "INC-9100 a<b");
    assert_eq!(b.value("#labels-note-input").await, NOTE);

    // Fixed: saved, shown as kept; the note's markup is text.
    b.fill("#labels-input", "INC-9100, Database reviewed").await;
    b.click("#labels-form button[type='submit']").await;
    b.wait_for_text("#labels-saved", "Saved.").await;
    let tags = b
        .js(
            "return [...document.querySelectorAll('#labels-tags a.tag')].map(a => a.textContent);",
            vec![],
        )
        .await;
    assert_eq!(tags, json!(["database", "inc-9100", "reviewed"]));
    assert_eq!(b.wait_for_text("#labels-note", "rotated").await, NOTE);
    let bold = b
        .js(
            "return document.querySelectorAll('#labels-note b').length;",
            vec![],
        )
        .await;
    assert_eq!(bold, json!(0));
    assert_eq!(b.value("#labels-input").await, "database inc-9100 reviewed");
    b.wait_for_text("#labels-by", "alice").await;
    b.screenshot("labels-play.png").await;

    // Stored: the API has them; a tag leads to the search, which lists the session.
    let stored = api.get(&format!("/api/v1/sessions/{id}/labels")).await.body;
    assert_eq!(stored["tags"], json!(["database", "inc-9100", "reviewed"]));
    assert_eq!(stored["note"], NOTE);
    b.click("#labels-tags a.tag").await;
    b.wait_for_path("/search").await;
    let row = format!("#label-results li[data-session-id='{id}']");
    b.wait_for_shown(&row).await;
    b.wait_for_text(&format!("{row} .note"), "rotated").await;
    b.screenshot("labels-search.png").await;
    b.close().await;
    gw.stop().await;
}
