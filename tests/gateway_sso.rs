//! Single sign-on (issue 14) against real providers on loopback: oidc-provider-mock from PyPI
//! for the whole redirect dance, and a forger of the tests' own for the ID tokens a real
//! provider never issues. Every refusal is a page that says what happened, and a
//! `login.failed` row that says why.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::api::Api;
use common::audit_log::{wait_for_event, wait_until};
use common::emulator::NODE;
use common::gateway::{self, Backend, Gateway, both_backends};
use common::oidc::{self, Browser, Forger, MockProvider, api_from, query_param};
use porthole::gateway::identity::users::Role;
use reqwest::StatusCode;
use serde_json::json;

/// The `login.failed` rows, oldest first, as (actor, why).
async fn failures(gw: &Gateway, count: usize) -> Vec<(String, String)> {
    wait_until(
        &gw.state.engine.db,
        None,
        &format!("{count} login.failed"),
        |events| events.iter().filter(|e| e.kind == "login.failed").count() >= count,
    )
    .await
    .into_iter()
    .filter(|e| e.kind == "login.failed")
    .map(|e| (e.actor, e.detail["why"].as_str().unwrap_or("").to_owned()))
    .collect()
}

/// The whole dance with a real provider: the button on the sign-in page, the provider, the
/// callback, the targets; roles from groups; a second sign-in without the group ends the
/// session the group allowed and takes the role away; sign-out goes through the provider.
async fn signs_in_with_a_real_provider_and_roles_follow_groups(backend: Backend) {
    let provider = MockProvider::start().await;
    let issuer = provider.issuer.clone();
    let gw = gateway::start(backend, |c| c.auth.oidc = Some(oidc::oidc_config(&issuer))).await;

    // The sign-in page offers the provider, and the button carries `next`.
    let page = reqwest::get(format!("{}/login?next=/sessions", gw.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Sign in with Example SSO"), "{page}");
    assert!(
        page.contains("href=\"/auth/oidc/login?next=/sessions\""),
        "{page}"
    );

    provider
        .set_user(
            "alice-sub",
            json!({"preferred_username": "Alice", "email": "alice@example.com",
                   "name": "Alice Liddell", "groups": ["sre", "staff"]}),
        )
        .await;
    let mut browser = Browser::new();
    let start = browser.start(&gw, "/sessions").await;
    assert_eq!(start.status, StatusCode::SEE_OTHER);
    let to_provider = start.location();
    assert!(
        to_provider.starts_with(&format!("{issuer}/oauth2/authorize?")),
        "{to_provider}"
    );
    assert_eq!(
        query_param(&to_provider, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(query_param(&to_provider, "nonce").is_some_and(|n| n.len() >= 16));
    assert_eq!(
        query_param(&to_provider, "redirect_uri"),
        Some(format!("{}/auth/oidc/callback", gw.url))
    );
    let flow_cookie = start
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("porthole_oidc_flow="))
        .unwrap();
    assert!(
        flow_cookie.contains("SameSite=Lax") && flow_cookie.contains("HttpOnly"),
        "{flow_cookie}"
    );

    let back = browser.approve(&to_provider, "alice-sub").await;
    let callback = browser.callback(&back).await;
    assert_eq!(callback.status, StatusCode::SEE_OTHER, "{}", callback.body);
    assert_eq!(callback.location(), "/sessions");
    let session_cookie = callback
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("porthole_session="))
        .unwrap();
    assert!(session_cookie.contains("SameSite=Lax"), "{session_cookie}");

    let mut api = api_from(&gw, &callback).await;
    let me = api.get("/api/v1/me").await;
    assert_eq!(me.body["user"]["name"], "alice");
    assert_eq!(me.body["user"]["roles"], json!(["operator"]));
    let login = wait_for_event(&gw.state.engine.db, None, "login").await;
    assert_eq!(login.actor, "alice");
    assert_eq!(login.detail["method"], "oidc");
    assert_eq!(login.detail["issuer"], issuer);
    assert_eq!(login.detail["subject"], "alice-sub");
    assert_eq!(login.detail["groups"], json!(["sre", "staff"]));
    assert_eq!(login.detail["roles"], json!(["operator"]));

    // The same code again: the provider's answer is taken once.
    let replay = browser.callback(&back).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert!(replay.body.contains("used already"), "{}", replay.body);

    // The operator opens a session; then the provider drops the group: at the next sign-in
    // the role is gone and so is the session.
    let id = api.open(NODE, "INC-1 disk full").await;
    provider
        .set_user(
            "alice-sub",
            json!({"preferred_username": "alice", "email": "alice@example.com",
                   "groups": ["staff"]}),
        )
        .await;
    let (callback, _) = Browser::new().sign_in(&gw, "alice-sub", "/targets").await;
    assert_eq!(callback.status, StatusCode::SEE_OTHER, "{}", callback.body);
    let end = wait_for_event(&gw.state.engine.db, Some(&id), "session.end").await;
    assert_eq!(end.detail["how"], "access revoked");
    let row = porthole::gateway::store::sessions::load(&gw.state.engine.db, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, "ended");
    assert_eq!(row.end_reason.as_deref(), Some("access revoked"));
    let mut api = api_from(&gw, &callback).await;
    let me = api.get("/api/v1/me").await;
    assert_eq!(me.body["user"]["roles"], json!([]));
    let login = wait_until(&gw.state.engine.db, None, "the second login", |events| {
        events.iter().filter(|e| e.kind == "login").count() >= 2
    })
    .await
    .into_iter()
    .filter(|e| e.kind == "login")
    .nth(1)
    .unwrap();
    assert_eq!(login.detail["roles_lost"], json!(["operator"]));

    // No role: not refused; the targets page says why it is empty.
    let targets = api.get("/targets").await;
    assert_eq!(targets.status, StatusCode::OK);
    assert!(targets.text.contains("no role"), "{}", targets.text);
    let listed = api.get("/api/v1/targets").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);

    // Sign-out ends the Porthole login and sends the browser to the provider's sign-out.
    let out = api.post("/api/v1/auth/logout", &json!({})).await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text);
    let redirect = out.body["redirect"].as_str().unwrap();
    assert!(
        redirect.starts_with(&format!("{issuer}/oauth2/end_session?")),
        "{redirect}"
    );
    assert_eq!(
        query_param(redirect, "post_logout_redirect_uri"),
        Some(format!("{}/login", gw.url))
    );
    assert_eq!(api.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);

    gw.stop().await;
}
both_backends!(signs_in_with_a_real_provider_and_roles_follow_groups);

