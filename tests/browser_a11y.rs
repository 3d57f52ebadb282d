#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Browser tests of every page at a phone's size and a desktop's (Debian's Chromium, headless,
//! through chromedriver, in front of a real gateway and the emulator): the page never scrolls
//! sideways, no table hides its columns behind a sideways scroll, every button and button-like
//! link is on the screen and at least 24×24 px, the top bar's links are reachable (behind the
//! menu button on a phone), the dialog fits; by keyboard, the first Tab reaches the skip link
//! and it moves focus to the main content; the reason error is tied to its box; a disabled
//! Connect says why in text; and axe-core (web/node_modules, from npm; injected by the test,
//! never served) finds nothing serious or critical, colour contrast included. The terminal
//! page's parts are checked opened, the same way: the tab strip with three tabs, Settings, Find,
//! Files, Share, the paste and close-tab questions, the key bar on a touch screen (and the Live
//! page's "Shared with you"), each on the screen with its controls at least 24×24 px; the light
//! theme once. Screenshots of each page at each size are kept as artefacts
//! (tests/common/browser.rs, `artefact_dir`).

#[path = "common/browser.rs"]
#[allow(dead_code)] // shared with tests/browser.rs, which uses all of it
mod browser;
mod common;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use porthole::gateway::http::attach::CLOSE_SESSION_ENDED;
use porthole::gateway::identity::users::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use browser::Browser;
use common::api::Api;
use common::emulator::NODE;
use common::gateway::{self, Gateway, PASSWORD};

/// The emulator's offline node (ConnectionLost).
const OFFLINE: &str = "i-0a1b2c3d4e5f60004";
/// Printed by the recorded session: what the search page looks for.
const MARK: &str = "A11Y-42-MARK";

/// The sizes: a small phone, the phone of the issue, a desktop.
const SIZES: [(u32, u32); 3] = [(360, 780), (390, 844), (1280, 800)];

/// axe-core's browser build, from npm (`scripts/web-build` runs `npm ci` in web/).
fn axe_source() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/web/node_modules/axe-core/axe.min.js"
    );
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("{path}: {e}; run scripts/web-build (it installs web/package.json's axe-core)")
    })
}

/// What is wrong with the layout of the page as shown: sideways scrolling (of the page or a
/// table), actions off the screen, clipped by a box or smaller than 24×24 px. Empty: nothing.
const LAYOUT_PROBLEMS: &str = r#"
const vw = window.innerWidth;
const problems = [];
const page = document.scrollingElement;
if (page.scrollWidth > vw) problems.push(`the page scrolls sideways: ${page.scrollWidth} > ${vw}`);
for (const wrap of document.querySelectorAll('.table-wrap')) {
  if (wrap.scrollWidth > wrap.clientWidth + 1) {
    problems.push(`a table scrolls sideways: ${wrap.scrollWidth} > ${wrap.clientWidth}`);
  }
}
const name = (el) => `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${[...el.classList].join('.')} "${(el.textContent || el.value || '').trim().slice(0, 30)}"`;
const actions = document.querySelectorAll(
  'main button, main a.button, main td.actions a, main select, main summary, dialog[open] button, #topbar a, #topbar button');
let checked = 0;
for (const el of actions) {
  if (el.closest('.xterm') || !el.getClientRects().length) continue;
  const style = getComputedStyle(el);
  if (style.visibility === 'hidden') continue;
  checked += 1;
  const r = el.getBoundingClientRect();
  if (r.left < -0.5 || r.right > vw + 0.5) problems.push(`${name(el)} is off the screen: ${Math.round(r.left)}..${Math.round(r.right)} of ${vw}`);
  if (r.width < 24 || r.height < 24) problems.push(`${name(el)} is ${r.width.toFixed(1)}×${r.height.toFixed(1)} px`);
  for (let box = el.parentElement; box && box !== document.body; box = box.parentElement) {
    const s = getComputedStyle(box);
    const clipsX = s.overflowX !== 'visible';
    const clipsY = s.overflowY === 'hidden' || s.overflowY === 'clip';
    if (!clipsX && !clipsY) continue;
    const b = box.getBoundingClientRect();
    if (clipsX && (r.left < b.left - 0.5 || r.right > b.right + 0.5)) problems.push(`${name(el)} is cut off sideways by ${name(box)}`);
    if (clipsY && (r.top < b.top - 0.5 || r.bottom > b.bottom + 0.5)) problems.push(`${name(el)} is cut off by ${name(box)}`);
  }
}
return { problems, checked, width: vw, height: page.scrollHeight };
"#;

