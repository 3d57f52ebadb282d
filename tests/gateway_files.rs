#![allow(clippy::unwrap_used, clippy::expect_used)]
//! File transfer through a session (`POST/GET /api/v1/sessions/{id}/files?path=…`), end to
//! end: the real gateway, the emulator running the node's receiver and sender in its PTY
//! through a second SSM session (`AWS-StartInteractiveCommand`), the real AWS SDK between
//! them. The emulator's nodes are this machine, so what landed "on the node" is read from the
//! file system and, once, through the shell itself (`sha256sum` typed into the session).

mod common;

use std::path::Path;
use std::time::Duration;

use porthole::emulator::nodes::Node;
use porthole::gateway::identity::users::Role;
use porthole::gateway::store::audit::{self, StoredEvent};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use common::api::{Api, Reply};
use common::gateway::{self, Backend, Gateway, both_backends};

/// The emulator's default online node.
const NODE: &str = "i-0a1b2c3d4e5f60001";
/// A Windows node added for these tests.
const WINDOWS: &str = "i-0wind0ws00000001";

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Some bytes of every value, `n` of them.
fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 255) as u8).collect()
}

fn files_url(id: &str, path: &str) -> String {
    let mut url = reqwest::Url::parse("http://x/").unwrap();
    url.set_path(&format!("/api/v1/sessions/{id}/files"));
    url.query_pairs_mut().append_pair("path", path);
    format!("{}?{}", url.path(), url.query().unwrap())
}

/// `POST …/files?path=` with `data`, as the browser sends it (cookie, CSRF token, Origin).
async fn upload(api: &Api, id: &str, path: &str, data: &[u8]) -> Reply {
    let mut request = api
        .http
        .post(format!("{}{}", api.base, files_url(id, path)))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec());
    if let Some(origin) = &api.origin {
        request = request.header("origin", origin);
    }
    if let Some(cookie) = &api.cookie {
        request = request.header("cookie", format!("{}={cookie}", api.cookie_name));
    }
    if let Some(csrf) = &api.csrf {
        request = request.header("x-csrf-token", csrf);
    }
    reply(request.send().await.unwrap()).await
}