/// A name that is already a local user's is not merged with the provider's person: refused
/// with a page that says to ask an admin, and audited. An email outside the allowed domains
/// is refused too. Neither leaves a sign-in cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_name_and_a_foreign_domain_are_refused() {
    let provider = MockProvider::start().await;
    let issuer = provider.issuer.clone();
    let gw = gateway::start(Backend::Sqlite, |c| {
        let mut oidc = oidc::oidc_config(&issuer);
        oidc.allowed_email_domains = vec!["example.com".into()];
        c.auth.oidc = Some(oidc);
    })
    .await;
    gw.user("root", &[Role::Admin]).await;

    provider
        .set_user(
            "imposter",
            json!({"preferred_username": "root", "email": "root@example.com"}),
        )
        .await;
    let (callback, _) = Browser::new().sign_in(&gw, "imposter", "/targets").await;
    assert_eq!(callback.status, StatusCode::FORBIDDEN);
    assert!(
        callback.body.contains("already belongs to another account"),
        "{}",
        callback.body
    );
    assert!(
        callback.body.contains("ask an administrator"),
        "{}",
        callback.body
    );
    assert!(oidc::set_cookie(&callback.headers, "porthole_session").is_none());

    provider
        .set_user(
            "eve",
            json!({"preferred_username": "eve", "email": "eve@elsewhere.test"}),
        )
        .await;
    let (callback, _) = Browser::new().sign_in(&gw, "eve", "/targets").await;
    assert_eq!(callback.status, StatusCode::FORBIDDEN);
    assert!(
        callback
            .body
            .contains("eve@elsewhere.test may not sign in here"),
        "{}",
        callback.body
    );
    assert!(oidc::set_cookie(&callback.headers, "porthole_session").is_none());

    let failed = failures(&gw, 2).await;
    assert_eq!(
        failed,
        [
            (
                "root".to_owned(),
                "name belongs to another account".to_owned()
            ),
            ("-".to_owned(), "email domain not allowed".to_owned()),
        ]
    );
    // The local root is untouched and still signs in with a password.
    let mut api = Api::new(&gw);
    api.login("root").await;
    gw.stop().await;
}

