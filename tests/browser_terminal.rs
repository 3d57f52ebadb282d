#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Browser tests of the terminal page's own tools (Debian's Chromium, headless, in front of a
//! real gateway and the emulator): the settings panel, whose choices the gateway keeps per
//! person and the page applies to xterm.js at once and after a reload (font, theme; cursor
//! shape, scrollback, bell and screen reader mode checked by what the terminal then does: the
//! cursor drawn, the lines kept, the flash or tone, the screen reader's tree); and find in the
//! scrollback (xterm.js's search addon) with Ctrl+Shift+F, Enter / Shift+Enter, Esc. The
//! assets come from `web/dist` (`scripts/web-build`).

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

/// Signs in as `user` and opens a session on `NODE` from the targets page; waits for the
/// terminal page to be connected, its settings applied and a prompt shown.
async fn open_session(b: &Browser, gw: &Gateway, user: &str) {
    b.sign_in(&gw.url, user, PASSWORD).await;
    let row = format!("tr[data-target='{NODE}']");
    b.wait_for_shown(&row).await;
    b.fill("#filter", NODE_NAME).await;
    b.click(&format!("{row} button.connect")).await;
    b.wait_for_shown("#reason-dialog").await;
    b.fill("#reason", "INC-31 trying the terminal's tools")
        .await;
    b.click("#reason-submit").await;
    b.wait_for("the terminal page", || async {
        let url = b.client.current_url().await.ok()?;
        url.path().strip_prefix("/sessions/").map(|_| ())
    })
    .await;
    b.wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    b.wait_for_attr("#session", "data-settings", "applied")
        .await;
    b.wait_for_screen("a shell prompt", |s| {
        s.lines().any(|l| {
            let l = l.trim_end();
            l.ends_with('$') || l.ends_with('#')
        })
    })
    .await;
}

