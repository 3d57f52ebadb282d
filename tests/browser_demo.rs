#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Browser tests against the real `porthole demo` (issue 19: "each item in headless Chromium
//! against `porthole demo`"): the binary is started as a person starts it (a temporary data
//! folder, a free loopback port), and the test reads the URL and the operator's password it
//! prints, as a person would. Through the pages only: sign in, pick a demo node, give a
//! reason, get a shell and see a command's output; then each of the terminal's tools once:
//! find (opened with the Find button) highlights the matches, a settings change applies, the
//! browser's clipboard pasted into the shell, the Files panel uploads a file and downloads it
//! back (the saved file read from disk), and "+" opens a second session in a tab of its own.
//! A screenshot is kept after each step, in the browser artefacts folder. The assets come from
//! `web/dist` (`scripts/web-build`).

#[path = "common/browser.rs"]
#[allow(dead_code)] // shared with tests/browser.rs, which uses all of it
mod browser;
mod common;

use std::path::Path;

use fantoccini::Locator;
use fantoccini::key::Key;
use serde_json::{Value, json};

use browser::Browser;
use common::procs::{self, Proc};

/// The demo's node (the emulator's `web-1`).
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

/// Whether a line of the screen is exactly `text`.
fn line(s: &str, text: &str) -> bool {
    s.lines().any(|l| l.trim() == text)
}

/// Whether the screen has a shell prompt.
fn prompt(s: &str) -> bool {
    s.lines().any(|l| {
        let l = l.trim_end();
        l.ends_with('$') || l.ends_with('#')
    })
}

/// A running `porthole demo`: its URL and the operator's password, as it printed them.
struct Demo {
    proc: Proc,
    url: String,
    password: String,
    _data: tempfile::TempDir,
}

impl Demo {
    /// `porthole demo --listen 127.0.0.1:0 --data-dir <a temporary folder>`, with the random
    /// passwords it makes itself.
    fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut command = procs::porthole();
        command
            .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path().join("demo"));
        let mut proc = Proc::spawn(command, data.path().join("demo.stderr"));
        let first = proc.line_with("http://127.0.0.1:");
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("no URL in {first:?}"))
            .to_owned();
        // "  user operator  password XXXXXXXXXXXXXXXX"
        let user = proc.line_with("user operator");
        let words: Vec<&str> = user.split_whitespace().collect();
        assert_eq!(words.len(), 4, "{user:?}");
        assert_eq!(words[2], "password", "{user:?}");
        let password = words[3].to_owned();
        assert!(password.len() >= 12, "a random password: {user:?}");
        Self {
            proc,
            url,
            password,
            _data: data,
        }
    }

    /// Stops it as Ctrl-C does; it exits cleanly (dropping it kills it otherwise).
    async fn stop(mut self) {
        nix::sys::signal::kill(self.proc.pid(), nix::sys::signal::Signal::SIGINT).unwrap();
        let status = self.proc.exit_within(procs::BOUND).await;
        assert!(
            status.success(),
            "{status}; stderr:\n{}",
            self.proc.stderr()
        );
    }
}

/// Signs in as the operator through the sign-in page with the printed password, picks the
/// demo's `web-1` on the targets page, gives a reason, and waits for the terminal page to show
/// a prompt. Returns the session's id.
async fn sign_in_and_open_a_shell(b: &Browser, demo: &Demo, shot: &str) -> String {
    b.sign_in(&demo.url, "operator", &demo.password).await;
    let row = format!("tr[data-target='{NODE}']");
    b.wait_for_shown(&row).await;
    b.screenshot(&format!("{shot}-01-targets.png")).await;
    b.fill("#filter", NODE_NAME).await;
    b.click(&format!("{row} button.connect")).await;
    b.wait_for_shown("#reason-dialog").await;
    b.fill("#reason", "INC-19 trying the demo").await;
    b.screenshot(&format!("{shot}-02-reason.png")).await;
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

    // A command and its output (computed by the shell, so not the echo of what was typed).
    run(b, "echo DEMO-$((6*7))").await;
    b.wait_for_screen("the command's output", |s| line(s, "DEMO-42"))
        .await;
    b.screenshot(&format!("{shot}-03-shell.png")).await;
    id
}