/// The tokens no real provider issues, each refused with its page and its reason; and the
/// provider down at discovery and at the token exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_broken_answers_are_refused_each_with_its_reason() {
    let forger = Forger::start().await;
    let issuer = forger.issuer.clone();
    let gw = gateway::start(Backend::Sqlite, |c| {
        c.auth.oidc = Some(oidc::oidc_config(&issuer))
    })
    .await;

    // One sign-in attempt: start at the gateway, let `spoil` make the token from good claims,
    // come back with the code. The callback's answer.
    async fn attempt(
        gw: &Gateway,
        forger: &Forger,
        spoil: impl FnOnce(serde_json::Value) -> String,
    ) -> oidc::Step {
        let mut browser = Browser::new();
        let start = browser.start(gw, "/targets").await;
        assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
        let url = start.location();
        let nonce = query_param(&url, "nonce").unwrap();
        let state = query_param(&url, "state").unwrap();
        forger.answer(spoil(oidc::claims(&forger.issuer, &nonce)));
        browser
            .callback(&format!(
                "{}/auth/oidc/callback?code=c0de&state={state}",
                gw.url
            ))
            .await
    }

    // A good token first: the forger is a working provider.
    let ok = attempt(&gw, &forger, |c| oidc::sign(&c, "a", oidc::KEY_A)).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let discovered = std::time::Instant::now();

    let cases: Vec<(&str, Spoil, &str)> = vec![
        (
            "expired",
            Box::new(|mut c| {
                c["exp"] = json!(c["iat"].as_u64().unwrap() - 600);
                c["iat"] = json!(c["iat"].as_u64().unwrap() - 900);
                oidc::sign(&c, "a", oidc::KEY_A)
            }),
            "expired",
        ),
        (
            "wrong audience",
            Box::new(|mut c| {
                c["aud"] = json!("another-app");
                oidc::sign(&c, "a", oidc::KEY_A)
            }),
            "wrong audience",
        ),
        (
            "nonce mismatch",
            Box::new(|mut c| {
                c["nonce"] = json!("not-the-nonce-we-sent");
                oidc::sign(&c, "a", oidc::KEY_A)
            }),
            "nonce mismatch",
        ),
        (
            "wrong issuer",
            Box::new(|mut c| {
                c["iss"] = json!("https://evil.example");
                oidc::sign(&c, "a", oidc::KEY_A)
            }),
            "wrong issuer",
        ),
        (
            "bad signature",
            Box::new(|c| oidc::sign(&c, "a", oidc::KEY_B)),
            "bad signature",
        ),
        (
            "unknown key",
            Box::new(|c| oidc::sign(&c, "b", oidc::KEY_B)),
            "unknown signing key",
        ),
        (
            "alg none",
            Box::new(|c| oidc::unsigned(&c)),
            "unsigned token",
        ),
    ];
    let mut expected = Vec::new();
    for (name, spoil, why) in cases {
        let answer = attempt(&gw, &forger, spoil).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{name}: {}",
            answer.body
        );
        assert!(
            answer.body.contains("failed a security check"),
            "{name}: {}",
            answer.body
        );
        assert!(
            answer.body.contains("Start again"),
            "{name}: {}",
            answer.body
        );
        assert!(
            oidc::set_cookie(&answer.headers, "porthole_session").is_none(),
            "{name}"
        );
        expected.push(why.to_owned());
    }

    // State: another browser's answer, and an answer with no sign-in started.
    let mut browser = Browser::new();
    let start = browser.start(&gw, "/targets").await;
    let nonce = query_param(&start.location(), "nonce").unwrap();
    let state = query_param(&start.location(), "state").unwrap();
    forger.answer(oidc::sign(&oidc::claims(&issuer, &nonce), "a", oidc::KEY_A));
    let wrong_state = browser
        .callback(&format!(
            "{}/auth/oidc/callback?code=c0de&state=someone-elses",
            gw.url
        ))
        .await;
    assert_eq!(wrong_state.status, StatusCode::BAD_REQUEST);
    assert!(
        wrong_state.body.contains("state mismatch"),
        "{}",
        wrong_state.body
    );
    expected.push("state mismatch".into());
    let no_flow = Browser::new()
        .callback(&format!("{}/auth/oidc/callback?code=c0de&state=x", gw.url))
        .await;
    assert_eq!(no_flow.status, StatusCode::BAD_REQUEST);
    assert!(
        no_flow
            .body
            .contains("expired or was started in another browser"),
        "{}",
        no_flow.body
    );
    expected.push("no sign-in in progress".into());
    // The provider sent the person back with an error (its state checked first: another
    // browser's "error" says nothing).
    let declined = browser
        .callback(&format!(
            "{}/auth/oidc/callback?error=access_denied&error_description=User+said+no&state={state}",
            gw.url
        ))
        .await;
    assert_eq!(declined.status, StatusCode::BAD_REQUEST);
    assert!(
        declined.body.contains("access_denied: User said no"),
        "{}",
        declined.body
    );
    expected.push("provider refused".into());

    // Key rotation: the provider starts signing with a key published after discovery; the
    // gateway fetches the keys again (not more often than every 10 s) and accepts it.
    forger.publish("b", oidc::KEY_B_XY);
    let wait = Duration::from_secs(11).saturating_sub(discovered.elapsed());
    tokio::time::sleep(wait).await;
    let rotated = attempt(&gw, &forger, |c| oidc::sign(&c, "b", oidc::KEY_B)).await;
    assert_eq!(rotated.status, StatusCode::SEE_OTHER, "{}", rotated.body);

    // The provider goes away after discovery: the token exchange fails, with a 502 page.
    let mut browser = Browser::new();
    let start = browser.start(&gw, "/targets").await;
    let state = query_param(&start.location(), "state").unwrap();
    drop(forger);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let down = browser
        .callback(&format!(
            "{}/auth/oidc/callback?code=c0de&state={state}",
            gw.url
        ))
        .await;
    assert_eq!(down.status, StatusCode::BAD_GATEWAY, "{}", down.body);
    assert!(
        down.body.contains("could not be reached (token exchange)"),
        "{}",
        down.body
    );
    expected.push("provider unreachable".into());

    let failed = failures(&gw, expected.len()).await;
    let reasons: Vec<String> = failed.into_iter().map(|(_, why)| why).collect();
    assert_eq!(reasons, expected);
    // No page showed a token or a trace.
    let audit = porthole::gateway::store::audit::list(&gw.state.engine.db, None)
        .await
        .unwrap();
    assert!(
        audit.iter().all(|e| !e.detail.to_string().contains("eyJ")),
        "no token in the log"
    );
    gw.stop().await;
}

