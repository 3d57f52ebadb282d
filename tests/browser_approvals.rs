#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Browser tests of the just-in-time access pages (docs/approvals.md): a person asks for
//! access on the targets page, an approver approves on `/requests` in another browser, and the
//! first page turns into a working Connect button without a reload, through to a shell; and
//! the deep links (`/connect/{target}`, `/requests/new`) open their prompt filled, or a page
//! that does not tell whether an unreachable node exists. Debian's Chromium, headless, through
//! chromedriver (tests/common/browser.rs), against the real API.

#[path = "common/browser.rs"]
#[allow(dead_code)] // shared with tests/browser.rs, which uses all of it
mod browser;
mod common;

use std::path::Path;

use fantoccini::Locator;
use fantoccini::key::Key;
use porthole::gateway::identity::users::Role;
use reqwest::StatusCode;
use serde_json::json;

use browser::Browser;
use common::api::Api;
use common::gateway::{self, Backend, Gateway, PASSWORD};

/// The emulator's online nodes: web-1 and db-1; lab-pi exists too.
const WEB: &str = "i-0a1b2c3d4e5f60001";
const DB: &str = "i-0a1b2c3d4e5f60002";
const LAB: &str = "mi-0a1b2c3d4e5f60003";
/// A node id that does not exist.
const NOWHERE: &str = "i-0ffffffffffffffff";

/// `prod` reaches web-1 with an approver's yes from `leads` (grants of at most an hour); `dev`
/// reaches db-1 with no approval; `leads` reaches nothing itself.
const POLICY: &str = r#"
[[roles]]
name = "prod"
targets = [{ ids = ["i-0a1b2c3d4e5f60001"] }]
[roles.approval]
required = true
approvers = ["leads"]
grant_seconds = 3600

[[roles]]
name = "dev"
targets = [{ ids = ["i-0a1b2c3d4e5f60002"] }]

[[roles]]
name = "leads"
"#;

/// A reason and a comment with markup in them: the pages must show them as text.
const REASON: &str = "INC-7001 <b>disk</b> full on web-1";
const COMMENT: &str = "ok, \"go\" <i>ahead</i>";

async fn start(dir: &Path) -> Gateway {
    let file = dir.join("policy.toml");
    std::fs::write(&file, POLICY).unwrap();
    gateway::start(Backend::Sqlite, |c| c.policy.file = Some(file.clone())).await
}

async fn user(gw: &Gateway, name: &str, roles: &[&str]) {
    let roles: Vec<Role> = roles.iter().map(|r| Role::parse(r).unwrap()).collect();
    gw.user(name, &roles).await;
}

/// Fails with a clear message when the web build has not run (or predates these pages).
async fn assert_assets_built(gw: &Gateway) {
    let response = reqwest::get(format!("{}/assets/access.js", gw.url))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the browser assets are missing: run scripts/web-build (it fills web/dist)"
    );
}

/// How many elements match `css`.
async fn count(b: &Browser, css: &str) -> u64 {
    b.js(
        "return document.querySelectorAll(arguments[0]).length;",
        vec![json!(css)],
    )
    .await
    .as_u64()
    .unwrap()
}

/// Whether the page is the one marked with [`mark`] (not reloaded since).
async fn marked(b: &Browser) -> bool {
    b.js("return window.porthole_test_mark === 42;", vec![])
        .await
        .as_bool()
        .unwrap()
}

async fn mark(b: &Browser) {
    b.js("window.porthole_test_mark = 42; return null;", vec![])
        .await;
}