/// The visible state of the element matching arguments[0]: on the screen (both ways), its size.
const ON_SCREEN: &str = r#"
const el = document.querySelector(arguments[0]);
if (!el || !el.getClientRects().length) return null;
const r = el.getBoundingClientRect();
return { inside: r.left >= -0.5 && r.right <= innerWidth + 0.5 && r.top >= -0.5 && r.bottom <= innerHeight + 0.5,
         width: r.width, height: r.height };
"#;

struct Pages {
    b: Browser,
    url: String,
    axe: String,
    /// (page, width, problems) for every page and size.
    failures: Vec<String>,
}

impl Pages {
    async fn size(&self, width: u32, height: u32) {
        // The size asked for is the viewport's: the window is made taller by what the
        // browser's own frame takes.
        self.b.client.set_window_size(width, height).await.unwrap();
        let frame = height - self.inner().await.1;
        self.b
            .client
            .set_window_size(width, height + frame)
            .await
            .unwrap();
        assert_eq!(
            self.inner().await,
            (width, height),
            "the viewport is the size asked for"
        );
    }

    /// The viewport's width and height.
    async fn inner(&self) -> (u32, u32) {
        let size = self
            .b
            .js("return [window.innerWidth, window.innerHeight];", vec![])
            .await;
        let n = |i: usize| u32::try_from(size[i].as_u64().unwrap()).unwrap();
        (n(0), n(1))
    }

    /// Checks the page as it is now at `width`: the layout, axe-core, a screenshot.
    async fn check(&mut self, page: &str, width: u32, height: u32) {
        let report = self.b.js(LAYOUT_PROBLEMS, vec![]).await;
        for problem in report["problems"].as_array().unwrap() {
            self.failures.push(format!(
                "{page} at {width} px: {}",
                problem.as_str().unwrap()
            ));
        }
        println!(
            "{page} at {width}×{height}: {} actions checked, page {} px tall",
            report["checked"], report["height"]
        );
        for violation in self.axe().await {
            self.failures
                .push(format!("{page} at {width} px: axe-core: {violation}"));
        }
        let name = format!("a11y-{page}-{width}x{height}.png");
        self.b.screenshot(&name).await;
    }

    /// axe-core's serious and critical violations on the page, one line each.
    async fn axe(&self) -> Vec<String> {
        let loaded = self
            .b
            .js("return typeof window.axe === 'object';", vec![])
            .await;
        if loaded != json!(true) {
            self.b
                .js(&format!("{}\nreturn null;", self.axe), vec![])
                .await;
        }
        let found = self
            .b
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1]; \
                 axe.run(document, { resultTypes: ['violations'] }).then((r) => done( \
                   r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical') \
                     .map((v) => `${v.id} (${v.impact}): ${v.help}: ` + v.nodes.slice(0, 4) \
                       .map((n) => n.target.join(' ') + ' ' + (n.failureSummary || '').replace(/\\s+/g, ' ')) \
                       .join(' | ')))).catch((e) => done([`axe failed: ${e}`]));",
                vec![],
            )
            .await
            .unwrap();
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    async fn goto(&self, path: &str) {
        self.b
            .client
            .goto(&format!("{}{path}", self.url))
            .await
            .unwrap();
    }

    /// Presses a key (down and up) wherever the focus is.
    async fn press(&self, key: Key) {
        let k = char::from(key);
        let keys = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down { value: k })
            .then(KeyAction::Up { value: k });
        self.b.client.perform_actions(keys).await.unwrap();
    }

    /// The first Tab on a freshly loaded page reaches the skip link, shown on the screen; Enter
    /// moves the focus to the main content (`main_id`).
    async fn skip_link_first(&mut self, page: &str, width: u32, main_id: &str) {
        self.press(Key::Tab).await;
        let focused = self.b.js("return document.activeElement.id;", vec![]).await;
        if focused != json!("skip-link") {
            self.failures.push(format!(
                "{page} at {width} px: the first Tab reached {focused}, not the skip link"
            ));
            return;
        }
        let shown = self.b.js(ON_SCREEN, vec![json!("#skip-link")]).await;
        if shown["inside"] != json!(true) {
            self.failures.push(format!(
                "{page} at {width} px: the focused skip link is not on the screen: {shown}"
            ));
        }
        self.press(Key::Enter).await;
        let focused = self.b.js("return document.activeElement.id;", vec![]).await;
        if focused != json!(main_id) {
            self.failures.push(format!(
                "{page} at {width} px: the skip link moved the focus to {focused}, not #{main_id}"
            ));
        }
    }

