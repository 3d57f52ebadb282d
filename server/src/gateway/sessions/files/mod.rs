//! File transfer through a running session: an upload to its node or a download from it,
//! each through a second SSM session the gateway opens for it (`AWS-StartInteractiveCommand`
//! running the receiver or sender of [`framing`] on the node, as the person when their role
//! named an AWS role: the live session's own clients), then terminates.
//!
//! Who may: the session's owner only, while it runs on this gateway, when the policy's
//! decision at its start (`file_transfer`, kept with the session) allows that direction, on a
//! Linux node; a refusal of the policy is audited (`"outcome": "denied"`). Each transfer is
//! audited twice (`file.upload` / `file.download`): before the
//! second session is started (`"outcome": "started"`; if that write fails nothing happens) and
//! after, with the outcome, the size and the SHA-256.
//!
//! How many at once: [`begin`] takes a [`slots::Permit`] (at most `files.max_concurrent` in the
//! gateway, `files.max_concurrent_per_user` for one person) before anything is read or started;
//! [`upload`] and [`download`] need it, and the caller holds it until the file's last byte
//! has left the gateway. Over a limit the transfer is refused at once (429 or 503 with
//! `Retry-After`); nothing reaches the node.

pub mod framing;
pub mod slots;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;

use self::framing::{Direction, Download, Lines, Marker, TransferError};
use super::live::LiveSession;
use super::{Engine, Error, engine};
use crate::gateway::aws;
use crate::gateway::facts::User;
use crate::gateway::policy::{self, FileTransfer};
use crate::gateway::store::audit::{self, Client, Event, kind};
use crate::gateway::store::sessions::SessionView;
use crate::ssm::client::{self, ClientEvent, ClientHandle, SessionStart};

/// The document that runs the node's side.
pub const DOCUMENT: &str = "AWS-StartInteractiveCommand";
/// How long the node's receiver may take to say it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a whole transfer may take.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(600);
/// The pieces the upload is typed in (the data channel splits them further; each waits while
/// the channel is backed up).
const PIECE: usize = 16 * 1024;

/// A transfer that was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The node's path.
    pub path: String,
    /// Bytes moved.
    pub size: u64,
    /// Their SHA-256, hex.
    pub sha256: String,
}

impl From<TransferError> for Error {
    fn from(e: TransferError) -> Self {
        Self::Transfer(e)
    }
}

/// What may be moved through `view` for `user`: the running session they own, on this
/// gateway, whose policy decision allows `direction`, on a Linux node.
async fn allowed(
    engine: &Engine,
    user: &User,
    client: &Client,
    id: &str,
    direction: Direction,
    path: &str,
) -> Result<(SessionView, Arc<LiveSession>), Error> {
    framing::check_path(path)?;
    let view = engine::visible_one(engine, user, id).await?;
    if view.user_id() != user.id {
        return Err(Error::Forbidden(format!(
            "only {} moves files through their session {id}",
            view.user
        )));
    }
    if !view.is_running() {
        return Err(Error::SessionEnded(format!(
            "session {id} is not running ({}): files move through running sessions only",
            view.state
        )));
    }
    let rule = FileTransfer::parse(&view.file_transfer).unwrap_or_default();
    let allowed = match direction {
        Direction::Upload => rule.allows_upload(),
        Direction::Download => rule.allows_download(),
    };
    if !allowed {
        let what = match direction {
            Direction::Upload => "uploading files to",
            Direction::Download => "downloading files from",
        };
        let why = format!(
            "your roles do not allow {what} the node of this session (file_transfer = {} for \
             session {id})",
            rule.as_str()
        );
        // A refusal of the policy is audited, as a refused start is.
        let detail = json!({"path": path, "outcome": "denied", "error": why,
                            "file_transfer": rule.as_str()});
        record(engine, user, client, &view, direction, detail).await?;
        return Err(Error::Forbidden(why));
    }
    let Some(live) = engine.live.get(id) else {
        return Err(Error::Transfer(TransferError::Refused(format!(
            "session {id} runs on another gateway; reload the page (its files move through the \
             gateway that holds it)"
        ))));
    };
    let platform = engine
        .targets
        .find(&engine.aws, &view.target)
        .await?
        .map(|t| t.platform);
    if let Some(refusal) = platform_refusal(&view.target, platform.as_deref()) {
        return Err(Error::UnsupportedPlatform(refusal));
    }
    Ok((view, live))
}

