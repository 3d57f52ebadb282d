#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Browser tests: Debian's Chromium, headless, driving the real pages of a real gateway in front
//! of the emulator (both in this process). The assets come from `web/dist`, which
//! `scripts/web-build` makes (scripts/test runs it first).
//!
//! Also, without a browser: what the pages and assets answer over plain HTTP (redirects,
//! content types, cache headers).

#[path = "common/browser.rs"]
mod browser;
mod common;

use fantoccini::Locator;
use fantoccini::key::Key;
use porthole::gateway::identity::users::Role;
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION};

use browser::Browser;
use common::gateway::{self, Backend, Gateway, PASSWORD};

/// The emulator's default online node.
const NODE: &str = "i-0a1b2c3d4e5f60001";
const NODE_NAME: &str = "web-1";
/// A reason with markup in it: the pages must show it as text.
const REASON: &str = "INC-4242 <b>check</b> disk & logs on web-1";

fn enter() -> String {
    char::from(Key::Enter).to_string()
}

/// A client that does not follow redirects.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Fails with a clear message when the web build has not run.
async fn assert_assets_built(gw: &Gateway) {
    let response = http()
        .get(format!("{}/assets/vendor/xterm/xterm.mjs", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the browser assets are missing: run scripts/web-build (it fills web/dist)"
    );
}

/// Whether a screen line looks like a shell prompt (`…$` or `…#`).
fn has_prompt(screen: &str) -> bool {
    screen.lines().any(|line| {
        let line = line.trim_end();
        line.ends_with('$') || line.ends_with('#')
    })
}

/// The terminal's size as the page shows it (columns, rows).
async fn term_size(b: &Browser) -> (u64, u64) {
    let size = b
        .js(
            "const e = document.getElementById('term-size'); \
             return [Number(e.dataset.cols), Number(e.dataset.rows)];",
            vec![],
        )
        .await;
    (size[0].as_u64().unwrap(), size[1].as_u64().unwrap())
}

/// From the targets page: picks `NODE` (through the filter), gives `reason`, and waits for the
/// terminal page to be connected. Returns the session id.
async fn open_session(b: &Browser, gw: &Gateway, reason: &str) -> String {
    b.client.goto(&format!("{}/targets", gw.url)).await.unwrap();
    let row = format!("tr[data-target='{NODE}']");
    b.wait_for_shown(&row).await;
    b.fill("#filter", NODE_NAME).await;
    b.click(&format!("{row} button.connect")).await;
    b.wait_for_shown("#reason-dialog").await;
    b.fill("#reason", reason).await;
    b.click("#reason-submit").await;
    let id = b
        .wait_for("the terminal page", || async {
            let url = b.client.current_url().await.ok()?;
            let id = url.path().strip_prefix("/sessions/")?;
            (!id.is_empty()).then(|| id.to_owned())
        })
        .await;
    b.wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_opens_a_shell_in_the_browser() {
    // One live session per user, so that the page can be shown the API refusing a second.
    let gw = gateway::start(Backend::Sqlite, |config| config.sessions.max_per_user = 1).await;
    gw.user("alice", &[Role::Operator]).await;
    assert_assets_built(&gw).await;
    let b = Browser::start().await;

    // Signed out, a page sends the browser to the sign-in page, which comes back to it.
    b.client.goto(&format!("{}/targets", gw.url)).await.unwrap();
    let query = b.wait_for_path("/login").await;
    assert_eq!(query.as_deref(), Some("next=/targets"));
    b.wait_for("the sign-in form to be ready", || async {
        let button = b.client.find(Locator::Css("#login-submit")).await.ok()?;
        button.is_enabled().await.ok()?.then_some(())
    })
    .await;
    b.fill("#username", "alice").await;
    b.fill("#password", "not the password").await;
    b.click("#login-submit").await;
    b.wait_for_text("#login-error", "Wrong user name or password")
        .await;
    b.fill("#password", PASSWORD).await;
    b.click("#login-submit").await;
    b.wait_for_path("/targets").await;
    assert_eq!(
        b.client
            .find(Locator::Css("#user-name"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "alice"
    );

    // The nodes, and the filter.
    let row = format!("tr[data-target='{NODE}']");
    b.wait_for_shown(&row).await;
    let visible_rows = "return Array.from(document.querySelectorAll('#targets tr[data-target]'))\
        .filter((tr) => !tr.hidden).map((tr) => tr.dataset.target);";
    let all = b.js(visible_rows, vec![]).await;
    assert_eq!(all.as_array().unwrap().len(), 4, "{all}");
    b.fill("#filter", "team=data db").await;
    let some = b.js(visible_rows, vec![]).await;
    assert_eq!(some, serde_json::json!(["i-0a1b2c3d4e5f60002"]));
    b.fill("#filter", NODE_NAME).await;
    let one = b.js(visible_rows, vec![]).await;
    assert_eq!(one, serde_json::json!([NODE]));

    // The reason prompt: too short is refused on the page, a good one opens the session.
    b.click(&format!("{row} button.connect")).await;
    b.wait_for_shown("#reason-dialog").await;
    b.wait_for_text("#reason-dialog h2", NODE_NAME).await;
    b.fill("#reason", "too short").await;
    b.click("#reason-submit").await;
    b.wait_for_text("#reason-error", "at least 10 characters")
        .await;
    assert_eq!(b.path().await, "/targets");
    b.screenshot("targets.png").await;
    b.fill("#reason", REASON).await;
    b.click("#reason-submit").await;
    let id = b
        .wait_for("the terminal page", || async {
            let url = b.client.current_url().await.ok()?;
            Some(url.path().strip_prefix("/sessions/")?.to_owned())
        })
        .await;

    // The terminal: connected, a prompt, the status bar.
    b.wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    b.wait_for_screen("a shell prompt", has_prompt).await;
    let status = b.wait_for_text(".statusbar", NODE_NAME).await;
    assert!(status.contains(NODE), "{status}");
    assert!(status.contains(REASON), "the reason, as text: {status}");
    b.wait_for("the elapsed time", || async {
        let text = b
            .client
            .find(Locator::Css("#elapsed"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains(':').then_some(())
    })
    .await;

    // Typing reaches the shell and its output reaches the screen (the marker is computed by
    // the shell, so the echo of the typed line does not count).
    b.type_in_terminal(&format!("echo MARK-$((6*7))-END{}", enter()))
        .await;
    b.wait_for_screen("the echoed marker", |s| s.contains("MARK-42-END"))
        .await;

    // The shell's size follows the page's, before and after the window changes size.
    let (cols, rows) = term_size(&b).await;
    assert!(cols > 40 && rows > 10, "{cols}x{rows}");
    b.type_in_terminal(&format!("echo SIZE=$(stty size)={}", enter()))
        .await;
    let first = format!("SIZE={rows} {cols}=");
    b.wait_for_screen(&first, |s| s.contains(&first)).await;
    b.client.set_window_size(820, 560).await.unwrap();
    let (new_cols, new_rows) = b
        .wait_for("the terminal to fit the smaller window", || async {
            let size = term_size(&b).await;
            (size.0 < cols && size.1 < rows).then_some(size)
        })
        .await;
    b.type_in_terminal(&format!("echo SIZE=$(stty size)={}", enter()))
        .await;
    let second = format!("SIZE={new_rows} {new_cols}=");
    b.wait_for_screen(&second, |s| s.contains(&second)).await;

    let shot = b.screenshot("terminal.png").await;
    println!("browser test screenshot: {}", shot.display());

    // Leaving the shell ends the session, and the page says so.
    b.type_in_terminal(&format!("exit{}", enter())).await;
    b.wait_for_attr("#conn-state", "data-state", "ended").await;
    let banner = b.wait_for_text("#banner", "The session has ended").await;
    assert!(banner.contains("the shell exited"), "{banner}");
    let row = porthole::gateway::store::sessions::load(&gw.state.engine.db, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, "ended");
    assert_eq!(row.reason, REASON);

    // The sessions page: the reason as text (escaped, no markup), the state.
    b.client
        .goto(&format!("{}/sessions", gw.url))
        .await
        .unwrap();
    let tr = format!("tr[data-session-id='{id}']");
    let reason = b
        .wait_for_text(&format!("{tr} td.reason"), "INC-4242")
        .await;
    assert_eq!(reason, REASON);
    let markup = b
        .client
        .find_all(Locator::Css(&format!("{tr} td.reason b")))
        .await
        .unwrap();
    assert!(markup.is_empty(), "the reason's <b> became an element");
    b.wait_for_text(&format!("{tr} td.state"), "ended").await;

    // A second session; a third is refused by the API (the limit), and the prompt says why.
    let second_id = open_session(&b, &gw, "INC-4243 second look at the disk").await;
    b.client.goto(&format!("{}/targets", gw.url)).await.unwrap();
    let row = format!("tr[data-target='{NODE}']");
    b.wait_for_shown(&row).await;
    b.click(&format!("{row} button.connect")).await;
    b.wait_for_shown("#reason-dialog").await;
    b.fill("#reason", "INC-4244 a third shell, one too many")
        .await;
    b.click("#reason-submit").await;
    b.wait_for_text("#reason-error", "the limit is 1").await;
    assert_eq!(b.path().await, "/targets");

    // The second session, ended from the sessions page's terminate button.
    b.client
        .goto(&format!("{}/sessions", gw.url))
        .await
        .unwrap();
    let tr = format!("tr[data-session-id='{second_id}']");
    b.wait_for_text(&format!("{tr} td.state"), "live").await;
    assert!(
        b.client
            .find(Locator::Css(&format!(
                "{tr} a[href='/sessions/{second_id}']"
            )))
            .await
            .is_ok(),
        "a live session links to its terminal"
    );
    b.click(&format!("{tr} button.terminate")).await;
    b.accept_confirm().await;
    b.wait_for_text(&format!("{tr} td.state"), "ended").await;
    b.wait_for_text(&format!("{tr} td.ended"), "terminated by alice")
        .await;
    b.screenshot("sessions.png").await;

    // Signing out: back to the sign-in page, and the pages want a sign-in again.
    b.click("#sign-out").await;
    b.wait_for_path("/login").await;
    b.wait_for_text("#signed-out", "You are signed out of Porthole.")
        .await;
    b.client
        .goto(&format!("{}/sessions/{id}", gw.url))
        .await
        .unwrap();
    let query = b.wait_for_path("/login").await;
    assert_eq!(query, Some(format!("next=/sessions/{id}")));

    b.close().await;
    gw.stop().await;
}

/// Every line of the terminal's normal buffer (its scrollback and rows, not the alternate
/// screen), read through xterm.js's buffer API (terminal.js exposes the terminal).
async fn normal_buffer(b: &Browser) -> Vec<String> {
    let lines = b
        .js(
            "const buffer = window.portholeTerm.buffer.normal; const lines = []; \
             for (let i = 0; i < buffer.length; i++) \
               lines.push(buffer.getLine(i).translateToString(true)); \
             return lines;",
            vec![],
        )
        .await;
    lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect()
}

/// The value the shell printed as `NAME=value=` (the `=` after it tells the typed command line,
/// `echo NAME=$…=`, from the output).
fn printed(screen: &str, name: &str) -> Option<String> {
    screen.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(&format!("{name}="))?;
        let value = rest.strip_suffix('=')?;
        (!value.is_empty() && value.bytes().all(|c| c.is_ascii_digit())).then(|| value.to_owned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_brings_back_the_same_shell_with_its_screen() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("carol", &[Role::Operator]).await;
    assert_assets_built(&gw).await;
    let b = Browser::start().await;
    b.sign_in(&gw.url, "carol", PASSWORD).await;
    let id = open_session(&b, &gw, "INC-4250 edit the notes, then reload").await;
    b.wait_for_screen("a shell prompt", has_prompt).await;

    // Before the reload: the shell's pid, a marker, enough lines to push the marker into the
    // scrollback, then vim with a line typed in it.
    b.type_in_terminal(&format!("echo PID=$$={}", enter()))
        .await;
    let screen = b
        .wait_for_screen("the shell's pid", |s| printed(s, "PID").is_some())
        .await;
    let pid = printed(&screen, "PID").unwrap();
    b.type_in_terminal(&format!("echo MARK-$((6*7))-BEFORE{}", enter()))
        .await;
    b.wait_for_screen("the marker", |s| s.contains("MARK-42-BEFORE"))
        .await;
    b.type_in_terminal(&format!("seq 1 80{}", enter())).await;
    b.wait_for_screen("the last number", |s| s.lines().any(|l| l.trim() == "80"))
        .await;
    b.type_in_terminal(&format!("vim -u NONE -N notes.txt{}", enter()))
        .await;
    b.wait_for_screen("vim", |s| s.contains("notes.txt") && s.contains("\n~"))
        .await;
    b.type_in_terminal(&format!("iHELLO-FROM-VIM{}", char::from(Key::Escape)))
        .await;
    b.wait_for_screen("the typed line in vim", |s| {
        s.contains("HELLO-FROM-VIM") && !s.contains("-- INSERT --")
    })
    .await;

    // The reload: the same session, vim's screen without typing anything, connected.
    b.client.refresh().await.unwrap();
    assert_eq!(b.path().await, format!("/sessions/{id}"));
    b.wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    let restored = b
        .wait_for_screen("vim's screen, restored", |s| {
            s.contains("HELLO-FROM-VIM") && s.lines().filter(|l| l.trim_end() == "~").count() >= 5
        })
        .await;
    assert!(
        b.js("return window.portholeTerm.buffer.active.type;", vec![])
            .await
            == "alternate",
        "vim has the alternate screen again"
    );
    let live = gw
        .state
        .engine
        .live
        .get(&id)
        .expect("the session is still live");
    let model = live.screen_text().await.unwrap();
    let trimmed = |text: &str| -> Vec<String> {
        let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_owned()).collect();
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        lines
    };
    assert_eq!(
        trimmed(&restored),
        trimmed(&model),
        "the page shows the gateway's model of the screen"
    );
    let shot = b.screenshot("reload-vim.png").await;
    println!("browser test screenshot: {}", shot.display());

    // Leaving vim: the shell, with what was typed before the reload in its scrollback, once.
    b.type_in_terminal(&format!(":q!{}", enter())).await;
    b.wait_for("the normal screen", || async {
        let kind = b
            .js("return window.portholeTerm.buffer.active.type;", vec![])
            .await;
        (kind == "normal").then_some(())
    })
    .await;
    let lines = normal_buffer(&b).await;
    let text = lines.join("\n");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.trim() == "MARK-42-BEFORE")
            .count(),
        1,
        "the marker, once:\n{text}"
    );
    let numbers: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_digit()))
        .collect();
    let expected: Vec<String> = (1..=80).map(|n| n.to_string()).collect();
    assert_eq!(numbers, expected, "seq's output, in order, once:\n{text}");
    assert_eq!(
        printed(&text, "PID").as_deref(),
        Some(pid.as_str()),
        "{text}"
    );

    // The same shell (its pid), and it still runs commands.
    b.type_in_terminal(&format!("echo AFTER-$((1+1)) PID=$$={}", enter()))
        .await;
    let screen = b
        .wait_for_screen("the command after the reload", |s| {
            s.lines().any(|l| l.trim().starts_with("AFTER-2 PID="))
        })
        .await;
    let after = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("AFTER-2 "))
        .unwrap();
    assert_eq!(after, format!("PID={pid}="), "the same shell:\n{screen}");
    let row = porthole::gateway::store::sessions::load(&gw.state.engine.db, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, "active");
    assert_eq!(b.path().await, format!("/sessions/{id}"));

    // A flood of output: the tab stays responsive and Ctrl-C stops it. Far more than the page
    // could draw in the time the test takes, so it really is stopped. The interrupt flushes
    // what the page was not yet sent (the data-channel client's queues and the agent's send
    // window hold a megabyte or more) and the screen is redrawn from the terminal model, so
    // only the gateway's window beyond what the page drew (256 KiB) is still drawn. From
    // Ctrl-C to the next command's output in a debug build: about a second on the machine of
    // session 3 (4.5–7.4 s before the flush, docs/performance.md); 2.6 s on session 4's
    // machine when idle (3.0–3.6 s for the commit before), 4.8 s while the whole suite ran.
    // The time is printed; the bound only says the flood did stop (left alone, `seq` would
    // print for minutes) and leaves room for a busy machine.
    b.type_in_terminal(&format!("seq 1 50000000{}", enter()))
        .await;
    b.wait_for_screen("seq's output", |s| {
        s.lines()
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .any(|n| n > 1000)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let asked = std::time::Instant::now();
    b.js("return 1;", vec![]).await;
    let script = asked.elapsed();
    println!("a script during the flood: {script:?}");
    assert!(
        script < std::time::Duration::from_secs(1),
        "a script took {script:?} during the flood"
    );
    let pressed = std::time::Instant::now();
    b.type_in_terminal(&format!(
        "{}c{}",
        char::from(Key::Control),
        char::from(Key::Null)
    ))
    .await;
    b.type_in_terminal(&format!("echo INT-$((3+4))-DONE{}", enter()))
        .await;
    let screen = b
        .wait_for_screen("the prompt after Ctrl-C", |s| {
            s.lines().any(|l| l.trim() == "INT-7-DONE")
        })
        .await;
    let stopped = pressed.elapsed();
    println!("Ctrl-C to the prompt: {stopped:?}");
    assert!(
        stopped < std::time::Duration::from_secs(10),
        "Ctrl-C took {stopped:?} to stop the flood"
    );
    assert!(!screen.contains("50000000"), "seq finished:\n{screen}");
    assert!(has_prompt(&screen), "{screen}");

    b.close().await;
    gw.stop().await;
}

#[tokio::test]
async fn pages_and_assets_over_http() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("bob", &[Role::Operator]).await;
    assert_assets_built(&gw).await;
    let client = http();
    let get = |path: &str| client.get(format!("{}{path}", gw.url)).send();

    // Signed out: `/` and the pages go to the sign-in page, which remembers where to return.
    let root = get("/").await.unwrap();
    assert_eq!(root.status(), StatusCode::SEE_OTHER);
    assert_eq!(root.headers()[LOCATION], "/login");
    let page = get("/sessions/some-id?x=1").await.unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        page.headers()[LOCATION],
        "/login?next=/sessions/some-id%3Fx%3D1"
    );
    let login = get("/login?next=//evil.example/").await.unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    assert_eq!(login.headers()[CACHE_CONTROL], "no-store");
    let html = login.text().await.unwrap();
    assert!(html.contains(r#"data-next="/targets""#), "{html}");
    assert!(!html.contains("evil.example"), "{html}");
    assert!(!html.contains("csrf-token"), "no token before sign-in");

    // Signed in: the pages, with the CSRF token in a meta tag and no inline script.
    let cookie = client
        .post(format!("{}/api/v1/auth/login", gw.url))
        .header("origin", gw.origin())
        .json(&serde_json::json!({"username": "bob", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(cookie.status(), StatusCode::OK);
    let set_cookie = cookie.headers()["set-cookie"].to_str().unwrap().to_owned();
    let session_cookie = set_cookie.split(';').next().unwrap().to_owned();
    let csrf = cookie.json::<serde_json::Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let signed_get = |path: &str| {
        client
            .get(format!("{}{path}", gw.url))
            .header("cookie", &session_cookie)
            .send()
    };
    let root = signed_get("/").await.unwrap();
    assert_eq!(root.headers()[LOCATION], "/targets");
    let login = signed_get("/login?next=/sessions").await.unwrap();
    assert_eq!(login.headers()[LOCATION], "/sessions");
    for path in ["/targets", "/sessions", "/sessions?state=active"] {
        let page = signed_get(path).await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        assert_eq!(page.headers()[CACHE_CONTROL], "no-store", "{path}");
        assert!(
            page.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        let html = page.text().await.unwrap();
        assert!(
            html.contains(&format!(r#"<meta name="csrf-token" content="{csrf}">"#)),
            "{path}: {html}"
        );
        assert!(!html.contains("<script>"), "{path}: inline script");
        assert!(!html.contains(" onclick="), "{path}: inline handler");
    }
    let missing = signed_get("/sessions/no-such-session").await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(
        missing.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    // Assets: JavaScript modules as JavaScript, an ETag to revalidate with.
    for (path, kind) in [
        (
            "/assets/vendor/xterm/xterm.mjs",
            "text/javascript; charset=utf-8",
        ),
        (
            "/assets/vendor/xterm/addon-fit.mjs",
            "text/javascript; charset=utf-8",
        ),
        ("/assets/vendor/xterm/xterm.css", "text/css; charset=utf-8"),
        ("/assets/terminal.js", "text/javascript; charset=utf-8"),
        ("/assets/porthole.css", "text/css; charset=utf-8"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let asset = get(path).await.unwrap();
        assert_eq!(asset.status(), StatusCode::OK, "{path}");
        assert_eq!(asset.headers()[CONTENT_TYPE], kind, "{path}");
        assert_eq!(asset.headers()[CACHE_CONTROL], "no-cache", "{path}");
        let etag = asset.headers()[ETAG].clone();
        let again = client
            .get(format!("{}{path}", gw.url))
            .header(IF_NONE_MATCH, etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    for path in [
        "/assets/nope.js",
        "/assets/../Cargo.toml",
        "/assets/vendor/%2e%2e/%2e%2e/Cargo.toml",
        "/assets/.hidden",
    ] {
        let asset = get(path).await.unwrap();
        assert_eq!(asset.status(), StatusCode::NOT_FOUND, "{path}");
    }
    gw.stop().await;
}

/// Several accounts (issue 15): the targets page shows each node's account, and says which
/// account could not be listed and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_targets_page_shows_accounts_and_the_unavailable_one() {
    use porthole::emulator::nodes::Node;
    use porthole::gateway::config::AccountConfig;
    const STAGING_ROLE: &str = "arn:aws:iam::222222222222:role/PortholeGateway";
    let gw = gateway::start_with(
        Backend::Sqlite,
        |e| {
            e.nodes
                .push(Node::new("i-0000000000000a001", "prod-web").in_account("111111111111"));
            e.sts.deny_roles = vec![STAGING_ROLE.into()];
        },
        |c| {
            c.aws.accounts = vec![
                AccountConfig {
                    name: "prod".into(),
                    role_arn: "arn:aws:iam::111111111111:role/PortholeGateway".into(),
                    external_id: None,
                    regions: None,
                },
                AccountConfig {
                    name: "staging".into(),
                    role_arn: STAGING_ROLE.into(),
                    external_id: None,
                    regions: None,
                },
            ];
        },
    )
    .await;
    gw.user("alice", &[Role::Operator]).await;
    assert_assets_built(&gw).await;
    let b = Browser::start().await;
    b.sign_in(&gw.url, "alice", PASSWORD).await;
    b.wait_for_shown("tr[data-target='i-0000000000000a001']")
        .await;
    let account = b
        .client
        .find(Locator::Css(
            "tr[data-target='i-0000000000000a001'] td.account",
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(account, "prod");
    b.wait_for_shown("#targets th.account").await;
    let notice = b
        .wait_for_text(
            "#targets-unavailable",
            "account staging, us-east-1: AssumeRole was refused by AWS (AccessDenied)",
        )
        .await;
    assert!(!notice.contains("222222222222"), "{notice}");
    b.close().await;
    gw.stop().await;
}