/// `GET …/files?path=`.
async fn download(api: &Api, id: &str, path: &str) -> (Reply, Vec<u8>) {
    let mut request = api.http.get(format!("{}{}", api.base, files_url(id, path)));
    if let Some(cookie) = &api.cookie {
        request = request.header("cookie", format!("{}={cookie}", api.cookie_name));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap().to_vec();
    let text = String::from_utf8_lossy(&body).into_owned();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (
        Reply {
            status,
            headers,
            body: json,
            text,
        },
        body,
    )
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

async fn signed_in(gw: &Gateway, name: &str, roles: &[&str]) -> Api {
    let roles: Vec<Role> = roles.iter().map(|r| Role::parse(r).unwrap()).collect();
    gw.user(name, &roles).await;
    let mut api = Api::new(gw);
    api.login(name).await;
    api
}

async fn file_events(gw: &Gateway, session: &str, kind: &str) -> Vec<StoredEvent> {
    audit::list(&gw.state.engine.db, Some(session))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

/// Everything in `dir` (names), sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

both_backends!(an_upload_lands_on_the_node_and_a_download_brings_it_back);

async fn an_upload_lands_on_the_node_and_a_download_brings_it_back(backend: Backend) {
    let gw = gateway::start(backend, |_| {}).await;
    let mut alice = signed_in(&gw, "alice", &["operator"]).await;
    let id = alice.open(NODE, "INC-8100 copy a config to web-1").await;
    let view = alice.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(view.body["file_transfer"], "both", "{}", view.text);
    let start = audit::list(&gw.state.engine.db, Some(&id))
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "session.start")
        .unwrap();
    assert_eq!(start.detail["file_transfer"], "both");

    let dir = tempfile::tempdir().unwrap();
    // Binary, larger than a data-channel window, with a name that would run commands if it
    // were not quoted.
    let data = bytes(300_000);
    let name = "notes it's $(touch pwned) `touch pwned2`;.bin";
    let path = dir.path().join(name).display().to_string();
    let up = upload(&alice, &id, &path, &data).await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.text);
    assert_eq!(up.body["path"], path.as_str());
    assert_eq!(up.body["bytes"], 300_000);
    assert_eq!(up.body["sha256"], sha256(&data));
    assert_eq!(std::fs::read(&path).unwrap(), data);
    // Nothing else beside it: no temporary folder left, nothing the name could have run.
    assert_eq!(names(dir.path()), [name]);
    let home = gw.emu._dir.path().join("nodes").join(NODE).join("home");
    for ran in ["pwned", "pwned2"] {
        assert!(
            !home.join(ran).exists(),
            "{ran} was created in the node's home"
        );
    }

    // The shell of the session sees the same file.
    let plain = dir.path().join("data.bin").display().to_string();
    let small = bytes(5000);
    let up = upload(&alice, &id, &plain, &small).await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.text);
    let mut term = alice.attach(&id).await.unwrap();
    term.type_text(&format!("sha256sum {plain}\r")).await;
    term.expect(&format!("{}  {plain}", sha256(&small))).await;

    // And the download brings the first one back, byte for byte.
    let (down, body) = download(&alice, &id, &path).await;
    assert_eq!(down.status, StatusCode::OK, "{}", down.text);
    assert_eq!(body.len(), data.len());
    assert!(body == data, "the downloaded bytes differ");
    let disposition = down.headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\""),
        "{disposition}"
    );
    assert!(
        disposition.contains("filename*=UTF-8''notes%20it%27s%20%24%28touch%20pwned%29"),
        "{disposition}"
    );
    assert_eq!(down.headers["x-porthole-sha256"], sha256(&data).as_str());

    // Audited: before (started) and after (ok), with the path, the size and the hash.
    let uploads = file_events(&gw, &id, "file.upload").await;
    assert_eq!(uploads.len(), 4, "{uploads:?}");
    assert_eq!(uploads[0].detail["outcome"], "started");
    assert_eq!(uploads[1].detail["outcome"], "ok");
    for e in &uploads[..2] {
        assert_eq!(e.actor, "alice");
        assert_eq!(e.target.as_deref(), Some(NODE));
        assert_eq!(e.detail["path"], path.as_str());
        assert_eq!(e.detail["bytes"], 300_000);
        assert_eq!(e.detail["sha256"], sha256(&data));
    }
    assert_eq!(uploads[0].detail["transfer"], uploads[1].detail["transfer"]);
    let downloads = file_events(&gw, &id, "file.download").await;
    assert_eq!(downloads.len(), 2, "{downloads:?}");
    assert_eq!(downloads[0].detail["outcome"], "started");
    assert_eq!(downloads[1].detail["outcome"], "ok");
    assert_eq!(downloads[1].detail["path"], path.as_str());
    assert_eq!(downloads[1].detail["bytes"], 300_000);
    assert_eq!(downloads[1].detail["sha256"], sha256(&data));

    // The transfers' own SSM sessions are over (AWS-StartInteractiveCommand, terminated by the
    // gateway); the shell's is the only one left, and it carries on.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let active = gw
            .ssm_sessions(aws_sdk_ssm::types::SessionState::Active)
            .await;
        if active.len() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} active SSM sessions: {active:?}",
            active.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let history = gw
        .ssm_sessions(aws_sdk_ssm::types::SessionState::History)
        .await;
    assert!(history.len() >= 3, "{history:?}");
    term.type_text("echo still-here\r").await;
    term.expect("still-here").await;
    gw.stop().await;
}

