//! The gateway's metrics: their names, their labels with the few fixed values each may take,
//! and one small function per thing counted, which any layer calls (this module imports
//! nothing of the crate; `tests/layers.rs` lets every layer of the gateway import it).
//!
//! The functions record through the `metrics` facade: into the Prometheus recorder once the
//! gateway has installed it (`http::metrics`), into nothing before. The gauges of one gateway's
//! own state (live sessions, browser sockets, database connections) are not recorded here but
//! read when `/metrics` is scraped, so that several gateways in one process (the tests) each
//! report their own.
//!
//! No label carries a person, a node, a session or any other free text: an end's description
//! is mapped to an [`EndReason`], an AWS operation outside [`AWS_OPERATIONS`] is `other`.
//! `docs/operations.md` lists every metric.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Gauge: sessions live in this gateway (read at scrape time).
pub const SESSIONS_LIVE: &str = "porthole_sessions_live";
/// Counter: session starts, by `result` (`ok`: the session's task runs; `failed`: AWS or the
/// data channel failed after the start was recorded).
pub const SESSION_STARTS: &str = "porthole_session_starts_total";
/// Counter: session ends, by `reason` ([`EndReason`]).
pub const SESSION_ENDS: &str = "porthole_session_ends_total";
/// Histogram: seconds from calling `StartSession` to the data channel being ready.
pub const SESSION_START_SECONDS: &str = "porthole_session_start_seconds";
/// Counter: terminal bytes relayed, by `direction` (`out`: node to browser; `in`: browser to
/// node).
pub const RELAYED_BYTES: &str = "porthole_relayed_bytes_total";
/// Counter: data-channel outages resumed with `ResumeSession` (reconnects).
pub const SSM_RESUMES: &str = "porthole_ssm_resumes_total";
/// Counter: sessions handed to another gateway (`direction="out"`) or taken from one
/// (`direction="in"`); see [`handover`].
pub const HANDOVERS: &str = "porthole_handovers_total";
/// Counter: browsers attached to a session, by `mode` (`attach`: its owner; `observe`).
pub const ATTACHES: &str = "porthole_attaches_total";
/// Counter: sign-ins, by `method` ([`SignInMethod`]) and `result` (`ok`, `failed`).
pub const SIGN_INS: &str = "porthole_sign_ins_total";
/// Counter: requests the policy refused, by `action` ([`Denied`]).
pub const POLICY_DENIALS: &str = "porthole_policy_denials_total";
/// Histogram: seconds to append one audit event (read the chain's head, write the row).
pub const AUDIT_APPEND_SECONDS: &str = "porthole_audit_append_seconds";
/// Counter: AWS API calls, by `service` and `operation` ([`AWS_OPERATIONS`]).
pub const AWS_CALLS: &str = "porthole_aws_calls_total";
/// Counter: AWS API calls that failed (after the SDK's retries), by `service` and `operation`.
pub const AWS_ERRORS: &str = "porthole_aws_errors_total";
/// Gauge: database connections in use (read at scrape time).
pub const DB_CONNECTIONS_IN_USE: &str = "porthole_db_connections_in_use";
/// Gauge: browser WebSockets open, attached and observing (read at scrape time).
pub const BROWSER_SOCKETS_OPEN: &str = "porthole_browser_sockets_open";
/// Gauge: file transfers running in this gateway (read at scrape time; at most
/// `files.max_concurrent`).
pub const FILE_TRANSFERS_IN_FLIGHT: &str = "porthole_file_transfers_in_flight";
/// Counter: webhook delivery attempts, by `result` ([`Delivery`]).
pub const NOTIFICATIONS: &str = "porthole_notifications_total";

