//! Where finished recordings are kept: `recordings.dir` (`storage = "local"`), or an S3
//! bucket (`storage = "s3"`).
//!
//! A running session's recorder (`sessions::recorder`) always writes to a file in
//! `recordings.dir`. With S3 that folder is a spool: when the session ends the finished file is
//! uploaded (PutObject, or a multipart upload from [`MULTIPART_THRESHOLD`] on) to
//! `bucket/prefix<session id>.cast` with the asciicast media type and its SHA-256 as object
//! metadata (`x-amz-meta-sha256`), and the spool file is removed only once the upload
//! succeeded. A failed upload keeps the file; the next start of the gateway uploads the files
//! of ended sessions left in the spool ([`upload_leftovers`], audited as `recording.upload`).
//!
//! Reading ([`RecordingStore::open`]) looks in the spool first (a live session, or an upload
//! that has not happened), then in the bucket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::audit::{self, Client, Event, kind};
use super::db::Db;
use crate::gateway::aws::{self, aws_message};
use crate::gateway::config::{Config, RecordingStorage};

/// The media type of asciicast v2.
pub const CONTENT_TYPE: &str = "application/x-asciicast";

/// What a finished recording is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// Why writing stopped early, if it did.
    pub error: Option<String>,
}

/// The recording file of a session in `dir`.
pub fn path_of(dir: &Path, session_id: &str) -> PathBuf {
    // Session ids are UUIDs made by the gateway; keep only what a UUID has, to be sure.
    let safe: String = session_id
        .chars()
        .filter(|c| c.is_ascii_hexdigit() || *c == '-')
        .collect();
    dir.join(format!("{safe}.cast"))
}

/// From this size on a recording is uploaded in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// The size of each part of a multipart upload (S3's minimum is 5 MiB, except the last).
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// The object metadata key that holds the recording's SHA-256 (hex).
pub const SHA256_METADATA: &str = "sha256";
/// How long connecting to S3 may take before the attempt fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where recordings are kept (see the module's documentation).
#[derive(Debug, Clone)]
pub struct RecordingStore {
    spool: PathBuf,
    s3: Option<S3Target>,
}

#[derive(Debug, Clone)]
struct S3Target {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

/// A recording opened for reading.
#[derive(Debug)]
pub struct Opened {
    /// Its size, when known.
    pub length: Option<u64>,
    /// Its bytes.
    pub body: Content,
}

/// The bytes of an opened recording.
#[derive(Debug)]
pub enum Content {
    /// A spool file, up to its length when it was opened (a live session's file grows), to be
    /// streamed: a recording is never read whole into memory.
    Local(tokio::io::Take<tokio::fs::File>),
    /// An object's body, streamed from S3.
    S3(ByteStream),
}

/// Why a recording could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The spool file could not be read.
    #[error("{0}")]
    Local(String),
    /// S3 refused or failed.
    #[error(transparent)]
    S3(aws::Failure),
}

impl RecordingStore {
    /// The store the configuration asks for; the S3 client takes its credentials from
    /// `[aws]`'s static keys when set, else from aws-config's default chain.
    pub async fn new(config: &Config) -> Self {
        let r = &config.recordings;
        let s3 = match (r.storage, &r.bucket) {
            (RecordingStorage::S3, Some(bucket)) => Some(S3Target {
                client: s3_client(config).await,
                bucket: bucket.clone(),
                prefix: r.prefix.clone(),
            }),
            _ => None,
        };
        Self {
            spool: r.dir.clone(),
            s3,
        }
    }

    /// The folder running sessions record into.
    pub fn spool(&self) -> &Path {
        &self.spool
    }

    /// The object key of a session's recording, with S3.
    pub fn key_of(&self, session_id: &str) -> Option<String> {
        self.s3.as_ref().map(|s3| s3_key(&s3.prefix, session_id))
    }