/// Makes an ID token from good claims, spoiling one thing.
type Spoil = Box<dyn FnOnce(serde_json::Value) -> String>;

/// Behind https the flow cookie is `__Host-` (Secure, `Path=/`, no `Domain`): no sibling
/// subdomain can plant a flow of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_https_the_flow_cookie_is_host_only() {
    let forger = Forger::start().await;
    let issuer = forger.issuer.clone();
    let gw = gateway::start(Backend::Sqlite, |c| {
        c.server.public_url = "https://porthole.example.com".into();
        c.auth.oidc = Some(oidc::oidc_config(&issuer));
    })
    .await;
    let start = Browser::new().start(&gw, "/targets").await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    let cookie = start
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .next()
        .unwrap();
    assert!(cookie.starts_with("__Host-porthole_oidc_flow="), "{cookie}");
    assert!(
        cookie.contains("; Path=/;") && cookie.contains("; Secure"),
        "{cookie}"
    );
    assert!(!cookie.contains("Domain"), "{cookie}");
    assert_eq!(
        query_param(&start.location(), "redirect_uri").as_deref(),
        Some("https://porthole.example.com/auth/oidc/callback")
    );
    gw.stop().await;
}

/// A provider that is down when the first sign-in starts: a 502 page that says so, audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_down_at_discovery_gets_a_page_not_a_trace() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let gw = gateway::start(Backend::Sqlite, |c| {
        c.auth.oidc = Some(oidc::oidc_config(&issuer))
    })
    .await;
    let start = Browser::new().start(&gw, "/targets").await;
    assert_eq!(start.status, StatusCode::BAD_GATEWAY);
    assert!(
        start.body.contains("could not be reached (discovery)"),
        "{}",
        start.body
    );
    assert!(start.body.contains("Start again"), "{}", start.body);
    let failed = failures(&gw, 1).await;
    assert_eq!(
        failed,
        [("-".to_owned(), "provider unreachable".to_owned())]
    );
    gw.stop().await;
}

