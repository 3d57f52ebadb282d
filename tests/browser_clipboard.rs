#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Browser tests of copy and paste and of the keyboard in the terminal page (Debian's Chromium,
//! headless, in front of a real gateway and the emulator): the paste splitter's pure functions
//! (`web/static/paste.js`, `keys.js`, imported in a page of the gateway); a paste of several lines
//! that asks first, one into a program that turned bracketed paste on (wrapped, with an injected
//! end marker stripped), and a large one that arrives whole in pieces, each waiting while the
//! socket holds too much unsent; copy with Ctrl+Shift+C, on selection and from the context menu
//! (reached by keyboard); Ctrl+Shift+V pasting the browser's clipboard, once; a role with
//! `clipboard = false` whose paste never reaches the shell; Ctrl+W / Ctrl+T / Ctrl+N reaching the
//! shell, the page cancelling the browser's own shortcut in the terminal only; the warning before
//! leaving a live shell; the on-screen key bar; and input-method (CJK) composition. What the shell
//! received is read back with `od`. The assets come from `web/dist` (`scripts/web-build`).

#[path = "common/browser.rs"]
#[allow(dead_code)] // shared with tests/browser.rs, which uses all of it
mod browser;
mod common;

use std::path::PathBuf;

use fantoccini::Locator;
use fantoccini::actions::{InputSource, MOUSE_BUTTON_RIGHT, MouseActions, PointerAction};
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

/// Ctrl (or Ctrl+Shift) with `c`, as WebDriver types it.
fn ctrl(c: char) -> String {
    format!("{}{c}{}", key(Key::Control), key(Key::Null))
}

fn ctrl_shift(c: char) -> String {
    format!(
        "{}{}{c}{}",
        key(Key::Control),
        key(Key::Shift),
        key(Key::Null)
    )
}