/// A POST with a chunked body (no Content-Length) of `size` bytes, sent raw: the gateway
/// counts as it reads. The status line and the body of the answer.
async fn chunked_upload(gw: &Gateway, api: &Api, id: &str, path: &str, size: usize) -> String {
    let addr = gw.url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {}\r\nCookie: {}={}\r\nX-CSRF-Token: {}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n",
        files_url(id, path),
        gw.origin(),
        api.cookie_name,
        api.cookie.as_ref().unwrap(),
        api.csrf.as_ref().unwrap(),
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let data = bytes(size);
    for piece in data.chunks(300) {
        let chunk = format!("{:x}\r\n", piece.len());
        // The gateway may answer and close before the last piece: that is the point.
        if socket.write_all(chunk.as_bytes()).await.is_err()
            || socket.write_all(piece).await.is_err()
            || socket.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// A POST whose chunked body sends 10 bytes and then nothing (a client that stalls); the
/// answer's status line and body.
async fn slow_upload(gw: &Gateway, api: &Api, id: &str, path: &str) -> String {
    let addr = gw.url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {}\r\nCookie: {}={}\r\nX-CSRF-Token: {}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\na\r\n0123456789\r\n",
        files_url(id, path),
        gw.origin(),
        api.cookie_name,
        api.cookie.as_ref().unwrap(),
        api.csrf.as_ref().unwrap(),
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    // Nothing more is sent; the gateway answers on its own.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_paths_platforms_and_owners_are_enforced() {
    let gw = gateway::start_with(
        Backend::Sqlite,
        |e| {
            let mut windows = Node::new(WINDOWS, "win-1");
            windows.platform = "Windows".into();
            e.nodes.push(windows);
        },
        |c| {
            c.files.max_bytes = 1000;
            c.server.read_timeout_seconds = 1;
        },
    )
    .await;
    let mut alice = signed_in(&gw, "alice", &["operator"]).await;
    let id = alice.open(NODE, "INC-8101 limits of file transfer").await;
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();

    // Too large, announced: 413 before anything reaches the node.
    let big = at("big.bin");
    let r = upload(&alice, &id, &big, &bytes(1001)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(r.code(), "file_too_large");
    assert!(
        r.message().contains("1001 bytes") && r.message().contains("at most 1000 bytes"),
        "{}",
        r.text
    );
    assert!(r.message().contains("files.max_bytes"), "{}", r.text);
    // Exactly the limit is fine.
    let r = upload(&alice, &id, &at("limit.bin"), &bytes(1000)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Too large, not announced (chunked): counted as it is read.
    let answer = chunked_upload(&gw, &alice, &id, &big, 5000).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("file_too_large"), "{answer}");
    assert!(!Path::new(&big).exists());
    // A body that stops coming: 408 after server.read_timeout_seconds, nothing written.
    let slow = slow_upload(&gw, &alice, &id, &big).await;
    assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
    assert!(
        slow.contains("request_timeout") && slow.contains("too slowly"),
        "{slow}"
    );
    assert!(!Path::new(&big).exists());
    // A file on the node over the limit is not downloaded.
    std::fs::write(at("large.log"), bytes(2000)).unwrap();
    let (r, _) = download(&alice, &id, &at("large.log")).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert!(
        r.message().contains("2000 bytes") && r.message().contains("at most 1000"),
        "{}",
        r.text
    );
    let failed = file_events(&gw, &id, "file.download").await;
    assert_eq!(failed.last().unwrap().detail["outcome"], "failed");
    assert!(
        failed.last().unwrap().detail["error"]
            .as_str()
            .unwrap()
            .contains("2000 bytes")
    );

    // Bad paths: 422 naming the problem, nothing started.
    for (path, says) in [
        ("notes.txt", "must be absolute"),
        ("/tmp/../etc/passwd", ". or .."),
        ("/tmp/a\nb", "control characters"),
        ("/tmp/", "names a folder"),
        ("", "absolute path"),
    ] {
        let r = upload(&alice, &id, path, b"x").await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path:?}: {}",
            r.text
        );
        assert_eq!(r.code(), "invalid_path");
        assert!(r.message().contains(says), "{path:?}: {}", r.text);
        let (r, _) = download(&alice, &id, path).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path:?}: {}",
            r.text
        );
    }
    // What the node refuses: a missing file, a folder, a missing folder.
    let (r, _) = download(&alice, &id, &at("missing.txt")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.code(), "file_not_found");
    let r = upload(&alice, &id, &dir.path().display().to_string(), b"x").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.message().contains("is a folder"), "{}", r.text);
    let r = upload(&alice, &id, &at("no/such/folder.txt"), b"x").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.message().contains("does not exist"), "{}", r.text);

    // State changes need the CSRF token and the Origin.
    let mut no_csrf = alice.clone();
    no_csrf.csrf = None;
    let r = upload(&no_csrf, &id, &at("csrf.txt"), b"x").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let mut elsewhere = alice.clone();
    elsewhere.origin = Some("http://evil.example".into());
    let r = upload(&elsewhere, &id, &at("origin.txt"), b"x").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(!Path::new(&at("csrf.txt")).exists() && !Path::new(&at("origin.txt")).exists());

    // Only the owner: an admin who sees the session may not move files through it; another
    // operator does not even see it.
    let root = signed_in(&gw, "root", &["admin"]).await;
    let r = upload(&root, &id, &at("root.txt"), b"x").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.message().contains("only alice"), "{}", r.text);
    let bob = signed_in(&gw, "bob", &["operator"]).await;
    let (r, _) = download(&bob, &id, &at("limit.bin")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

    // Linux nodes only.
    let win = alice.open(WINDOWS, "INC-8102 a Windows node").await;
    let r = upload(&alice, &win, "/tmp/x.txt", b"x").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.code(), "unsupported_platform");
    assert!(
        r.message().contains("Linux nodes") && r.message().contains("Windows"),
        "{}",
        r.text
    );

    // An ended session moves nothing.
    alice.delete(&format!("/api/v1/sessions/{id}")).await;
    alice.wait_ended(&id).await;
    let r = upload(&alice, &id, &at("late.txt"), b"x").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.code(), "session_ended");
    gw.stop().await;
}

