#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Browser test of file transfer on the terminal page: the owner opens the Files control,
//! uploads a file with the Upload button (the file chooser's input), sees the progress and the
//! completion in the panel, finds the file on the node (read back with `sha256sum` typed into
//! the shell, and on disk: the emulator's nodes are this machine), drops another on the
//! terminal, downloads one by path, and is
//! told clearly when a path names no file. A role without `file_transfer` sees no Files
//! control; a download-only role is offered the download, and no upload. On a slow (throttled) network, the bar and the words follow an upload's bytes and
//! a download's. On a Windows node, the panel says file transfer works on Linux nodes only. Debian's Chromium, headless, through chromedriver (tests/common/browser.rs); the
//! assets come from `web/dist` (`scripts/web-build`).

#[path = "common/browser.rs"]
#[allow(dead_code)] // shared with tests/browser.rs, which uses all of it
mod browser;
mod common;

use fantoccini::Locator;
use fantoccini::key::Key;
use porthole::emulator::nodes::Node;
use porthole::gateway::identity::users::Role;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use browser::Browser;
use common::api::Api;
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

[[roles]]
name = "readers"
targets = [{ ids = ["*"] }]
file_transfer = "download"
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
    assert_eq!(
        b.js(
            "return document.getElementById('files-platform').hidden;",
            vec![]
        )
        .await,
        true,
        "a Linux node: no word about platforms"
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

/// A role with `file_transfer = "download"`: the Files panel offers the download by path (and
/// it works) but no upload, neither the button nor the folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_only_role_is_offered_download_but_no_upload() {
    let policy_dir = tempfile::tempdir().unwrap();
    let file = policy_dir.path().join("policy.toml");
    std::fs::write(&file, POLICY).unwrap();
    let gw = gateway::start(Backend::Sqlite, |c| c.policy.file = Some(file.clone())).await;
    gw.user("rita", &[Role::parse("readers").unwrap()]).await;
    let node_dir = tempfile::tempdir().unwrap();
    let on_node = node_dir.path().join("app.log");
    std::fs::write(&on_node, b"one line of log\n").unwrap();

    let b = Browser::start().await;
    open_session(&b, &gw, "rita").await;
    b.click("#files-open").await;
    b.wait_for_shown("#files-panel").await;
    let offered = b
        .js(
            "return ['files-download', 'files-path', 'files-get', 'files-upload', 'files-choose', 'files-dir'] \
               .map((id) => document.getElementById(id).getClientRects().length > 0) \
               .concat(document.activeElement.id);",
            vec![],
        )
        .await;
    assert_eq!(
        offered,
        serde_json::json!([true, true, true, false, false, false, "files-path"]),
        "download by path, focused; no upload"
    );
    b.screenshot("files-download-only.png").await;
    b.fill("#files-path", &on_node.display().to_string()).await;
    b.click("#files-get").await;
    let done = b.wait_for_text("#files-status", "Downloaded").await;
    assert!(
        done.contains(&on_node.display().to_string()) && done.contains("16 bytes"),
        "{done}"
    );
    b.close().await;
    gw.stop().await;
}

/// Records every value the transfer's progress bar takes (as `[value, max]`, while it shows a
/// value) and every message of the panel, in `window.bar` and `window.said`.
async fn watch_progress(b: &Browser) {
    b.js(
        "window.bar = []; window.said = []; \
         const bar = document.getElementById('files-progress'); \
         new MutationObserver(() => { if (bar.hasAttribute('value')) window.bar.push([bar.value, bar.max]); }) \
           .observe(bar, {attributes: true, attributeFilter: ['value', 'max']}); \
         const status = document.getElementById('files-status'); \
         new MutationObserver(() => window.said.push(status.textContent)) \
           .observe(status, {childList: true, characterData: true, subtree: true});",
        vec![],
    )
    .await;
}