/// Why files cannot move to or from `target`, whose platform is `platform` (as
/// DescribeInstanceInformation gives it: `None` when the node is not listed, empty when the
/// listing does not say); `None` on a Linux node.
fn platform_refusal(target: &str, platform: Option<&str>) -> Option<String> {
    match platform.filter(|p| !p.is_empty()) {
        Some("Linux") => None,
        Some(other) => Some(format!(
            "file transfer works on Linux nodes; {target} is a {other} node"
        )),
        None => Some(format!(
            "file transfer works on Linux nodes, and the platform of {target} is not known (it \
             is not among the managed nodes, or they do not say)"
        )),
    }
}

/// Whether `user` may move a file at `path` through session `id` in `direction` now (checked
/// again by [`upload`] and [`download`]), and the transfer's slot if so: lets an upload be
/// refused before its body is read. The slot is given back when the permit is dropped.
pub async fn begin(
    engine: &Engine,
    user: &User,
    client: &Client,
    id: &str,
    direction: Direction,
    path: &str,
) -> Result<slots::Permit, Error> {
    allowed(engine, user, client, id, direction, path).await?;
    engine.transfers.admit(user.id).map_err(|refused| {
        let (message, whole_gateway) = match refused {
            slots::Refused::Person(m) => (m, false),
            slots::Refused::Gateway(m) => (m, true),
        };
        tracing::info!(
            user = %user.name,
            session = %id,
            direction = direction.as_str(),
            "file transfer refused: {message}"
        );
        Error::TooManyTransfers {
            message,
            whole_gateway,
            retry_after: slots::RETRY_AFTER,
        }
    })
}

