//! What every request handler shares: the configuration, the database, the AWS clients of
//! each region, the sign-in keys, the live sessions and the targets cache.

use std::collections::BTreeMap;

use aws_config::BehaviorVersion;
use aws_sdk_ssm::config::Credentials;
use aws_sdk_ssm::error::ProvideErrorMetadata;

use super::auth::JwtKeys;
use super::config::Config;
use super::db::Db;
use super::live;
use super::policy::PolicyHandle;
use super::recording_store::RecordingStore;
use super::targets;
use super::users::{LocalRoles, RoleSource};
use crate::ssm::client::AwsClients;

/// The shared state.
#[derive(Debug)]
pub struct AppState {
    /// The configuration.
    pub config: Config,
    /// The gateway's origin (scheme, host, port of the public URL).
    pub origin: String,
    /// The database.
    pub db: Db,
    /// AWS clients by region, in the configured order.
    pub aws: BTreeMap<String, AwsClients>,
    /// Sign-in token keys.
    pub jwt: JwtKeys,
    /// The sessions this gateway holds.
    pub live: live::Registry,
    /// The targets cache.
    pub targets: targets::Cache,
    /// A real argon2 hash, checked against when the user name is unknown (equal timing).
    pub dummy_hash: String,
    /// The policy in force (replaced on reload).
    pub policy: PolicyHandle,
    /// Where users' roles come from.
    pub role_source: Box<dyn RoleSource>,
    /// Where finished recordings are kept (the local folder or S3).
    pub recordings: RecordingStore,
}

impl AppState {
    /// Builds the state: AWS clients for every region (aws-config's default chain unless the
    /// configuration has static credentials).
    pub async fn new(config: Config, db: Db) -> Result<Self, String> {
        let policy = PolicyHandle::load(&config)?;
        let aws = aws_clients(&config).await;
        let recordings = RecordingStore::new(&config).await;
        let origin = config.origin();
        let jwt = JwtKeys::new(config.auth.jwt_secret.expose().as_bytes(), &origin);
        let dummy_hash =
            super::users::hash_password("not a real password").map_err(|e| e.to_string())?;
        Ok(Self {
            origin,
            db,
            aws,
            jwt,
            live: live::Registry::default(),
            targets: targets::Cache::default(),
            dummy_hash,
            policy,
            role_source: Box::new(LocalRoles),
            recordings,
            config,
        })
    }

    /// The clients of `region`.
    pub fn clients(&self, region: &str) -> Option<&AwsClients> {
        self.aws.get(region)
    }
}

/// AWS clients for every configured region (aws-config's default chain unless the
/// configuration has static credentials).
pub async fn aws_clients(config: &Config) -> BTreeMap<String, AwsClients> {
    let mut aws = BTreeMap::new();
    for region in config.aws.all_regions() {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region.clone()));
        if let Some(url) = &config.aws.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let (Some(id), Some(secret)) = (&config.aws.access_key_id, &config.aws.secret_access_key)
        {
            loader = loader.credentials_provider(Credentials::new(
                id.expose(),
                secret.expose(),
                None,
                None,
                "porthole-config",
            ));
        }
        let sdk = loader.load().await;
        aws.insert(
            region,
            AwsClients {
                ssm: aws_sdk_ssm::Client::new(&sdk),
                kms: aws_sdk_kms::Client::new(&sdk),
            },
        );
    }
    aws
}

/// AWS's own words for an SDK error: `Code: message`, or the error's text when the service
/// sent none (a connection failure, a timeout).
pub fn aws_message<E>(e: &E) -> String
where
    E: ProvideErrorMetadata + std::error::Error,
{
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => {
            let mut text = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}