const POLICY: &str = r#"
[[roles]]
name = "shell-only"
targets = [{ ids = ["*"] }]

[[roles]]
name = "readers"
targets = [{ ids = ["*"] }]
file_transfer = "download"

[[roles]]
name = "writers"
targets = [{ ids = ["*"] }]
file_transfer = "upload"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_decides_which_way_files_move() {
    let policy_dir = tempfile::tempdir().unwrap();
    let file = policy_dir.path().join("policy.toml");
    std::fs::write(&file, POLICY).unwrap();
    let gw = gateway::start(Backend::Sqlite, |c| c.policy.file = Some(file.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("existing.txt");
    std::fs::write(&existing, b"on the node\n").unwrap();
    let existing = existing.display().to_string();
    let target = dir.path().join("new.txt").display().to_string();

    // No file_transfer: neither way.
    let mut sam = signed_in(&gw, "sam", &["shell-only"]).await;
    let id = sam.open(NODE, "INC-8103 shell only").await;
    let r = upload(&sam, &id, &target, b"x").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.code(), "forbidden");
    assert!(
        r.message().contains("do not allow uploading")
            && r.message().contains("file_transfer = none"),
        "{}",
        r.text
    );
    let (r, _) = download(&sam, &id, &existing).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(
        r.message().contains("do not allow downloading"),
        "{}",
        r.text
    );

    // Download only.
    let mut rita = signed_in(&gw, "rita", &["readers"]).await;
    let id = rita.open(NODE, "INC-8104 read a log").await;
    let r = upload(&rita, &id, &target, b"x").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(
        r.message().contains("file_transfer = download"),
        "{}",
        r.text
    );
    let (r, body) = download(&rita, &id, &existing).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(body, b"on the node\n");
    // The refusal is audited, with the path and why.
    let refused = file_events(&gw, &id, "file.upload").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].actor, "rita");
    assert_eq!(refused[0].detail["outcome"], "denied");
    assert_eq!(refused[0].detail["path"], target.as_str());
    assert_eq!(refused[0].detail["file_transfer"], "download");
    assert!(!Path::new(&target).exists());

    // Two roles: download from one, upload from the other.
    let mut wes = signed_in(&gw, "wes", &["readers", "writers"]).await;
    let id = wes.open(NODE, "INC-8105 both ways").await;
    assert_eq!(
        wes.get(&format!("/api/v1/sessions/{id}")).await.body["file_transfer"],
        json!("both")
    );
    let r = upload(&wes, &id, &target, b"written\n").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(std::fs::read(&target).unwrap(), b"written\n");
    assert!(!Path::new(&dir.path().join("pwned")).exists());
    gw.stop().await;
}

/// An upload whose chunked body is sent in two parts: the head and the first half now (the
/// gateway takes the transfer's slot before reading the body), the rest on [`Held::finish`].
struct Held {
    socket: tokio::net::TcpStream,
    rest: Vec<u8>,
}

async fn held_upload(gw: &Gateway, api: &Api, id: &str, path: &str, data: &[u8]) -> Held {
    let addr = gw.url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (first, rest) = data.split_at(data.len() / 2);
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {}\r\nCookie: {}={}\r\nX-CSRF-Token: {}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n{:x}\r\n",
        files_url(id, path),
        gw.origin(),
        api.cookie_name,
        api.cookie.as_ref().unwrap(),
        api.csrf.as_ref().unwrap(),
        first.len(),
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(first).await.unwrap();
    socket.write_all(b"\r\n").await.unwrap();
    Held {
        socket,
        rest: rest.to_vec(),
    }
}

impl Held {
    /// Sends the rest of the body; the answer's status line, headers and body.
    async fn finish(mut self) -> String {
        let chunk = format!("{:x}\r\n", self.rest.len());
        self.socket.write_all(chunk.as_bytes()).await.unwrap();
        self.socket.write_all(&self.rest).await.unwrap();
        self.socket.write_all(b"\r\n0\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            self.socket.read_to_end(&mut answer),
        )
        .await
        .unwrap()
        .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }
}

