//! The emulator's session registry: what DescribeSessions reports, the single-use data-channel
//! tokens, and the command channel to each session's agent task.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use axum::extract::ws::WebSocket;
use tokio::sync::mpsc;

/// How many commands may wait for a session task: attaches and a terminate are rare, so a few
/// slots are plenty; a full queue means the task is stuck and the caller reports an error.
pub const COMMAND_QUEUE: usize = 8;

/// A session's status, as DescribeSessions names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// Started, no data channel yet.
    Connecting,
    /// A data channel is attached.
    Connected,
    /// The data channel dropped; resumable.
    Disconnected,
    /// Ending.
    Terminating,
    /// Over.
    Terminated,
    /// Ended by an error.
    Failed,
}

impl SessionStatus {
    /// The AWS name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "Connecting",
            Self::Connected => "Connected",
            Self::Disconnected => "Disconnected",
            Self::Terminating => "Terminating",
            Self::Terminated => "Terminated",
            Self::Failed => "Failed",
        }
    }

    /// Whether DescribeSessions lists it under `Active` (otherwise `History`).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Connecting | Self::Connected | Self::Disconnected
        )
    }
}

/// What DescribeSessions reports of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// `<owner name>-<17 hex digits>`.
    pub id: String,
    /// The node.
    pub target: String,
    /// The session document.
    pub document: String,
    /// StartSession's Parameters.
    pub parameters: BTreeMap<String, Vec<String>>,
    /// The caller, as an ARN.
    pub owner: String,
    /// StartSession's Reason.
    pub reason: Option<String>,
    /// Status.
    pub status: SessionStatus,
    /// When it started.
    pub start_date: SystemTime,
    /// When it ended.
    pub end_date: Option<SystemTime>,
    /// Why it ended, if it failed.
    pub details: Option<String>,
}

/// A command to a session's agent task.
#[derive(Debug)]
pub enum SessionCommand {
    /// A client connected with a valid token; the socket has read its OpenDataChannel.
    Attach(Box<WebSocket>),
    /// TerminateSession was called.
    Terminate,
    /// A fault for tests and benchmarks: close the data channel's socket with 1000 "Bye", as
    /// the service does every hour (the session lives on; the client resumes).
    Disconnect,
}

/// One session.
#[derive(Debug)]
pub struct Session {
    info: Mutex<SessionInfo>,
    token: Mutex<Option<String>>,
    /// The last [`MAX_ISSUED_KEPT`] tokens issued.
    issued: Mutex<Vec<String>>,
    commands: mpsc::Sender<SessionCommand>,
    /// The node hangs (see [`Session::freeze`]).
    frozen: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update of plain data; the data is
    // still the best we have, so keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Session {
    /// A snapshot of what DescribeSessions reports.
    pub fn info(&self) -> SessionInfo {
        lock(&self.info).clone()
    }

    /// Updates the status (and the end date when it is final).
    pub fn set_status(&self, status: SessionStatus, details: Option<String>) {
        let mut info = lock(&self.info);
        let ended = matches!(
            info.status,
            SessionStatus::Terminated | SessionStatus::Failed
        );
        if ended || (!info.status.is_active() && status.is_active()) {
            return; // Terminated and Failed are final
        }
        info.status = status;
        if !status.is_active() && info.end_date.is_none() {
            info.end_date = Some(SystemTime::now());
        }
        if details.is_some() {
            info.details = details;
        }
    }

    /// Issues a new single-use token, replacing any unused one.
    pub fn issue_token(&self) -> String {
        let token = new_token();
        *lock(&self.token) = Some(token.clone());
        let mut issued = lock(&self.issued);
        if issued.len() == MAX_ISSUED_KEPT {
            issued.remove(0);
        }
        issued.push(token.clone());
        token
    }

