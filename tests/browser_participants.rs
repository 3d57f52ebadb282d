#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Browser test of sharing a session (issue 19), with two people in two headless Chromiums:
//! the owner invites a colleague from the terminal page's Share dialog; the colleague finds the
//! session on their Live page, joins it, sees the shell and who is present, and types; the
//! owner's page shows the colleague's command and "last typed by" them; the owner revokes the
//! colleague from the dialog and the colleague's page says so. Debian's Chromium through
//! chromedriver (tests/common/browser.rs); screenshots kept as artefacts.

#[path = "common/browser.rs"]
#[allow(dead_code)] // shared with tests/browser.rs, which uses all of it
mod browser;
mod common;

use porthole::gateway::identity::users::Role;
use reqwest::StatusCode;

use browser::Browser;
use common::api::Api;
use common::emulator::NODE;
use common::gateway::{self, Backend, PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_shares_from_the_page_and_the_colleague_types_along() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    gw.user("bob", &[Role::Operator]).await;
    let response = reqwest::get(format!("{}/assets/terminal.js", gw.url))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the browser assets are missing: run scripts/web-build (it fills web/dist)"
    );
    let mut api = Api::new(&gw);
    api.login("alice").await;
    let id = api
        .open(NODE, "INC-1901 pair debugging in the browser")
        .await;

    // The owner's page: the shell, then Share.
    let owner = Browser::start().await;
    owner.sign_in(&gw.url, "alice", PASSWORD).await;
    owner
        .client
        .goto(&format!("{}/sessions/{id}", gw.url))
        .await
        .unwrap();
    owner
        .wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    owner.type_in_terminal("echo OWNER-$((40+1))\n").await;
    owner
        .wait_for_screen("the owner's command", |s| s.contains("OWNER-41"))
        .await;
    owner.click("#share-open").await;
    owner.wait_for_shown("#share-dialog").await;
    // A name that does not exist: the gateway's words in the dialog, tied to the box.
    owner.fill("#share-user", "nobody").await;
    owner.click("#share-invite").await;
    owner
        .wait_for_text("#share-error", "no user named \"nobody\"")
        .await;
    owner
        .wait_for_attr("#share-user", "aria-invalid", "true")
        .await;
    owner.fill("#share-user", "bob").await;
    owner.click("#share-invite").await;
    owner
        .wait_for_text("#share-list li[data-user='bob']", "types along")
        .await;
    owner.screenshot("participants-owner-dialog.png").await;
    owner.click("#share-close").await;

    // The colleague: the Live page lists what is shared with them; Join opens the shell.
    let colleague = Browser::start().await;
    colleague.sign_in(&gw.url, "bob", PASSWORD).await;
    colleague
        .client
        .goto(&format!("{}/live", gw.url))
        .await
        .unwrap();
    colleague
        .wait_for_text("#shared tr[data-session-id] td.user", "alice")
        .await;
    colleague.click("#shared a.join").await;
    colleague.wait_for_path(&format!("/sessions/{id}")).await;
    colleague
        .wait_for_attr("#session", "data-mode", "write")
        .await;
    colleague
        .wait_for_screen("the owner's shell", |s| s.contains("OWNER-41"))
        .await;
    let here = colleague.wait_for_text("#presence", "bob (types)").await;
    assert!(here.contains("alice (owner)"), "{here}");
    colleague
        .wait_for_text("#banner-text", "You joined alice's session")
        .await;

    // The colleague types; the owner sees it, and who typed.
    colleague.type_in_terminal("echo BOB-$((40+2))\n").await;
    owner
        .wait_for_screen("the colleague's command", |s| s.contains("BOB-42"))
        .await;
    owner
        .wait_for_text("#last-typed", "last typed by bob")
        .await;
    owner.wait_for_text("#presence", "bob (types)").await;
    colleague
        .wait_for_text("#last-typed", "last typed by you")
        .await;
    owner.screenshot("participants-owner.png").await;
    colleague.screenshot("participants-colleague.png").await;

    // Revoked from the dialog: the colleague's page says who stopped sharing, and stops.
    owner.click("#share-open").await;
    owner
        .wait_for_shown("#share-list li[data-user='bob'] button.revoke")
        .await;
    owner
        .click("#share-list li[data-user='bob'] button.revoke")
        .await;
    owner.wait_for_shown("#share-empty").await;
    colleague
        .wait_for_text("#banner-text", "alice stopped sharing the session with you")
        .await;
    colleague
        .wait_for_attr("#conn-state", "data-state", "revoked")
        .await;
    colleague.screenshot("participants-revoked.png").await;

    owner.close().await;
    colleague.close().await;
    gw.stop().await;
}