/// The buckets of [`SESSION_START_SECONDS`].
pub const START_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// The buckets of [`AUDIT_APPEND_SECONDS`].
pub const AUDIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The AWS operations counted by name, as `(service, operation)`; any other is counted as
/// `operation="other"` of its service (or of `service="other"`).
pub const AWS_OPERATIONS: &[(&str, &str)] = &[
    ("ssm", "StartSession"),
    ("ssm", "ResumeSession"),
    ("ssm", "TerminateSession"),
    ("ssm", "DescribeInstanceInformation"),
    ("ssm", "DescribeSessions"),
    ("sts", "AssumeRole"),
    ("sts", "GetCallerIdentity"),
    ("kms", "GenerateDataKey"),
    ("kms", "Decrypt"),
    ("s3", "PutObject"),
    ("s3", "GetObject"),
    ("s3", "CreateMultipartUpload"),
    ("s3", "UploadPart"),
    ("s3", "CompleteMultipartUpload"),
    ("s3", "AbortMultipartUpload"),
];

/// The services of [`AWS_OPERATIONS`].
const AWS_SERVICES: &[&str] = &["ssm", "sts", "kms", "s3"];

/// How a session ended, as the `reason` label of [`SESSION_ENDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The shell exited (the agent closed the channel without a word).
    Exited,
    /// The agent closed the channel saying why (terminated outside Porthole, for one).
    Remote,
    /// A person terminated it.
    Terminated,
    /// The idle timeout.
    Idle,
    /// The maximum duration.
    MaxDuration,
    /// No browser attached for the grace period.
    Detached,
    /// Its owner lost access.
    Revoked,
    /// The gateway stopped.
    Shutdown,
    /// Left live by a stopped gateway, ended at the next start.
    Restart,
    /// Handed to another gateway.
    HandedOver,
    /// The data channel failed (unacknowledged beyond the give-up time, handshake, decryption).
    ChannelFailed,
    /// Anything else.
    Other,
}

impl EndReason {
    /// Every reason, for documentation and for showing each at zero.
    pub const ALL: [EndReason; 12] = [
        Self::Exited,
        Self::Remote,
        Self::Terminated,
        Self::Idle,
        Self::MaxDuration,
        Self::Detached,
        Self::Revoked,
        Self::Shutdown,
        Self::Restart,
        Self::HandedOver,
        Self::ChannelFailed,
        Self::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exited => "exited",
            Self::Remote => "remote",
            Self::Terminated => "terminated",
            Self::Idle => "idle",
            Self::MaxDuration => "max_duration",
            Self::Detached => "detached",
            Self::Revoked => "revoked",
            Self::Shutdown => "shutdown",
            Self::Restart => "restart",
            Self::HandedOver => "handed_over",
            Self::ChannelFailed => "channel_failed",
            Self::Other => "other",
        }
    }

    /// The reason of an end described as `how` (the words the session's end row and audit
    /// event carry: "the shell exited", "terminated by alice", "idle for 20 minutes", …).
    pub fn of(how: &str) -> Self {
        let how = how.trim();
        let starts = |p: &str| how.starts_with(p);
        if how == "the shell exited" || how == "session ended" {
            Self::Exited
        } else if starts("session ended:") {
            Self::Remote
        } else if starts("terminated by") {
            Self::Terminated
        } else if starts("idle for") {
            Self::Idle
        } else if starts("reached the maximum duration") {
            Self::MaxDuration
        } else if starts("no browser attached") {
            Self::Detached
        } else if starts("access revoked") {
            Self::Revoked
        } else if starts("gateway shutdown") {
            Self::Shutdown
        } else if starts("gateway restart") {
            Self::Restart
        } else if starts("handed over") || starts("handed off") {
            Self::HandedOver
        } else if starts("gave up after")
            || starts("handshake failed")
            || (starts("message ") && how.ends_with("failed to decrypt"))
            || starts("closed:")
            || starts("the data channel task stopped")
        {
            Self::ChannelFailed
        } else {
            Self::Other
        }
    }
}

/// A sign-in method, as the `method` label of [`SIGN_INS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMethod {
    /// A local password.
    Password,
    /// OpenID Connect.
    Oidc,
    /// A proxy in front (`[auth.proxy]`).
    Proxy,
}