/// Runs `script` (a function body that may `await`) in the page and returns its value.
async fn js_await(b: &Browser, script: &str) -> Value {
    let wrapped = format!(
        "const done = arguments[arguments.length - 1]; \
         (async () => {{ {script} }})().then(done, (e) => done({{error: String(e)}}));"
    );
    let value = b
        .client
        .execute_async(&wrapped, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"));
    assert!(value.get("error").is_none(), "{script}: {value}");
    value
}

async fn clipboard(b: &Browser) -> String {
    js_await(b, "return await navigator.clipboard.readText();")
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

async fn set_clipboard(b: &Browser, text: &str) {
    b.client
        .execute_async(
            "const done = arguments[1]; \
             navigator.clipboard.writeText(arguments[0]).then(() => done(true), (e) => done(String(e)));",
            vec![json!(text)],
        )
        .await
        .unwrap();
}

/// Signs in as `user` and opens a session on `NODE`; waits for a connected terminal with the
/// person's settings applied and a prompt.
async fn open_session(b: &Browser, gw: &Gateway, user: &str) {
    b.sign_in(&gw.url, user, PASSWORD).await;
    let row = format!("tr[data-target='{NODE}']");
    b.wait_for_shown(&row).await;
    b.fill("#filter", NODE_NAME).await;
    b.click(&format!("{row} button.connect")).await;
    b.wait_for_shown("#reason-dialog").await;
    b.fill("#reason", "INC-19 copy, paste and keys").await;
    b.click("#reason-submit").await;
    b.wait_for("the terminal page", || async {
        let url = b.client.current_url().await.ok()?;
        url.path().strip_prefix("/sessions/").map(|_| ())
    })
    .await;
    wait_for_prompt(b).await;
}

async fn wait_for_prompt(b: &Browser) {
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

/// Runs `command` in the shell (typed, then Enter).
async fn run(b: &Browser, command: &str) {
    b.type_in_terminal(&format!("{command}{}", key(Key::Enter)))
        .await;
}

/// Runs `command`, which prints the line `ready` before it starts reading; waits for it.
async fn run_then(b: &Browser, command: &str, ready: &str) {
    run(b, command).await;
    b.wait_for_screen(ready, |s| s.lines().any(|l| l.trim() == ready))
        .await;
}

/// Pastes `text` into the terminal as the browser does: a `paste` event on xterm.js's
/// textarea carrying the text.
async fn paste_event(b: &Browser, text: &str) {
    b.js(
        "const data = new DataTransfer(); data.setData('text/plain', arguments[0]); \
         document.querySelector('textarea.xterm-helper-textarea').dispatchEvent( \
           new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));",
        vec![json!(text)],
    )
    .await;
}

/// Whether the program in the terminal turned bracketed paste on.
async fn bracketed(b: &Browser) -> bool {
    b.js(
        "return window.portholeTerm.modes.bracketedPasteMode;",
        vec![],
    )
    .await
        == true
}

async fn wait_bracketed(b: &Browser, on: bool) {
    b.wait_for(&format!("bracketed paste mode {on}"), || async {
        (bracketed(b).await == on).then_some(())
    })
    .await;
}

async fn dialog_open(b: &Browser) -> bool {
    b.js(
        "return document.getElementById('paste-dialog').open;",
        vec![],
    )
    .await
        == true
}

/// A gateway whose policy (a file) is `policy`, with `user` holding `roles`.
async fn gateway_with_policy(
    policy: &str,
    user: &str,
    roles: &[&str],
) -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("policy.toml");
    std::fs::write(&file, policy).unwrap();
    let path = file.clone();
    let gw = gateway::start(Backend::Sqlite, move |c| c.policy.file = Some(path)).await;
    let roles: Vec<Role> = roles.iter().map(|r| Role::parse(r).unwrap()).collect();
    gw.user(user, &roles).await;
    (gw, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paste_splitter_and_key_bytes_in_the_browser() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    let b = Browser::start().await;
    b.client.goto(&format!("{}/login", gw.url)).await.unwrap();
    let v = js_await(
        &b,
        "const p = await import('/assets/paste.js'); \
         const k = await import('/assets/keys.js'); \
         const bytes = (pieces) => pieces.map((x) => Array.from(x)); \
         const text = 'aé€😀'.repeat(50) + '\\r\\nend\\n'; \
         const all = new TextEncoder().encode(p.preparePaste(text, false)); \
         const checks = [4, 5, 6, 7, 16, 1000].map((limit) => { \
           const pieces = p.pastePieces(text, {limit}); \
           const fatal = new TextDecoder('utf-8', {fatal: true}); \
           let whole = true; \
           try { pieces.forEach((x) => fatal.decode(x)); } catch { whole = false; } \
           const joined = pieces.flatMap((x) => Array.from(x)); \
           return {limit, max: Math.max(...pieces.map((x) => x.length)), whole, \
                   same: joined.length === all.length && joined.every((b, i) => b === all[i])}; \
         }); \
         let tooSmall = ''; \
         try { p.pastePieces('abc', {limit: 3}); } catch (e) { tooSmall = e.message; } \
         return { \
           newlines: p.normalizeNewlines('a\\r\\nb\\nc\\rd\\n\\n'), \
           empty: p.pastePieces('', {limit: 16}).length, \
           emptyBracketed: p.pastePieces('', {bracketed: true, limit: 16}).length, \
           wrapped: p.preparePaste('ls -l\\npwd\\n', true), \
           plain: p.preparePaste('ls -l\\r\\npwd', false), \
           injected: p.preparePaste('echo hi\\u001b[201~rm -rf ~\\n', true), \
           nested: p.preparePaste('x\\u001b[20\\u001b[201~1~y\\u001b[200~z', false), \
           pair: bytes(p.pastePieces('aaa😀b', {limit: 4})), \
           checks, tooSmall, \
           multi: [p.isMultiLine('one line'), p.isMultiLine('a\\nb'), p.isMultiLine('a\\r')], \
           preview: p.previewLines('1\\r\\n2\\n3\\r4\\n5\\n6\\n7\\n', 5), \
           ctrl: ['w', 'W', 't', 'n', '[', ' ', '?', '1', 'ab'].map(k.ctrlOf), \
           keys: [k.keyBytes('esc'), k.keyBytes('tab'), k.keyBytes('up'), \
                  k.keyBytes('left', {appCursor: true}), k.keyBytes('right', {ctrl: true}), \
                  k.keyBytes('c', {ctrl: true}), k.keyBytes('|'), k.keyBytes('~', {ctrl: true}), \
                  k.keyBytes('^', {ctrl: true})], \
         };",
    )
    .await;
    // CRLF and LF become CR, as a terminal sends Enter.
    assert_eq!(v["newlines"], "a\rb\rc\rd\r\r");
    // An empty paste sends nothing, not even the brackets.
    assert_eq!(v["empty"], 0);
    assert_eq!(v["emptyBracketed"], 0);
    // Bracketed: wrapped as xterm does; not bracketed: as is (normalised).
    assert_eq!(v["wrapped"], "\x1b[200~ls -l\rpwd\r\x1b[201~");
    assert_eq!(v["plain"], "ls -l\rpwd");
    // An end marker inside the paste is removed (else `rm -rf ~` would run as typed), also
    // one that removing another would form.
    assert_eq!(v["injected"], "\x1b[200~echo hirm -rf ~\r\x1b[201~");
    assert_eq!(v["nested"], "xyz");
    // Cut at the limit, never inside a character: the emoji's four bytes stay together.
    assert_eq!(
        v["pair"],
        json!([[97, 97, 97], [0xf0, 0x9f, 0x98, 0x80], [98]])
    );
    for check in v["checks"].as_array().unwrap() {
        assert!(
            check["max"].as_u64().unwrap() <= check["limit"].as_u64().unwrap(),
            "{check}"
        );
        assert_eq!(check["whole"], true, "each piece is whole UTF-8: {check}");
        assert_eq!(check["same"], true, "the pieces make the paste: {check}");
    }
    assert!(
        v["tooSmall"].as_str().unwrap().contains("at least 4"),
        "{v}"
    );
    assert_eq!(v["multi"], json!([false, true, true]));
    assert_eq!(
        v["preview"],
        json!({"lines": ["1", "2", "3", "4", "5"], "total": 7})
    );
    assert_eq!(
        v["ctrl"],
        json!([
            "\u{17}", "\u{17}", "\u{14}", "\u{e}", "\u{1b}", "\u{0}", "\u{7f}", null, null
        ])
    );
    assert_eq!(
        v["keys"],
        json!([
            "\u{1b}",
            "\t",
            "\u{1b}[A",
            "\u{1b}OD",
            "\u{1b}[1;5C",
            "\u{3}",
            "|",
            "~",
            "\u{1e}"
        ])
    );
    b.close().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pastes_ask_before_several_lines_respect_bracketed_paste_and_arrive_whole() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let b = Browser::start().await;
    open_session(&b, &gw, "alice").await;

    // A program that did not turn bracketed paste on (cat; no echo, so each line shows once).
    run_then(&b, "stty -echo; echo CAT-1; cat -v; stty echo", "CAT-1").await;
    assert!(!bracketed(&b).await);
    paste_event(&b, "PA-one\nPA-two\r\nPA-three\nPA-4\nPA-5\nPA-6\nPA-7\n").await;
    b.wait_for_shown("#paste-dialog").await;
    let preview = b.wait_for_text("#paste-preview", "PA-one").await;
    assert_eq!(
        preview,
        "PA-one\nPA-two\nPA-three\nPA-4\nPA-5\n… and 2 more lines"
    );
    let summary = b.wait_for_text("#paste-summary", "7 lines").await;
    assert!(summary.contains("The first 5 are shown"), "{summary}");
    b.screenshot("paste-confirm.png").await;
    // Cancel: nothing is sent. Then the same paste, confirmed: it arrives once.
    let focused = b.js("return document.activeElement.id;", vec![]).await;
    assert_eq!(focused, "paste-cancel", "Cancel has the focus");
    b.click("#paste-cancel").await;
    b.wait_for("the dialog to close", || async {
        (!dialog_open(&b).await).then_some(())
    })
    .await;
    paste_event(&b, "PA-one\nPA-two\r\nPA-three\nPA-4\nPA-5\nPA-6\nPA-7\n").await;
    b.wait_for_shown("#paste-dialog").await;
    b.click("#paste-confirm").await;
    let screen = b
        .wait_for_screen("the pasted lines", |s| s.contains("PA-7"))
        .await;
    assert_eq!(screen.matches("PA-one").count(), 1, "{screen}");
    assert!(
        screen.contains("PA-two\n"),
        "CRLF became one line break: {screen}"
    );
    // One line asks nothing.
    paste_event(&b, "PB-single").await;
    run(&b, "").await;
    b.wait_for_screen("the one-line paste", |s| s.contains("PB-single"))
        .await;
    assert!(!dialog_open(&b).await);
    b.type_in_terminal(&ctrl('c')).await;

    // A program that turned bracketed paste on: no question; the text arrives wrapped, and an
    // end marker inside it is stripped.
    run_then(
        &b,
        "printf '\\033[?2004h'; echo CAT-2; stty -echo; cat -v; stty echo",
        "CAT-2",
    )
    .await;
    assert!(bracketed(&b).await);
    paste_event(&b, "BR-one\nBR-two\x1b[201~INJ").await;
    b.wait_for_screen("the bracketed paste's first line", |s| s.contains("BR-one"))
        .await;
    keys_to_terminal(&b, &key(Key::Enter)).await;
    let screen = b
        .wait_for_screen("the bracketed paste", |s| s.contains("INJ"))
        .await;
    assert!(!dialog_open(&b).await, "no question when bracketed");
    assert!(screen.contains("^[[200~BR-one"), "{screen}");
    assert!(screen.contains("BR-twoINJ^[[201~"), "{screen}");
    assert_eq!(screen.matches("[201~").count(), 1, "{screen}");
    b.type_in_terminal(&ctrl('c')).await;
    run(&b, "printf '\\033[?2004l'; clear").await;

    // A large paste: sent in pieces under the gateway's message limit (64 KiB; a larger one
    // would close the socket), without flooding: every byte arrives, once.
    run_then(
        &b,
        "stty -echo; echo WC-READY; wc -c; stty echo",
        "WC-READY",
    )
    .await;
    assert!(!bracketed(&b).await);
    let line = format!("{}\n", "0123456789".repeat(5)); // 51 bytes
    let big = line.repeat(4000);
    // The binary messages the page sends from here on, by size. Flow control: once the first
    // piece is sent, the socket says it holds a lot unsent (`bufferedAmount`, as a slow network
    // would) until the test lets go: no further piece may leave meanwhile.
    b.js(
        "window.sentSizes = []; window.held = false; window.asked = 0; \
         const send = WebSocket.prototype.send; \
         WebSocket.prototype.send = function (data) { \
           if (typeof data !== 'string') { window.sentSizes.push(data.byteLength); if (window.sentSizes.length === 1) window.held = true; } \
           return send.call(this, data); }; \
         const buffered = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'bufferedAmount').get; \
         Object.defineProperty(WebSocket.prototype, 'bufferedAmount', {configurable: true, \
           get() { if (window.held) { window.asked += 1; return 1 << 20; } return buffered.call(this); }});",
        vec![],
    )
    .await;
    paste_event(&b, &big).await;
    b.wait_for_shown("#paste-dialog").await;
    b.wait_for_text("#paste-summary", "4000 lines").await;
    b.click("#paste-confirm").await;
    b.wait_for("the paste to wait for the socket", || async {
        let asked = b.js("return window.asked;", vec![]).await;
        (asked.as_u64().unwrap_or(0) >= 20).then_some(())
    })
    .await;
    let waiting = b
        .js(
            "return [window.sentSizes.length, document.getElementById('session').dataset.paste];",
            vec![],
        )
        .await;
    assert_eq!(
        waiting,
        json!([1, "sending"]),
        "one piece sent; the next waits for the socket to drain"
    );
    b.js("window.held = false; return null;", vec![]).await;
    b.wait_for_attr("#session", "data-paste", "sent").await;
    let sizes: Vec<u64> =
        serde_json::from_value(b.js("return window.sentSizes;", vec![]).await).unwrap();
    assert_eq!(sizes.iter().sum::<u64>(), 51 * 4000, "{sizes:?}");
    assert!(
        sizes.iter().all(|&n| n <= 16 * 1024),
        "pieces of at most 16 KiB: {sizes:?}"
    );
    assert_eq!(sizes.len(), 13, "{sizes:?}");
    b.type_in_terminal(&ctrl('d')).await;
    let want = (51 * 4000).to_string();
    b.wait_for_screen("the byte count of the large paste", |s| {
        s.lines().any(|l| l.trim() == want)
    })
    .await;
    assert_eq!(
        b.js(
            "return document.getElementById('conn-state').dataset.state;",
            vec![]
        )
        .await,
        "connected"
    );
    b.close().await;
    gw.stop().await;
}

/// The text of the context menu's items and whether each is disabled.
async fn menu_items(b: &Browser) -> Value {
    b.js(
        "return Array.from(document.querySelectorAll('#term-menu [role=menuitem]'), \
         (e) => [e.dataset.action, e.getAttribute('aria-disabled') === 'true']);",
        vec![],
    )
    .await
}

async fn right_click_terminal(b: &Browser) {
    let screen = b
        .client
        .find(Locator::Css("#terminal .xterm-screen"))
        .await
        .unwrap();
    let mouse = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element: screen,
            duration: None,
            x: 0.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_RIGHT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_RIGHT,
        });
    b.client.perform_actions(mouse).await.unwrap();
    b.wait_for_shown("#term-menu").await;
}

/// Types `keys` into the terminal without clicking it first (a click would clear the
/// selection).
async fn keys_to_terminal(b: &Browser, keys: &str) {
    b.client
        .find(Locator::Css("textarea.xterm-helper-textarea"))
        .await
        .unwrap()
        .send_keys(keys)
        .await
        .unwrap();
}

/// Types `keys` to whatever has the focus (the context menu).
async fn press(b: &Browser, keys: &str) {
    b.client
        .active_element()
        .await
        .unwrap()
        .send_keys(keys)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_with_the_keyboard_on_selection_and_from_the_context_menu() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let b = Browser::start().await;
    open_session(&b, &gw, "alice").await;
    b.grant_clipboard().await;

    run(&b, "printf 'CP-%s\\n' $((40+2))").await;
    b.wait_for_screen("the marker", |s| s.contains("CP-42"))
        .await;

    // Ctrl+Shift+C copies the selection (and is not sent to the shell).
    set_clipboard(&b, "nothing yet").await;
    b.js("window.portholeTerm.selectAll();", vec![]).await;
    keys_to_terminal(&b, &ctrl_shift('c')).await;
    b.wait_for("the selection copied", || async {
        clipboard(&b).await.contains("CP-42").then_some(())
    })
    .await;

    // The context menu, by keyboard once open: Copy (disabled without a selection), Paste,
    // Select all.
    b.js("window.portholeTerm.clearSelection();", vec![]).await;
    right_click_terminal(&b).await;
    assert_eq!(
        menu_items(&b).await,
        json!([["copy", true], ["paste", false], ["select-all", false]])
    );
    let focused = b
        .js("return document.activeElement.dataset.action;", vec![])
        .await;
    assert_eq!(
        focused, "paste",
        "the first item that can be used has the focus"
    );
    b.screenshot("terminal-menu.png").await;
    press(&b, &key(Key::Down)).await;
    press(&b, &key(Key::Enter)).await;
    b.wait_for("everything selected", || async {
        let text = b
            .js("return window.portholeTerm.getSelection();", vec![])
            .await;
        text.as_str().unwrap().contains("CP-42").then_some(())
    })
    .await;
    // Esc closes the menu and gives the terminal the keys back.
    right_click_terminal(&b).await;
    assert_eq!(menu_items(&b).await[0], json!(["copy", false]));
    set_clipboard(&b, "nothing yet").await;
    press(&b, &key(Key::Enter)).await; // Copy, focused first now
    b.wait_for("the selection copied from the menu", || async {
        clipboard(&b).await.contains("CP-42").then_some(())
    })
    .await;
    b.js("window.portholeTerm.clearSelection();", vec![]).await;

    // Paste from the menu: the clipboard's text, into the prompt.
    set_clipboard(&b, "echo MENU-$((6*7))").await;
    right_click_terminal(&b).await;
    press(&b, &key(Key::Enter)).await; // Paste (Copy is disabled)
    b.wait_for_screen("the pasted command", |s| s.contains("echo MENU-$((6*7))"))
        .await;
    run(&b, "").await;
    b.wait_for_screen("the command's output", |s| s.contains("MENU-42"))
        .await;

    // Copy on selection, a setting (off by default).
    b.click("#settings-open").await;
    b.wait_for_shown("#settings-panel").await;
    b.click("#set-copy_on_select").await;
    b.wait_for_text("#settings-status", "Saved").await;
    b.click("#settings-close").await;
    set_clipboard(&b, "nothing yet").await;
    b.js("window.portholeTerm.selectAll();", vec![]).await;
    b.wait_for("the selection copied as it was made", || async {
        clipboard(&b).await.contains("MENU-42").then_some(())
    })
    .await;
    b.close().await;
    gw.stop().await;
}

const NO_CLIPBOARD: &str = r#"
[[roles]]
name = "regulated"
targets = [{ ids = ["*"] }]
clipboard = false
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_clipboard_turns_copy_and_paste_off_in_the_page() {
    let (gw, _dir) = gateway_with_policy(NO_CLIPBOARD, "alice", &["regulated"]).await;
    let b = Browser::start().await;
    open_session(&b, &gw, "alice").await;
    b.grant_clipboard().await;

    // Said where it stays visible.
    b.wait_for_shown("#clipboard-note").await;
    let note = b
        .wait_for_text("#clipboard-note", "Copy and paste off")
        .await;
    assert_eq!(note, "Copy and paste off");
    b.screenshot("terminal-clipboard-off.png").await;

    // A paste event, dropped text, Ctrl+Shift+V and the menu's Paste: none reaches the shell.
    paste_event(&b, "echo PASTED-$((3*5))\n").await;
    b.js(
        "const data = new DataTransfer(); data.setData('text/plain', 'echo DROPPED-$((3*7))\\n'); \
         document.querySelector('#terminal .xterm-screen').dispatchEvent( \
           new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));",
        vec![],
    )
    .await;
    set_clipboard(&b, "echo SHORTCUT-$((4*4))\n").await;
    b.type_in_terminal(&ctrl_shift('v')).await;
    right_click_terminal(&b).await;
    assert_eq!(
        menu_items(&b).await,
        json!([["copy", true], ["paste", true], ["select-all", false]])
    );
    let said = b
        .wait_for_text("#term-menu p", "off for this session")
        .await;
    assert!(said.contains("policy"), "{said}");
    press(&b, &key(Key::Escape)).await;
    assert!(!dialog_open(&b).await);
    // What is typed still arrives; nothing pasted came before it.
    run(&b, "echo TYPED-$((2*2))").await;
    let screen = b
        .wait_for_screen("the typed command", |s| s.contains("TYPED-4"))
        .await;
    for pasted in ["PASTED", "DROPPED", "SHORTCUT"] {
        assert!(
            !screen.contains(pasted),
            "{pasted} reached the shell:\n{screen}"
        );
    }

    // Copying does not reach the clipboard either.
    set_clipboard(&b, "nothing yet").await;
    b.js("window.portholeTerm.selectAll();", vec![]).await;
    keys_to_terminal(&b, &ctrl_shift('c')).await;
    let selected = b
        .js("return window.portholeTerm.getSelection();", vec![])
        .await;
    assert!(
        selected.as_str().unwrap().contains("TYPED-4"),
        "something to copy: {selected}"
    );
    b.js(
        "document.querySelector('textarea.xterm-helper-textarea').focus(); \
         document.execCommand('copy');",
        vec![],
    )
    .await;
    assert_eq!(clipboard(&b).await, "nothing yet");
    b.close().await;
    gw.stop().await;
}

/// What the shell reads next, `count` characters, shown as hex bytes by `od` (no echo, not
/// canonical, so that ^W and friends are read as bytes, not line editing).
async fn read_bytes(b: &Browser, count: usize) {
    run(
        b,
        &format!("read -rsn{count} x; printf '%s' \"$x\" | od -An -tx1; echo READ-DONE"),
    )
    .await;
    // Wait for the shell to run it (and reset bracketed paste, readline's last act).
    wait_bracketed(b, false).await;
}

async fn wait_for_bytes(b: &Browser, hex: &str) -> String {
    b.wait_for_screen(&format!("the bytes {hex}"), |s| {
        s.lines().any(|l| l.trim() == hex) && s.lines().any(|l| l.trim() == "READ-DONE")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_shift_v_pastes_the_clipboard_into_the_shell() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let b = Browser::start().await;
    open_session(&b, &gw, "alice").await;
    b.grant_clipboard().await;

    // The browser's own paste (Chromium reads its clipboard on Ctrl+Shift+V); the page's
    // handler sends it; xterm.js sends no ^V (0x16) of its own.
    set_clipboard(&b, "vx!").await;
    read_bytes(&b, 3).await;
    b.type_in_terminal(&ctrl_shift('v')).await;
    wait_for_bytes(&b, "76 78 21").await;
    // Once: nothing more follows at the prompt (Chromium hands the page this key press's paste
    // more than once; the page pastes it once).
    run(&b, "echo AFTER-$((2+3))").await;
    let screen = b
        .wait_for_screen("the next command's output", |s| {
            s.lines().any(|l| l.trim() == "AFTER-5")
        })
        .await;
    assert!(
        screen
            .lines()
            .any(|l| l.trim_end().ends_with("# echo AFTER-$((2+3))")
                || l.trim_end().ends_with("$ echo AFTER-$((2+3))")),
        "nothing pasted before the command: {screen}"
    );

    // The shell's prompt turns bracketed paste on; the shell is told not to, so that a paste
    // of several lines asks.
    run(&b, "bind 'set enable-bracketed-paste off'").await;
    wait_bracketed(&b, false).await;

    // Several lines ask first, as any paste does; then they run.
    set_clipboard(&b, "echo SV-$((6*7))\necho SV-$((7*7))\n").await;
    b.type_in_terminal(&ctrl_shift('v')).await;
    b.wait_for_shown("#paste-dialog").await;
    b.wait_for_text("#paste-summary", "2 lines").await;
    b.click("#paste-confirm").await;
    b.wait_for_screen("both pasted commands' output", |s| {
        s.lines().any(|l| l.trim() == "SV-42") && s.lines().any(|l| l.trim() == "SV-49")
    })
    .await;
    b.close().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_shortcuts_reach_the_shell_and_leaving_a_live_shell_warns() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let b = Browser::start().await;
    open_session(&b, &gw, "alice").await;

    // Ctrl+W, Ctrl+T and Ctrl+N: the page sends their control bytes to the shell, once each,
    // and cancels the key press before anything else sees it (the browser's default: close the
    // tab, open one, open a window). A listener on the window in the same (capture) phase,
    // added after the page's, sees what the page did; xterm.js's own handler (on its textarea)
    // comes later.
    b.js(
        "window.shortcuts = []; window.addEventListener('keydown', (e) => { \
           if (e.ctrlKey && !e.shiftKey && e.code.startsWith('Key')) window.shortcuts.push([e.code, e.defaultPrevented]); }, true);",
        vec![],
    )
    .await;
    read_bytes(&b, 3).await;
    b.type_in_terminal(&format!("{}{}{}", ctrl('w'), ctrl('t'), ctrl('n')))
        .await;
    wait_for_bytes(&b, "17 14 0e").await;
    assert_eq!(
        b.js("return window.shortcuts;", vec![]).await,
        json!([["KeyW", true], ["KeyT", true], ["KeyN", true]]),
        "the page cancels the browser's shortcut"
    );
    // Elsewhere on the page (the find box), they are the browser's: the page leaves them be.
    b.click("#find-open").await;
    b.wait_for_shown("#find-input").await;
    b.js("window.shortcuts = [];", vec![]).await;
    b.client
        .find(Locator::Css("#find-input"))
        .await
        .unwrap()
        .send_keys(&ctrl('w'))
        .await
        .unwrap();
    assert_eq!(
        b.js("return window.shortcuts;", vec![]).await,
        json!([["KeyW", false]])
    );
    b.click("#find-close").await;
    assert_eq!(
        b.client.windows().await.unwrap().len(),
        1,
        "no tab closed or opened"
    );

    // Full screen (the keyboard locked where the browser can): the keys still reach the shell.
    b.click("#fullscreen").await;
    b.wait_for_attr("#fullscreen", "aria-pressed", "true").await;
    read_bytes(&b, 2).await;
    b.type_in_terminal(&format!("{}{}", ctrl('w'), key(Key::Escape)))
        .await;
    wait_for_bytes(&b, "17 1b").await;
    b.click("#fullscreen").await;
    b.wait_for_attr("#fullscreen", "aria-pressed", "false")
        .await;

    // The warning before leaving: a beforeunload handler that asks, while the shell is live.
    let unload = "const e = new Event('beforeunload', {cancelable: true}); \
                  window.dispatchEvent(e); return e.defaultPrevented;";
    assert_eq!(b.js(unload, vec![]).await, true);
    b.wait_for_attr("#session", "data-unload-guard", "true")
        .await;
    // Ended: nothing to lose, no warning.
    b.click("#terminate").await;
    b.accept_confirm().await;
    b.wait_for_attr("#conn-state", "data-state", "ended").await;
    assert_eq!(b.js(unload, vec![]).await, false);
    b.wait_for_attr("#session", "data-unload-guard", "false")
        .await;
    b.close().await;
    gw.stop().await;
}

async fn key_bar_shown(b: &Browser) -> bool {
    b.js(
        "const bar = document.getElementById('key-bar'); \
         return !bar.hidden && bar.getBoundingClientRect().height > 0;",
        vec![],
    )
    .await
        == true
}

async fn choose_key_bar(b: &Browser, value: &str) {
    b.click("#settings-open").await;
    b.wait_for_shown("#settings-panel").await;
    b.client
        .find(Locator::Css("#set-key_bar"))
        .await
        .unwrap()
        .select_by_value(value)
        .await
        .unwrap();
    b.wait_for_text("#settings-status", "Saved").await;
    b.click("#settings-close").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_bar_sends_terminal_keys_and_shows_on_touch_screens() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let b = Browser::start().await;
    open_session(&b, &gw, "alice").await;

    // A desktop (no touch): hidden by default; the setting forces it on.
    assert!(!key_bar_shown(&b).await);
    choose_key_bar(&b, "on").await;
    b.wait_for("the key bar", || async {
        key_bar_shown(&b).await.then_some(())
    })
    .await;

    // Esc, Tab, Up, the sticky Ctrl with a typed w, and |: the bytes a terminal sends.
    read_bytes(&b, 7).await;
    for k in ["esc", "tab", "up", "ctrl"] {
        b.click(&format!("#key-bar [data-key='{k}']")).await;
    }
    b.wait_for_attr("#key-bar [data-key='ctrl']", "aria-pressed", "true")
        .await;
    b.screenshot("terminal-key-bar.png").await;
    b.type_in_terminal("w").await;
    b.wait_for_attr("#key-bar [data-key='ctrl']", "aria-pressed", "false")
        .await;
    b.click("#key-bar [data-key='|']").await;
    wait_for_bytes(&b, "1b 09 1b 5b 41 17 7c").await;
    let focused = b
        .js("return document.activeElement.className;", vec![])
        .await;
    assert!(
        focused.as_str().unwrap().contains("xterm-helper-textarea"),
        "the terminal keeps the focus: {focused}"
    );

    // Off: hidden, even on a touch screen; auto: shown on one (Chromium's touch emulation).
    choose_key_bar(&b, "off").await;
    assert!(!key_bar_shown(&b).await);
    b.cdp(
        "Emulation.setTouchEmulationEnabled",
        json!({"enabled": true, "maxTouchPoints": 5}),
    )
    .await
    .unwrap();
    choose_key_bar(&b, "auto").await;
    b.client.refresh().await.unwrap();
    wait_for_prompt(&b).await;
    b.wait_for("the key bar on a touch screen", || async {
        key_bar_shown(&b).await.then_some(())
    })
    .await;
    b.close().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_method_composition_reaches_the_shell_as_utf8() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let b = Browser::start().await;
    open_session(&b, &gw, "alice").await;

    run(
        &b,
        "read -r x; printf '%s' \"$x\" | od -An -tx1; echo READ-DONE",
    )
    .await;
    wait_bracketed(&b, false).await;
    b.type_in_terminal("").await; // the focus
    // An input method composing 日本 (Chromium's own IME events: compositionstart, updates,
    // compositionend), then Enter.
    for (text, at) in [("に", 1), ("にほ", 2), ("にほん", 3)] {
        b.cdp(
            "Input.imeSetComposition",
            json!({"text": text, "selectionStart": at, "selectionEnd": at}),
        )
        .await
        .unwrap();
    }
    b.cdp("Input.insertText", json!({"text": "日本"}))
        .await
        .unwrap();
    b.type_in_terminal(&key(Key::Enter)).await;
    let screen = wait_for_bytes(&b, "e6 97 a5 e6 9c ac").await;
    assert!(
        !screen.contains("e3 81"),
        "the composing kana were not sent: {screen}"
    );
    b.close().await;
    gw.stop().await;
}
