//! Recordings kept in an S3 bucket (issue 6): a real S3-compatible server — moto's, from PyPI
//! through `scripts/python-venv` — on a loopback port. A finished session's recording is in the
//! bucket with the SHA-256 of the end audit event and is served from there; a failed upload
//! keeps the spool file, says so in the audit event, and a later start uploads it; large files
//! go up in parts; `storage = "s3"` without a bucket fails at start naming the key.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::api::{Api, WAIT};
use common::audit_log;
use common::emulator::NODE;
use common::gateway::{self, Backend, Gateway};
use porthole::gateway::config::{Config, RecordingStorage};
use porthole::gateway::identity::users::Role;
use porthole::gateway::store::audit::StoredEvent;
use porthole::gateway::store::recordings::path_of;
use porthole::gateway::store::recordings::{
    self as recording_store, MULTIPART_THRESHOLD, RecordingStore,
};
use sha2::{Digest, Sha256};

const REASON: &str = "INC-6000 recordings in a bucket";

/// moto's S3 on `127.0.0.1`, stopped on drop.
struct Moto {
    url: String,
    child: Child,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto's server on a port the system picks (it prints the URL it serves on).
fn start_moto() -> Moto {
    let venv = common::python::venv();
    let mut child = Command::new(venv.join("bin/moto_server"))
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    // One message: the URL. The thread then keeps reading the log so moto never blocks on it.
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(1);
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find("Running on http://")
                && let Some(tx) = tx.take()
            {
                let url = line[at + "Running on ".len()..].trim().to_owned();
                let _ = tx.send(url);
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("moto_server printed the URL it serves on");
    Moto { url, child }
}

/// A test's own S3 client for moto.
async fn s3(moto: &Moto) -> aws_sdk_s3::Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .load()
        .await;
    let config = aws_sdk_s3::config::Builder::from(&sdk)
        .endpoint_url(&moto.url)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str) {
    // moto answers once it prints its URL; a few tries cover a slow first request.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match s3.create_bucket().bucket(bucket).send().await {
            Ok(_) => return,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("create_bucket: {e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("create_bucket {bucket}: {e:?}"),
        }
    }
}

/// Points a gateway's recordings at `bucket` on moto.
fn s3_recordings(config: &mut Config, moto: &Moto, bucket: &str) {
    config.recordings.storage = RecordingStorage::S3;
    config.recordings.bucket = Some(bucket.to_owned());
    config.recordings.endpoint_url = Some(moto.url.clone());
    config.recordings.force_path_style = true;
}

/// Opens a session as alice, prints `marker` in it, exits and returns the end audit event.
async fn session_printing(gw: &Gateway, api: &mut Api, marker: &str) -> (String, StoredEvent) {
    let id = api.open(NODE, REASON).await;
    let mut tab = api.attach(&id).await.unwrap();
    // Typed split so that the echo of the command is not the marker itself.
    let (a, b) = marker.split_at(3);
    tab.type_text(&format!("printf '%s%s\\n' '{a}' '{b}'\n"))
        .await;
    tab.expect(marker).await;
    tab.type_text("exit\n").await;
    tab.closed().await;
    let end = audit_log::wait_for_event(&gw.state.engine.db, Some(&id), "session.end").await;
    (id, end)
}

async fn signed_in(gw: &Gateway) -> Api {
    gw.user("alice", &[Role::Operator]).await;
    let mut api = Api::new(gw);
    api.login("alice").await;
    api
}