    /// Tabs through the page (up to `stops` times): every element that takes the focus shows a
    /// ring (an outline or a box shadow) and is on the screen once focused.
    async fn focus_rings(&mut self, page: &str, width: u32, stops: usize) {
        for _ in 0..stops {
            self.press(Key::Tab).await;
            let seen = self
                .b
                .js(
                    "const el = document.activeElement; \
                     if (!el || el === document.body) return null; \
                     const s = getComputedStyle(el); const r = el.getBoundingClientRect(); \
                     return { what: `${el.tagName.toLowerCase()}#${el.id}.${el.className}`, \
                              ring: (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none', \
                              inside: r.right > 0 && r.left < innerWidth && r.bottom > 0 && r.top < innerHeight };",
                    vec![],
                )
                .await;
            if seen.is_null() {
                break;
            }
            if seen["ring"] != json!(true) || seen["inside"] != json!(true) {
                self.failures.push(format!(
                    "{page} at {width} px: focus on {} is not visible: {seen}",
                    seen["what"]
                ));
            }
        }
    }

    /// The top bar: on a phone its links sit behind the menu button (aria-expanded false, then
    /// true once pressed from the keyboard); either way each link is on the screen and large
    /// enough.
    async fn top_bar(&mut self, width: u32, height: u32) {
        let menu = self.b.js(ON_SCREEN, vec![json!("#menu-button")]).await;
        if !menu.is_null() {
            assert!(
                width < 800,
                "the menu button shows on a phone only ({width} px)"
            );
            let expanded = self
                .b
                .js(
                    "return document.getElementById('menu-button').getAttribute('aria-expanded');",
                    vec![],
                )
                .await;
            assert_eq!(expanded, json!("false"));
            let signout = self.b.js(ON_SCREEN, vec![json!("#sign-out")]).await;
            assert!(signout.is_null(), "folded away until the menu is opened");
            // From the keyboard: the skip link, the brand, then the menu button.
            self.b
                .js(
                    "document.getElementById('menu-button').focus(); return null;",
                    vec![],
                )
                .await;
            self.press(Key::Enter).await;
            let expanded = self
                .b
                .js(
                    "return document.getElementById('menu-button').getAttribute('aria-expanded');",
                    vec![],
                )
                .await;
            assert_eq!(expanded, json!("true"), "Enter opens the menu");
        } else {
            assert!(width >= 800, "a phone gets the menu button ({width} px)");
        }
        let links = self
            .b
            .js(
                "return Array.from(document.querySelectorAll('#topbar nav a:not([hidden]), #sign-out'), \
                 (a) => a.id || a.getAttribute('href'));",
                vec![],
            )
            .await;
        let links: Vec<String> = links
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        for want in [
            "/targets",
            "/sessions",
            "/search",
            "/live",
            "/audit",
            "sign-out",
        ] {
            assert!(links.contains(&want.to_owned()), "{want} in {links:?}");
        }
        for link in &links {
            let css = if link == "sign-out" {
                "#sign-out".to_owned()
            } else {
                format!("#topbar nav a[href='{link}']")
            };
            let shown = self.b.js(ON_SCREEN, vec![json!(css)]).await;
            if shown.is_null()
                || shown["inside"] != json!(true)
                || shown["width"].as_f64().unwrap() < 24.0
                || shown["height"].as_f64().unwrap() < 24.0
            {
                self.failures
                    .push(format!("the top bar at {width} px: {css}: {shown}"));
            }
        }
        if !menu.is_null() {
            self.check("topbar-menu", width, height).await;
            self.press(Key::Escape).await;
            let expanded = self
                .b
                .js(
                    "return document.getElementById('menu-button').getAttribute('aria-expanded');",
                    vec![],
                )
                .await;
            assert_eq!(expanded, json!("false"), "Escape folds the menu");
        }
    }
}