    /// The last tokens issued for this session (used or not), oldest first: what a leak test
    /// searches for in everything a browser received.
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.issued).clone()
    }

    /// Consumes the token if it matches; a used or wrong token is refused.
    pub fn take_token(&self, presented: &str) -> bool {
        let mut slot = lock(&self.token);
        match slot.as_deref() {
            Some(t) if constant_time_eq(t.as_bytes(), presented.as_bytes()) => {
                *slot = None;
                true
            }
            _ => false,
        }
    }

    /// Hands a data-channel socket to the session task; gives it back when the task is gone.
    pub fn attach(&self, socket: Box<WebSocket>) -> Result<(), Box<WebSocket>> {
        match self.commands.try_send(SessionCommand::Attach(socket)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(SessionCommand::Attach(s)))
            | Err(mpsc::error::TrySendError::Closed(SessionCommand::Attach(s))) => Err(s),
            Err(_) => Ok(()), // not reachable: we sent an Attach
        }
    }

    /// A fault for tests: the node hangs. Its agent keeps the data channel's socket open but
    /// handles no more of what arrives on it — no acknowledgements, no input — so the client
    /// resends until it gives up.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::Relaxed);
    }

    /// Whether [`Session::freeze`] was called.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Relaxed)
    }

    /// Sends a command to the session task; false when the task is gone or stuck.
    pub fn command(&self, command: SessionCommand) -> bool {
        self.commands.try_send(command).is_ok()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn new_token() -> String {
    use base64::Engine as _;
    use rand::Rng as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Issued tokens remembered per session (see [`Session::issued_tokens`]).
pub const MAX_ISSUED_KEPT: usize = 16;

/// All sessions, in creation order of their ids.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: Mutex<BTreeMap<String, Arc<Session>>>,
}

impl Registry {
    /// Registers a new session and returns it with the receiving end of its command queue.
    pub fn create(&self, info: SessionInfo) -> (Arc<Session>, mpsc::Receiver<SessionCommand>) {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let session = Arc::new(Session {
            info: Mutex::new(info.clone()),
            token: Mutex::new(None),
            issued: Mutex::new(Vec::new()),
            commands: tx,
            frozen: AtomicBool::new(false),
        });
        lock(&self.sessions).insert(info.id, session.clone());
        (session, rx)
    }

    /// Looks a session up.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).get(id).cloned()
    }

    /// Snapshots of every session, ordered by id.
    pub fn list(&self) -> Vec<SessionInfo> {
        lock(&self.sessions).values().map(|s| s.info()).collect()
    }

    /// Sessions still active.
    pub fn active(&self) -> Vec<Arc<Session>> {
        lock(&self.sessions)
            .values()
            .filter(|s| s.info().status.is_active())
            .cloned()
            .collect()
    }
}

/// A new session id: `<name>-<17 lower-case hex digits>`, like the service's.
pub fn new_session_id(owner_name: &str) -> String {
    use rand::Rng as _;
    let name: String = owner_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.')
        .take(48)
        .collect();
    let name = if name.is_empty() {
        "porthole".to_owned()
    } else {
        name
    };
    let n = rand::rng().next_u64() & 0x0fff_ffff_ffff_ffff;
    format!("{name}-{n:017x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> SessionInfo {
        SessionInfo {
            id: id.into(),
            target: "i-1".into(),
            document: "SSM-SessionManagerRunShell".into(),
            parameters: BTreeMap::new(),
            owner: "arn:aws:iam::000000000000:user/test".into(),
            reason: None,
            status: SessionStatus::Connecting,
            start_date: SystemTime::now(),
            end_date: None,
            details: None,
        }
    }

    #[test]
    fn tokens_are_single_use_and_replaced_on_reissue() {
        let reg = Registry::default();
        let (s, _rx) = reg.create(info("a-1"));
        let t1 = s.issue_token();
        assert!(!s.take_token("wrong"));
        assert!(s.take_token(&t1));
        assert!(!s.take_token(&t1), "a used token is refused");
        let t2 = s.issue_token();
        let t3 = s.issue_token();
        assert!(!s.take_token(&t2), "a replaced token is refused");
        assert!(s.take_token(&t3));
    }

    #[test]
    fn ended_sessions_stay_ended() {
        let reg = Registry::default();
        let (s, _rx) = reg.create(info("a-1"));
        s.set_status(SessionStatus::Terminated, None);
        s.set_status(SessionStatus::Connected, None);
        assert_eq!(s.info().status, SessionStatus::Terminated);
        assert!(s.info().end_date.is_some());
    }

    #[test]
    fn session_ids_look_like_the_service() {
        let id = new_session_id("alice@example");
        let (name, hex) = id.rsplit_once('-').unwrap();
        assert_eq!(name, "aliceexample");
        assert_eq!(hex.len(), 17);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