async fn run(b: &Browser, command: &str) {
    b.type_in_terminal(&format!("{command}{}", key(Key::Enter)))
        .await;
}

/// xterm.js's options that the settings drive, as the page's terminal has them.
async fn term_options(b: &Browser) -> Value {
    b.js(
        "const o = window.portholeTerm.options; \
         return {font_size: o.fontSize, background: o.theme.background, \
                 host: getComputedStyle(document.getElementById('terminal')).backgroundColor};",
        vec![],
    )
    .await
}

/// How many rows the find decorations highlight, and how many have the active match's border
/// (`activeMatchBorder` of terminal.js, #f2cc60).
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

async fn set_clipboard(b: &Browser, text: &str) {
    let done = b
        .client
        .execute_async(
            "const done = arguments[1]; \
             navigator.clipboard.writeText(arguments[0]).then(() => done(true), (e) => done(String(e)));",
            vec![json!(text)],
        )
        .await
        .unwrap();
    assert_eq!(done, json!(true), "writing the clipboard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shell_find_settings_and_paste_in_the_browser() {
    let demo = Demo::start();
    let b = Browser::start().await;
    sign_in_and_open_a_shell(&b, &demo, "demo-a").await;

    // Find, opened with the Find button: both matches highlighted, one of them active.
    run(&b, "printf 'ZQ-%s-%s\\n' A 1 B 2 A 3").await;
    b.wait_for_screen("the markers", |s| line(s, "ZQ-A-3"))
        .await;
    b.click("#find-open").await;
    b.wait_for_shown("#find-bar").await;
    assert_eq!(
        b.js("return document.activeElement.id;", vec![]).await,
        json!("find-input"),
        "the Find button puts the focus in the find box"
    );
    b.client
        .find(Locator::Css("#find-input"))
        .await
        .unwrap()
        .send_keys("ZQ-A")
        .await
        .unwrap();
    b.wait_for_attr("#find-bar", "data-count", "2").await;
    b.wait_for("both matches highlighted, one active", || async {
        (highlighted(&b).await == (2, 1)).then_some(())
    })
    .await;
    b.wait_for_text("#find-count", " of 2").await;
    b.screenshot("demo-a-04-find.png").await;
    b.click("#find-close").await;
    b.wait_for("the find box closed, its highlights gone", || async {
        let hidden = b
            .js("return document.getElementById('find-bar').hidden;", vec![])
            .await;
        (hidden == true && highlighted(&b).await == (0, 0)).then_some(())
    })
    .await;

    // Settings: the light theme and a larger font apply at once.
    let before = term_options(&b).await;
    assert_eq!(before["background"], "#0d1117", "{before}");
    b.click("#settings-open").await;
    b.wait_for_shown("#settings-panel").await;
    b.client
        .find(Locator::Css("#set-theme"))
        .await
        .unwrap()
        .select_by_value("light")
        .await
        .unwrap();
    b.wait_for_text("#settings-status", "Saved").await;
    b.fill("#set-font_size", "16").await;
    b.click("#settings-save").await;
    let now = b
        .wait_for("the light theme and 16 px applied", || async {
            let o = term_options(&b).await;
            (o["background"] == "#ffffff" && o["font_size"] == 16).then_some(o)
        })
        .await;
    assert_eq!(now["host"], "rgb(255, 255, 255)", "{now}");
    b.screenshot("demo-a-05-settings.png").await;
    b.click("#settings-close").await;

    // Paste: the browser's clipboard, Ctrl+Shift+V in the terminal, into the shell.
    b.grant_clipboard().await;
    set_clipboard(&b, "echo PASTED-$((7*8))").await;
    b.type_in_terminal(&ctrl_shift('v')).await;
    b.wait_for_screen("the pasted command at the prompt", |s| {
        s.contains("echo PASTED-$((7*8))")
    })
    .await;
    b.type_in_terminal(&key(Key::Enter)).await;
    let screen = b
        .wait_for_screen("the pasted command's output", |s| line(s, "PASTED-56"))
        .await;
    assert_eq!(
        screen.matches("echo PASTED-$((7*8))").count(),
        1,
        "pasted once: {screen}"
    );
    b.screenshot("demo-a-06-paste.png").await;

    b.close().await;
    demo.stop().await;
}

/// Waits for `path` to hold exactly `content` (a browser download lands under a temporary
/// name first).
async fn wait_for_file(b: &Browser, path: &Path, content: &[u8]) {
    b.wait_for(&format!("{} to be saved", path.display()), || async {
        (std::fs::read(path).ok()? == content).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_files_and_a_second_tab_in_the_browser() {
    let demo = Demo::start();
    let b = Browser::start().await;
    let first = sign_in_and_open_a_shell(&b, &demo, "demo-b").await;

    // Files: upload a small file from this machine to the node (the demo's nodes are this
    // machine), then download it back into the browser's downloads folder.
    let local = tempfile::tempdir().unwrap();
    let content = b"uploaded through porthole demo\nline two\n".to_vec();
    let source = local.path().join("demo note.txt");
    std::fs::write(&source, &content).unwrap();
    let node_dir = tempfile::tempdir().unwrap();
    let dest = node_dir.path().join("demo note.txt");
    let downloads = tempfile::tempdir().unwrap();
    b.cdp(
        "Browser.setDownloadBehavior",
        json!({"behavior": "allow", "downloadPath": downloads.path().display().to_string()}),
    )
    .await
    .unwrap();

    b.click("#files-open").await;
    b.wait_for_shown("#files-panel").await;
    b.fill("#files-dir", &node_dir.path().display().to_string())
        .await;
    b.wait_for_shown("#files-choose").await;
    b.client
        .find(Locator::Css("#files-input"))
        .await
        .unwrap()
        .send_keys(&source.display().to_string())
        .await
        .unwrap();
    let done = b.wait_for_text("#files-status", "Uploaded").await;
    assert!(done.contains(&dest.display().to_string()), "{done}");
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        content,
        "the file on the node"
    );
    b.screenshot("demo-b-04-uploaded.png").await;

    b.fill("#files-path", &dest.display().to_string()).await;
    b.click("#files-get").await;
    let done = b.wait_for_text("#files-status", "Downloaded").await;
    assert!(done.contains(&dest.display().to_string()), "{done}");
    wait_for_file(&b, &downloads.path().join("demo note.txt"), &content).await;
    b.screenshot("demo-b-05-downloaded.png").await;
    b.click("#files-close").await;

    // "+": a second session on the node, in a tab of its own, typed into separately.
    b.click("#tab-new").await;
    b.wait_for_shown("#tab-dialog").await;
    assert_eq!(
        b.js(
            "return document.getElementById('tab-target').value;",
            vec![]
        )
        .await,
        json!(NODE),
        "the shown tab's node is offered first"
    );
    b.click("#tab-next").await;
    b.wait_for_shown("#reason-dialog").await;
    b.fill("#reason", "INC-19 a second shell in the demo").await;
    b.click("#reason-submit").await;
    b.wait_for_attr("#session", "data-tabs", "2").await;
    let second = b
        .js(
            "return document.getElementById('session').dataset.activeTab;",
            vec![],
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(second, first, "another session");
    b.wait_for_attr(
        &format!("#tab-{second} .tab-state"),
        "data-state",
        "connected",
    )
    .await;
    b.client
        .find(Locator::Css(&format!("iframe#panel-{second}")))
        .await
        .unwrap()
        .enter_frame()
        .await
        .unwrap();
    b.wait_for_screen("a prompt in the second tab", prompt)
        .await;
    run(&b, "echo TAB-TWO-$((9*9))").await;
    let screen = b
        .wait_for_screen("the second tab's output", |s| line(s, "TAB-TWO-81"))
        .await;
    assert!(!line(&screen, "DEMO-42"), "a shell of its own: {screen}");
    b.client.enter_parent_frame().await.unwrap();
    b.screenshot("demo-b-06-second-tab.png").await;

    // Both are the operator's running sessions, as the gateway lists them.
    let running = b
        .client
        .execute_async(
            "const done = arguments[0]; fetch('/api/v1/sessions').then((r) => r.json()) \
             .then((j) => done(j.sessions.filter((s) => s.state === 'active').map((s) => s.id).sort()));",
            vec![],
        )
        .await
        .unwrap();
    let mut want = vec![first, second];
    want.sort();
    assert_eq!(running, json!(want));

    b.close().await;
    demo.stop().await;
}