/// xterm.js's options that the settings drive, as the page's terminal has them.
async fn term_options(b: &Browser) -> Value {
    b.js(
        "const o = window.portholeTerm.options; \
         return {font_size: o.fontSize, background: o.theme.background, \
                 cursor_style: o.cursorStyle, scrollback: o.scrollback, \
                 screen_reader: o.screenReaderMode, \
                 host: getComputedStyle(document.getElementById('terminal')).backgroundColor, \
                 row_font: getComputedStyle(document.querySelector('.xterm-rows')).fontSize};",
        vec![],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_chosen_on_the_terminal_page_apply_at_once_and_after_a_reload() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let b = Browser::start().await;
    open_session(&b, &gw, "alice").await;

    // Never saved: the page's defaults.
    let before = term_options(&b).await;
    assert_eq!(before["font_size"], 14, "{before}");
    assert_eq!(before["background"], "#0d1117", "{before}");
    assert_eq!(before["host"], "rgb(13, 17, 23)", "{before}");

    // The panel: a font size, then the light theme (a choice from a list saves at once).
    b.click("#settings-open").await;
    b.wait_for_shown("#settings-panel").await;
    b.fill("#set-font_size", "15").await;
    b.client
        .find(Locator::Css("#set-theme"))
        .await
        .unwrap()
        .select_by_value("light")
        .await
        .unwrap();
    b.wait_for_text("#settings-status", "Saved").await;
    let now = b
        .wait_for("the settings applied without a reload", || async {
            let o = term_options(&b).await;
            (o["font_size"] == 15 && o["background"] == "#ffffff").then_some(o)
        })
        .await;
    assert_eq!(now["host"], "rgb(255, 255, 255)", "{now}");
    assert_eq!(now["row_font"], "15px", "{now}");
    b.screenshot("terminal-settings.png").await;

    // A value the gateway refuses is shown, not applied.
    b.fill("#set-font_size", "99").await;
    b.click("#settings-save").await;
    b.wait_for_text("#settings-error", "font_size").await;
    assert_eq!(term_options(&b).await["font_size"], 15);

    // Kept by the gateway: a reload shows them again.
    b.client.refresh().await.unwrap();
    b.wait_for_attr("#session", "data-settings", "applied")
        .await;
    let after = term_options(&b).await;
    assert_eq!(after["font_size"], 15, "{after}");
    assert_eq!(after["background"], "#ffffff", "{after}");
    assert_eq!(after["host"], "rgb(255, 255, 255)", "{after}");
    let field = b
        .js(
            "return [document.getElementById('set-font_size').value, \
             document.getElementById('set-theme').value];",
            vec![],
        )
        .await;
    assert_eq!(field, json!(["15", "light"]));
    b.close().await;
    gw.stop().await;
}

/// Chooses `value` in the settings panel's list `css` (saved at once).
async fn choose(b: &Browser, css: &str, value: &str) {
    b.client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .select_by_value(value)
        .await
        .unwrap();
}

/// What the settings do to the terminal as shown: the cursor's shape drawn in the rows, the
/// screen reader's tree, the lines kept, and each bell the page gave (flash, tone).
async fn effects(b: &Browser) -> Value {
    b.js(
        "const t = window.portholeTerm; const rows = document.querySelector('.xterm-rows'); \
         const shape = ['bar', 'block', 'underline'].find((s) => rows.querySelector('.xterm-cursor-' + s)); \
         const tree = document.querySelector('#terminal .xterm-accessibility-tree'); \
         return {cursor: shape ?? null, tree: tree ? tree.textContent.length > 0 : false, \
                 live: document.querySelector('#terminal .xterm-accessibility [aria-live]') !== null, \
                 lines: t.buffer.active.length, first: t.buffer.active.getLine(0).translateToString(true).trim(), \
                 flashes: window.flashes ?? null, tones: window.tones ?? null};",
        vec![],
    )
    .await
}

/// Counts the bells the page gives from now on: flashes of the terminal and tones started.
async fn count_bells(b: &Browser) {
    b.js(
        "window.flashes = 0; window.tones = 0; \
         const host = document.getElementById('terminal'); let lit = false; \
         new MutationObserver(() => { const now = host.classList.contains('bell-flash'); \
           if (now && !lit) window.flashes += 1; lit = now; }) \
           .observe(host, {attributes: true, attributeFilter: ['class']}); \
         const start = OscillatorNode.prototype.start; \
         OscillatorNode.prototype.start = function (...a) { window.tones += 1; return start.apply(this, a); };",
        vec![],
    )
    .await;
}

/// Rings the terminal's bell from the shell and waits for the command to be done.
async fn ring(b: &Browser, n: u32) {
    let enter = char::from(Key::Enter);
    b.type_in_terminal(&format!("printf '\\a'; echo RANG-$((40+{n})){enter}"))
        .await;
    let done = format!("RANG-{}", 40 + n);
    b.wait_for_screen(&done, |s| s.lines().any(|l| l.trim() == done))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_scrollback_bell_and_screen_reader_settings_change_the_terminal() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let b = Browser::start().await;
    open_session(&b, &gw, "alice").await;
    b.type_in_terminal("").await; // the focus: the cursor is drawn with its shape

    // The defaults: a block cursor, no screen reader tree, no bell.
    let before = term_options(&b).await;
    assert_eq!(before["cursor_style"], "block", "{before}");
    assert_eq!(before["screen_reader"], false, "{before}");
    count_bells(&b).await;
    ring(&b, 1).await;
    let seen = effects(&b).await;
    assert_eq!(seen["cursor"], "block", "{seen}");
    assert_eq!(seen["tree"], false, "{seen}");
    assert_eq!(seen["flashes"], 0, "the default bell is silent: {seen}");
    assert_eq!(seen["tones"], 0, "{seen}");

    // The panel: a bar cursor, 1000 lines of scrollback, the bell as a flash, screen reader
    // mode.
    b.click("#settings-open").await;
    b.wait_for_shown("#settings-panel").await;
    choose(&b, "#set-cursor_style", "bar").await;
    b.wait_for("the bar cursor", || async {
        (term_options(&b).await["cursor_style"] == "bar").then_some(())
    })
    .await;
    b.fill("#set-scrollback", "1000").await;
    b.click("#settings-save").await;
    b.wait_for("1000 lines of scrollback", || async {
        (term_options(&b).await["scrollback"] == 1000).then_some(())
    })
    .await;
    choose(&b, "#set-bell", "visual").await;
    b.wait_for_text("#settings-status", "Saved").await;
    b.click("#set-screen_reader").await;
    b.wait_for("screen reader mode", || async {
        (term_options(&b).await["screen_reader"] == true).then_some(())
    })
    .await;
    b.click("#settings-close").await;

    // Their effects in the terminal.
    ring(&b, 2).await;
    let seen = b
        .wait_for("a flash", || async {
            let e = effects(&b).await;
            (e["flashes"] == 1).then_some(e)
        })
        .await;
    assert_eq!(seen["tree"], true, "the screen reader's tree: {seen}");
    assert_eq!(seen["cursor"], "bar", "{seen}");
    assert_eq!(seen["tones"], 0, "a flash, not a sound: {seen}");
    assert_eq!(seen["live"], true, "what is printed is announced: {seen}");
    let enter = char::from(Key::Enter);
    b.type_in_terminal(&format!("seq 1 3000{enter}")).await;
    b.wait_for_screen("the last of 3000 lines", |s| {
        s.lines().any(|l| l.trim() == "3000")
    })
    .await;
    let seen = effects(&b).await;
    let rows = b.js("return window.portholeTerm.rows;", vec![]).await;
    assert!(
        seen["lines"].as_u64().unwrap() <= 1000 + rows.as_u64().unwrap(),
        "1000 lines kept above the screen: {seen}"
    );
    let first: u64 = seen["first"].as_str().unwrap().parse().unwrap_or(0);
    assert!(first > 1500, "the oldest lines are gone: {seen}");

    // Kept by the gateway: after a reload, the same; the sound bell plays a tone.
    b.client.refresh().await.unwrap();
    b.wait_for_attr("#session", "data-settings", "applied")
        .await;
    b.wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    let after = term_options(&b).await;
    assert_eq!(after["cursor_style"], "bar", "{after}");
    assert_eq!(after["scrollback"], 1000, "{after}");
    assert_eq!(after["screen_reader"], true, "{after}");
    let fields = b
        .js(
            "return ['cursor_style', 'scrollback', 'bell'].map((k) => document.getElementById('set-' + k).value) \
               .concat(document.getElementById('set-screen_reader').checked);",
            vec![],
        )
        .await;
    assert_eq!(fields, json!(["bar", "1000", "visual", true]));
    count_bells(&b).await;
    b.type_in_terminal("").await;
    ring(&b, 3).await;
    b.wait_for("a flash after the reload", || async {
        let e = effects(&b).await;
        (e["flashes"] == 1 && e["tree"] == true && e["cursor"] == "bar").then_some(())
    })
    .await;
    b.click("#settings-open").await;
    b.wait_for_shown("#settings-panel").await;
    choose(&b, "#set-bell", "sound").await;
    b.wait_for_text("#settings-status", "Saved").await;
    b.click("#set-screen_reader").await;
    b.wait_for("screen reader mode off", || async {
        (term_options(&b).await["screen_reader"] == false).then_some(())
    })
    .await;
    b.click("#settings-close").await;
    ring(&b, 4).await;
    let seen = b
        .wait_for("a tone", || async {
            let e = effects(&b).await;
            (e["tones"] == 1).then_some(e)
        })
        .await;
    assert_eq!(seen["flashes"], 1, "no more flashes: {seen}");
    assert_eq!(seen["tree"], false, "the tree is gone: {seen}");
    b.close().await;
    gw.stop().await;
}

/// The start row of the terminal's selection (the active match), and its text.
async fn selection(b: &Browser) -> (i64, String) {
    let v = b
        .js(
            "const t = window.portholeTerm; const p = t.getSelectionPosition(); \
             return [p ? p.start.y : -1, t.getSelection()];",
            vec![],
        )
        .await;
    (v[0].as_i64().unwrap(), v[1].as_str().unwrap().to_owned())
}

/// How many rows the search addon's decorations highlight, and how many decorations have the
/// active match's border (`activeMatchBorder` of terminal.js, #f2cc60).
async fn highlighted(b: &Browser) -> (u64, u64) {
    let v = b
        .js(
            "const all = Array.from(document.querySelectorAll('.xterm-find-result-decoration')); \
             return [new Set(all.map((e) => e.style.top)).size, \
                     all.filter((e) => e.style.outline.includes('242, 204, 96')).length];",
            vec![],
        )
        .await;
    (v[0].as_u64().unwrap(), v[1].as_u64().unwrap())
}

async fn send_to_find(b: &Browser, text: &str) {
    b.client
        .find(Locator::Css("#find-input"))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_in_the_scrollback_moves_between_matches() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let b = Browser::start().await;
    open_session(&b, &gw, "alice").await;

    // Marker lines made by the shell (the typed line has `%s`, not the markers).
    b.type_in_terminal(&format!(
        "printf 'ZQ-%s-%s\\n' A 1 B 2 A 3{}",
        key(Key::Enter)
    ))
    .await;
    b.wait_for_screen("the markers", |s| s.contains("ZQ-A-3"))
        .await;

    // Ctrl+Shift+F in the terminal opens the find box, focused.
    b.type_in_terminal(&format!(
        "{}{}f{}",
        key(Key::Control),
        key(Key::Shift),
        key(Key::Null)
    ))
    .await;
    b.wait_for_shown("#find-bar").await;
    let focused = b.js("return document.activeElement.id;", vec![]).await;
    assert_eq!(focused, "find-input");

    // A marker found twice: selected and highlighted.
    send_to_find(&b, "ZQ-A").await;
    b.wait_for_attr("#find-bar", "data-count", "2").await;
    let (first, text) = selection(&b).await;
    assert_eq!(text, "ZQ-A");
    let (all, active) = b
        .wait_for("the matches highlighted", || async {
            let h = highlighted(&b).await;
            (h.0 == 2 && h.1 == 1).then_some(h)
        })
        .await;
    assert_eq!(
        (all, active),
        (2, 1),
        "both matches highlighted, one active"
    );

    // Enter: the other one; Shift+Enter: back; the buttons do the same.
    send_to_find(&b, &key(Key::Enter)).await;
    let second = b
        .wait_for("the next match", || async {
            let (row, text) = selection(&b).await;
            (row != first && text == "ZQ-A").then_some(row)
        })
        .await;
    send_to_find(
        &b,
        &format!("{}{}{}", key(Key::Shift), key(Key::Enter), key(Key::Null)),
    )
    .await;
    b.wait_for("the previous match", || async {
        (selection(&b).await.0 == first).then_some(())
    })
    .await;
    b.click("#find-next").await;
    b.wait_for("the next match (button)", || async {
        (selection(&b).await.0 == second).then_some(())
    })
    .await;
    b.click("#find-prev").await;
    b.wait_for("the previous match (button)", || async {
        (selection(&b).await.0 == first).then_some(())
    })
    .await;
    let shown = b.wait_for_text("#find-count", "of 2").await;
    assert!(shown.contains("of 2"), "{shown}");

    // Esc closes it, clears the highlights and gives the terminal the keys again.
    send_to_find(&b, &key(Key::Escape)).await;
    b.wait_for("the find box to close", || async {
        let hidden = b
            .js("return document.getElementById('find-bar').hidden;", vec![])
            .await;
        (hidden == true).then_some(())
    })
    .await;
    let focused = b
        .js("return document.activeElement.className;", vec![])
        .await;
    assert!(
        focused.as_str().unwrap().contains("xterm-helper-textarea"),
        "{focused}"
    );
    assert_eq!(highlighted(&b).await, (0, 0));
    // The shortcut never reached the shell: what is typed next runs as typed.
    b.type_in_terminal(&format!("echo DONE-$((2*3)){}", key(Key::Enter)))
        .await;
    b.wait_for_screen("the command after find", |s| s.contains("DONE-6"))
        .await;
    b.close().await;
    gw.stop().await;
}

/// The owner's status bar names who observes the session while they do, and forgets them when
/// they leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_sees_who_is_watching() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    gw.user("root", &[Role::Admin]).await;
    let b = Browser::start().await;
    open_session(&b, &gw, "alice").await;
    let watchers = "#watchers";
    assert!(
        !b.client
            .find(Locator::Css(watchers))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap(),
        "nobody watches yet"
    );
    let id = b.path().await.trim_start_matches("/sessions/").to_owned();

    let mut root = common::api::Api::new(&gw);
    root.login("root").await;
    let mut watcher = root.attach_with(&id, "?mode=observe", None).await.unwrap();
    watcher.until_synced().await;
    b.wait_for_shown(watchers).await;
    assert_eq!(
        b.wait_for_text(watchers, "watching").await,
        "root is watching"
    );
    let label = b
        .js(
            "return document.getElementById('watchers').getAttribute('aria-label');",
            vec![],
        )
        .await;
    assert_eq!(label, json!("Watching this session (read-only): root"));
    b.screenshot("terminal-watched.png").await;

    // The observer leaves: the page says nothing any more.
    drop(watcher);
    b.wait_for("the watchers to be gone", || async {
        let shown = b
            .client
            .find(Locator::Css(watchers))
            .await
            .ok()?
            .is_displayed()
            .await
            .ok()?;
        (!shown).then_some(())
    })
    .await;
    b.close().await;
    gw.stop().await;
}
