#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Browser test of file transfer on the terminal page: the owner opens the Files control,
//! uploads a file with the Upload button (the file chooser's input), sees the progress and the
//! completion in the panel, finds the file on the node (read back with `sha256sum` typed into
//! the shell, and on disk: the emulator's nodes are this machine), drops another on the
//! terminal, downloads one by path, and is
//! told clearly when a path names no file. A role without `file_transfer` sees no Files
//! control. Debian's Chromium, headless, through chromedriver (tests/common/browser.rs); the
//! assets come from `web/dist` (`scripts/web-build`).

#[path = "common/browser.rs"]
#[allow(dead_code)] // shared with tests/browser.rs, which uses all of it
mod browser;
mod common;

use fantoccini::Locator;
use fantoccini::key::Key;
use porthole::gateway::identity::users::Role;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use browser::Browser;
use common::gateway::{self, Backend, Gateway, PASSWORD};

/// The emulator's default online node.
const NODE: &str = "i-0a1b2c3d4e5f60001";
const NODE_NAME: &str = "web-1";

const POLICY: &str = r#"
[[roles]]
name = "movers"
targets = [{ ids = ["*"] }]
file_transfer = "both"

[[roles]]
name = "shell-only"
targets = [{ ids = ["*"] }]
"#;

/// Signs in as `user` and opens a session on `NODE`; waits for a connected terminal with a
/// prompt.
async fn open_session(b: &Browser, gw: &Gateway, user: &str) {
    b.sign_in(&gw.url, user, PASSWORD).await;
    let row = format!("tr[data-target='{NODE}']");
    b.wait_for_shown(&row).await;
    b.fill("#filter", NODE_NAME).await;
    b.click(&format!("{row} button.connect")).await;
    b.wait_for_shown("#reason-dialog").await;
    b.fill("#reason", "INC-19 move a file").await;
    b.click("#reason-submit").await;
    b.wait_for("the terminal page", || async {
        let url = b.client.current_url().await.ok()?;
        url.path().strip_prefix("/sessions/").map(|_| ())
    })
    .await;
    b.wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    b.wait_for_screen("a shell prompt", |s| {
        s.lines().any(|l| {
            let l = l.trim_end();
            l.ends_with('$') || l.ends_with('#')
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_with_the_button_then_download_by_path() {
    let policy_dir = tempfile::tempdir().unwrap();
    let file = policy_dir.path().join("policy.toml");
    std::fs::write(&file, POLICY).unwrap();
    let gw = gateway::start(Backend::Sqlite, |c| c.policy.file = Some(file.clone())).await;
    gw.user("alice", &[Role::parse("movers").unwrap()]).await;
    gw.user("sam", &[Role::parse("shell-only").unwrap()]).await;

    // The file to upload, chosen from the browser's file system (this machine's).
    let local = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let source = local.path().join("report 2026.bin");
    std::fs::write(&source, &content).unwrap();
    let sha = hex::encode(Sha256::digest(&content));
    // Where it goes on the node.
    let node_dir = tempfile::tempdir().unwrap();
    let dest = node_dir.path().join("report 2026.bin");

    let b = Browser::start().await;
    open_session(&b, &gw, "alice").await;
    b.click("#files-open").await;
    b.wait_for_shown("#files-panel").await;
    assert_eq!(
        b.client
            .find(Locator::Css("#files-open"))
            .await
            .unwrap()
            .attr("aria-expanded")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    b.fill("#files-dir", &node_dir.path().display().to_string())
        .await;
    // Every message the panel shows, kept by the page for the test.
    b.js(
        "window.filesLog = []; \
         new MutationObserver(() => window.filesLog.push(document.getElementById('files-status').textContent)) \
           .observe(document.getElementById('files-status'), {childList: true, characterData: true, subtree: true});",
        vec![],
    )
    .await;
    // The Upload button opens the file chooser, which is this input: WebDriver fills it.
    b.wait_for_shown("#files-choose").await;
    b.client
        .find(Locator::Css("#files-input"))
        .await
        .unwrap()
        .send_keys(&source.display().to_string())
        .await
        .unwrap();
    let done = b.wait_for_text("#files-status", "Uploaded").await;
    assert!(
        done.contains(&format!("to {}", dest.display())) && done.contains(&sha[..12]),
        "{done}"
    );
    b.screenshot("files-uploaded.png").await;
    let log = b.js("return window.filesLog;", vec![]).await;
    let log: Vec<String> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        log.iter()
            .any(|m| m.starts_with("Uploading report 2026.bin to")),
        "progress shown: {log:?}"
    );
    let progress = b
        .js(
            "const p = document.getElementById('files-progress'); return [p.hidden, p.value, p.max];",
            vec![],
        )
        .await;
    assert_eq!(progress, serde_json::json!([false, 1, 1]));
    assert_eq!(std::fs::read(&dest).unwrap(), content);
    // The shell sees it.
    b.type_in_terminal(&format!(
        "sha256sum '{}'{}",
        dest.display(),
        char::from(Key::Enter)
    ))
    .await;
    b.wait_for_screen("the uploaded file's hash", |s| s.contains(&sha))
        .await;

    // A file dropped on the terminal goes to the same folder.
    b.js(
        "const data = new DataTransfer(); \
         data.items.add(new File(['dropped on the terminal\\n'], 'dropped.txt')); \
         const host = document.getElementById('terminal'); \
         const over = new DragEvent('dragover', {dataTransfer: data, bubbles: true, cancelable: true}); \
         host.dispatchEvent(over); \
         window.dropAccepted = over.defaultPrevented; \
         host.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));",
        vec![],
    )
    .await;
    assert_eq!(b.js("return window.dropAccepted;", vec![]).await, true);
    let done = b
        .wait_for_text("#files-status", "Uploaded dropped.txt")
        .await;
    assert!(done.contains("24 bytes"), "{done}");
    assert_eq!(
        std::fs::read(node_dir.path().join("dropped.txt")).unwrap(),
        b"dropped on the terminal\n"
    );

    // Download by path: done, and a path that names nothing is said so.
    b.fill("#files-path", &dest.display().to_string()).await;
    b.click("#files-get").await;
    let done = b.wait_for_text("#files-status", "Downloaded").await;
    assert!(
        done.contains("195.3 KiB") && done.contains(&sha[..12]),
        "{done}"
    );
    b.fill(
        "#files-path",
        &node_dir.path().join("nothing.txt").display().to_string(),
    )
    .await;
    b.click("#files-get").await;
    let error = b.wait_for_text("#files-error", "No file").await;
    assert!(
        error.contains("nothing.txt") && error.contains("on the node"),
        "{error}"
    );
    b.screenshot("files-error.png").await;
    b.close().await;

    // A role without file_transfer: no Files control.
    let b = Browser::start().await;
    open_session(&b, &gw, "sam").await;
    let hidden: Value = b
        .js(
            "return [document.getElementById('files-open').hidden, document.getElementById('files-panel').hidden];",
            vec![],
        )
        .await;
    assert_eq!(hidden, serde_json::json!([true, true]));
    b.close().await;
    gw.stop().await;
}