/// The values the bar took strictly between nothing and all of `total`, and the last one.
async fn progress_between(b: &Browser, total: usize) -> (Vec<f64>, Vec<f64>) {
    let bar: Vec<(f64, f64)> =
        serde_json::from_value(b.js("return window.bar;", vec![]).await).unwrap();
    #[allow(clippy::cast_precision_loss)] // a few MiB
    let total = total as f64;
    let between = bar
        .iter()
        .filter(|(v, m)| (*m - total).abs() < 0.5 && *v > 0.0 && *v < total)
        .map(|(v, _)| *v)
        .collect();
    let last = bar.last().map(|(v, m)| vec![*v, *m]).unwrap_or_default();
    (between, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_progress_shows_the_bytes_as_they_go() {
    let policy_dir = tempfile::tempdir().unwrap();
    let file = policy_dir.path().join("policy.toml");
    std::fs::write(&file, POLICY).unwrap();
    let gw = gateway::start(Backend::Sqlite, |c| c.policy.file = Some(file.clone())).await;
    gw.user("alice", &[Role::parse("movers").unwrap()]).await;
    let local = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let source = local.path().join("big.bin");
    std::fs::write(&source, &content).unwrap();
    let node_dir = tempfile::tempdir().unwrap();

    let b = Browser::start().await;
    open_session(&b, &gw, "alice").await;
    // A slow network (about 1 MB/s each way, Chromium's own throttling), so that a transfer
    // takes seconds.
    b.cdp("Network.enable", serde_json::json!({}))
        .await
        .unwrap();
    b.cdp(
        "Network.emulateNetworkConditions",
        serde_json::json!({"offline": false, "latency": 5,
                           "downloadThroughput": 1_000_000, "uploadThroughput": 1_000_000}),
    )
    .await
    .unwrap();
    b.click("#files-open").await;
    b.wait_for_shown("#files-panel").await;
    b.fill("#files-dir", &node_dir.path().display().to_string())
        .await;
    watch_progress(&b).await;
    b.client
        .find(Locator::Css("#files-input"))
        .await
        .unwrap()
        .send_keys(&source.display().to_string())
        .await
        .unwrap();
    b.wait_for_text("#files-status", "Uploaded big.bin").await;
    let (between, last) = progress_between(&b, content.len()).await;
    assert!(
        between.len() >= 2,
        "the upload's bar moved through values between 0 and {}: {between:?}",
        content.len()
    );
    assert!(between.windows(2).all(|w| w[0] <= w[1]), "{between:?}");
    assert_eq!(last, vec![1.0, 1.0], "done: a full bar");
    let said: Vec<String> =
        serde_json::from_value(b.js("return window.said;", vec![]).await).unwrap();
    assert!(
        said.iter()
            .any(|m| m.contains("KiB of 2.9 MiB") || m.contains(" MiB of 2.9 MiB")),
        "the bytes sent, in words: {said:?}"
    );
    assert_eq!(
        std::fs::read(node_dir.path().join("big.bin")).unwrap(),
        content
    );

    // Download it back: the bar and the words follow the bytes received.
    watch_progress(&b).await;
    b.fill(
        "#files-path",
        &node_dir.path().join("big.bin").display().to_string(),
    )
    .await;
    b.click("#files-get").await;
    let done = b.wait_for_text("#files-status", "Downloaded").await;
    assert!(done.contains("2.9 MiB"), "{done}");
    let (between, last) = progress_between(&b, content.len()).await;
    assert!(
        between.len() >= 2,
        "the download's bar moved through values between 0 and {}: {between:?}",
        content.len()
    );
    assert!(between.windows(2).all(|w| w[0] <= w[1]), "{between:?}");
    assert_eq!(last, vec![1.0, 1.0], "done: a full bar");
    let said: Vec<String> =
        serde_json::from_value(b.js("return window.said;", vec![]).await).unwrap();
    assert!(
        said.iter().any(|m| m.starts_with("Downloading ")
            && m.contains(" of 2.9 MiB…")
            && !m.contains("2.9 MiB of")),
        "the bytes received, in words: {said:?}"
    );
    b.close().await;
    gw.stop().await;
}

/// The emulator's Windows node (added by the test).
const WINDOWS: &str = "i-0wind0ws00000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_panel_says_a_windows_node_cannot_move_files() {
    let policy_dir = tempfile::tempdir().unwrap();
    let file = policy_dir.path().join("policy.toml");
    std::fs::write(&file, POLICY).unwrap();
    let gw = gateway::start_with(
        Backend::Sqlite,
        |e| {
            let mut windows = Node::new(WINDOWS, "win-1");
            windows.platform = "Windows".into();
            e.nodes.push(windows);
        },
        |c| c.policy.file = Some(file.clone()),
    )
    .await;
    gw.user("alice", &[Role::parse("movers").unwrap()]).await;
    let mut api = Api::new(&gw);
    api.login("alice").await;
    let win = api.open(WINDOWS, "INC-8103 files on a Windows node").await;

    let b = Browser::start().await;
    b.sign_in(&gw.url, "alice", PASSWORD).await;
    b.client
        .goto(&format!("{}/sessions/{win}", gw.url))
        .await
        .unwrap();
    b.wait_for_attr("#conn-state", "data-state", "connected")
        .await;
    let title = b
        .wait_for_shown("#files-open")
        .await
        .attr("title")
        .await
        .unwrap();
    assert!(
        title.as_deref().unwrap_or_default().contains("Linux nodes"),
        "{title:?}"
    );
    b.click("#files-open").await;
    b.wait_for_shown("#files-panel").await;
    let note = b.wait_for_text("#files-platform", "Linux nodes only").await;
    assert_eq!(
        note,
        "File transfer works on Linux nodes only: win-1 is a Windows node."
    );
    let offered = b
        .js(
            "return ['files-upload', 'files-download'].map((id) => document.getElementById(id).getClientRects().length > 0) \
               .concat(document.activeElement.id);",
            vec![],
        )
        .await;
    assert_eq!(
        offered,
        serde_json::json!([false, false, "files-close"]),
        "nothing to choose that the gateway would refuse"
    );
    b.screenshot("files-windows.png").await;
    // A file dropped on the terminal opens the panel that says why (the page stays).
    b.click("#files-close").await;
    b.js(
        "const data = new DataTransfer(); data.items.add(new File(['x'], 'x.txt')); \
         document.getElementById('terminal').dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));",
        vec![],
    )
    .await;
    b.wait_for_shown("#files-platform").await;
    b.close().await;
    gw.stop().await;
}

/// Drops a file on the terminal the way a person's drag does (a `drop` event carrying a file);
/// whether the page took the event for itself (the browser then does not open the file in
/// place of the page and its shell).
async fn drop_a_file(b: &Browser) -> bool {
    let taken = b
        .js(
            "const data = new DataTransfer(); data.items.add(new File(['x'], 'notes.txt')); \
             const event = new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}); \
             document.getElementById('terminal').dispatchEvent(event); \
             return event.defaultPrevented;",
            vec![],
        )
        .await;
    taken.as_bool().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_dropped_where_uploads_are_not_allowed_is_refused_in_the_page() {
    let policy_dir = tempfile::tempdir().unwrap();
    let file = policy_dir.path().join("policy.toml");
    std::fs::write(&file, POLICY).unwrap();
    let gw = gateway::start(Backend::Sqlite, |c| c.policy.file = Some(file.clone())).await;
    gw.user("dana", &[Role::parse("readers").unwrap()]).await;
    gw.user("ed", &[Role::parse("shell-only").unwrap()]).await;

    // Download only: the panel offers the download, and a dropped file opens it with the reason.
    let b = Browser::start().await;
    open_session(&b, &gw, "dana").await;
    b.wait_for_shown("#files-open").await;
    assert!(drop_a_file(&b).await, "the page takes the drop");
    b.wait_for_shown("#files-panel").await;
    let said = b.wait_for_text("#files-error", "not upload").await;
    assert_eq!(
        said,
        "Your role may download files from this node but not upload them (file_transfer = download)."
    );
    let offered = b
        .js(
            "return ['files-upload', 'files-download'].map((id) => document.getElementById(id).getClientRects().length > 0);",
            vec![],
        )
        .await;
    assert_eq!(offered, serde_json::json!([false, true]), "download only");
    b.screenshot("files-drop-download-only.png").await;
    b.close().await;

    // No file transfer at all: no Files control, and the drop is still the page's (the shell
    // stays on screen).
    let b = Browser::start().await;
    open_session(&b, &gw, "ed").await;
    assert!(drop_a_file(&b).await, "the page takes the drop");
    let state = b
        .js(
            "return [document.getElementById('files-open').hidden, document.getElementById('files-panel').hidden, location.pathname.startsWith('/sessions/')];",
            vec![],
        )
        .await;
    assert_eq!(state, serde_json::json!([true, true, true]));
    b.close().await;
    gw.stop().await;
}