/// Waits until the gateway runs `n` transfers.
async fn in_flight(gw: &Gateway, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = gw.state.engine.transfers.in_flight();
        if now == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{now} transfers in flight, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of an unlabelled gauge in a `/metrics` scrape.
async fn gauge(gw: &Gateway, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", gw.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_at_once_are_capped_per_person_and_per_gateway() {
    let gw = gateway::start(Backend::Sqlite, |c| {
        c.files.max_concurrent = 2;
        c.files.max_concurrent_per_user = 1;
        c.server.read_timeout_seconds = 60;
    })
    .await;
    let mut alice = signed_in(&gw, "alice", &["operator"]).await;
    let mut bob = signed_in(&gw, "bob", &["operator"]).await;
    let mut carol = signed_in(&gw, "carol", &["operator"]).await;
    let a1 = alice.open(NODE, "INC-8106 first of alice's sessions").await;
    let a2 = alice
        .open(NODE, "INC-8107 second of alice's sessions")
        .await;
    let b1 = bob.open(NODE, "INC-8108 bob's session").await;
    let c1 = carol.open(NODE, "INC-8109 carol's session").await;
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    let existing = at("existing.log");
    std::fs::write(&existing, bytes(200_000)).unwrap();
    assert_eq!(gauge(&gw, "porthole_file_transfers_in_flight").await, 0.0);

    // Alice's upload is under way (half its body sent): her slot is taken.
    let alice_data = bytes(3000);
    let held_alice = held_upload(&gw, &alice, &a1, &at("alice.bin"), &alice_data).await;
    in_flight(&gw, 1).await;

    // A second of hers is refused, through another session of hers as well, either way: 429,
    // naming the key, with Retry-After; nothing reaches the node.
    let r = upload(&alice, &a2, &at("alice2.bin"), b"second").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.code(), "too_many_transfers");
    assert!(
        r.message().contains("files.max_concurrent_per_user = 1")
            && r.message().contains("a file transfer running")
            && r.message().contains("Nothing was sent to the node"),
        "{}",
        r.text
    );
    assert_eq!(r.headers["retry-after"], "5");
    let (r, _) = download(&alice, &a1, &existing).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.code(), "too_many_transfers");
    assert_eq!(r.headers["retry-after"], "5");

    // Bob takes the gateway's second slot; Carol finds none: 503, naming the key.
    let bob_data = bytes(4000);
    let held_bob = held_upload(&gw, &bob, &b1, &at("bob.bin"), &bob_data).await;
    in_flight(&gw, 2).await;
    assert_eq!(gauge(&gw, "porthole_file_transfers_in_flight").await, 2.0);
    let r = upload(&carol, &c1, &at("carol.bin"), b"carol's").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.code(), "transfers_busy");
    assert!(
        r.message().contains("files.max_concurrent = 2")
            && r.message().contains("Nothing was sent to the node"),
        "{}",
        r.text
    );
    assert_eq!(r.headers["retry-after"], "5");
    let (r, _) = download(&carol, &c1, &existing).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.code(), "transfers_busy");
    // Nothing of the refused ones was started: no audit row, no file, no temporary folder.
    for id in [&a2, &c1] {
        assert!(file_events(&gw, id, "file.upload").await.is_empty());
        assert!(file_events(&gw, id, "file.download").await.is_empty());
    }
    assert_eq!(names(dir.path()), ["existing.log"]);

    // Alice's first finishes whole; her slot comes back, and with it a place in the gateway.
    let answer = held_alice.finish().await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(std::fs::read(at("alice.bin")).unwrap(), alice_data);
    in_flight(&gw, 1).await;
    let r = upload(&carol, &c1, &at("carol.bin"), b"carol's").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = upload(&alice, &a2, &at("alice2.bin"), b"second").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(std::fs::read(at("alice2.bin")).unwrap(), b"second");

    // Bob goes away halfway through his body: his slot comes back, nothing is left on the node.
    drop(held_bob);
    in_flight(&gw, 0).await;
    assert!(!Path::new(&at("bob.bin")).exists());
    let (r, body) = download(&bob, &b1, &existing).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(body == bytes(200_000), "the downloaded bytes differ");
    assert_eq!(r.headers["content-length"], "200000");

    // A transfer that fails gives its slot back too.
    let r = upload(&alice, &a1, &at("no/such/folder.bin"), b"x").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    in_flight(&gw, 0).await;
    let (r, body) = download(&alice, &a1, &at("alice.bin")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(body, alice_data);
    assert_eq!(
        names(dir.path()),
        ["alice.bin", "alice2.bin", "carol.bin", "existing.log"]
    );
    in_flight(&gw, 0).await;
    assert_eq!(gauge(&gw, "porthole_file_transfers_in_flight").await, 0.0);
    gw.stop().await;
}
