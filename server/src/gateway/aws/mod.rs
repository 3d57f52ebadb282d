//! AWS: the SDK clients of each configured region, AWS's words for an SDK error, and the
//! managed nodes of every region ([`targets`]). Imports only `config` and `facts` of the
//! gateway.

pub mod accounts;
pub mod assume;
pub mod targets;

use std::collections::BTreeMap;

use aws_config::BehaviorVersion;
use aws_sdk_ssm::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_ssm::config::{ConfigBag, Credentials, Intercept, RuntimeComponents};
use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

use super::config::Config;
use super::telemetry;
pub use crate::ssm::client::AwsClients;

/// The clients of every configured region, by region name.
pub type Regions = BTreeMap<String, AwsClients>;

/// AWS refused or failed: words safe to show anyone (the operation and AWS's error code), and
/// AWS's full text, which may name accounts, roles and resources, for the log and the audit
/// row only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{summary}")]
pub struct Failure {
    /// `StartSession was refused by AWS (AccessDeniedException)`.
    pub summary: String,
    /// `StartSession: AccessDeniedException: User: arn:aws:sts::…`.
    pub detail: String,
}

impl Failure {
    /// The failure of `operation` with an SDK error.
    pub fn of<E>(operation: &str, e: &E) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error,
    {
        let summary = match e.code() {
            Some(code) if is_error_code(code) => {
                format!("{operation} was refused by AWS ({code})")
            }
            _ => format!("{operation} failed: AWS could not be reached or did not answer"),
        };
        Self {
            summary,
            detail: format!("{operation}: {}", aws_message(e)),
        }
    }

    /// A failure in words of our own, safe to show as they are.
    pub fn ours(text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            summary: text.clone(),
            detail: text,
        }
    }
}

/// Whether `code` looks like an AWS error code (`AccessDeniedException`, `Throttling`): one
/// word of ASCII letters and digits, so that nothing else of AWS's text rides along.
fn is_error_code(code: &str) -> bool {
    (1..=64).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Why an AWS call could not be made or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsError {
    /// AWS refused or could not be reached.
    #[error(transparent)]
    Upstream(Failure),
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
        aws.insert(region, clients_of(&sdk));
    }
    aws
}

/// The SSM and KMS clients of `sdk`, their calls counted ([`Counted`]).
pub fn clients_of(sdk: &aws_config::SdkConfig) -> AwsClients {
    AwsClients {
        ssm: aws_sdk_ssm::Client::from_conf(
            aws_sdk_ssm::config::Builder::from(sdk)
                .interceptor(Counted)
                .build(),
        ),
        kms: aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(sdk)
                .interceptor(Counted)
                .build(),
        ),
    }
}

/// Counts each AWS call once it is over (after the SDK's retries) by service and operation,
/// and those that failed ([`telemetry::aws_call`]). Added to every client the gateway makes.
#[derive(Debug, Clone, Copy)]
pub struct Counted;

impl Intercept for Counted {
    fn name(&self) -> &'static str {
        "porthole-metrics"
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            let failed = !matches!(context.output_or_error(), Some(Ok(_)));
            telemetry::aws_call(meta.service(), meta.name(), failed);
        }
        Ok(())
    }
}

/// The STS client the gateway assumes people's roles with: its own credentials, the first
/// configured region, `aws.endpoint_url` when set (the emulator plays STS too).
pub async fn sts_client(config: &Config) -> aws_sdk_sts::Client {
    let region = config
        .aws
        .all_regions()
        .into_iter()
        .next()
        .unwrap_or_else(|| "us-east-1".to_owned());
    let mut loader = loader(config, region);
    if let Some(url) = &config.aws.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let sdk = loader.load().await;
    aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(&sdk)
            .interceptor(Counted)
            .build(),
    )
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
