//! AWS: the SDK clients of each configured region, AWS's words for an SDK error, and the
//! managed nodes of every region ([`targets`]). Imports only `config` and `facts` of the
//! gateway.

pub mod targets;

use std::collections::BTreeMap;

use aws_config::BehaviorVersion;
use aws_sdk_ssm::config::Credentials;
use aws_sdk_ssm::error::ProvideErrorMetadata;

use super::config::Config;
pub use crate::ssm::client::AwsClients;

/// The clients of every configured region, by region name.
pub type Regions = BTreeMap<String, AwsClients>;

/// Why an AWS call could not be made or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsError {
    /// AWS refused or could not be reached (its words).
    #[error("{0}")]
    Upstream(String),
    /// The request could not be built.
    #[error("{0}")]
    Internal(String),
}

/// AWS clients for every configured region (aws-config's default chain unless the
/// configuration has static credentials).
pub async fn aws_clients(config: &Config) -> Regions {
    let mut aws = BTreeMap::new();
    for region in config.aws.all_regions() {
        let mut loader = loader(config, region.clone());
        if let Some(url) = &config.aws.endpoint_url {
            loader = loader.endpoint_url(url);
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

/// aws-config's loader for `region`, with the configuration's static credentials when it has
/// them (else aws-config's default chain).
pub fn loader(config: &Config, region: String) -> aws_config::ConfigLoader {
    let loader =
        aws_config::defaults(BehaviorVersion::latest()).region(aws_config::Region::new(region));
    match (&config.aws.access_key_id, &config.aws.secret_access_key) {
        (Some(id), Some(secret)) => loader.credentials_provider(Credentials::new(
            id.expose(),
            secret.expose(),
            None,
            None,
            "porthole-config",
        )),
        _ => loader,
    }
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
