#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
//! Single sign-on in a real browser (headless Chromium) against a real provider
//! (oidc-provider-mock): a deep link to the sessions page sends the person to the sign-in page,
//! they click "Sign in with …", sign in at the provider, land back where the link pointed, open
//! a shell and type into it; sign-out takes them to the provider's sign-out. On SQLite and
//! PostgreSQL.

#[path = "common/browser.rs"]
#[allow(dead_code)] // this test uses a part of the helpers
mod browser;
mod common;

use browser::Browser;
use common::emulator::NODE;
use common::gateway::{self, Backend, both_backends};
use common::oidc::{self, MockProvider};
use fantoccini::Locator;
use fantoccini::key::Key;
use serde_json::json;

async fn clicks_through_single_sign_on_and_opens_a_shell(backend: Backend) {
    let provider = MockProvider::start().await;
    let issuer = provider.issuer.clone();
    let gw = gateway::start(backend, |c| c.auth.oidc = Some(oidc::oidc_config(&issuer))).await;
    provider
        .set_user(
            "erin-sub",
            json!({"preferred_username": "erin", "email": "erin@example.com",
                   "name": "Erin", "groups": ["sre"]}),
        )
        .await;
    let b = Browser::start().await;

    // A deep link, signed out: the sign-in page, with the provider's button.
    b.client
        .goto(&format!("{}/sessions", gw.url))
        .await
        .unwrap();
    b.wait_for_path("/login").await;
    b.wait_for_text("#sso-sign-in", "Sign in with Example SSO")
        .await;
    b.screenshot("sso-login.png").await;
    b.click("#sso-sign-in").await;

    // The provider's page: sign in as erin.
    b.wait_for("the provider's sign-in form", || async {
        let url = b.client.current_url().await.ok()?;
        url.as_str().starts_with(&issuer).then_some(())
    })
    .await;
    let sub = b.wait_for_shown("input[name='sub']").await;
    sub.send_keys("erin-sub").await.unwrap();
    b.client
        .find(Locator::XPath("//button[normalize-space()='Authorize']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Back where the link pointed, signed in with the role the group gives.
    b.wait_for_path("/sessions").await;
    b.wait_for_text("#user-name", "erin").await;

    // A shell.
    b.client.goto(&format!("{}/targets", gw.url)).await.unwrap();
    let row = format!("tr[data-target='{NODE}']");
    b.wait_for_shown(&row).await;
    b.click(&format!("{row} button.connect")).await;
    b.wait_for_shown("#reason-dialog").await;
    b.fill("#reason", "INC-5150 signed in with SSO").await;
    b.click("#reason-submit").await;
    b.wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    b.type_in_terminal(&format!("echo SSO-$((6*7)){}", char::from(Key::Enter)))
        .await;
    b.wait_for_screen("the shell's answer", |s| s.contains("SSO-42"))
        .await;
    b.screenshot("sso-shell.png").await;

    // Sign-out goes through the provider's sign-out page.
    b.client.goto(&format!("{}/targets", gw.url)).await.unwrap();
    b.click("#sign-out").await;
    b.wait_for("the provider's sign-out", || async {
        let url = b.client.current_url().await.ok()?;
        (url.as_str().starts_with(&issuer) && url.path().contains("end_session")).then_some(())
    })
    .await;
    b.close().await;
    gw.stop().await;
}
both_backends!(clicks_through_single_sign_on_and_opens_a_shell);
