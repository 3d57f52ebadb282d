#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Browser tests of the terminal page's tabs, its way out for the keyboard and its fonts
//! (Debian's Chromium, headless, in front of a real gateway and the emulator's real shells):
//! - several sessions in one page, each in its own tab: typed into separately, a hidden tab
//!   keeps receiving (more than the gateway's flow window, so only if it acknowledges) and
//!   shows it when shown again, the first tab's screen intact; closing tabs (end, detach);
//! - two browser tabs on two sessions that never disturb each other;
//! - Ctrl+Shift+L leaves the terminal (in the page and in a tab's frame), while Tab still
//!   reaches the shell (read back with `od`);
//! - the shipped font (JetBrains Mono and the Nerd Font symbols) chosen in the settings, with
//!   box-drawing lines and CJK wide characters lining up in the terminal's cells.
//!
//! Screenshots are kept in the browser artefacts folder. The assets come from `web/dist`
//! (`scripts/web-build`).

#[path = "common/browser.rs"]
#[allow(dead_code)] // shared with tests/browser.rs, which uses all of it
mod browser;
mod common;

use fantoccini::Locator;
use fantoccini::key::Key;
use porthole::gateway::identity::users::Role;
use serde_json::{Value, json};

use browser::Browser;
use common::gateway::{self, Backend, Gateway, PASSWORD};

/// The emulator's default online node.
const NODE: &str = "i-0a1b2c3d4e5f60001";
const NODE_NAME: &str = "web-1";

fn key(k: Key) -> String {
    char::from(k).to_string()
}

fn ctrl_shift(c: char) -> String {
    format!(
        "{}{}{c}{}",
        key(Key::Control),
        key(Key::Shift),
        key(Key::Null)
    )
}

/// Whether the screen has a shell prompt.
fn prompt(s: &str) -> bool {
    s.lines().any(|l| {
        let l = l.trim_end();
        l.ends_with('$') || l.ends_with('#')
    })
}

/// Whether a line of the screen is exactly `text`.
fn line(s: &str, text: &str) -> bool {
    s.lines().any(|l| l.trim() == text)
}

/// Signs in as `user` (unless `signed_in`) and opens a session on `NODE` from the targets
/// page; waits for the terminal page to be connected with a prompt. Returns the session id.
async fn open_session(b: &Browser, gw: &Gateway, user: &str, signed_in: bool) -> String {
    if signed_in {
        b.client.goto(&format!("{}/targets", gw.url)).await.unwrap();
    } else {
        b.sign_in(&gw.url, user, PASSWORD).await;
    }
    let row = format!("tr[data-target='{NODE}']");
    b.wait_for_shown(&row).await;
    b.fill("#filter", NODE_NAME).await;
    b.click(&format!("{row} button.connect")).await;
    b.wait_for_shown("#reason-dialog").await;
    b.fill("#reason", "INC-19 several shells at once").await;
    b.click("#reason-submit").await;
    let id = b
        .wait_for("the terminal page", || async {
            let url = b.client.current_url().await.ok()?;
            url.path().strip_prefix("/sessions/").map(str::to_owned)
        })
        .await;
    b.wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    b.wait_for_attr("#session", "data-settings", "applied")
        .await;
    b.wait_for_screen("a shell prompt", prompt).await;
    id
}

async fn run(b: &Browser, command: &str) {
    b.type_in_terminal(&format!("{command}{}", key(Key::Enter)))
        .await;
}

/// Enters the frame of session `id`'s tab (WebDriver commands then act inside it).
async fn enter_tab(b: &Browser, id: &str) {
    b.client
        .find(Locator::Css(&format!("iframe#panel-{id}")))
        .await
        .unwrap()
        .enter_frame()
        .await
        .unwrap();
}

async fn leave_tab(b: &Browser) {
    b.client.enter_parent_frame().await.unwrap();
}

/// The text of every line of the buffer (scrollback and screen) of the terminal of session
/// `id`'s tab frame, read from the page around it (the tab may be hidden).
async fn frame_buffer(b: &Browser, id: &str) -> String {
    b.js(
        "const w = document.getElementById('panel-' + arguments[0]).contentWindow; \
         const t = w.portholeTerm; if (!t) return ''; const buf = t.buffer.active; \
         const out = []; for (let i = 0; i < buf.length; i++) \
           out.push(buf.getLine(i).translateToString(true)); return out.join('\\n');",
        vec![json!(id)],
    )
    .await
    .as_str()
    .unwrap_or("")
    .to_owned()
}

