//! The fleet's accounts (`[[aws.accounts]]`): for each, the role the gateway assumes with its
//! own credentials, kept and fetched again before it expires, and SDK clients per region
//! signed with it. No accounts configured: one implicit account, unnamed, whose clients use
//! the gateway's own credentials — as before accounts existed.

use super::assume::{AssumeRequest, AssumedCredentials};
use super::{AwsClients, Failure, Regions};
use crate::gateway::config::{AccountConfig, Config};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The `RoleSessionName` the gateway's own sessions in an account's role carry.
pub const GATEWAY_SESSION_NAME: &str = "porthole-gateway";

/// One account: its name, the role that reaches it (none for the implicit account) and its
/// clients by region.
#[derive(Debug)]
pub struct Account {
    /// `[[aws.accounts]]`'s `name`; empty for the implicit account.
    pub name: String,
    /// The credentials of the account's role; `None`: the gateway's own.
    pub credentials: Option<Arc<AssumedCredentials>>,
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
    let credentials = AssumedCredentials::new(
        sts.clone(),
        AssumeRequest {
            role_arn: account.role_arn.clone(),
            external_id: account.external_id.clone(),
            session_name: GATEWAY_SESSION_NAME.into(),
            source_identity: None,
            tags: Vec::new(),
            source: "porthole-account-role",
        },
    );
    let mut regions = BTreeMap::new();
    for region in config.aws.account_regions(account) {
        let mut loader =
            super::loader(config, region.clone()).credentials_provider(credentials.provider());
        if let Some(url) = &config.aws.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        regions.insert(region, super::clients_of(&sdk));
    }
    Account {
        name: account.name.clone(),
        credentials: Some(credentials),
        regions,
    }
}