/// Appends `file.upload` / `file.download` for `view`.
async fn record(
    engine: &Engine,
    user: &User,
    client: &Client,
    view: &SessionView,
    direction: Direction,
    detail: serde_json::Value,
) -> Result<(), Error> {
    let kind = match direction {
        Direction::Upload => kind::FILE_UPLOAD,
        Direction::Download => kind::FILE_DOWNLOAD,
    };
    let mut tx = engine.db.begin_write().await?;
    audit::append(
        &mut tx.tx,
        &Event::new(kind, &user.name, client)
            .session(&view.id, &view.target)
            .detail(detail),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The outcome row of a transfer, and the outcome itself.
async fn finish<T>(
    engine: &Engine,
    user: &User,
    client: &Client,
    view: &SessionView,
    direction: Direction,
    base: serde_json::Value,
    outcome: Result<(T, Done), Error>,
) -> Result<(T, Done), Error> {
    let mut detail = base;
    match &outcome {
        Ok((_, done)) => {
            detail["outcome"] = json!("ok");
            detail["bytes"] = json!(done.size);
            detail["sha256"] = json!(done.sha256);
        }
        Err(e) => {
            detail["outcome"] = json!("failed");
            detail["error"] = json!(e.to_string());
        }
    }
    record(engine, user, client, view, direction, detail).await?;
    outcome
}

/// Writes `data` to `path` on the node of session `id` for `user` (who asked from `client`),
/// in the slot `_slot` that [`begin`] gave.
pub async fn upload(
    engine: &Arc<Engine>,
    _slot: &slots::Permit,
    user: &User,
    client: &Client,
    id: &str,
    path: &str,
    data: Bytes,
) -> Result<Done, Error> {
    let max = engine.config.files.max_bytes;
    let (view, live) = allowed(engine, user, client, id, Direction::Upload, path).await?;
    let size = data.len() as u64;
    if size > max {
        return Err(too_large(size, max));
    }
    let sha256 = framing::sha256_hex(&data);
    let transfer = uuid::Uuid::new_v4().to_string();
    let base = json!({"path": path, "bytes": size, "sha256": sha256, "transfer": transfer});
    let mut started = base.clone();
    started["outcome"] = json!("started");
    record(engine, user, client, &view, Direction::Upload, started).await?;
    let command = framing::receiver(path, max);
    let outcome = async {
        let mut node = Node::open(engine, &live, &view, Direction::Upload, command).await?;
        let result = node.upload(path, &data, &sha256, max).await;
        node.close(&live).await;
        result?;
        Ok((
            (),
            Done {
                path: path.to_owned(),
                size,
                sha256: sha256.clone(),
            },
        ))
    }
    .await;
    let ((), done) = finish(
        engine,
        user,
        client,
        &view,
        Direction::Upload,
        base,
        outcome,
    )
    .await?;
    Ok(done)
}

/// Reads `path` from the node of session `id` for `user` (who asked from `client`), in the
/// slot `_slot` that [`begin`] gave: the bytes, checked against the node's SHA-256.
pub async fn download(
    engine: &Arc<Engine>,
    _slot: &slots::Permit,
    user: &User,
    client: &Client,
    id: &str,
    path: &str,
) -> Result<(Vec<u8>, Done), Error> {
    let max = engine.config.files.max_bytes;
    let (view, live) = allowed(engine, user, client, id, Direction::Download, path).await?;
    let transfer = uuid::Uuid::new_v4().to_string();
    let base = json!({"path": path, "transfer": transfer});
    let mut started = base.clone();
    started["outcome"] = json!("started");
    record(engine, user, client, &view, Direction::Download, started).await?;
    let command = framing::sender(path, max);
    let outcome = async {
        let mut node = Node::open(engine, &live, &view, Direction::Download, command).await?;
        let result = node.download(path, max).await;
        node.close(&live).await;
        let (data, sha256) = result?;
        let done = Done {
            path: path.to_owned(),
            size: data.len() as u64,
            sha256,
        };
        Ok((data, done))
    }
    .await;
    finish(
        engine,
        user,
        client,
        &view,
        Direction::Download,
        base,
        outcome,
    )
    .await
}

/// The refusal of a file of `size` bytes over `max`.
pub fn too_large(size: u64, max: u64) -> Error {
    Error::Transfer(TransferError::TooLarge(format!(
        "the file is {size} bytes; files of at most {max} bytes are transferred (files.max_bytes)"
    )))
}

/// The second SSM session, running the node's side of a transfer.
struct Node {
    ssm_id: String,
    handle: ClientHandle,
    events: mpsc::Receiver<ClientEvent>,
    lines: Lines,
}

impl Node {
    /// Starts `command` on the session's node with the session's own AWS clients.
    async fn open(
        engine: &Engine,
        live: &LiveSession,
        view: &SessionView,
        direction: Direction,
        command: String,
    ) -> Result<Self, Error> {
        let reason = policy::aws_reason(&format!(
            "Porthole file {} for session {} by {}",
            direction.as_str(),
            view.id,
            view.user
        ));
        let started = live
            .aws
            .ssm
            .start_session()
            .target(&view.target)
            .document_name(DOCUMENT)
            .parameters("command", vec![command])
            .reason(reason)
            .send()
            .await
            .map_err(|e| Error::Upstream(aws::Failure::of("StartSession", &e)))?;
        let (Some(ssm_id), Some(stream_url), Some(token)) = (
            started.session_id(),
            started.stream_url(),
            started.token_value(),
        ) else {
            return Err(Error::Upstream(aws::Failure::ours(
                "StartSession answered without a session id, stream URL or token",
            )));
        };
        let start = SessionStart {
            session_id: ssm_id.to_owned(),
            target: view.target.clone(),
            stream_url: stream_url.to_owned(),
            token: token.to_owned(),
        };
        let options = client::ClientOptions {
            give_up_after: Duration::from_secs(engine.config.sessions.retransmit_give_up_seconds),
            ..client::ClientOptions::default()
        };
        let mut handle = match client::start_with(start, live.aws.clone(), options).await {
            Ok(handle) => handle,
            Err(message) => {
                terminate(live, ssm_id).await;
                return Err(Error::Upstream(aws::Failure {
                    summary: "the transfer's data channel could not be opened".into(),
                    detail: message,
                }));
            }
        };
        // The events apart from the handle, so that input is sent while output is read.
        let (_, empty) = mpsc::channel(1);
        let events = std::mem::replace(&mut handle.events, empty);
        Ok(Self {
            ssm_id: ssm_id.to_owned(),
            handle,
            events,
            lines: Lines::default(),
        })
    }

    /// The next marker the node prints; `None` when the session ended first.
    async fn next_marker(&mut self) -> Result<Option<Marker>, Error> {
        loop {
            match self.events.recv().await {
                Some(ClientEvent::Output(bytes)) => {
                    for line in self.lines.feed(&bytes)? {
                        if let Some(m) = framing::marker(&line) {
                            return Ok(Some(m));
                        }
                    }
                }
                Some(ClientEvent::Closed(_)) | None => return Ok(None),
                Some(_) => {}
            }
        }
    }

    async fn upload(
        &mut self,
        path: &str,
        data: &[u8],
        sha256: &str,
        max: u64,
    ) -> Result<(), Error> {
        let ended = || {
            Error::Transfer(TransferError::Broken(format!(
                "the node's receiver for {path} ended without an answer; nothing was written"
            )))
        };
        let ready = tokio::time::timeout(READY_TIMEOUT, self.next_marker())
            .await
            .map_err(|_| {
                Error::Transfer(TransferError::Broken(format!(
                    "the node did not start its receiver within {} s (is it a Linux node with \
                     base64 and sha256sum?)",
                    READY_TIMEOUT.as_secs()
                )))
            })??;
        match ready {
            Some(Marker::Ready) => {}
            Some(m) => {
                return Err(
                    framing::upload_outcome(&m, path, data.len() as u64, sha256, max)
                        .err()
                        .unwrap_or_else(|| {
                            TransferError::Broken(format!(
                                "the node answered {m:?} before any data"
                            ))
                        })
                        .into(),
                );
            }
            None => return Err(ended()),
        }
        let lines = Bytes::from(framing::encode_upload(data, sha256));
        let handle = &self.handle;
        let send = async {
            for start in (0..lines.len()).step_by(PIECE) {
                let end = (start + PIECE).min(lines.len());
                if handle.input(lines.slice(start..end)).await.is_err() {
                    break;
                }
            }
        };
        let events = &mut self.events;
        let line_split = &mut self.lines;
        let answer = async {
            loop {
                match events.recv().await {
                    Some(ClientEvent::Output(bytes)) => {
                        for line in line_split.feed(&bytes)? {
                            if let Some(m) = framing::marker(&line) {
                                return Ok::<_, Error>(Some(m));
                            }
                        }
                    }
                    Some(ClientEvent::Closed(_)) | None => return Ok(None),
                    Some(_) => {}
                }
            }
        };
        let both = async {
            let (_, answer) = tokio::join!(send, answer);
            answer
        };
        let answer = tokio::time::timeout(TRANSFER_TIMEOUT, both)
            .await
            .map_err(|_| {
                Error::Transfer(TransferError::Broken(format!(
                    "the upload to {path} took longer than {} s; nothing was written",
                    TRANSFER_TIMEOUT.as_secs()
                )))
            })??;
        match answer {
            Some(m) => Ok(framing::upload_outcome(
                &m,
                path,
                data.len() as u64,
                sha256,
                max,
            )?),
            None => Err(ended()),
        }
    }

    async fn download(&mut self, path: &str, max: u64) -> Result<(Vec<u8>, String), Error> {
        let mut download = Download::new(path, max);
        let events = &mut self.events;
        let read = async {
            while !download.is_done() {
                match events.recv().await {
                    Some(ClientEvent::Output(bytes)) => download.feed(&bytes),
                    Some(ClientEvent::Closed(_)) | None => break,
                    Some(_) => {}
                }
            }
        };
        tokio::time::timeout(TRANSFER_TIMEOUT, read)
            .await
            .map_err(|_| {
                Error::Transfer(TransferError::Broken(format!(
                    "the download of {path} took longer than {} s",
                    TRANSFER_TIMEOUT.as_secs()
                )))
            })?;
        Ok(download.finish()?)
    }

    /// Ends the second session (its program has usually exited already).
    async fn close(self, live: &LiveSession) {
        drop(self.handle);
        terminate(live, &self.ssm_id).await;
    }
}

/// Terminates the transfer's SSM session, best effort: the program on the node ends with it.
async fn terminate(live: &LiveSession, ssm_id: &str) {
    if let Err(e) = live
        .aws
        .ssm
        .terminate_session()
        .session_id(ssm_id)
        .send()
        .await
    {
        tracing::warn!(ssm_session = %ssm_id, "terminating a file transfer's session: {}", aws::aws_message(&e));
    }
}

#[cfg(test)]
mod tests {
    use super::platform_refusal;

    #[test]
    fn only_a_linux_node_moves_files_and_the_refusal_names_the_node_and_why() {
        assert_eq!(platform_refusal("i-0abc", Some("Linux")), None);
        assert_eq!(
            platform_refusal("i-0abc", Some("Windows")).as_deref(),
            Some("file transfer works on Linux nodes; i-0abc is a Windows node")
        );
        for unknown in [None, Some("")] {
            let said = platform_refusal("mi-0def", unknown).unwrap();
            assert!(
                said.contains("the platform of mi-0def is not known"),
                "{said}"
            );
        }
    }
}