/// `auth.local = false`: the password form is gone from the page and refused by the API,
/// except for the break-glass names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_sign_in_off_leaves_only_break_glass() {
    let provider = MockProvider::start().await;
    let issuer = provider.issuer.clone();
    let gw = gateway::start(Backend::Sqlite, |c| {
        c.auth.oidc = Some(oidc::oidc_config(&issuer));
        c.auth.local = false;
        c.auth.local_break_glass = vec!["breakglass".into()];
    })
    .await;
    gw.user("bob", &[Role::Operator]).await;
    gw.user("breakglass", &[Role::Admin]).await;

    let page = reqwest::get(format!("{}/login", gw.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Sign in with Example SSO"), "{page}");
    assert!(page.contains("Break-glass sign-in"), "{page}");

    let mut api = Api::new(&gw);
    let refused = api.login_as("bob", gateway::PASSWORD).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(refused.code(), "local_sign_in_disabled");
    assert!(
        refused.message().contains("Sign in with Example SSO"),
        "{}",
        refused.text
    );
    api.login("breakglass").await;
    let failed = failures(&gw, 1).await;
    assert_eq!(
        failed,
        [("bob".to_owned(), "password sign-in turned off".to_owned())]
    );
    gw.stop().await;
}

/// The sign-in cookie is `SameSite=Lax` now, so another site's requests carry it: the CSRF
/// token and the Origin check still refuse a cross-site POST and a cross-site WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lax_cookie_still_refuses_cross_site_writes_and_sockets() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let mut api = Api::new(&gw);
    let reply = api.login_as("alice", gateway::PASSWORD).await;
    let cookie = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("porthole_session="))
        .unwrap();
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    let id = api.open(NODE, "INC-7 cross-site check").await;

    // Another site's page posts with the cookie (Lax sends it on top-level POST navigations
    // only, but assume the worst): no CSRF token, a foreign Origin.
    let mut evil = api.clone();
    evil.origin = Some("https://evil.example".into());
    let post = evil
        .post(
            "/api/v1/sessions",
            &json!({"target": NODE, "reason": "INC-8 evil"}),
        )
        .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN, "{}", post.text);
    let mut no_csrf = api.clone();
    no_csrf.csrf = None;
    let post = no_csrf
        .post(
            "/api/v1/sessions",
            &json!({"target": NODE, "reason": "INC-8 evil"}),
        )
        .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN, "{}", post.text);
    match evil.attach(&id).await {
        Err((status, _)) => assert_eq!(status, 403),
        Ok(_) => panic!("a cross-site WebSocket was let in"),
    }
    // Lax sends the cookie on another site's top-level navigation: the API refuses what the
    // browser says comes from elsewhere, GETs that write audit rows included; pages answer.
    let cookie_header = format!("porthole_session={}", api.cookie.clone().unwrap());
    let http = reqwest::Client::new();
    for (path, site, status) in [
        (
            "/api/v1/recordings/search?q=secret",
            "cross-site",
            StatusCode::FORBIDDEN,
        ),
        ("/api/v1/me", "same-site", StatusCode::FORBIDDEN),
        ("/api/v1/me", "same-origin", StatusCode::OK),
        ("/api/v1/me", "none", StatusCode::OK),
        ("/sessions", "cross-site", StatusCode::OK),
    ] {
        let answer = http
            .get(format!("{}{path}", gw.url))
            .header("cookie", &cookie_header)
            .header("sec-fetch-site", site)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{path} from {site}");
        if status == StatusCode::FORBIDDEN {
            let body: serde_json::Value = answer.json().await.unwrap();
            assert_eq!(body["error"]["code"], "cross_site");
        }
    }
    let searches = porthole::gateway::store::audit::list(&gw.state.engine.db, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "recording.search")
        .count();
    assert_eq!(searches, 0, "no search was made in alice's name");
    gw.stop().await;
}