impl SignInMethod {
    /// Every method.
    pub const ALL: [SignInMethod; 3] = [Self::Password, Self::Oidc, Self::Proxy];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Oidc => "oidc",
            Self::Proxy => "proxy",
        }
    }

    /// The method named `name` as the identity layer names it; `None` for another.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// What the policy refused, as the `action` label of [`POLICY_DENIALS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Opening a session (audited as `session.denied`).
    Start,
    /// Attaching to a session that is not one's own.
    Attach,
    /// Observing a session.
    Observe,
    /// Terminating another's session.
    Terminate,
    /// Reading the audit log.
    Audit,
}

impl Denied {
    /// Every action.
    pub const ALL: [Denied; 5] = [
        Self::Start,
        Self::Attach,
        Self::Observe,
        Self::Terminate,
        Self::Audit,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Attach => "attach",
            Self::Observe => "observe",
            Self::Terminate => "terminate",
            Self::Audit => "audit",
        }
    }
}

/// Which way, as the `direction` label of [`RELAYED_BYTES`] and [`HANDOVERS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Bytes: node to browser. Hand-overs: a session of this gateway given to another.
    Out,
    /// Bytes: browser to node. Hand-overs: a session of another gateway taken over here.
    In,
}

impl Direction {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Out => "out",
            Self::In => "in",
        }
    }
}

/// What came of one webhook delivery attempt, as the `result` label of [`NOTIFICATIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver answered 2xx.
    Delivered,
    /// It failed; another attempt is due later.
    Retried,
    /// It failed and was the last (or its webhook is no longer configured).
    Failed,
}

impl Delivery {
    /// Every result.
    pub const ALL: [Delivery; 3] = [Self::Delivered, Self::Retried, Self::Failed];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retried => "retried",
            Self::Failed => "failed",
        }
    }
}

/// A webhook delivery attempt ended with `result`.
pub fn notification(result: Delivery) {
    metrics::counter!(NOTIFICATIONS, "result" => result.as_str()).increment(1);
}

/// A session started (`ok`), or failed after its start was recorded (`!ok`).
pub fn session_started(ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    metrics::counter!(SESSION_STARTS, "result" => result).increment(1);
}

/// A live session ended, described as `how` ([`EndReason::of`]).
pub fn session_ended(how: &str) {
    session_ended_as(EndReason::of(how));
}

/// A live session ended for `reason`.
pub fn session_ended_as(reason: EndReason) {
    metrics::counter!(SESSION_ENDS, "reason" => reason.as_str()).increment(1);
}

/// A session's data channel became ready `took` after `StartSession` was called.
pub fn session_ready(took: Duration) {
    metrics::histogram!(SESSION_START_SECONDS).record(took.as_secs_f64());
}

/// `bytes` terminal bytes relayed `direction`.
pub fn relayed(direction: Direction, bytes: usize) {
    metrics::counter!(RELAYED_BYTES, "direction" => direction.as_str()).increment(bytes as u64);
}

/// A data channel lost its socket and is being resumed (`ResumeSession`).
pub fn ssm_resumed() {
    metrics::counter!(SSM_RESUMES).increment(1);
}

/// A session was handed over: `Direction::Out` by the gateway that gives it up (once the
/// other has taken it), `Direction::In` by the gateway that resumed it. The hand-over code
/// calls this; nothing else does.
pub fn handover(direction: Direction) {
    metrics::counter!(HANDOVERS, "direction" => direction.as_str()).increment(1);
}

/// A browser attached to a session (`observe`: read-only, someone else's).
pub fn attached(observe: bool) {
    let mode = if observe { "observe" } else { "attach" };
    metrics::counter!(ATTACHES, "mode" => mode).increment(1);
}

/// A sign-in with `method` succeeded (`ok`) or was refused.
pub fn sign_in(method: SignInMethod, ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    metrics::counter!(SIGN_INS, "method" => method.as_str(), "result" => result).increment(1);
}

