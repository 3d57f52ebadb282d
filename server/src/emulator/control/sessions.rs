//! `AmazonSSM.StartSession`, `ResumeSession`, `TerminateSession` and `DescribeSessions`.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{ApiError, Caller, epoch_seconds, max_results, page, parse_timestamp, required};
use crate::emulator::State;
use crate::emulator::sessions::{SessionCommand, SessionInfo, SessionStatus, new_session_id};

/// The default session document: a login shell.
pub const RUN_SHELL: &str = "SSM-SessionManagerRunShell";
/// Runs `Parameters.command` instead of a login shell.
pub const INTERACTIVE_COMMAND: &str = "AWS-StartInteractiveCommand";
/// StartSession's `Reason`: 1 to 256 characters, one line (`^.{1,256}$`).
pub const MAX_REASON_CHARS: usize = 256;
const DESCRIBE_RANGE: RangeInclusive<i64> = 1..=200;
/// The service does not document its default page size; 20 keeps clients honest about paging.
const DESCRIBE_DEFAULT: usize = 20;
const FILTER_KEYS: &str = "InvokedAfter, InvokedBefore, Target, Owner, Status, SessionId";
const STATUSES: [SessionStatus; 6] = [
    SessionStatus::Connecting,
    SessionStatus::Connected,
    SessionStatus::Disconnected,
    SessionStatus::Terminating,
    SessionStatus::Terminated,
    SessionStatus::Failed,
];

/// StartSession's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct StartRequest {
    target: Option<String>,
    document_name: Option<String>,
    reason: Option<String>,
    parameters: Option<BTreeMap<String, Vec<String>>>,
}

/// StartSession's and ResumeSession's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SessionAccess {
    session_id: String,
    token_value: String,
    stream_url: String,
}

/// ResumeSession's and TerminateSession's input, and TerminateSession's output.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SessionIdOnly {
    session_id: Option<String>,
}

/// `AmazonSSM.StartSession`: registers the session, issues its token and starts its agent task.
pub(super) fn start(
    state: &Arc<State>,
    caller: &Caller,
    request: StartRequest,
) -> Result<SessionAccess, ApiError> {
    let target = required(request.target, "target")?;
    if let Some(reason) = &request.reason {
        check_reason(reason)?;
    }
    let document = request
        .document_name
        .unwrap_or_else(|| RUN_SHELL.to_owned());
    let parameters = request.parameters.unwrap_or_default();
    check_document(&document, &parameters)?;
    // Another account's node is no target of the caller's.
    let node = state.node_of(&target, &caller.account).ok_or_else(|| {
        ApiError::new(
            "InvalidTarget",
            format!(
                "{target} is not a valid target: the emulator has no managed node with that id"
            ),
        )
    })?;
    if node.deny_start {
        // IAM's words, which name the account, the caller and the resource.
        return Err(ApiError::new(
            "AccessDeniedException",
            format!(
                "User: {} is not authorized to perform: ssm:StartSession on resource: \
                 arn:aws:ec2:us-east-1:{}:instance/{target} with an explicit deny in \
                 an identity-based policy",
                caller.arn,
                node.account()
            ),
        ));
    }
    if !node.is_online() {
        return Err(ApiError::new(
            "TargetNotConnected",
            format!("{target} is not connected."),
        ));
    }

    let id = new_session_id(&caller.name);
    let (session, commands) = state.registry.create(SessionInfo {
        id: id.clone(),
        target,
        document,
        parameters,
        owner: caller.arn.clone(),
        reason: request.reason,
        status: SessionStatus::Connecting,
        start_date: SystemTime::now(),
        end_date: None,
        details: None,
    });
    let token_value = session.issue_token();
    let info = session.info();
    tracing::info!(session_id = %id, target = %info.target, owner = %info.owner,
        document = %info.document, "session started");
    crate::emulator::agent::spawn_session(state.clone(), session, commands);
    Ok(SessionAccess {
        stream_url: state.stream_url(&id),
        session_id: id,
        token_value,
    })
}