/// Headers mode: `X-Forwarded-User` and friends are believed from a trusted proxy only. From
/// the trusted peer the person is signed in with roles from their groups; from another peer
/// the headers are ignored (the sign-in page is shown) and the attempt is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_headers_are_believed_from_trusted_proxies_only() {
    let gw = gateway::start(Backend::Sqlite, |c| {
        c.server.trusted_proxies = vec!["127.0.0.2".into()];
        c.auth.proxy = Some(
            toml::from_str(
                "mode = \"headers\"\n[[role_mapping]]\ngroup = \"sre\"\nroles = [\"operator\"]\n",
            )
            .unwrap(),
        );
    })
    .await;
    let login = |client: reqwest::Client| {
        let url = format!("{}/login?next=/sessions", gw.url);
        async move {
            client
                .get(url)
                .header("x-forwarded-user", "Carol")
                .header("x-forwarded-email", "carol@example.com")
                .header("x-forwarded-groups", "staff, sre")
                .header("x-forwarded-for", "198.51.100.7")
                .send()
                .await
                .unwrap()
        }
    };

    // From the proxy.
    let answer = login(oidc::client_from("127.0.0.2")).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(answer.headers()["location"], "/sessions");
    let cookie = oidc::set_cookie(answer.headers(), "porthole_session").unwrap();
    let mut api = Api::new(&gw);
    api.cookie = Some(cookie);
    let me = api.get("/api/v1/me").await;
    assert_eq!(
        me.body["user"],
        json!({"name": "carol", "roles": ["operator"]})
    );
    let event = wait_for_event(&gw.state.engine.db, None, "login").await;
    assert_eq!(event.detail["method"], "proxy");
    assert_eq!(event.detail["groups"], json!(["staff", "sre"]));
    assert_eq!(
        event.client_addr, "198.51.100.7",
        "the address the proxy reports"
    );

    // Just signed out, the proxy still sends its headers: the page says so and offers to sign
    // in again, rather than undoing the sign-out.
    let after = oidc::client_from("127.0.0.2")
        .get(format!("{}/login?signed_out=1&next=/sessions", gw.url))
        .header("x-forwarded-user", "Carol")
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::OK);
    assert!(oidc::set_cookie(after.headers(), "porthole_session").is_none());
    let page = after.text().await.unwrap();
    assert!(page.contains("You are signed out of Porthole."), "{page}");
    assert!(
        page.contains("href=\"/login?next=/sessions\">Sign in again</a>"),
        "{page}"
    );

    // From anyone else: the page, no cookie, a spoof attempt in the log.
    let answer = login(oidc::client_from("127.0.0.1")).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(oidc::set_cookie(answer.headers(), "porthole_session").is_none());
    assert!(answer.text().await.unwrap().contains("id=\"login-form\""));
    let failed = failures(&gw, 1).await;
    assert_eq!(
        failed,
        [(
            "carol".to_owned(),
            "proxy headers from an untrusted peer".to_owned()
        )]
    );
    gw.stop().await;
}