async fn object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> (Vec<u8>, String, String) {
    let got = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let content_type = got.content_type().unwrap_or_default().to_owned();
    let sha = got
        .metadata()
        .and_then(|m| m.get("sha256"))
        .cloned()
        .unwrap_or_default();
    let bytes = got.body.collect().await.unwrap().into_bytes().to_vec();
    (bytes, content_type, sha)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_recording_is_uploaded_audited_and_served_from_the_bucket() {
    let moto = start_moto();
    let s3 = s3(&moto).await;
    create_bucket(&s3, "porthole-casts").await;
    let gw = gateway::start(Backend::Sqlite, |c| {
        s3_recordings(c, &moto, "porthole-casts")
    })
    .await;
    let mut api = signed_in(&gw).await;

    let (id, end) = session_printing(&gw, &mut api, "S3-MARKER-4711").await;
    let rec = &end.detail["recording"];
    let key = format!("recordings/{id}.cast");
    assert_eq!(rec["location"], format!("s3://porthole-casts/{key}"));
    assert_eq!(rec["upload_error"], serde_json::Value::Null);

    let (bytes, content_type, meta_sha) = object(&s3, "porthole-casts", &key).await;
    let sha = hex::encode(Sha256::digest(&bytes));
    assert_eq!(
        rec["sha256"], sha,
        "the object is the recording that was audited"
    );
    assert_eq!(rec["bytes"], bytes.len() as u64);
    assert_eq!(meta_sha, sha, "the SHA-256 is in the object's metadata");
    assert_eq!(content_type, "application/x-asciicast");
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains("S3-MARKER-4711"), "{text}");
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2, "an asciicast v2 file");

    let spool = path_of(&gw.state.config.recordings.dir, &id);
    assert!(
        !spool.exists(),
        "the spool file is removed after the upload"
    );

    let reply = api.get(&format!("/api/v1/sessions/{id}/recording")).await;
    assert_eq!(reply.status, reqwest::StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/x-asciicast");
    assert_eq!(reply.text.as_bytes(), &bytes[..], "served from the bucket");

    // The same checks as before: another operator may not fetch it.
    gw.user("bob", &[Role::Operator]).await;
    let mut bob = Api::new(&gw);
    bob.login("bob").await;
    let reply = bob.get(&format!("/api/v1/sessions/{id}/recording")).await;
    assert_eq!(reply.status, reqwest::StatusCode::NOT_FOUND);

    // A session with no recording anywhere is still `no_recording`.
    s3.delete_object()
        .bucket("porthole-casts")
        .key(&key)
        .send()
        .await
        .unwrap();
    let reply = api.get(&format!("/api/v1/sessions/{id}/recording")).await;
    assert_eq!(reply.status, reqwest::StatusCode::NOT_FOUND);
    assert_eq!(reply.code(), "no_recording");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_keeps_the_spool_file_and_the_next_start_uploads_it() {
    let moto = start_moto();
    let s3 = s3(&moto).await;
    // The bucket does not exist (yet).
    let gw = gateway::start(Backend::Sqlite, |c| s3_recordings(c, &moto, "late-bucket")).await;
    let mut api = signed_in(&gw).await;

    let (id, end) = session_printing(&gw, &mut api, "KEPT-MARKER-99").await;
    let rec = &end.detail["recording"];
    let spool = path_of(&gw.state.config.recordings.dir, &id);
    assert!(
        spool.exists(),
        "the spool file is kept when the upload fails"
    );
    assert_eq!(rec["location"], spool.display().to_string());
    let why = rec["upload_error"].as_str().unwrap_or_default();
    assert!(why.contains("NoSuchBucket"), "{rec}");
    let file = std::fs::read(&spool).unwrap();
    assert_eq!(rec["sha256"], hex::encode(Sha256::digest(&file)));

    // Still served, from the spool.
    let reply = api.get(&format!("/api/v1/sessions/{id}/recording")).await;
    assert_eq!(reply.status, reqwest::StatusCode::OK);
    assert_eq!(reply.text.as_bytes(), &file[..]);

    // The bucket appears; a gateway starting on the same database and spool uploads the
    // ended session's file, audits it and removes it.
    create_bucket(&s3, "late-bucket").await;
    let db_url = gw.state.config.database.url.clone();
    let spool_dir = gw.state.config.recordings.dir.clone();
    let gw2 = gateway::start(Backend::Sqlite, |c| {
        s3_recordings(c, &moto, "late-bucket");
        c.database.url = db_url;
        c.recordings.dir = spool_dir;
        c.server.gateway_id = "porthole-2".into();
    })
    .await;
    // The second gateway uploads the spooled recording after its start.
    let upload =
        audit_log::wait_for_event(&gw2.state.engine.db, Some(&id), "recording.upload").await;
    let key = format!("recordings/{id}.cast");
    assert_eq!(upload.detail["location"], format!("s3://late-bucket/{key}"));
    assert_eq!(upload.detail["sha256"], rec["sha256"]);
    let (bytes, _, meta_sha) = object(&s3, "late-bucket", &key).await;
    assert_eq!(bytes, file);
    assert_eq!(rec["sha256"], meta_sha);
    let deadline = tokio::time::Instant::now() + WAIT;
    while spool.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the spool file is removed after the upload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = api.get(&format!("/api/v1/sessions/{id}/recording")).await;
    assert_eq!(
        reply.text.as_bytes(),
        &file[..],
        "now served from the bucket"
    );
    // Nothing is left to upload.
    let engine = &gw2.state.engine;
    let is_live = |id: &str| engine.live.get(id).is_some();
    assert_eq!(
        recording_store::upload_leftovers(&engine.recordings, &engine.db, is_live).await,
        0
    );
    gw2.stop().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_recording_goes_up_in_parts() {
    let moto = start_moto();
    let s3 = s3(&moto).await;
    create_bucket(&s3, "big-casts").await;
    let dir = tempfile::tempdir().unwrap();
    let mut config: Config = toml::from_str("").unwrap();
    config.recordings.dir = dir.path().to_owned();
    config.aws.access_key_id = Some(porthole::gateway::config::Secret::new("AKIDTEST"));
    config.aws.secret_access_key = Some(porthole::gateway::config::Secret::new("secret"));
    config.recordings.prefix = "gw-1/".into();
    s3_recordings(&mut config, &moto, "big-casts");
    let store = RecordingStore::new(&config).await;

    let id = "0123abcd-0000-4000-8000-00000000beef";
    let path = path_of(dir.path(), id);
    let size = MULTIPART_THRESHOLD as usize + 3 * 1024 * 1024 + 17;
    let data: Vec<u8> = (0..size).map(|i| b"0123456789abcdef\n"[i % 17]).collect();
    std::fs::write(&path, &data).unwrap();
    let sha = hex::encode(Sha256::digest(&data));
    let location = store.upload(&path, id, &sha).await.unwrap();
    let key = format!("gw-1/{id}.cast");
    assert_eq!(location, format!("s3://big-casts/{key}"));
    let (bytes, content_type, meta_sha) = object(&s3, "big-casts", &key).await;
    assert_eq!(bytes.len(), size);
    assert!(bytes == data, "the parts make the file");
    assert_eq!(meta_sha, sha);
    assert_eq!(content_type, "application/x-asciicast");
}

#[test]
fn storage_s3_without_a_bucket_fails_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("porthole.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n[auth]\njwt_secret = \"s3cret-s3cret-s3cret-s3cret-s3cret\"\n\
             [recordings]\nstorage = \"s3\"\n",
            dir.path().join("p.db").display()
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_porthole"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTHOLE_") {
            command.env_remove(key);
        }
    }
    let out = command
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("recordings.bucket"), "{err}");
    assert!(
        !dir.path().join("p.db").exists(),
        "refused before anything starts"
    );

    // The environment sets it like any key.
    command.env("PORTHOLE_RECORDINGS__BUCKET", "Bad_Name");
    let out = command.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("recordings.bucket \"Bad_Name\""), "{err}");
}