fn check_reason(reason: &str) -> Result<(), ApiError> {
    let chars = reason.chars().count();
    if chars == 0 || chars > MAX_REASON_CHARS {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at 'reason' failed to satisfy constraint: \
             Member must have length between 1 and {MAX_REASON_CHARS} (it has {chars} characters)"
        )));
    }
    if reason.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']) {
        return Err(ApiError::validation(
            "1 validation error detected: Value at 'reason' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: ^.{1,256}$ (no line breaks)",
        ));
    }
    Ok(())
}

fn check_document(
    document: &str,
    parameters: &BTreeMap<String, Vec<String>>,
) -> Result<(), ApiError> {
    let known: &[&str] = match document {
        RUN_SHELL => &[],
        INTERACTIVE_COMMAND => &["command"],
        other => {
            return Err(ApiError::new(
                "InvalidDocument",
                format!(
                    "Document with name {other} does not exist. \
                     The emulator has {RUN_SHELL} and {INTERACTIVE_COMMAND}."
                ),
            ));
        }
    };
    if let Some(unknown) = parameters.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::validation(format!(
            "parameters: the document {document} has no parameter {unknown:?}"
        )));
    }
    if document == INTERACTIVE_COMMAND {
        match parameters.get("command").map(Vec::as_slice) {
            Some([command]) if !command.trim().is_empty() => {}
            _ => {
                return Err(ApiError::validation(format!(
                    "parameters: {INTERACTIVE_COMMAND} needs the parameter 'command' with \
                     exactly one non-empty value"
                )));
            }
        }
    }
    Ok(())
}

fn find(state: &State, id: &str) -> Result<Arc<crate::emulator::sessions::Session>, ApiError> {
    state.registry.get(id).ok_or_else(|| {
        ApiError::new(
            "DoesNotExistException",
            format!("Session with id {id} does not exist."),
        )
    })
}

/// `AmazonSSM.ResumeSession`: a fresh token for an active session (the previous one lapses).
pub(super) fn resume(
    state: &Arc<State>,
    request: SessionIdOnly,
) -> Result<SessionAccess, ApiError> {
    let id = required(request.session_id, "sessionId")?;
    let session = find(state, &id)?;
    let status = session.info().status;
    if !status.is_active() {
        // The service hands out an empty token here, which the official plugin reports as a
        // timeout; a clear error is kinder.
        return Err(ApiError::new(
            "DoesNotExistException",
            format!(
                "Session {id} is terminated (status {}) and cannot be resumed; start a new one.",
                status.as_str()
            ),
        ));
    }
    let token_value = session.issue_token();
    tracing::info!(session_id = %id, "session resumed");
    Ok(SessionAccess {
        stream_url: state.stream_url(&id),
        session_id: id,
        token_value,
    })
}

/// `AmazonSSM.TerminateSession`: asks the session's task to end it; idempotent.
pub(super) fn terminate(
    state: &Arc<State>,
    request: SessionIdOnly,
) -> Result<SessionIdOnly, ApiError> {
    let id = required(request.session_id, "sessionId")?;
    let session = find(state, &id)?;
    if session.info().status.is_active() {
        // Marked first: the task may record Terminated as soon as it reads the command.
        session.set_status(SessionStatus::Terminating, None);
        if !session.command(SessionCommand::Terminate) {
            // No task is listening (it has ended or is stuck): the session ends here.
            session.set_status(SessionStatus::Terminated, None);
        }
        tracing::info!(session_id = %id, "session terminated by request");
    }
    Ok(SessionIdOnly {
        session_id: Some(id),
    })
}

/// DescribeSessions' input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DescribeRequest {
    state: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
    filters: Option<Vec<SessionFilter>>,
}

/// One `{key, value}` filter (the service spells these members in lower case).
#[derive(Debug, Deserialize)]
struct SessionFilter {
    key: String,
    value: String,
}

/// DescribeSessions' output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DescribeResponse {
    sessions: Vec<SessionItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SessionItem {
    session_id: String,
    target: String,
    status: &'static str,
    start_date: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_date: Option<f64>,
    document_name: String,
    owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<String>,
}

impl From<SessionInfo> for SessionItem {
    fn from(s: SessionInfo) -> Self {
        Self {
            session_id: s.id,
            target: s.target,
            status: s.status.as_str(),
            start_date: epoch_seconds(s.start_date),
            end_date: s.end_date.map(epoch_seconds),
            document_name: s.document,
            owner: s.owner,
            reason: s.reason,
            details: s.details,
        }
    }
}