/// Waits for the terminal page to connect, types a line whose output the shell computes, and
/// waits for that output on the screen (the bytes went through the node and back).
async fn shell_works(b: &Browser, marker: &str) {
    b.wait_for("the terminal page", || async {
        let url = b.client.current_url().await.ok()?;
        url.path().strip_prefix("/sessions/").map(|_| ())
    })
    .await;
    b.wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    b.type_in_terminal(&format!("echo {marker}-$((6*7)){}", char::from(Key::Enter)))
        .await;
    let expected = format!("{marker}-42");
    b.wait_for_screen(&expected, |s| s.contains(&expected))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_asked_for_in_one_browser_and_approved_in_another_opens_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path()).await;
    user(&gw, "alice", &["prod"]).await;
    user(&gw, "bob", &["leads"]).await;
    assert_assets_built(&gw).await;

    // Alice: web-1 needs approval, so its row offers a request instead of Connect.
    let alice = Browser::start().await;
    alice.sign_in(&gw.url, "alice", PASSWORD).await;
    let row = format!("#targets tr[data-target='{WEB}']");
    alice.wait_for_attr(&row, "data-access", "none").await;
    assert_eq!(count(&alice, &format!("{row} button.connect")).await, 0);
    alice.click(&format!("{row} button.request-access")).await;
    alice.wait_for_shown("#access-dialog").await;
    alice.wait_for_text("#access-dialog h2", "web-1").await;
    assert!(
        !alice
            .client
            .find(Locator::Css("#access-break-glass-box"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap(),
        "no break-glass choice where the role allows none"
    );
    // Too long: the gateway's (or the form's) words, and nothing typed is lost.
    alice.fill("#access-reason", REASON).await;
    alice.fill("#access-minutes", "600").await;
    alice.click("#access-submit").await;
    alice.wait_for_shown("#access-error").await;
    let refused = alice.wait_for_text("#access-error", "").await;
    assert!(!refused.is_empty());
    assert_eq!(alice.value("#access-reason").await, REASON);
    alice.fill("#access-minutes", "30").await;
    alice.click("#access-submit").await;
    alice.wait_for_attr(&row, "data-access", "pending").await;
    alice
        .wait_for_text(&format!("{row} .access-state"), "0 of 1")
        .await;
    alice.wait_for_shown("#nav-requests").await;
    alice.screenshot("approvals-pending.png").await;
    mark(&alice).await;

    // Bob: the Requests entry, the request with its facts as text, approved with a comment.
    let bob = Browser::start().await;
    bob.sign_in(&gw.url, "bob", PASSWORD).await;
    bob.wait_for_shown("#nav-requests").await;
    bob.click("#nav-requests").await;
    bob.wait_for_path("/requests").await;
    let tr = "#requests tr[data-user='alice'][data-state='pending']";
    bob.wait_for_shown(tr).await;
    assert_eq!(
        bob.wait_for_text(&format!("{tr} td.user"), "alice").await,
        "alice"
    );
    bob.wait_for_text(&format!("{tr} td.node"), WEB).await;
    assert_eq!(
        bob.wait_for_text(&format!("{tr} td.reason"), "INC-7001")
            .await,
        REASON
    );
    assert_eq!(count(&bob, &format!("{tr} td.reason b")).await, 0);
    bob.wait_for_text(&format!("{tr} td.duration"), "30 min")
        .await;
    bob.wait_for_text(&format!("{tr} td.decisions"), "0 of 1")
        .await;
    bob.fill(&format!("{tr} input.comment"), COMMENT).await;
    bob.screenshot("approvals-requests.png").await;
    bob.click(&format!("{tr} button.approve")).await;
    let decided = "#requests tr[data-user='alice'][data-state='approved']";
    bob.wait_for_shown(decided).await;
    let decisions = bob
        .wait_for_text(&format!("{decided} td.decisions"), "1 of 1")
        .await;
    assert!(
        decisions.contains(&format!("bob approved: “{COMMENT}”")),
        "{decisions}"
    );
    assert_eq!(count(&bob, &format!("{decided} button.approve")).await, 0);
    bob.screenshot("approvals-approved.png").await;

    // Alice's page changes by itself: approved by bob, with his comment, and Connect.
    alice.wait_for_attr(&row, "data-access", "granted").await;
    let state = alice
        .wait_for_text(&format!("{row} .access-state"), "Approved by bob")
        .await;
    assert!(state.contains(COMMENT), "{state}");
    assert!(marked(&alice).await, "the targets page was not reloaded");
    alice.screenshot("approvals-granted.png").await;
    alice.click(&format!("{row} button.connect")).await;
    alice.wait_for_shown("#reason-dialog").await;
    assert_eq!(alice.value("#reason").await, REASON);
    alice.click("#reason-submit").await;
    shell_works(&alice, "GRANTED").await;
    let mut api = Api::new(&gw);
    api.login("alice").await;
    let sessions = api.get("/api/v1/sessions").await;
    assert_eq!(sessions.status, StatusCode::OK, "{}", sessions.text);
    assert_eq!(sessions.body["sessions"][0]["target"], WEB);

    // A stale page: bob revokes the grant while alice's targets page still offers Connect.
    // The start is refused (403 approval_required) and the page asks for access instead,
    // with the reason as typed.
    alice
        .client
        .goto(&format!("{}/targets", gw.url))
        .await
        .unwrap();
    alice.wait_for_attr(&row, "data-access", "granted").await;
    bob.click(&format!("{decided} button.revoke")).await;
    bob.accept_confirm().await;
    bob.wait_for_shown("#requests tr[data-user='alice'][data-state='revoked']")
        .await;
    alice.click(&format!("{row} button.connect")).await;
    alice.wait_for_shown("#reason-dialog").await;
    let again = "INC-7002 one more look at the disk";
    alice.fill("#reason", again).await;
    alice.click("#reason-submit").await;
    alice.wait_for_shown("#access-dialog").await;
    assert_eq!(alice.value("#access-reason").await, again);
    alice.wait_for_attr(&row, "data-access", "none").await;
    assert_eq!(alice.path().await, "/targets");

    // Asked again, and denied with a comment: alice's row says so, live, and offers to ask
    // again.
    alice.fill("#access-minutes", "15").await;
    alice.click("#access-submit").await;
    alice.wait_for_attr(&row, "data-access", "pending").await;
    let waiting = "#requests tr[data-user='alice'][data-state='pending']";
    bob.wait_for_shown(waiting).await;
    bob.wait_for_text(&format!("{waiting} td.reason"), again)
        .await;
    let no = "not now: use the <runbook>";
    bob.fill(&format!("{waiting} input.comment"), no).await;
    bob.click(&format!("{waiting} button.deny")).await;
    bob.wait_for_shown("#requests tr[data-user='alice'][data-state='denied']")
        .await;
    alice.wait_for_attr(&row, "data-access", "denied").await;
    let said = alice
        .wait_for_text(&format!("{row} .access-state"), "Denied by bob")
        .await;
    assert!(said.contains(no), "{said}");
    alice
        .wait_for_shown(&format!("{row} button.request-access"))
        .await;
    alice.screenshot("approvals-denied.png").await;

    alice.close().await;
    bob.close().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_links_open_the_prompt_filled_or_a_page_that_tells_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path()).await;
    // Carol reaches db-1 freely and web-1 under approval; lab-pi not at all.
    user(&gw, "carol", &["dev", "prod"]).await;
    assert_assets_built(&gw).await;
    let b = Browser::start().await;

    // Signed out: the sign-in page, then back to the link, whose prompt is filled; the
    // person still confirms. The reason's markup stays text.
    let reason = "INC-7100 <b>check</b> the logs & disk";
    let link = format!(
        "/connect/{DB}?reason={}&document=SSM-SessionManagerRunShell",
        urlencode(reason)
    );
    b.client.goto(&format!("{}{link}", gw.url)).await.unwrap();
    let query = b.wait_for_path("/login").await.unwrap_or_default();
    assert!(
        query.starts_with(&format!("next=/connect/{DB}%3Freason%3DINC-7100")),
        "{query}"
    );
    b.wait_for("the sign-in form to be ready", || async {
        let button = b.client.find(Locator::Css("#login-submit")).await.ok()?;
        button.is_enabled().await.ok()?.then_some(())
    })
    .await;
    b.fill("#username", "carol").await;
    b.fill("#password", PASSWORD).await;
    b.click("#login-submit").await;
    b.wait_for_path(&format!("/connect/{DB}")).await;
    b.wait_for_shown("#reason-dialog").await;
    b.wait_for_text("#reason-dialog h2", "db-1").await;
    assert_eq!(b.value("#reason").await, reason);
    b.wait_for_text("#reason-document", "SSM-SessionManagerRunShell")
        .await;
    assert_eq!(count(&b, "#reason-dialog b, #connect b").await, 0);
    assert_eq!(
        b.path().await,
        format!("/connect/{DB}"),
        "nothing opened yet"
    );
    b.screenshot("deep-link-connect.png").await;
    b.click("#reason-submit").await;
    shell_works(&b, "LINKED").await;

    // A node that needs approval: the request form, filled with the link's reason.
    let asked = "INC-7101 restart the web server";
    b.client
        .goto(&format!(
            "{}/connect/{WEB}?reason={}",
            gw.url,
            urlencode(asked)
        ))
        .await
        .unwrap();
    b.wait_for_shown("#access-dialog").await;
    assert_eq!(b.value("#access-reason").await, asked);
    b.wait_for_attr("#connect", "data-access", "none").await;
    b.screenshot("deep-link-request.png").await;

    // /requests/new likewise; and for a node that needs no approval, the reason prompt.
    b.client
        .goto(&format!(
            "{}/requests/new?target={WEB}&reason={}",
            gw.url,
            urlencode(asked)
        ))
        .await
        .unwrap();
    b.wait_for_shown("#access-dialog").await;
    assert_eq!(b.value("#access-reason").await, asked);
    b.client
        .goto(&format!(
            "{}/requests/new?target={DB}&reason={}",
            gw.url,
            urlencode(asked)
        ))
        .await
        .unwrap();
    b.wait_for_shown("#reason-dialog").await;
    assert_eq!(b.value("#reason").await, asked);
    b.wait_for_text("#connect-state", "needs no approval").await;

    // A node carol does not reach and one that does not exist: the same neutral page.
    let mut api = Api::new(&gw);
    api.login("carol").await;
    let mut pages = Vec::new();
    for id in [LAB, NOWHERE] {
        let page = api
            .get(&format!("/connect/{id}?reason=INC-7102+look"))
            .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{id}: {}", page.text);
        assert_eq!(page.headers["cache-control"], "no-store");
        assert!(!page.text.contains("lab-pi"), "{}", page.text);
        pages.push(page.text.replace(id, "ID"));
        b.client
            .goto(&format!("{}/connect/{id}", gw.url))
            .await
            .unwrap();
        let shown = b.wait_for_text(".error-message", "There is no node").await;
        assert!(shown.contains(id), "{shown}");
        assert_eq!(count(&b, "#reason-dialog, #access-dialog").await, 0);
    }
    assert_eq!(pages[0], pages[1], "the pages differ: one tells");
    b.screenshot("deep-link-unreachable.png").await;

    b.close().await;
    gw.stop().await;
}

/// Percent-encodes a query value.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