/// Runs a session of `user` through the API that prints [`MARK`] and ends. Returns its id.
async fn recorded_session(gw: &Gateway, user: &str) -> String {
    let mut api = Api::new(gw);
    api.login(user).await;
    let id = api
        .open(NODE, "INC-7100 print a line for the recording")
        .await;
    let mut term = api.attach(&id).await.unwrap();
    term.type_text("echo A11Y-$((6*7))-MARK\n").await;
    term.expect(MARK).await;
    term.type_text("exit\n").await;
    let (code, _) = term.closed().await;
    assert_eq!(code, CLOSE_SESSION_ENDED);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_fits_a_phone_and_a_desktop_and_works_by_keyboard() {
    let gw = gateway::start(gateway::Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    gw.user("root", &[Role::Admin]).await;
    let css = reqwest::get(format!("{}/assets/porthole.css", gw.url))
        .await
        .unwrap();
    assert_eq!(css.status(), StatusCode::OK, "run scripts/web-build");
    assert!(
        css.text().await.unwrap().contains(".menu-button"),
        "web/dist is older than web/static: run scripts/web-build"
    );
    let axe = reqwest::get(format!("{}/assets/vendor/axe-core/axe.min.js", gw.url))
        .await
        .unwrap();
    assert_eq!(
        axe.status(),
        StatusCode::NOT_FOUND,
        "axe-core is for the tests only: it does not ship"
    );

    // Something on every page: an ended, recorded session (player, search, audit), a live
    // attached one of alice's (live page, with Observe and Terminate), one of root's (terminal).
    let ended = recorded_session(&gw, "alice").await;
    let mut alice = Api::new(&gw);
    alice.login("alice").await;
    let live = alice
        .open(NODE, "INC-7101 a long-running job on web-1, watched")
        .await;
    let mut term = alice.attach(&live).await.unwrap();
    term.type_text("echo still here\n").await;
    term.expect("still here").await;
    let mut root = Api::new(&gw);
    root.login("root").await;
    let mine = root
        .open(NODE, "INC-7102 the terminal page at every size")
        .await;

    let mut p = Pages {
        b: Browser::start().await,
        url: gw.url.clone(),
        axe: axe_source(),
        failures: Vec::new(),
    };

    // Signed out: the sign-in page (its box has autofocus: Shift+Tab goes back up to the skip
    // link, through the brand link).
    for (w, h) in SIZES {
        p.size(w, h).await;
        p.goto("/login?next=/targets").await;
        p.b.wait_for_shown("#login-submit").await;
        p.check("login", w, h).await;
        let focused = p.b.js("return document.activeElement.id;", vec![]).await;
        assert_eq!(focused, json!("username"));
        let back = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down {
                value: char::from(Key::Shift),
            })
            .then(KeyAction::Down {
                value: char::from(Key::Tab),
            })
            .then(KeyAction::Up {
                value: char::from(Key::Tab),
            })
            .then(KeyAction::Down {
                value: char::from(Key::Tab),
            })
            .then(KeyAction::Up {
                value: char::from(Key::Tab),
            })
            .then(KeyAction::Up {
                value: char::from(Key::Shift),
            });
        p.b.client.perform_actions(back).await.unwrap();
        let focused = p.b.js("return document.activeElement.id;", vec![]).await;
        assert_eq!(focused, json!("skip-link"), "login at {w} px");
    }
    p.size(1280, 800).await;
    p.b.sign_in(&gw.url, "root", PASSWORD).await;

    for (w, h) in SIZES {
        p.size(w, h).await;

        // The targets page, its top bar, the offline node's Connect, the reason dialog.
        p.goto("/targets").await;
        let row = format!("tr[data-target='{NODE}']");
        p.b.wait_for_shown(&format!("{row} button.connect")).await;
        p.skip_link_first("targets", w, "main").await;
        p.check("targets", w, h).await;
        p.goto("/targets").await;
        p.b.wait_for_shown(&format!("{row} button.connect")).await;
        p.focus_rings("targets", w, 14).await;
        p.top_bar(w, h).await;

        let offline = p
            .b
            .js(
                "const b = document.querySelector(`tr[data-target='${arguments[0]}'] button.connect`); \
                 const note = document.getElementById(b.getAttribute('aria-describedby') || ''); \
                 return { disabled: b.disabled, note: note && note.getClientRects().length ? note.textContent : null };",
                vec![json!(OFFLINE)],
            )
            .await;
        assert_eq!(offline["disabled"], json!(true), "{offline}");
        let note = offline["note"].as_str().unwrap_or_default();
        assert!(
            note.contains("ConnectionLost") && note.contains("not connected"),
            "a disabled Connect says why, in text on the page: {offline}"
        );

        p.b.click(&format!("{row} button.connect")).await;
        p.b.wait_for_shown("#reason-dialog").await;
        p.b.fill("#reason", "too short").await;
        p.b.click("#reason-submit").await;
        p.b.wait_for_shown("#reason-error").await;
        let wiring =
            p.b.js(
                "const r = document.getElementById('reason'); \
                 return { invalid: r.getAttribute('aria-invalid'), \
                          described: (r.getAttribute('aria-describedby') || '').split(' '), \
                          error: document.getElementById('reason-error').textContent, \
                          focused: document.activeElement === r };",
                vec![],
            )
            .await;
        assert_eq!(wiring["invalid"], json!("true"), "{wiring}");
        assert!(
            wiring["described"]
                .as_array()
                .unwrap()
                .contains(&json!("reason-error")),
            "{wiring}"
        );
        assert!(
            wiring["error"].as_str().unwrap().contains("at least 10"),
            "{wiring}"
        );
        assert_eq!(wiring["focused"], json!(true), "{wiring}");
        for css in [
            "#reason-dialog",
            "#reason-submit",
            "#reason-cancel",
            "#reason",
        ] {
            let shown = p.b.js(ON_SCREEN, vec![json!(css)]).await;
            assert_eq!(shown["inside"], json!(true), "{css} at {w} px: {shown}");
        }
        p.check("reason-dialog", w, h).await;
        p.b.fill("#reason", "INC-7103 long enough now").await;
        let cleared =
            p.b.js(
                "return document.getElementById('reason').getAttribute('aria-invalid');",
                vec![],
            )
            .await;
        assert_eq!(cleared, Value::Null, "a good reason clears aria-invalid");
        p.b.click("#reason-cancel").await;

        // The lists.
        p.goto("/live").await;
        p.b.wait_for_shown(&format!(
            "#live tr[data-session-id='{live}'] button.terminate"
        ))
        .await;
        p.skip_link_first("live", w, "main").await;
        p.check("live", w, h).await;

        p.goto("/sessions").await;
        p.b.wait_for_shown(&format!("#sessions tr[data-session-id='{ended}']"))
            .await;
        p.skip_link_first("sessions", w, "main").await;
        p.focus_rings("sessions", w, 10).await;
        p.check("sessions", w, h).await;

        p.goto("/audit").await;
        p.b.wait_for_shown("#audit tr[data-type='session.start'] td.detail dl.kv")
            .await;
        p.skip_link_first("audit", w, "main").await;
        p.check("audit", w, h).await;
        let detail = p
            .b
            .js(
                "const td = document.querySelector(\"#audit tr[data-type='session.start'] td.detail\"); \
                 return { width: td.getBoundingClientRect().width, \
                          keys: Array.from(td.querySelectorAll('dt'), (dt) => dt.textContent), \
                          code: td.querySelectorAll('code').length };",
                vec![],
            )
            .await;
        assert!(
            detail["width"].as_f64().unwrap() >= 200.0,
            "the detail is readable at {w} px: {detail}"
        );
        assert!(!detail["keys"].as_array().unwrap().is_empty(), "{detail}");
        assert_eq!(detail["code"], json!(0), "no raw JSON: {detail}");

        p.goto(&format!("/search?q={MARK}")).await;
        p.b.wait_for_shown(&format!("#search-results tr[data-session-id='{ended}']"))
            .await;
        p.skip_link_first("search", w, "main").await;
        p.check("search", w, h).await;

        p.goto("/requests").await;
        p.b.wait_for("the requests list", || async {
            let done =
                p.b.js(
                    "return !document.querySelector('#requests tr.placeholder');",
                    vec![],
                )
                .await;
            (done == json!(true)).then_some(())
        })
        .await;
        p.skip_link_first("requests", w, "main").await;
        p.check("requests", w, h).await;

        p.goto(&format!("/sessions/{ended}/play")).await;
        p.b.wait_for_shown("#player .ap-player").await;
        p.skip_link_first("player", w, "main").await;
        p.check("player", w, h).await;

        // The terminal: the status bar's connection state and End session on the screen. The
        // terminal takes the focus once connected (Tab then belongs to the shell): the skip
        // link is checked from the top of the page before that.
        p.goto(&format!("/sessions/{mine}")).await;
        p.b.wait_for_attr("#conn-state", "data-state", "connected")
            .await;
        for css in ["#conn-state", "#terminate", "#settings-open", "#find-open"] {
            let shown = p.b.js(ON_SCREEN, vec![json!(css)]).await;
            assert_eq!(shown["inside"], json!(true), "{css} at {w} px: {shown}");
        }
        let heading =
            p.b.js(
                "return Array.from(document.querySelectorAll('h1'), (h) => h.textContent);",
                vec![],
            )
            .await;
        assert_eq!(heading, json!(["Shell on web-1"]));
        let roles =
            p.b.js(
                "const t = document.getElementById('terminal'); \
                 return [t.getAttribute('role'), t.getAttribute('aria-label')];",
                vec![],
            )
            .await;
        assert_eq!(roles, json!(["region", "Terminal"]));
        p.check("terminal", w, h).await;
        p.b.js(
            "document.activeElement.blur(); document.getElementById('skip-link').focus(); return null;",
            vec![],
        )
        .await;
        p.press(Key::Enter).await;
        let focused = p.b.js("return document.activeElement.id;", vec![]).await;
        assert_eq!(focused, json!("session"), "terminal at {w} px");
    }

    // Screen reader mode (a setting of the person's): xterm.js's screenReaderMode on the
    // terminal page, and the player's page adds what the session printed as plain text.
    let saved = root
        .send(
            reqwest::Method::PUT,
            "/api/v1/me/settings",
            Some(br#"{"screen_reader": true}"#),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    p.size(390, 844).await;
    p.goto(&format!("/sessions/{ended}/play")).await;
    p.b.wait_for_attr("#playback", "data-transcript", "shown")
        .await;
    let text = p.b.wait_for_text("#transcript-text", MARK).await;
    assert!(!text.contains('\u{1b}'), "no escape sequences: {text:?}");
    p.check("player-screen-reader", 390, 844).await;
    p.goto(&format!("/sessions/{mine}")).await;
    p.b.wait_for_attr("#session", "data-settings", "applied")
        .await;
    let mode =
        p.b.js(
            "return window.portholeTerm.options.screenReaderMode;",
            vec![],
        )
        .await;
    assert_eq!(mode, json!(true));
    p.b.wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    p.check("terminal-screen-reader", 390, 844).await;

    assert!(
        p.failures.is_empty(),
        "{} problems (screenshots in {}):\n{}",
        p.failures.len(),
        browser::artefact_dir().display(),
        p.failures.join("\n")
    );
    drop(term);
    p.b.close().await;
    gw.stop().await;
}

/// `prod` reaches web-1 with a yes from `leads`; `leads` decide.
const POLICY: &str = r#"
[[roles]]
name = "prod"
targets = [{ ids = ["i-0a1b2c3d4e5f60001"] }]
[roles.approval]
required = true
approvers = ["leads"]
grant_seconds = 3600

[[roles]]
name = "leads"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requests_page_with_requests_to_decide_fits_a_phone_and_a_desktop() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, POLICY).unwrap();
    let gw = gateway::start(gateway::Backend::Sqlite, |c| {
        c.policy.file = Some(file.clone());
    })
    .await;
    gw.user("alice", &[Role::parse("prod").unwrap()]).await;
    gw.user("bob", &[Role::parse("leads").unwrap()]).await;
    let mut alice = Api::new(&gw);
    alice.login("alice").await;
    let asked = alice
        .post(
            "/api/v1/requests",
            &json!({"target": NODE, "reason": "INC-7104 disk full on web-1, cleaning up", "duration_seconds": 1800}),
        )
        .await;
    assert_eq!(asked.status, StatusCode::CREATED, "{}", asked.text);

    let mut p = Pages {
        b: Browser::start().await,
        url: gw.url.clone(),
        axe: axe_source(),
        failures: Vec::new(),
    };
    p.b.sign_in(&gw.url, "bob", PASSWORD).await;
    for (w, h) in SIZES {
        p.size(w, h).await;
        p.goto("/requests").await;
        p.b.wait_for_shown("#requests td.decide button.approve")
            .await;
        p.skip_link_first("requests-to-decide", w, "main").await;
        p.check("requests-to-decide", w, h).await;
    }
    assert!(
        p.failures.is_empty(),
        "{} problems (screenshots in {}):\n{}",
        p.failures.len(),
        browser::artefact_dir().display(),
        p.failures.join("\n")
    );
    p.b.close().await;
    gw.stop().await;
}

/// What is wrong with the opened part matching arguments[0] (a panel, a bar, a dialog): any of
/// it off the screen, and each of its controls off the screen or smaller than 24×24 px (a
/// checkbox counts with its label, which takes the tap). Empty: nothing.
const OPENED_PROBLEMS: &str = r#"
const part = document.querySelector(arguments[0]);
if (!part || !part.getClientRects().length) return [`${arguments[0]} is not shown`];
const vw = innerWidth, vh = innerHeight;
const problems = [];
const off = (r) => r.left < -0.5 || r.right > vw + 0.5 || r.top < -0.5 || r.bottom > vh + 0.5;
const at = (r) => `${Math.round(r.left)},${Math.round(r.top)}..${Math.round(r.right)},${Math.round(r.bottom)} of ${vw}×${vh}`;
const box = part.getBoundingClientRect();
if (off(box)) problems.push(`${arguments[0]} is (partly) off the screen: ${at(box)}`);
if (part.scrollWidth > part.clientWidth + 1) problems.push(`${arguments[0]} scrolls sideways: ${part.scrollWidth} > ${part.clientWidth}`);
if (document.scrollingElement.scrollWidth > vw) problems.push(`the page scrolls sideways: ${document.scrollingElement.scrollWidth} > ${vw}`);
let checked = 0;
for (const el of part.querySelectorAll('button, a[href], select, input, textarea, summary')) {
  if (!el.getClientRects().length || getComputedStyle(el).visibility === 'hidden') continue;
  if (el.classList.contains('visually-hidden')) continue;
  const target = ['checkbox', 'radio'].includes(el.type) ? (el.closest('label') ?? el) : el;
  const r = target.getBoundingClientRect();
  const what = `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} "${(el.textContent || el.getAttribute('aria-label') || '').trim().slice(0, 20)}"`;
  checked += 1;
  if (off(r)) problems.push(`${what} is off the screen: ${at(r)}`);
  if (r.width < 24 || r.height < 24) problems.push(`${what} is ${r.width.toFixed(1)}×${r.height.toFixed(1)} px`);
}
if (checked === 0) problems.push(`${arguments[0]} has no controls shown`);
return problems;
"#;

/// The terminal page's opening parts: sessions in tabs, Share, Files, Settings.
const PANELS_POLICY: &str = r#"
[[roles]]
name = "movers"
targets = [{ ids = ["*"] }]
file_transfer = "both"
join_others = true
"#;

impl Pages {
    /// Checks the part `css` the page has just opened, as the user sees it at `width`: on the
    /// screen, its controls on the screen and large enough, and the whole page (layout, axe).
    async fn opened(&mut self, page: &str, css: &str, width: u32, height: u32) {
        self.b.wait_for_shown(css).await;
        let problems = self.b.js(OPENED_PROBLEMS, vec![json!(css)]).await;
        for problem in problems.as_array().unwrap() {
            self.failures.push(format!(
                "{page} at {width} px: {}",
                problem.as_str().unwrap()
            ));
        }
        self.check(page, width, height).await;
    }
}

/// Sizes for the terminal's parts: the small phone, the phone of the issue, a desktop.
const PANEL_SIZES: [(u32, u32); 3] = [(360, 740), (390, 844), (1280, 800)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_pages_panels_and_dialogs_fit_a_phone_and_a_desktop() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, PANELS_POLICY).unwrap();
    let gw = gateway::start(gateway::Backend::Sqlite, |c| {
        c.policy.file = Some(file.clone());
    })
    .await;
    gw.user("alice", &[Role::parse("movers").unwrap()]).await;
    gw.user("bob", &[Role::parse("movers").unwrap()]).await;
    let mut alice = Api::new(&gw);
    alice.login("alice").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            alice
                .open(
                    NODE,
                    &format!("INC-7110 tab {n} of the terminal at every size"),
                )
                .await,
        );
    }
    let invited = alice
        .post(
            &format!("/api/v1/sessions/{}/participants", ids[0]),
            &json!({"user": "bob", "mode": "write"}),
        )
        .await;
    assert!(invited.status.is_success(), "{}", invited.text);

    let mut p = Pages {
        b: Browser::start().await,
        url: gw.url.clone(),
        axe: axe_source(),
        failures: Vec::new(),
    };
    p.b.sign_in(&gw.url, "alice", PASSWORD).await;
    let page = format!("/sessions/{}?tabs={},{}", ids[0], ids[1], ids[2]);
    for (w, h) in PANEL_SIZES {
        p.size(w, h).await;
        p.goto(&page).await;
        p.b.wait_for_attr("#session", "data-tabs", "3").await;
        p.b.wait_for_attr("#conn-state", "data-state", "connected")
            .await;
        p.b.wait_for_attr("#session", "data-settings", "applied")
            .await;

        // The tab strip with three tabs: every tab and its close button on the screen.
        p.opened("tab-strip", "#tab-strip", w, h).await;

        p.b.click("#settings-open").await;
        p.opened("settings-panel", "#settings-panel", w, h).await;
        p.b.click("#settings-close").await;

        p.b.click("#find-open").await;
        p.opened("find-bar", "#find-bar", w, h).await;
        p.b.click("#find-close").await;

        p.b.click("#files-open").await;
        p.opened("files-panel", "#files-panel", w, h).await;
        p.b.click("#files-close").await;

        p.b.click("#share-open").await;
        p.b.wait_for_text("#share-list", "bob").await;
        p.opened("share-dialog", "#share-dialog", w, h).await;
        p.b.click("#share-close").await;

        // A paste of several lines asks first (when the program has not turned bracketed
        // paste on: the shell is told not to).
        p.b.type_in_terminal(&format!(
            "bind 'set enable-bracketed-paste off'{}",
            char::from(Key::Enter)
        ))
        .await;
        p.b.wait_for("bracketed paste off", || async {
            let on =
                p.b.js(
                    "return window.portholeTerm.modes.bracketedPasteMode;",
                    vec![],
                )
                .await;
            (on == json!(false)).then_some(())
        })
        .await;
        p.b.js(
            "const data = new DataTransfer(); data.setData('text/plain', arguments[0]); \
             document.querySelector('textarea.xterm-helper-textarea').dispatchEvent( \
               new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));",
            vec![json!(
                "echo one with a rather long line that has to wrap on a phone's narrow screen\n\
                 echo two\necho three\necho four\necho five\necho six\n"
            )],
        )
        .await;
        p.opened("paste-dialog", "#paste-dialog", w, h).await;
        p.b.click("#paste-cancel").await;

        // Closing a tab asks: detach or end.
        p.b.click(&format!(".tab[data-session='{}'] .tab-close", ids[2]))
            .await;
        p.opened("close-dialog", "#close-dialog", w, h).await;
        p.b.click("#close-cancel").await;
        p.b.wait_for("the close dialog to close", || async {
            let open =
                p.b.js(
                    "return document.getElementById('close-dialog').open;",
                    vec![],
                )
                .await;
            (open == json!(false)).then_some(())
        })
        .await;

        // The key bar, on a touch screen (Chromium's touch emulation; the default `auto`).
        p.b.cdp(
            "Emulation.setTouchEmulationEnabled",
            json!({"enabled": true, "maxTouchPoints": 5}),
        )
        .await
        .unwrap();
        p.b.client.refresh().await.unwrap();
        p.b.wait_for_attr("#conn-state", "data-state", "connected")
            .await;
        p.opened("key-bar", "#key-bar", w, h).await;
        p.b.cdp(
            "Emulation.setTouchEmulationEnabled",
            json!({"enabled": false}),
        )
        .await
        .unwrap();
    }

    // The light theme, once, with its settings panel open: axe-core on its colours.
    let light = alice
        .send(
            reqwest::Method::PUT,
            "/api/v1/me/settings",
            Some(br#"{"theme": "light"}"#),
        )
        .await;
    assert_eq!(light.status, StatusCode::OK, "{}", light.text);
    p.size(1280, 800).await;
    p.goto(&page).await;
    p.b.wait_for_attr("#session", "data-theme", "light").await;
    p.b.wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    p.b.click("#settings-open").await;
    p.opened("settings-panel-light", "#settings-panel", 1280, 800)
        .await;
    p.b.click("#files-open").await;
    p.opened("files-panel-light", "#files-panel", 1280, 800)
        .await;
    p.b.close().await;

    // The colleague's Live page: the sessions shared with them.
    let mut p = Pages {
        b: Browser::start().await,
        url: gw.url.clone(),
        axe: p.axe,
        failures: p.failures,
    };
    p.b.sign_in(&gw.url, "bob", PASSWORD).await;
    for (w, h) in PANEL_SIZES {
        p.size(w, h).await;
        p.goto("/live").await;
        p.b.wait_for_shown(&format!("#shared tr[data-session-id='{}'] a.join", ids[0]))
            .await;
        p.opened("live-shared", ".table-wrap:has(#shared)", w, h)
            .await;
    }

    assert!(
        p.failures.is_empty(),
        "{} problems (screenshots in {}):\n{}",
        p.failures.len(),
        browser::artefact_dir().display(),
        p.failures.join("\n")
    );
    p.b.close().await;
    gw.stop().await;
}
