#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
//! Settings kept per person (`GET`/`PUT /api/v1/me/settings`), on SQLite and PostgreSQL: the
//! defaults, a round trip that a new sign-in sees, a 422 `invalid_settings` naming the key for
//! an unknown key and for each bad value with nothing stored, the CSRF token and the Origin
//! required, and one person's settings invisible to another.

mod common;

use common::api::{Api, Reply};
use common::gateway::{self, Backend, Gateway, both_backends};
use porthole::gateway::identity::users::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Row as _;

const PATH: &str = "/api/v1/me/settings";

fn defaults() -> Value {
    json!({
        "font_size": 14, "theme": "dark", "cursor_style": "block",
        "scrollback": 5000, "bell": "none", "screen_reader": false,
        "copy_on_select": false, "key_bar": "auto", "font_family": "system",
    })
}

async fn put(api: &mut Api, body: &Value) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap();
    api.send(Method::PUT, PATH, Some(&bytes)).await
}

async fn signed_in(gw: &Gateway, name: &str) -> Api {
    gw.user(name, &[Role::Operator]).await;
    let mut api = Api::new(gw);
    api.login(name).await;
    api
}

/// The rows of `user_settings`.
async fn rows(gw: &Gateway) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM user_settings")
        .fetch_one(gw.state.engine.db.pool())
        .await
        .unwrap()
        .try_get::<i64, _>("n")
        .unwrap()
}

async fn settings_are_kept_per_person(backend: Backend) {
    let gw = gateway::start(backend, |_| {}).await;
    let mut alice = signed_in(&gw, "alice").await;
    let mut bob = signed_in(&gw, "bob").await;

    // Signed out: nothing.
    let reply = Api::new(&gw).get(PATH).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);

    // Never saved: the defaults, every key.
    let reply = alice.get(PATH).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body, defaults());

    // Saved: answered with every key; a new sign-in reads them back.
    let reply = put(&mut alice, &json!({"font_size": 15, "theme": "light"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let mut want = defaults();
    want["font_size"] = json!(15);
    want["theme"] = json!("light");
    assert_eq!(reply.body, want);
    let reply = put(
        &mut alice,
        &json!({"cursor_style": "bar", "scrollback": 100000, "bell": "visual", "screen_reader": true,
                 "copy_on_select": true, "key_bar": "on", "font_family": "jetbrains-mono"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    want["copy_on_select"] = json!(true);
    want["key_bar"] = json!("on");
    want["font_family"] = json!("jetbrains-mono");
    want["cursor_style"] = json!("bar");
    want["scrollback"] = json!(100000);
    want["bell"] = json!("visual");
    want["screen_reader"] = json!(true);
    assert_eq!(reply.body, want, "keys left out keep their values");
    let mut again = Api::new(&gw);
    again.login("alice").await;
    assert_eq!(again.get(PATH).await.body, want);
    assert_eq!(rows(&gw).await, 1);

    // Another person sees their own (the defaults), and their save leaves alice's alone.
    assert_eq!(bob.get(PATH).await.body, defaults());
    let reply = put(&mut bob, &json!({"font_size": 20})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["font_size"], 20);
    assert_eq!(reply.body["theme"], "dark");
    assert_eq!(alice.get(PATH).await.body, want);
    assert_eq!(rows(&gw).await, 2);

    // null: back to the default.
    let reply = put(&mut bob, &json!({"font_size": null})).await;
    assert_eq!(reply.body, defaults());
    gw.stop().await;
}
both_backends!(settings_are_kept_per_person);

async fn bad_settings_are_refused_and_nothing_is_stored(backend: Backend) {
    let gw = gateway::start(backend, |_| {}).await;
    let mut alice = signed_in(&gw, "alice").await;
    let saved = put(&mut alice, &json!({"font_size": 18})).await.body;
    assert_eq!(saved["font_size"], 18);

    let table = [
        (json!({"colour": "red"}), "colour", "unknown key"),
        (json!({"font_size": 7}), "font_size", "8 to 32"),
        (json!({"font_size": 33}), "font_size", "8 to 32"),
        (json!({"font_size": 12.5}), "font_size", "integer"),
        (json!({"font_size": "16"}), "font_size", "integer"),
        (json!({"theme": "solarized"}), "theme", "dark, light"),
        (
            json!({"cursor_style": "beam"}),
            "cursor_style",
            "block, bar, underline",
        ),
        (json!({"scrollback": 99}), "scrollback", "100 to 100000"),
        (json!({"scrollback": 100001}), "scrollback", "100 to 100000"),
        (json!({"bell": "loud"}), "bell", "none, visual, sound"),
        (
            json!({"screen_reader": "yes"}),
            "screen_reader",
            "true or false",
        ),
        (
            json!({"copy_on_select": "on"}),
            "copy_on_select",
            "true or false",
        ),
        (json!({"key_bar": "touch"}), "key_bar", "auto, on, off"),
        (
            json!({"font_family": "Fira Code"}),
            "font_family",
            "system, jetbrains-mono",
        ),
        // A good key beside a bad one: the whole change is refused.
        (
            json!({"theme": "light", "font_size": 0}),
            "font_size",
            "8 to 32",
        ),
        (json!(["font_size", 15]), "settings", "JSON object"),
    ];
    for (body, key, allowed) in table {
        let reply = put(&mut alice, &body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "invalid_settings", "{body}");
        assert!(reply.message().contains(key), "{body}: {}", reply.message());
        assert!(
            reply.message().contains(allowed),
            "{body}: {}",
            reply.message()
        );
        assert_eq!(alice.get(PATH).await.body, saved, "{body}: nothing stored");
    }

    // Not JSON: 400, nothing stored.
    let reply = alice.send(Method::PUT, PATH, Some(b"{font_size")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert_eq!(alice.get(PATH).await.body, saved);

    // A write without the CSRF token, or from another Origin: 403, nothing stored.
    let mut no_csrf = alice.clone();
    no_csrf.csrf = None;
    let reply = put(&mut no_csrf, &json!({"font_size": 30})).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert_eq!(reply.code(), "csrf");
    let mut wrong_csrf = alice.clone();
    wrong_csrf.csrf = Some("not-the-token".into());
    let reply = put(&mut wrong_csrf, &json!({"font_size": 30})).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    let mut elsewhere = alice.clone();
    elsewhere.origin = Some("https://evil.example".into());
    let reply = put(&mut elsewhere, &json!({"font_size": 30})).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert_eq!(reply.code(), "bad_origin");
    assert_eq!(alice.get(PATH).await.body, saved);

    // Larger than the API's body limit: 413.
    let big = json!({"theme": "x".repeat(20 * 1024)});
    let reply = put(&mut alice, &big).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text
    );
    assert_eq!(alice.get(PATH).await.body, saved);
    gw.stop().await;
}
both_backends!(bad_settings_are_refused_and_nothing_is_stored);