/// ALB mode: the load balancer's `x-amzn-oidc-data` (ES256, padded as the load balancer sends
/// it) signs the person in; a signer that is not ours, another key, or an expired token is
/// refused with a page and an audit row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancers_signed_header_signs_in_and_forgeries_do_not() {
    const ARN: &str = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/porthole/50dc6c495c0c9188";
    let keys = oidc::KeyServer::start().await;
    let key_url = format!("{}/{{kid}}", keys.url);
    let gw = gateway::start(Backend::Sqlite, |c| {
        c.auth.proxy = Some(
            toml::from_str(&format!(
                "mode = \"aws_alb\"\nalb_key_url = \"{key_url}\"\nalb_signer_arns = [\"{ARN}\"]\n\
                 [[role_mapping]]\ngroup = \"sre\"\nroles = [\"operator\"]\n"
            ))
            .unwrap(),
        );
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = |signer: &str| {
        json!({"alg": "ES256", "kid": "key-a", "signer": signer,
               "iss": "https://idp.example.com", "client": "abc", "exp": now + 120})
    };
    let claims = json!({"sub": "dave-sub", "email": "dave@example.com", "name": "Dave",
                        "groups": ["sre"], "exp": now + 120, "iss": "https://idp.example.com"});
    let login = |data: String| {
        let url = format!("{}/login?next=/targets", gw.url);
        async move {
            oidc::client_from("127.0.0.1")
                .get(url)
                .header("x-amzn-oidc-data", data)
                .send()
                .await
                .unwrap()
        }
    };

    let good = oidc::alb_token(&header(ARN), &claims, oidc::KEY_A);
    assert!(
        good.contains('='),
        "padded as the load balancer pads: {good}"
    );
    let answer = login(good).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let mut api = Api::new(&gw);
    api.cookie = oidc::set_cookie(answer.headers(), "porthole_session");
    let me = api.get("/api/v1/me").await;
    assert_eq!(
        me.body["user"],
        json!({"name": "dave@example.com", "roles": ["operator"]})
    );

    let other_lb = ARN.replace("porthole", "someone-else");
    let mut expired = claims.clone();
    expired["exp"] = json!(now - 600);
    for (name, data, says) in [
        (
            "another load balancer",
            oidc::alb_token(&header(&other_lb), &claims, oidc::KEY_A),
            "is not an allowed load balancer",
        ),
        (
            "another key",
            oidc::alb_token(&header(ARN), &claims, oidc::KEY_B),
            "bad signature",
        ),
        (
            "expired",
            oidc::alb_token(&header(ARN), &expired, oidc::KEY_A),
            "expired",
        ),
    ] {
        let answer = login(data).await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{name}");
        assert!(
            oidc::set_cookie(answer.headers(), "porthole_session").is_none(),
            "{name}"
        );
        let body = answer.text().await.unwrap();
        assert!(body.contains("failed a check"), "{name}: {body}");
        let last = audit_failures_detail(&gw).await;
        assert!(last.contains(says), "{name}: {last}");
    }
    gw.stop().await;
}

/// The detail of the latest `login.failed`.
async fn audit_failures_detail(gw: &Gateway) -> String {
    porthole::gateway::store::audit::list(&gw.state.engine.db, None)
        .await
        .unwrap()
        .into_iter()
        .rfind(|e| e.kind == "login.failed")
        .map(|e| e.detail.to_string())
        .unwrap_or_default()
}