/// Opens another session in a new tab with "+", the node preselected and a reason given;
/// returns its id once its tab shows it connected.
async fn new_tab(b: &Browser, tabs: usize) -> String {
    b.click("#tab-new").await;
    b.wait_for_shown("#tab-dialog").await;
    let chosen = b
        .js(
            "return document.getElementById('tab-target').value;",
            vec![],
        )
        .await;
    assert_eq!(chosen, json!(NODE), "the shown tab's node is offered first");
    b.click("#tab-next").await;
    b.wait_for_shown("#reason-dialog").await;
    b.fill("#reason", "INC-19 a second shell beside the first")
        .await;
    b.click("#reason-submit").await;
    b.wait_for_attr("#session", "data-tabs", &tabs.to_string())
        .await;
    let id = b
        .js(
            "return document.getElementById('session').dataset.activeTab;",
            vec![],
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    b.wait_for_attr(&format!("#tab-{id} .tab-state"), "data-state", "connected")
        .await;
    id
}

/// The session's state as the API gives it (fetched by the page, with its cookie).
async fn api_state(b: &Browser, id: &str) -> String {
    b.js(
        "return fetch('/api/v1/sessions/' + arguments[0]).then((r) => r.json()) \
         .then((s) => s.state);",
        vec![json!(id)],
    )
    .await
    .as_str()
    .unwrap_or("")
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabs_keep_their_own_screens_and_flow_and_close_by_detaching_or_ending() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let b = Browser::start().await;
    let a = open_session(&b, &gw, "alice", false).await;
    b.wait_for_attr("#session", "data-tabs", "1").await;
    run(&b, "echo FIRST-A-$((3*3))").await;
    b.wait_for_screen("FIRST-A-9", |s| line(s, "FIRST-A-9"))
        .await;

    // "+": a second session, in a tab of its own; the URL names both.
    let second = new_tab(&b, 2).await;
    assert_ne!(second, a);
    let url = b.client.current_url().await.unwrap();
    assert_eq!(url.path(), format!("/sessions/{a}"));
    assert_eq!(url.query(), Some(format!("tabs={second}").as_str()));
    assert_eq!(
        b.js(
            "return document.getElementById('panel-main').getAttribute('aria-hidden');",
            vec![]
        )
        .await,
        json!("true"),
        "the first tab is hidden"
    );

    // Only the tab's page may be framed, and by the gateway's own pages only.
    let headers = b
        .js(
            "const h = (u) => fetch(u).then((r) => [r.headers.get('x-frame-options'), \
               r.headers.get('content-security-policy').match(/frame-ancestors [^;]*/)[0], \
               r.headers.get('permissions-policy')]); \
             return Promise.all([h(location.pathname), h(location.pathname + '?embed=1')]);",
            vec![],
        )
        .await;
    assert_eq!(
        headers,
        json!([
            ["DENY", "frame-ancestors 'none'", "local-fonts=()"],
            ["SAMEORIGIN", "frame-ancestors 'self'", "local-fonts=()"]
        ])
    );

    // Typed into the second tab; its output comes late, and more than the gateway's flow window
    // (256 KiB): it arrives whole only if the hidden tab draws and acknowledges it.
    enter_tab(&b, &second).await;
    b.wait_for_screen("a prompt in the second tab", prompt)
        .await;
    run(&b, "echo TAB-B-$((1+1))").await;
    b.wait_for_screen("TAB-B-2", |s| line(s, "TAB-B-2")).await;
    run(&b, "sleep 2; seq 1 80000; echo HIDDEN-$((6*7))").await;
    leave_tab(&b).await;

    // Back to the first: its screen is as it was, and it takes keys of its own.
    b.click(&format!("#tab-{a}")).await;
    b.wait_for_attr(&format!("#tab-{a}"), "aria-selected", "true")
        .await;
    let screen = b.screen().await;
    assert!(line(&screen, "FIRST-A-9"), "{screen}");
    assert!(!screen.contains("TAB-B-2"), "{screen}");
    run(&b, "echo TAB-A-$((2+1))").await;
    b.wait_for_screen("TAB-A-3", |s| line(s, "TAB-A-3")).await;

    // Meanwhile the hidden second tab received all of its output.
    b.wait_for("the hidden tab's output", || async {
        let text = frame_buffer(&b, &second).await;
        line(&text, "HIDDEN-42").then_some(())
    })
    .await;
    let text = frame_buffer(&b, &second).await;
    assert!(line(&text, "80000") && line(&text, "79999"), "seq's end");
    let hidden = b
        .js(
            "const f = document.getElementById('panel-' + arguments[0]); \
             return [getComputedStyle(f).visibility, f.contentWindow.portholeSession.drawn()];",
            vec![json!(second)],
        )
        .await;
    assert_eq!(hidden[0], "hidden", "{hidden}");
    assert!(
        hidden[1].as_u64().unwrap() > 480_000,
        "the hidden tab drew (and acknowledged) the whole output: {hidden}"
    );
    let first = b.screen().await;
    assert!(!first.contains("HIDDEN-42"), "{first}");
    b.screenshot("tabs-first.png").await;

    // A narrower window: the shown tab is fitted at once, the hidden one keeps its size (and
    // its shell's) until it is shown again.
    let cols = |who: &'static str| {
        let b = &b;
        let second = second.clone();
        async move {
            let script = match who {
                "first" => "return window.portholeTerm.cols;",
                _ => {
                    "return document.getElementById('panel-' + arguments[0]).contentWindow.portholeTerm.cols;"
                }
            };
            b.js(script, vec![json!(second)]).await.as_u64().unwrap()
        }
    };
    let wide = cols("first").await;
    assert_eq!(cols("second").await, wide);
    b.client.set_window_size(800, 720).await.unwrap();
    let narrow = b
        .wait_for("the shown tab fitted to the narrower window", || async {
            let now = cols("first").await;
            (now < wide).then_some(now)
        })
        .await;
    assert_eq!(cols("second").await, wide, "the hidden tab is not resized");

    // Shown again: fitted to the page, the output on its screen.
    b.click(&format!("#tab-{second}")).await;
    enter_tab(&b, &second).await;
    b.wait_for_screen("HIDDEN-42 on the second tab's screen", |s| {
        line(s, "HIDDEN-42")
    })
    .await;
    leave_tab(&b).await;
    b.wait_for("the second tab fitted again when shown", || async {
        (cols("second").await == narrow).then_some(())
    })
    .await;
    b.screenshot("tabs-second.png").await;

    // A reload opens the same tabs (named in the address), each with its screen.
    b.client.refresh().await.unwrap();
    b.wait_for_attr("#session", "data-tabs", "2").await;
    b.wait_for_attr(
        &format!("#tab-{second} .tab-state"),
        "data-state",
        "connected",
    )
    .await;
    b.wait_for("the second tab's screen after the reload", || async {
        line(&frame_buffer(&b, &second).await, "HIDDEN-42").then_some(())
    })
    .await;
    b.wait_for_screen("the first tab's screen after the reload", |s| {
        line(s, "TAB-A-3")
    })
    .await;
    b.click(&format!("#tab-{second}")).await;

    // Arrow keys move between the tabs (the tab list's keys).
    b.js(
        &format!("document.getElementById('tab-{second}').focus();"),
        vec![],
    )
    .await;
    b.client
        .active_element()
        .await
        .unwrap()
        .send_keys(&key(Key::Left))
        .await
        .unwrap();
    b.wait_for_attr(&format!("#tab-{a}"), "aria-selected", "true")
        .await;

    // Closing the second tab, ending its session.
    b.click(&format!(".tab[data-session='{second}'] .tab-close"))
        .await;
    b.wait_for_shown("#close-dialog").await;
    b.click("#close-end").await;
    b.wait_for_attr("#session", "data-tabs", "1").await;
    b.wait_for("the second session ended", || async {
        (api_state(&b, &second).await == "ended").then_some(())
    })
    .await;
    let url = b.client.current_url().await.unwrap();
    assert_eq!(url.path(), format!("/sessions/{a}"));
    assert_eq!(url.query(), None);

    // A third; then the first closed by detaching: its shell runs on, the page keeps the third.
    let third = new_tab(&b, 2).await;
    b.click(&format!(".tab[data-session='{a}'] .tab-close"))
        .await;
    b.wait_for_shown("#close-dialog").await;
    b.click("#close-detach").await;
    b.wait_for_attr("#session", "data-tabs", "1").await;
    b.wait_for_attr(&format!("#tab-{third}"), "aria-selected", "true")
        .await;
    assert_eq!(b.path().await, format!("/sessions/{third}"));
    assert_eq!(api_state(&b, &a).await, "active");
    let state = b
        .js(
            "return document.getElementById('conn-state').dataset.state;",
            vec![],
        )
        .await;
    assert_eq!(
        state,
        json!("detached"),
        "the first tab let go of its socket"
    );
    b.close().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_tabs_on_two_sessions_never_disturb_each_other() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let b = Browser::start().await;
    let first_window = b.client.window().await.unwrap();
    let a = open_session(&b, &gw, "alice", false).await;

    let second_window = b.client.new_window(true).await.unwrap().handle;
    b.client
        .switch_to_window(second_window.clone())
        .await
        .unwrap();
    let second = open_session(&b, &gw, "alice", true).await;
    assert_ne!(a, second);
    run(&b, "echo SECOND-$((5*5))").await;
    b.wait_for_screen("SECOND-25", |s| line(s, "SECOND-25"))
        .await;

    b.client
        .switch_to_window(first_window.clone())
        .await
        .unwrap();
    b.wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    let banner = b
        .js("return document.getElementById('banner').hidden;", vec![])
        .await;
    assert_eq!(banner, json!(true), "no takeover banner in the first");
    run(&b, "echo FIRST-$((4*4))").await;
    let screen = b.wait_for_screen("FIRST-16", |s| line(s, "FIRST-16")).await;
    assert!(!screen.contains("SECOND-25"), "{screen}");

    b.client
        .switch_to_window(second_window.clone())
        .await
        .unwrap();
    let screen = b.screen().await;
    assert!(!screen.contains("FIRST-16"), "{screen}");
    b.wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    let banner = b
        .js("return document.getElementById('banner').hidden;", vec![])
        .await;
    assert_eq!(banner, json!(true), "no takeover banner in the second");
    b.screenshot("tabs-two-windows.png").await;

    // A tab in the first window, then its session opened in the second: that tab (only) shows
    // the takeover (close code 4001), the first window's own session stays connected.
    b.client
        .switch_to_window(first_window.clone())
        .await
        .unwrap();
    let third = new_tab(&b, 2).await;
    b.client.switch_to_window(second_window).await.unwrap();
    b.client
        .goto(&format!("{}/sessions/{third}", gw.url))
        .await
        .unwrap();
    b.wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    b.client.switch_to_window(first_window).await.unwrap();
    b.wait_for_attr(
        &format!("#tab-{third} .tab-state"),
        "data-state",
        "detached",
    )
    .await;
    enter_tab(&b, &third).await;
    b.wait_for_text("#banner-text", "opened in another tab or window")
        .await;
    leave_tab(&b).await;
    let first = b
        .js(
            "return [document.getElementById('conn-state').dataset.state, \
                     document.getElementById('banner').hidden];",
            vec![],
        )
        .await;
    assert_eq!(
        first,
        json!(["connected", true]),
        "the first tab is untouched"
    );
    b.close().await;
    gw.stop().await;
}

