//! The session engine: starting, listing and terminating sessions as plain functions (no HTTP
//! types), and everything a live session runs: its task ([`live`]), the terminal model
//! ([`screen`], [`ground`]), the recording ([`recorder`]) and the search index ([`indexer`]).
//! Asks `policy` for decisions, keeps rows and the audit log through `store`, talks to AWS
//! through `aws` and the data channel through `ssm`.

pub mod approvals;
pub mod ending;
pub mod engine;
pub mod files;
pub mod ground;
pub mod handover;
pub mod indexer;
pub mod judge;
pub mod labels;
pub mod live;
pub mod participants;
pub mod recorder;
pub mod screen;
pub mod searches;
pub mod upkeep;

use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::gateway::aws::accounts::Accounts;
use crate::gateway::aws::{self, AwsClients, targets};
use crate::gateway::cluster::Cluster;
use crate::gateway::config::Config;
use crate::gateway::policy::PolicyHandle;
use crate::gateway::store::db::{Db, DbError};
use crate::gateway::store::recordings::RecordingStore;

/// What the engine works with: the configuration, the database, the AWS clients of each
/// region, the policy in force, the live sessions, the targets cache and the recordings store.
#[derive(Debug)]
pub struct Engine {
    /// The configuration.
    pub config: Arc<Config>,
    /// The database.
    pub db: Db,
    /// AWS clients by account and region.
    pub aws: Accounts,
    /// The policy in force (replaced on reload).
    pub policy: Arc<PolicyHandle>,
    /// The sessions this gateway holds.
    pub live: live::Registry,
    /// The targets cache.
    pub targets: targets::Cache,
    /// Where finished recordings are kept (the local folder or S3).
    pub recordings: RecordingStore,
    /// The bounds on searching the recordings.
    pub searches: searches::Limiter,
    /// The bounds on file transfers running at once (`files.max_concurrent`, and
    /// `files.max_concurrent_per_user` for each person).
    pub transfers: files::slots::Slots,
    /// Assumes people's AWS roles for the sessions their policy roles name one for.
    pub assumer: aws::assume::Assumer,
    /// This gateway among the others sharing the database.
    pub cluster: Cluster,
    /// Set when the gateway is stopping: no new sessions, `/readyz` fails.
    draining: AtomicBool,
}

impl Engine {
    /// The engine for `config`: AWS clients for every account and region (aws-config's default
    /// chain unless the configuration has static credentials; an account's role assumed with
    /// them) and the recordings store.
    pub async fn new(config: Arc<Config>, db: Db, policy: Arc<PolicyHandle>) -> Self {
        let sts = aws::sts_client(&config).await;
        let own = if config.aws.accounts.is_empty() {
            aws::aws_clients(&config).await
        } else {
            aws::Regions::new()
        };
        let aws = aws::accounts::accounts(&config, own, &sts).await;
        let recordings = RecordingStore::new(&config).await;
        let searches = searches::Limiter::new(config.recordings.searches_per_minute);
        let transfers = files::slots::Slots::new(
            config.files.max_concurrent,
            config.files.max_concurrent_per_user,
        );
        let assumer = aws::assume::Assumer::new(sts);
        let cluster = Cluster::new(&config);
        Self {
            cluster,
            draining: AtomicBool::new(false),
            assumer,
            config,
            db,
            aws,
            policy,
            live: live::Registry::default(),
            targets: targets::Cache::default(),
            recordings,
            searches,
            transfers,
        }
    }

    /// Whether the gateway is stopping (it takes no new sessions).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Marks the gateway as stopping: new sessions are refused, `/readyz` fails.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// The clients of `account` (by name; empty for the implicit account) in `region`.
    pub fn clients(&self, account: &str, region: &str) -> Option<&AwsClients> {
        self.aws.clients(account, region)
    }
}

/// Why the engine refused or failed. Each variant is one answer the API gives (its code and
/// status are the HTTP layer's to choose); the words are for the person.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy refuses (audited as `session.denied`).
    #[error("{0}")]
    Forbidden(String),
    /// An access request, a decision or a start without a grant was refused
    /// (`approvals::Refused` says which).
    #[error("{1}")]
    Access(approvals::Refused, String),
    /// No such node in the configured regions.
    #[error("{0}")]
    UnknownTarget(String),
    /// No such session, or not one the person may see.
    #[error("{0}")]
    UnknownSession(String),
    /// The document name is not one, or AWS does not know it.
    #[error("{0}")]
    InvalidDocument(String),
    /// The document parameters are malformed (too many, a bad name, a value too long).
    #[error("{0}")]
    InvalidParameters(String),
    /// The reason breaks a rule of the person's roles.
    #[error("{0}")]
    InvalidReason(String),
    #[error("{0}")]
    InvalidLabels(String),
    /// A bad invitation: no such user, oneself, a disabled user, a bad mode.
    #[error("{0}")]
    InvalidParticipant(String),
    /// The person named is not invited into the session.
    #[error("{0}")]
    UnknownParticipant(String),
    /// The session has as many participants as allowed.
    #[error("{0}")]
    TooManyParticipants(String),
    /// The person has as many live sessions as allowed.
    #[error("{0}")]
    TooManySessions(String),
    /// The node's agent is not connected.
    #[error("{0}")]
    TargetNotConnected(String),
    /// The session is not running.
    #[error("{0}")]
    SessionEnded(String),
    /// The gateway is stopping and takes no new sessions (another gateway does).
    #[error("{0}")]
    Draining(String),
    /// The gateway that runs the session does not answer.
    #[error("{0}")]
    OwnerUnreachable(String),
    /// The session is still running and only its owner may read its recording (others
    /// observe it).
    #[error("{0}")]
    SessionRunning(String),
    /// Too many at once or too often (a search); try again after `retry_after` seconds.
    #[error("{message}")]
    Busy {
        /// For the person.
        message: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// As many file transfers run as the person (`whole_gateway` false:
    /// `files.max_concurrent_per_user`) or the gateway (`files.max_concurrent`) may run at once;
    /// try again after `retry_after` seconds.
    #[error("{message}")]
    TooManyTransfers {
        /// For the person; names the limit's key.
        message: String,
        /// Whether the gateway's limit was reached (rather than the person's).
        whole_gateway: bool,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// A search took longer than allowed.
    #[error("{0}")]
    SearchTimeout(String),
    /// A recording that does not exist.
    #[error("{0}")]
    NoRecording(String),
    /// A file transfer was refused or failed ([`files::framing::TransferError`] says how).
    #[error(transparent)]
    Transfer(files::framing::TransferError),
    /// The node's platform cannot do what was asked (file transfer on a Windows node).
    #[error("{0}")]
    UnsupportedPlatform(String),
    /// AWS (or S3) refused or failed.
    #[error(transparent)]
    Upstream(aws::Failure),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A bug or a broken environment.
    #[error("{0}")]
    Internal(String),
}

impl From<aws::AwsError> for Error {
    fn from(e: aws::AwsError) -> Self {
        match e {
            aws::AwsError::Upstream(f) => Self::Upstream(f),
            aws::AwsError::Internal(m) => Self::Internal(m),
        }
    }
}
