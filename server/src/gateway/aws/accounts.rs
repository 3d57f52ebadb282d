//! The fleet's accounts (`[[aws.accounts]]`): for each, the role the gateway assumes with its
//! own credentials, kept and fetched again before it expires, and SDK clients per region
//! signed with it. No accounts configured: one implicit account, unnamed, whose clients use
//! the gateway's own credentials — as before accounts existed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider};

use super::{AwsClients, Failure, Regions};
use crate::gateway::config::{AccountConfig, Config};

/// The `RoleSessionName` the gateway's own sessions in an account's role carry.
pub const GATEWAY_SESSION_NAME: &str = "porthole-gateway";

/// Credentials are fetched again when less than this is left of them (or a quarter of their
/// life, when that is shorter).
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// One account: its name, the role that reaches it (none for the implicit account) and its
/// clients by region.
#[derive(Debug)]
pub struct Account {
    /// `[[aws.accounts]]`'s `name`; empty for the implicit account.
    pub name: String,
    /// The credentials of the account's role; `None`: the gateway's own.
    pub credentials: Option<Arc<AccountCredentials>>,
    /// Clients by region name.
    pub regions: Regions,
}

impl Account {
    /// Credentials that work now, or why there are none in words safe to show (the implicit
    /// account always has some: the SDK's own chain answers at each call).
    pub async fn ready(&self) -> Result<(), Failure> {
        match &self.credentials {
            None => Ok(()),
            Some(c) => c.get().await.map(|_| ()),
        }
    }
}

/// Every account, in the configured order.
#[derive(Debug, Default)]
pub struct Accounts(pub Vec<Account>);

impl Accounts {
    /// The clients of `account` (by name; empty for the implicit account) in `region`.
    pub fn clients(&self, account: &str, region: &str) -> Option<&AwsClients> {
        self.account(account)?.regions.get(region)
    }

    /// One account by name.
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.0.iter().find(|a| a.name == name)
    }

    /// Every (account, region, clients), accounts in order then regions.
    pub fn each(&self) -> impl Iterator<Item = (&Account, &str, &AwsClients)> {
        self.0.iter().flat_map(|account| {
            account
                .regions
                .iter()
                .map(move |(region, clients)| (account, region.as_str(), clients))
        })
    }
}

/// The kept credentials of one account's role, assumed with the gateway's own.
#[derive(Debug)]
pub struct AccountCredentials {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    external_id: Option<String>,
    cached: tokio::sync::Mutex<Option<(Credentials, SystemTime, Duration)>>,
}

impl AccountCredentials {
    /// Credentials that are good for a while yet: the kept ones, or new ones from STS.
    pub async fn get(&self) -> Result<Credentials, Failure> {
        let mut cached = self.cached.lock().await;
        if let Some((credentials, expires, life)) = cached.as_ref() {
            let left = expires
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            if left > REFRESH_BEFORE.min(*life / 4) {
                return Ok(credentials.clone());
            }
        }
        let asked = std::time::Instant::now();
        let reply = self
            .sts
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(GATEWAY_SESSION_NAME)
            .set_external_id(self.external_id.clone())
            .send()
            .await
            .map_err(|e| super::assume::refusal(&e))?;
        let c = reply
            .credentials()
            .ok_or_else(|| Failure::ours("AssumeRole answered without credentials"))?;
        let expires = SystemTime::try_from(*c.expiration())
            .map_err(|e| Failure::ours(format!("AssumeRole's expiry: {e}")))?;
        let life = expires
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            + asked.elapsed();
        let credentials = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            Some(expires),
            "porthole-account-role",
        );
        tracing::debug!(role = %self.role_arn, "assumed an account's role");
        *cached = Some((credentials.clone(), expires, life));
        Ok(credentials)
    }
}

/// The credentials provider the SDK asks at each call.
#[derive(Debug, Clone)]
struct Provider(Arc<AccountCredentials>);

impl ProvideCredentials for Provider {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            self.0
                .get()
                .await
                .map_err(|f| provider::error::CredentialsError::provider_error(f.detail))
        })
    }
}

/// The accounts of `config`: each `[[aws.accounts]]` with clients signed with its role, or
/// the implicit account with the gateway's own clients (`own`) when none is configured.
pub async fn accounts(config: &Config, own: Regions, sts: &aws_sdk_sts::Client) -> Accounts {
    if config.aws.accounts.is_empty() {
        return Accounts(vec![Account {
            name: String::new(),
            credentials: None,
            regions: own,
        }]);
    }
    let mut out = Vec::with_capacity(config.aws.accounts.len());
    for account in &config.aws.accounts {
        out.push(one(config, account, sts).await);
    }
    Accounts(out)
}

async fn one(config: &Config, account: &AccountConfig, sts: &aws_sdk_sts::Client) -> Account {
    let credentials = Arc::new(AccountCredentials {
        sts: sts.clone(),
        role_arn: account.role_arn.clone(),
        external_id: account.external_id.clone(),
        cached: tokio::sync::Mutex::new(None),
    });
    let mut regions = BTreeMap::new();
    for region in config.aws.account_regions(account) {
        let mut loader = super::loader(config, region.clone()).credentials_provider(
            SharedCredentialsProvider::new(Provider(credentials.clone())),
        );
        if let Some(url) = &config.aws.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        regions.insert(
            region,
            AwsClients {
                ssm: aws_sdk_ssm::Client::new(&sdk),
                kms: aws_sdk_kms::Client::new(&sdk),
            },
        );
    }
    Account {
        name: account.name.clone(),
        credentials: Some(credentials),
        regions,
    }
}