/// The policy refused `action`.
pub fn denied(action: Denied) {
    metrics::counter!(POLICY_DENIALS, "action" => action.as_str()).increment(1);
}

/// An audit append took `took`.
pub fn audit_appended(took: Duration) {
    metrics::histogram!(AUDIT_APPEND_SECONDS).record(took.as_secs_f64());
}

/// The `(service, operation)` labels of an AWS call: the names of [`AWS_OPERATIONS`], else
/// `other`. `service` is the SDK's service name (`SSM`, `STS`, `KMS`, `S3`, any case).
pub fn aws_labels(service: &str, operation: &str) -> (&'static str, &'static str) {
    let service = service.to_ascii_lowercase();
    let Some(service) = AWS_SERVICES.iter().copied().find(|s| *s == service) else {
        return ("other", "other");
    };
    let operation = AWS_OPERATIONS
        .iter()
        .find(|(s, o)| *s == service && *o == operation)
        .map_or("other", |(_, o)| o);
    (service, operation)
}

/// An AWS call was made (`failed`: it failed after the SDK's retries).
pub fn aws_call(service: &str, operation: &str, failed: bool) {
    let (service, operation) = aws_labels(service, operation);
    metrics::counter!(AWS_CALLS, "service" => service, "operation" => operation).increment(1);
    if failed {
        metrics::counter!(AWS_ERRORS, "service" => service, "operation" => operation).increment(1);
    }
}

/// Describes every metric recorded here and shows each counter's label values at zero, so
/// that a scrape lists them before anything happened (an absent series and a zero read
/// differently in alerts). Called once, after the recorder is installed.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(SESSION_STARTS, "Session starts, by result (ok, failed).");
    describe_counter!(SESSION_ENDS, "Session ends, by reason.");
    describe_histogram!(
        SESSION_START_SECONDS,
        Unit::Seconds,
        "Seconds from calling StartSession to the data channel being ready."
    );
    describe_counter!(
        RELAYED_BYTES,
        Unit::Bytes,
        "Terminal bytes relayed, by direction (out: node to browser, in: browser to node)."
    );
    describe_counter!(
        SSM_RESUMES,
        "Data-channel outages resumed with ResumeSession."
    );
    describe_counter!(
        HANDOVERS,
        "Sessions handed to another gateway (out) or taken from one (in)."
    );
    describe_counter!(ATTACHES, "Browsers attached to sessions, by mode.");
    describe_counter!(SIGN_INS, "Sign-ins, by method and result.");
    describe_counter!(POLICY_DENIALS, "Requests the policy refused, by action.");
    describe_histogram!(
        AUDIT_APPEND_SECONDS,
        Unit::Seconds,
        "Seconds to append one audit event."
    );
    describe_counter!(
        NOTIFICATIONS,
        "Webhook delivery attempts, by result (delivered, retried, failed)."
    );
    describe_counter!(AWS_CALLS, "AWS API calls, by service and operation.");
    describe_counter!(
        AWS_ERRORS,
        "AWS API calls that failed after retries, by service and operation."
    );
    for result in ["ok", "failed"] {
        metrics::counter!(SESSION_STARTS, "result" => result).increment(0);
    }
    for reason in EndReason::ALL {
        metrics::counter!(SESSION_ENDS, "reason" => reason.as_str()).increment(0);
    }
    for direction in [Direction::Out, Direction::In] {
        metrics::counter!(RELAYED_BYTES, "direction" => direction.as_str()).increment(0);
        metrics::counter!(HANDOVERS, "direction" => direction.as_str()).increment(0);
    }
    metrics::counter!(SSM_RESUMES).increment(0);
    for mode in ["attach", "observe"] {
        metrics::counter!(ATTACHES, "mode" => mode).increment(0);
    }
    for method in SignInMethod::ALL {
        for result in ["ok", "failed"] {
            metrics::counter!(SIGN_INS, "method" => method.as_str(), "result" => result)
                .increment(0);
        }
    }
    for action in Denied::ALL {
        metrics::counter!(POLICY_DENIALS, "action" => action.as_str()).increment(0);
    }
    for result in Delivery::ALL {
        metrics::counter!(NOTIFICATIONS, "result" => result.as_str()).increment(0);
    }
    for (service, operation) in AWS_OPERATIONS.iter().copied() {
        metrics::counter!(AWS_CALLS, "service" => service, "operation" => operation).increment(0);
        metrics::counter!(AWS_ERRORS, "service" => service, "operation" => operation).increment(0);
    }
}