/// Which element has the focus: its id, and whether it is inside the terminal.
async fn focused(b: &Browser) -> Value {
    b.js(
        "const e = document.activeElement; \
         return [e ? e.id : '', Boolean(e && document.getElementById('terminal')?.contains(e)), \
                 e ? e.tagName : ''];",
        vec![],
    )
    .await
}

async fn bracketed(b: &Browser) -> bool {
    b.js(
        "return Boolean(window.portholeTerm.modes.bracketedPasteMode);",
        vec![],
    )
    .await
        == json!(true)
}

/// Has the shell read one byte and show it as hex (`od`), then READ-DONE.
async fn read_one_byte(b: &Browser) {
    run(
        b,
        // IFS empty: a Tab read is kept (read strips IFS whitespace otherwise).
        "IFS= read -rsn1 x; printf '%s' \"$x\" | od -An -tx1; echo READ-DONE",
    )
    .await;
    // readline turns bracketed paste off as it runs the command: the shell is reading.
    b.wait_for("the shell to run read", || async {
        (!bracketed(b).await).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_shift_l_leaves_the_terminal_and_tab_still_reaches_the_shell() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let b = Browser::start().await;
    let a = open_session(&b, &gw, "alice", false).await;

    // The way out is announced with the terminal.
    let hint = b
        .js(
            "const t = document.getElementById('terminal'); \
             return document.getElementById(t.getAttribute('aria-describedby')).textContent;",
            vec![],
        )
        .await;
    assert!(hint.as_str().unwrap().contains("Control+Shift+L"), "{hint}");

    // Ctrl+Shift+L: out of the terminal to the page's next control (here, past the end of
    // the page, its first tab); nothing reaches the shell.
    read_one_byte(&b).await;
    b.type_in_terminal(&ctrl_shift('l')).await;
    let now = b
        .wait_for("the focus out of the terminal", || async {
            let f = focused(&b).await;
            (f[1] == json!(false)).then_some(f)
        })
        .await;
    assert_eq!(now[0], json!(format!("tab-{a}")), "{now}");
    b.screenshot("keyboard-leave.png").await;

    // Tab in the terminal goes to the shell: the byte 09, the first the shell read.
    b.type_in_terminal(&key(Key::Tab)).await;
    let screen = b
        .wait_for_screen("the byte 09", |s| line(s, "09") && line(s, "READ-DONE"))
        .await;
    assert!(!line(&screen, "0c"), "Ctrl+Shift+L sent nothing: {screen}");
    assert_eq!(focused(&b).await[1], json!(true));

    // In a tab's frame: out to the page around it (its tab).
    let second = new_tab(&b, 2).await;
    enter_tab(&b, &second).await;
    b.wait_for_screen("a prompt in the second tab", prompt)
        .await;
    b.type_in_terminal(&ctrl_shift('l')).await;
    leave_tab(&b).await;
    let now = b
        .wait_for("the focus on the second tab", || async {
            let f = focused(&b).await;
            (f[0] == json!(format!("tab-{second}"))).then_some(f)
        })
        .await;
    assert_eq!(now[2], json!("BUTTON"));
    b.close().await;
    gw.stop().await;
}

/// Measures, on the terminal's rendered rows, where each of `chars` is drawn: per row (the
/// rows whose text contains one), the left and right edges of the glyph boxes of the row's
/// characters that are in `chars`, and the cell width and the rows' left edge.
async fn glyph_boxes(b: &Browser, chars: &str) -> Value {
    b.js(
        "const wanted = new Set(Array.from(arguments[0])); \
         const t = window.portholeTerm; \
         const screen = document.querySelector('.xterm-screen').getBoundingClientRect(); \
         const cell = screen.width / t.cols; \
         const rows = Array.from(document.querySelectorAll('.xterm-rows > div')); \
         const out = []; \
         for (const row of rows) { \
           const boxes = []; \
           const walker = document.createTreeWalker(row, NodeFilter.SHOW_TEXT); \
           for (let node = walker.nextNode(); node; node = walker.nextNode()) { \
             const text = node.textContent; \
             for (let i = 0; i < text.length; i++) { \
               if (!wanted.has(text[i])) continue; \
               const range = document.createRange(); range.setStart(node, i); range.setEnd(node, i + 1); \
               const r = range.getBoundingClientRect(); \
               boxes.push([text[i], r.left - screen.left, r.right - screen.left]); \
             } \
           } \
           if (boxes.length) out.push(boxes); \
         } \
         return {cell, rows: out};",
        vec![json!(chars)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_font_lines_up_box_drawing_and_wide_characters() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let b = Browser::start().await;
    open_session(&b, &gw, "alice", false).await;

    // The setting: JetBrains Mono, loaded from the gateway before the terminal measures it.
    b.click("#settings-open").await;
    b.wait_for_shown("#settings-panel").await;
    b.client
        .find(Locator::Css("#set-font_family"))
        .await
        .unwrap()
        .select_by_value("jetbrains-mono")
        .await
        .unwrap();
    b.wait_for_text("#settings-status", "Saved").await;
    b.wait_for_attr("#session", "data-font", "jetbrains-mono")
        .await;
    b.click("#settings-close").await;
    let font = b
        .js(
            "const faces = Array.from(document.fonts).filter((f) => f.status === 'loaded') \
               .map((f) => f.family.replace(/\"/g, '')); \
             return {family: window.portholeTerm.options.fontFamily, \
                     rows: getComputedStyle(document.querySelector('.xterm-rows')).fontFamily, \
                     jetbrains: faces.includes('JetBrains Mono'), \
                     nerd: document.fonts.check('14px \"Pure Nerd Font\"', '\\ue0b0'), \
                     calt: document.querySelector('#terminal .xterm').style.fontFeatureSettings};",
            vec![],
        )
        .await;
    assert!(
        font["rows"]
            .as_str()
            .unwrap()
            .starts_with("\"JetBrains Mono\""),
        "{font}"
    );
    assert_eq!(font["jetbrains"], json!(true), "{font}");
    assert_eq!(font["nerd"], json!(true), "{font}");
    assert_eq!(font["calt"], json!("\"calt\""), "{font}");

    // A box of box-drawing lines around CJK text, ASCII and a powerline arrow: every right
    // edge in the same column. Printed from octal escapes so the shell's input stays ASCII.
    run(
        &b,
        "clear; printf '\\342\\224\\214\\342\\224\\200\\342\\224\\200\\342\\224\\200\\342\\224\\200\\342\\224\\220\\n\
         \\342\\224\\202\\344\\270\\255\\346\\226\\207\\342\\224\\202\\n\
         \\342\\224\\202ab->\\342\\224\\202\\n\
         \\342\\224\\202\\356\\202\\260cd\\356\\202\\260\\342\\224\\202\\n\
         \\342\\224\\224\\342\\224\\200\\342\\224\\200\\342\\224\\200\\342\\224\\200\\342\\224\\230\\n'",
    )
    .await;
    b.wait_for_screen("the box", |s| {
        s.contains("┌────┐") && s.contains("│中文│") && s.contains("└────┘")
    })
    .await;
    b.screenshot("font-alignment.png").await;
    let boxes = glyph_boxes(&b, "┌┐│└┘中文\u{e0b0}").await;
    let cell = boxes["cell"].as_f64().unwrap();
    assert!(cell > 5.0, "{boxes}");
    let rows = boxes["rows"].as_array().unwrap();
    // Skip the command line (it has none of the characters: octal escapes only).
    assert_eq!(rows.len(), 5, "{boxes}");
    let near = |a: f64, b: f64| (a - b).abs() < 1.0;
    for row in rows {
        let row = row.as_array().unwrap();
        let first = &row[0];
        let last = &row[row.len() - 1];
        // Left border in the first column, right border in the sixth.
        assert!(near(first[1].as_f64().unwrap(), 0.0), "{row:?} cell {cell}");
        assert!(
            near(last[1].as_f64().unwrap(), 5.0 * cell),
            "{row:?} cell {cell}"
        );
        assert!(
            near(last[2].as_f64().unwrap(), 6.0 * cell),
            "{row:?} cell {cell}"
        );
    }
    // The wide characters take two cells each: 中 from column 1, 文 from column 3.
    let cjk = rows[1].as_array().unwrap();
    assert_eq!(cjk[1][0], json!("中"));
    assert!(near(cjk[1][1].as_f64().unwrap(), cell), "{cjk:?}");
    assert!(near(cjk[2][1].as_f64().unwrap(), 3.0 * cell), "{cjk:?}");
    // The powerline arrows: one cell each, at columns 1 and 4.
    let arrows = rows[3].as_array().unwrap();
    assert!(near(arrows[1][1].as_f64().unwrap(), cell), "{arrows:?}");
    assert!(
        near(arrows[2][1].as_f64().unwrap(), 4.0 * cell),
        "{arrows:?}"
    );
    b.close().await;
    gw.stop().await;
}