/// `AmazonSSM.DescribeSessions`: `Active` or `History`, newest first, filtered and paged.
pub(super) fn describe(
    state: &Arc<State>,
    request: DescribeRequest,
) -> Result<DescribeResponse, ApiError> {
    let active = match required(request.state, "state")?.as_str() {
        "Active" => true,
        "History" => false,
        other => {
            return Err(ApiError::constraint(
                &format!("'{other}'"),
                "state",
                "Member must satisfy enum value set: [Active, History]",
            ));
        }
    };
    let max = max_results(request.max_results, DESCRIBE_RANGE, DESCRIBE_DEFAULT)?;
    let filters = request
        .filters
        .unwrap_or_default()
        .iter()
        .map(Filter::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let sessions: Vec<SessionInfo> = state
        .registry
        .list()
        .into_iter()
        .filter(|s| s.status.is_active() == active && filters.iter().all(|f| f.matches(s)))
        .collect();
    let (sessions, next_token) = page(
        sessions,
        order_key,
        "sessions",
        max,
        request.next_token.as_deref(),
    )?;
    Ok(DescribeResponse {
        sessions: sessions.into_iter().map(SessionItem::from).collect(),
        next_token,
    })
}

/// Newest first, then by id: a key that sorts ascending in that order.
fn order_key(s: &SessionInfo) -> String {
    let micros = s
        .start_date
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let micros = u64::try_from(micros).unwrap_or(u64::MAX);
    format!("{:016x}-{}", u64::MAX - micros, s.id)
}

/// A parsed DescribeSessions filter.
#[derive(Debug, Clone, PartialEq)]
enum Filter {
    InvokedAfter(SystemTime),
    InvokedBefore(SystemTime),
    Target(String),
    Owner(String),
    Status(SessionStatus),
    SessionId(String),
}

impl Filter {
    fn parse(filter: &SessionFilter) -> Result<Self, ApiError> {
        let value = filter.value.clone();
        if value.is_empty() || value.chars().count() > 400 {
            return Err(ApiError::validation(format!(
                "the value of the {} filter must have 1 to 400 characters",
                filter.key
            )));
        }
        let time = |value: &str| {
            parse_timestamp(value).ok_or_else(|| {
                ApiError::validation(format!(
                    "the {} filter needs a timestamp such as 2018-08-29T00:00:00Z, not {value:?}",
                    filter.key
                ))
            })
        };
        Ok(match filter.key.as_str() {
            "InvokedAfter" => Self::InvokedAfter(time(&value)?),
            "InvokedBefore" => Self::InvokedBefore(time(&value)?),
            "Target" => Self::Target(value),
            "Owner" => Self::Owner(value),
            "SessionId" => Self::SessionId(value),
            "Status" => Self::Status(
                STATUSES
                    .into_iter()
                    .find(|s| s.as_str() == value)
                    .ok_or_else(|| {
                        let names: Vec<&str> = STATUSES.iter().map(|s| s.as_str()).collect();
                        ApiError::validation(format!(
                            "the Status filter value {value:?} is not one of {}",
                            names.join(", ")
                        ))
                    })?,
            ),
            other => {
                return Err(ApiError::new(
                    "InvalidFilterKey",
                    format!("The filter key {other:?} is not valid. Valid keys: {FILTER_KEYS}."),
                ));
            }
        })
    }

    fn matches(&self, s: &SessionInfo) -> bool {
        match self {
            Self::InvokedAfter(t) => s.start_date >= *t,
            Self::InvokedBefore(t) => s.start_date < *t,
            Self::Target(target) => s.target == *target,
            // The owner's ARN, or just the user name at its end.
            Self::Owner(owner) => {
                s.owner == *owner
                    || s.owner
                        .rsplit_once('/')
                        .is_some_and(|(_, name)| name == owner)
            }
            Self::Status(status) => s.status == *status,
            Self::SessionId(id) => s.id == *id,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn info(id: &str, target: &str, owner: &str, started: u64) -> SessionInfo {
        SessionInfo {
            id: id.into(),
            target: target.into(),
            document: RUN_SHELL.into(),
            parameters: BTreeMap::new(),
            owner: format!("arn:aws:iam::000000000000:user/{owner}"),
            reason: None,
            status: SessionStatus::Connecting,
            start_date: UNIX_EPOCH + Duration::from_secs(started),
            end_date: None,
            details: None,
        }
    }

    fn filter(key: &str, value: &str) -> Result<Filter, ApiError> {
        Filter::parse(&SessionFilter {
            key: key.into(),
            value: value.into(),
        })
    }

    #[test]
    fn filters_match_what_they_name() {
        let s = info("alice-1", "i-1", "alice", 1_535_500_800); // 2018-08-29T00:00:00Z
        let yes = |k, v| assert!(filter(k, v).unwrap().matches(&s), "{k}={v}");
        let no = |k, v| assert!(!filter(k, v).unwrap().matches(&s), "{k}={v}");
        yes("InvokedAfter", "2018-08-29T00:00:00Z");
        no("InvokedAfter", "2018-08-29T00:00:01Z");
        yes("InvokedBefore", "2018-08-29T00:00:01Z");
        no("InvokedBefore", "2018-08-29T00:00:00Z");
        yes("Target", "i-1");
        no("Target", "i-2");
        yes("Owner", "alice");
        yes("Owner", "arn:aws:iam::000000000000:user/alice");
        no("Owner", "bob");
        yes("Status", "Connecting");
        no("Status", "Connected");
        yes("SessionId", "alice-1");
        no("SessionId", "alice-2");
    }

    #[test]
    fn bad_filters_name_the_problem() {
        let err = filter("Colour", "red").unwrap_err();
        assert_eq!(err.code(), "InvalidFilterKey");
        assert!(err.message().contains("Colour"), "{}", err.message());
        let err = filter("Status", "Running").unwrap_err();
        assert_eq!(err.code(), "ValidationException");
        assert!(err.message().contains("Running"), "{}", err.message());
        let err = filter("InvokedAfter", "last week").unwrap_err();
        assert!(err.message().contains("InvokedAfter"), "{}", err.message());
        assert_eq!(
            filter("Target", "").unwrap_err().code(),
            "ValidationException"
        );
    }

    #[test]
    fn sessions_are_listed_newest_first() {
        let mut list = [
            info("a-2", "i", "a", 10),
            info("a-1", "i", "a", 20),
            info("a-3", "i", "a", 10),
        ];
        list.sort_by_key(order_key);
        let ids: Vec<&str> = list.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a-1", "a-2", "a-3"]);
    }

    #[test]
    fn reasons_and_documents_are_checked() {
        assert!(check_reason("deploy hotfix").is_ok());
        assert!(
            check_reason(&"é".repeat(MAX_REASON_CHARS)).is_ok(),
            "characters, not bytes"
        );
        let err = check_reason(&"x".repeat(MAX_REASON_CHARS + 1)).unwrap_err();
        assert!(err.message().contains("'reason'"), "{}", err.message());
        assert!(check_reason("").is_err());
        assert!(check_reason("two\nlines").is_err());

        let none = BTreeMap::new();
        let command = |v: &[&str]| {
            BTreeMap::from([(
                "command".to_owned(),
                v.iter().map(|s| s.to_string()).collect(),
            )])
        };
        assert!(check_document(RUN_SHELL, &none).is_ok());
        assert!(check_document(INTERACTIVE_COMMAND, &command(&["top"])).is_ok());
        for bad in [
            none.clone(),
            command(&[]),
            command(&[" "]),
            command(&["a", "b"]),
        ] {
            let err = check_document(INTERACTIVE_COMMAND, &bad).unwrap_err();
            assert_eq!(err.code(), "ValidationException");
            assert!(err.message().contains("'command'"), "{}", err.message());
        }
        let err = check_document(RUN_SHELL, &command(&["top"])).unwrap_err();
        assert!(err.message().contains("\"command\""), "{}", err.message());
        let err = check_document("AWS-StartPortForwardingSession", &none).unwrap_err();
        assert_eq!(err.code(), "InvalidDocument");
    }
}