/// A count of things open now (browser sockets) in one gateway, read at scrape time.
#[derive(Debug, Default)]
pub struct OpenCount(AtomicUsize);

impl OpenCount {
    /// One more is open until the guard is dropped.
    pub fn open(self: &Arc<Self>) -> OpenGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.clone())
    }

    /// How many are open.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Holds one of an [`OpenCount`] open.
#[derive(Debug)]
pub struct OpenGuard(Arc<OpenCount>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_are_mapped_to_a_fixed_reason() {
        for (how, reason) in [
            ("the shell exited", EndReason::Exited),
            ("session ended", EndReason::Exited),
            ("session ended: Session is terminated", EndReason::Remote),
            ("terminated by alice", EndReason::Terminated),
            ("idle for 20 minutes", EndReason::Idle),
            (
                "reached the maximum duration of 12 hours",
                EndReason::MaxDuration,
            ),
            ("no browser attached for 10 minutes", EndReason::Detached),
            ("access revoked", EndReason::Revoked),
            ("gateway shutdown", EndReason::Shutdown),
            ("gateway restart", EndReason::Restart),
            ("handed over to porthole-2", EndReason::HandedOver),
            (
                "gave up after 12 resends of message 7 without an acknowledgement",
                EndReason::ChannelFailed,
            ),
            ("handshake failed: no KMS key", EndReason::ChannelFailed),
            ("message 9 failed to decrypt", EndReason::ChannelFailed),
            ("the data channel task stopped", EndReason::ChannelFailed),
            ("closed: bye", EndReason::ChannelFailed),
            ("the gateway dropped the session", EndReason::Other),
            ("alice's secret words", EndReason::Other),
            ("", EndReason::Other),
        ] {
            assert_eq!(EndReason::of(how), reason, "{how:?}");
        }
        // Every label value is distinct and lower-case.
        let mut seen: Vec<&str> = EndReason::ALL.iter().map(|r| r.as_str()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), EndReason::ALL.len());
        assert!(
            seen.iter()
                .all(|s| s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
    }

    #[test]
    fn aws_operations_outside_the_list_are_other() {
        assert_eq!(aws_labels("SSM", "StartSession"), ("ssm", "StartSession"));
        assert_eq!(aws_labels("sts", "AssumeRole"), ("sts", "AssumeRole"));
        assert_eq!(aws_labels("KMS", "Decrypt"), ("kms", "Decrypt"));
        assert_eq!(aws_labels("ssm", "SendCommand"), ("ssm", "other"));
        assert_eq!(aws_labels("ssm", "AssumeRole"), ("ssm", "other"));
        assert_eq!(aws_labels("ec2", "RunInstances"), ("other", "other"));
    }

    #[test]
    fn sign_in_methods_are_named_as_the_identity_layer_names_them() {
        assert_eq!(SignInMethod::named("oidc"), Some(SignInMethod::Oidc));
        assert_eq!(SignInMethod::named("proxy"), Some(SignInMethod::Proxy));
        assert_eq!(
            SignInMethod::named("password"),
            Some(SignInMethod::Password)
        );
        assert_eq!(SignInMethod::named("kerberos"), None);
    }

    #[test]
    fn an_open_count_follows_its_guards() {
        let count = Arc::new(OpenCount::default());
        let a = count.open();
        let b = count.open();
        assert_eq!(count.get(), 2);
        drop(a);
        assert_eq!(count.get(), 1);
        drop(b);
        assert_eq!(count.get(), 0);
    }
}