    /// Keeps a finished recording (uploads it with S3) and returns what the session's end
    /// audit event says of it: `file`, `bytes`, `sha256`, `error` (writing stopped early),
    /// `location` (`s3://bucket/key` or the local path) and `upload_error`.
    pub async fn keep(&self, session_id: &str, done: Finished) -> serde_json::Value {
        let local = done.path.display().to_string();
        let (location, upload_error) = match &self.s3 {
            None => (local, None),
            Some(s3) => match s3.upload(&done.path, session_id, &done.sha256).await {
                Ok(location) => {
                    remove_spool(&done.path).await;
                    (location, None)
                }
                Err(e) => {
                    tracing::error!(
                        session = %session_id,
                        bucket = %s3.bucket,
                        "recording upload failed, the spool file is kept: {e}"
                    );
                    (local, Some(e))
                }
            },
        };
        json!({
            "file": done.path.file_name().map(|n| n.to_string_lossy().into_owned()),
            "bytes": done.bytes,
            "sha256": done.sha256,
            "error": done.error,
            "location": location,
            "upload_error": upload_error,
        })
    }

    /// Uploads `path` as the recording of `session_id` (S3 only); returns `s3://bucket/key`.
    pub async fn upload(
        &self,
        path: &Path,
        session_id: &str,
        sha256: &str,
    ) -> Result<String, String> {
        match &self.s3 {
            Some(s3) => s3.upload(path, session_id, sha256).await,
            None => Err("recordings.storage is not \"s3\"".into()),
        }
    }

    /// A session's recording: the spool file while it is there (a live session, an upload
    /// not done), else the object in the bucket; `None` when there is neither.
    pub async fn open(&self, session_id: &str) -> Result<Option<Opened>, OpenError> {
        let path = path_of(&self.spool, session_id);
        let local = |e: std::io::Error| OpenError::Local(format!("{}: {e}", path.display()));
        match tokio::fs::File::open(&path).await {
            Ok(file) => {
                let length = file.metadata().await.map_err(local)?.len();
                return Ok(Some(Opened {
                    length: Some(length),
                    body: Content::Local(tokio::io::AsyncReadExt::take(file, length)),
                }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(local(e)),
        }
        let Some(s3) = &self.s3 else {
            return Ok(None);
        };
        let got = s3
            .client
            .get_object()
            .bucket(&s3.bucket)
            .key(s3_key(&s3.prefix, session_id))
            .send()
            .await;
        match got {
            Ok(out) => Ok(Some(Opened {
                length: out.content_length().and_then(|n| u64::try_from(n).ok()),
                body: Content::S3(out.body),
            })),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(e) => Err(OpenError::S3(aws::Failure::of("GetObject", &e))),
        }
    }
}

impl S3Target {
    fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn upload(&self, path: &Path, session_id: &str, sha256: &str) -> Result<String, String> {
        let key = s3_key(&self.prefix, session_id);
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        if size < MULTIPART_THRESHOLD {
            let body = ByteStream::from_path(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type(CONTENT_TYPE)
                .metadata(SHA256_METADATA, sha256)
                .body(body)
                .send()
                .await
                .map_err(|e| format!("PutObject: {}", aws_message(&e)))?;
        } else {
            self.upload_parts(path, &key, size, sha256).await?;
        }
        tracing::info!(session = %session_id, bytes = size, "recording uploaded to {}", self.location(&key));
        Ok(self.location(&key))
    }

    async fn upload_parts(
        &self,
        path: &Path,
        key: &str,
        size: u64,
        sha256: &str,
    ) -> Result<(), String> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(CONTENT_TYPE)
            .metadata(SHA256_METADATA, sha256)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| format!("CreateMultipartUpload: {}", aws_message(&e)))?;
        let upload_id = created
            .upload_id()
            .ok_or("CreateMultipartUpload: no upload id")?
            .to_owned();
        let sent = async {
            let mut parts = Vec::new();
            let (mut offset, mut number) = (0u64, 1i32);
            while offset < size {
                let length = PART_SIZE.min(size - offset);
                let body = ByteStream::read_from()
                    .path(path)
                    .offset(offset)
                    .length(Length::Exact(length))
                    .build()
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let part = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("UploadPart {number}: {}", aws_message(&e)))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_owned))
                        .set_checksum_crc32(part.checksum_crc32().map(str::to_owned))
                        .build(),
                );
                offset += length;
                number += 1;
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| format!("CompleteMultipartUpload: {}", aws_message(&e)))?;
            Ok::<(), String>(())
        }
        .await;
        if sent.is_err() {
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            if let Err(e) = aborted {
                tracing::warn!(key, "AbortMultipartUpload failed: {}", aws_message(&e));
            }
        }
        sent
    }
}

