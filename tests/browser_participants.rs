#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Browser test of sharing a session (issue 19), with two people in two headless Chromiums:
//! the owner invites a colleague from the terminal page's Share dialog; the colleague finds the
//! session on their Live page, joins it, sees the shell and who is present, and types; the
//! owner's page shows the colleague's command and "last typed by" them; the owner revokes the
//! colleague from the dialog and the colleague's page says so. A participant's and an
//! observer's terminal take the owner's size whatever their window, and never change the
//! shell's. Debian's Chromium through chromedriver (tests/common/browser.rs); screenshots kept
//! as artefacts.

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

/// The columns and rows of the page's xterm.js terminal.
async fn term_size(b: &Browser) -> (u64, u64) {
    let size = b
        .js(
            "return [window.portholeTerm.cols, window.portholeTerm.rows];",
            vec![],
        )
        .await;
    (size[0].as_u64().unwrap(), size[1].as_u64().unwrap())
}

/// Waits until the page's terminal is `size`.
async fn until_size(b: &Browser, what: &str, size: (u64, u64)) {
    b.wait_for(what, || async {
        (term_size(b).await == size).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_and_an_observer_take_the_owners_size_and_leave_the_shells() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    gw.user("bob", &[Role::Operator]).await;
    gw.user("root", &[Role::Admin]).await;
    let mut api = Api::new(&gw);
    api.login("alice").await;
    let id = api.open(NODE, "INC-1902 sizes when sharing").await;
    let reply = api
        .post(
            &format!("/api/v1/sessions/{id}/participants"),
            &serde_json::json!({"user": "bob", "mode": "write"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let page = format!("{}/sessions/{id}", gw.url);

    // The owner's page fits its window; the shell has that size.
    let owner = Browser::start().await;
    owner.client.set_window_size(1100, 760).await.unwrap();
    owner.sign_in(&gw.url, "alice", PASSWORD).await;
    owner.client.goto(&page).await.unwrap();
    owner
        .wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    let first = term_size(&owner).await;
    owner.type_in_terminal("echo SIZE=$(stty size)=\n").await;
    let said = format!("SIZE={} {}=", first.1, first.0);
    owner.wait_for_screen(&said, |s| s.contains(&said)).await;

    // Bob's smaller window: his terminal has the owner's size all the same.
    let colleague = Browser::start().await;
    colleague.client.set_window_size(700, 480).await.unwrap();
    colleague.sign_in(&gw.url, "bob", PASSWORD).await;
    colleague.client.goto(&page).await.unwrap();
    colleague
        .wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    until_size(&colleague, "bob's terminal to take alice's size", first).await;
    colleague
        .wait_for_attr("#term-size", "data-cols", &first.0.to_string())
        .await;

    // The owner's window shrinks: the shell and bob's terminal follow it.
    owner.client.set_window_size(820, 560).await.unwrap();
    let second = owner
        .wait_for("alice's terminal to fit the smaller window", || async {
            let size = term_size(&owner).await;
            (size.0 < first.0 && size.1 < first.1).then_some(size)
        })
        .await;
    until_size(&colleague, "bob's terminal to follow alice's", second).await;

    // Bob's window grows past the owner's: his terminal keeps her size, and so does the
    // shell (what he runs there says so).
    colleague.client.set_window_size(1300, 900).await.unwrap();
    colleague
        .type_in_terminal("echo BOB-SIZE=$(stty size)=\n")
        .await;
    let said = format!("BOB-SIZE={} {}=", second.1, second.0);
    colleague
        .wait_for_screen(&said, |s| s.contains(&said))
        .await;
    owner.wait_for_screen(&said, |s| s.contains(&said)).await;
    assert_eq!(
        term_size(&colleague).await,
        second,
        "bob's terminal refitted"
    );
    assert_eq!(term_size(&owner).await, second, "alice's terminal changed");
    colleague
        .screenshot("participants-size-colleague.png")
        .await;

    // An observer with yet another window: the owner's size too.
    let observer = Browser::start().await;
    observer.client.set_window_size(1250, 850).await.unwrap();
    observer.sign_in(&gw.url, "root", PASSWORD).await;
    observer
        .client
        .goto(&format!("{page}?mode=observe"))
        .await
        .unwrap();
    observer
        .wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    // (Alice's status bar now names three people and may wrap: her terminal, and so the
    // shell, can lose a row or two; the observer follows whatever it is.)
    let third = observer
        .wait_for("the observer's terminal to take alice's size", || async {
            let (hers, his) = (term_size(&owner).await, term_size(&observer).await);
            (hers == his).then_some(hers)
        })
        .await;
    owner.type_in_terminal("echo AGAIN=$(stty size)=\n").await;
    let said = format!("AGAIN={} {}=", third.1, third.0);
    observer.wait_for_screen(&said, |s| s.contains(&said)).await;
    assert_eq!(term_size(&observer).await, third);
    assert_eq!(term_size(&colleague).await, third);
    observer.screenshot("participants-size-observer.png").await;

    owner.close().await;
    colleague.close().await;
    observer.close().await;
    gw.stop().await;
}