/// The object key of a session's recording: the prefix, then the spool file's name.
fn s3_key(prefix: &str, session_id: &str) -> String {
    let file = path_of(Path::new(""), session_id);
    format!("{prefix}{}", file.display())
}

/// Removes an uploaded spool file; a failure only means a later start uploads it again.
async fn remove_spool(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await {
        tracing::warn!(path = %path.display(), "cannot remove the uploaded recording: {e}");
    }
}

/// The S3 client of the recordings: `recordings.region` (else the first of `[aws]`),
/// `recordings.endpoint_url` (not `aws.endpoint_url`, which is for SSM), path-style on request.
async fn s3_client(config: &Config) -> aws_sdk_s3::Client {
    let r = &config.recordings;
    let region = r
        .region
        .clone()
        .or_else(|| config.aws.all_regions().into_iter().next())
        .unwrap_or_else(|| "us-east-1".into());
    let loader = aws::loader(config, region).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build(),
    );
    let sdk = loader.load().await;
    let mut s3 = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(r.force_path_style)
        .interceptor(aws::Counted);
    if let Some(url) = &r.endpoint_url {
        s3 = s3.endpoint_url(url);
    }
    aws_sdk_s3::Client::from_conf(s3.build())
}

/// Uploads the spool files of ended sessions (left by a failed upload, or by a gateway that
/// stopped before it could upload) and audits each as `recording.upload`; returns how many
/// were uploaded. `is_live` says whether a session still runs in this gateway (its file is
/// left alone). Run once at start with `storage = "s3"`; a failure is logged and the file
/// kept for the next start.
pub async fn upload_leftovers(
    store: &RecordingStore,
    db: &Db,
    is_live: impl Fn(&str) -> bool,
) -> usize {
    if store.s3.is_none() {
        return 0;
    }
    let spool = store.spool().to_owned();
    let mut entries = match tokio::fs::read_dir(&spool).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(e) => {
            tracing::warn!(dir = %spool.display(), "cannot list the recordings spool: {e}");
            return 0;
        }
    };
    let mut uploaded = 0;
    loop {
        let entry = match entries.next_entry().await {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(dir = %spool.display(), "cannot list the recordings spool: {e}");
                break;
            }
        };
        let path = entry.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".cast"))
            .map(str::to_owned)
        else {
            continue;
        };
        match upload_leftover(store, db, is_live(&id), &id, &path).await {
            Ok(true) => uploaded += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(session = %id, "recording left in the spool not uploaded: {e}");
            }
        }
    }
    uploaded
}

/// Uploads one spool file when its session has ended; `Ok(false)` when it has not.
async fn upload_leftover(
    store: &RecordingStore,
    db: &Db,
    live: bool,
    id: &str,
    path: &Path,
) -> Result<bool, String> {
    use sqlx::Row;
    if live || path_of(store.spool(), id) != path {
        return Ok(false);
    }
    let row = sqlx::query(
        "SELECT s.state, s.target, u.name FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await
    .map_err(|e| format!("read the session: {e}"))?;
    let Some(row) = row else {
        return Ok(false); // not a session of this database
    };
    let read = |e: sqlx::Error| format!("read the session: {e}");
    let session_state: String = row.try_get("state").map_err(read)?;
    let target: String = row.try_get("target").map_err(read)?;
    let user: String = row.try_get("name").map_err(read)?;
    if session_state != "ended" {
        return Ok(false);
    }
    let (bytes, sha256) = hash_file(path).await?;
    let location = store.upload(path, id, &sha256).await?;
    let client = Client::default();
    audit::record(
        db,
        &Event::new(kind::RECORDING_UPLOAD, &user, &client)
            .session(id, &target)
            .detail(json!({
                "location": location,
                "bytes": bytes,
                "sha256": sha256,
                "why": "left in the spool when the session ended",
            })),
    )
    .await
    .map_err(|e| format!("audit: {e}"))?;
    remove_spool(path).await;
    Ok(true)
}

/// The size and SHA-256 (hex) of a file, read in pieces.
async fn hash_file(path: &Path) -> Result<(u64, String), String> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_prefix_and_the_file_name() {
        assert_eq!(
            s3_key("recordings/", "0a1b-2c3d"),
            "recordings/0a1b-2c3d.cast"
        );
        assert_eq!(s3_key("", "../x/0a"), "0a.cast");
    }
}
