//! Sessions started as the person: `sts:AssumeRole` of the role a policy role names, with the
//! person's name as `RoleSessionName` and `SourceIdentity` and session tags, called with the
//! gateway's own credentials. A session's SSM calls (`StartSession`, `ResumeSession`,
//! `TerminateSession`) are signed with the assumed credentials, so its `Owner` in SSM — and
//! CloudTrail's record of it — is `arn:aws:sts::ACCOUNT:assumed-role/ROLE/<person>`.
//!
//! Each session has its own credentials, so that their session tags name it (CloudTrail's
//! `AssumeRole` joins the Porthole session by `porthole:session-id`), fetched again before they
//! expire: a session that outlives them resumes with fresh ones (the SDK asks
//! [`PersonCredentials`] at each call). They never leave this module but as signing keys: the
//! audit log records the role ARN and the assumed-role ARN only.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_sdk_sts::types::Tag;

use super::{AwsClients, Failure};
use crate::gateway::facts::AwsRole;

/// Credentials are fetched again when less than this is left of them (or a quarter of their
/// life, when that is shorter).
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// The STS `RoleSessionName` and `SourceIdentity` for a person: their name, which Porthole
/// already keeps to characters STS allows (`[\w+=,.@-]`), at least 2 and at most 64 long —
/// so it is stable, and unique as names are.
pub fn session_name(person: &str) -> String {
    let mut name: String = person
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    while name.len() < 2 {
        name.push('_');
    }
    name
}

/// The assumed-role ARN STS reports for `role_arn` assumed as `session`:
/// `arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION` (the role's path dropped).
pub fn assumed_arn(role_arn: &str, session: &str) -> String {
    let mut parts = role_arn.splitn(6, ':');
    let partition = parts.nth(1).unwrap_or("aws");
    let account = parts.nth(2).unwrap_or_default();
    let name = role_arn.rsplit('/').next().unwrap_or_default();
    format!("arn:{partition}:sts::{account}:assumed-role/{name}/{session}")
}

/// What a session started as the person is tagged with.
#[derive(Debug, Clone)]
pub struct Tags {
    /// `porthole:session-id`: the Porthole session whose start assumed the role.
    pub session_id: String,
    /// `porthole:reason-sha256`: the reason's SHA-256 (the reason itself stays in Porthole).
    pub reason_sha256: String,
}

/// What one `sts:AssumeRole` asks for, each time the credentials are fetched.
#[derive(Debug, Clone)]
pub struct AssumeRequest {
    /// The role.
    pub role_arn: String,
    /// The external id its trust policy asks for.
    pub external_id: Option<String>,
    /// `RoleSessionName`.
    pub session_name: String,
    /// `SourceIdentity`, when one is set.
    pub source_identity: Option<String>,
    /// Session tags, in order.
    pub tags: Vec<(String, String)>,
    /// The credentials' provider name, as the SDK logs it.
    pub source: &'static str,
}

/// Credentials of an assumed role: fetched with `sts:AssumeRole`, kept, fetched again before
/// they expire. A person's session ([`Assumer::as_person`]) and an account's role (the
/// `accounts` module) use them alike.
#[derive(Debug)]
pub struct AssumedCredentials {
    sts: aws_sdk_sts::Client,
    request: AssumeRequest,
    cached: tokio::sync::Mutex<Option<(Credentials, SystemTime, Duration)>>,
}

impl AssumedCredentials {
    /// Credentials for `request`, asked of STS with `sts` (the gateway's own credentials) when
    /// first needed.
    pub fn new(sts: aws_sdk_sts::Client, request: AssumeRequest) -> Arc<Self> {
        Arc::new(Self {
            sts,
            request,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// The provider the SDK asks at each call.
    pub fn provider(self: &Arc<Self>) -> SharedCredentialsProvider {
        SharedCredentialsProvider::new(Provider(self.clone()))
    }

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
        let r = &self.request;
        let tags = r
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Failure::ours(format!("session tags: {e}")))?;
        let asked = std::time::Instant::now();
        let reply = self
            .sts
            .assume_role()
            .role_arn(&r.role_arn)
            .role_session_name(&r.session_name)
            .set_source_identity(r.source_identity.clone())
            .set_external_id(r.external_id.clone())
            .set_tags((!tags.is_empty()).then_some(tags))
            .send()
            .await
            .map_err(|e| refusal(&e))?;
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
            r.source,
        );
        tracing::info!(
            role = %r.role_arn,
            session = %r.session_name,
            assumed = reply.assumed_role_user().map(|u| u.arn()).unwrap_or(""),
            "assumed a role"
        );
        *cached = Some((credentials.clone(), expires, life));
        Ok(credentials)
    }
}

/// Words for an STS refusal that name what is missing, without AWS's text (which names
/// accounts): `AssumeRole was refused by AWS (AccessDenied): the role's trust policy does not
/// let the gateway sts:SetSourceIdentity`.
pub(super) fn refusal<E>(e: &E) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error,
{
    let mut failure = Failure::of("AssumeRole", e);
    let message = e.message().unwrap_or("");
    let action = message
        .split("perform: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|a| a.starts_with("sts:") && a[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
    match (e.code(), action) {
        (Some("AccessDenied"), Some("sts:AssumeRole")) => failure.summary.push_str(
            ": the gateway may not assume the role (its own policy needs sts:AssumeRole on it, \
             and the role's trust policy must name the gateway)",
        ),
        (Some("AccessDenied"), Some(action)) => failure.summary.push_str(&format!(
            ": the role's trust policy does not let the gateway {action} (it needs \
             sts:AssumeRole, sts:SetSourceIdentity and sts:TagSession)"
        )),
        (Some("ExpiredToken" | "ExpiredTokenException"), _) => failure
            .summary
            .push_str(": the gateway's own credentials have expired"),
        _ => {}
    }
    failure
}

/// The credentials provider the SDK asks at each call.
#[derive(Debug, Clone)]
struct Provider(Arc<AssumedCredentials>);

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

/// The gateway's assumer: one STS client, with the gateway's own credentials.
#[derive(Debug)]
pub struct Assumer {
    sts: aws_sdk_sts::Client,
}

/// A session's AWS clients as the person, and who that is.
#[derive(Debug, Clone)]
pub struct AsPerson {
    /// SSM signed as the person (KMS stays the gateway's).
    pub clients: AwsClients,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/<person>`.
    pub assumed_arn: String,
    /// The `SourceIdentity` (and `RoleSessionName`) sent.
    pub source_identity: String,
}

impl Assumer {
    /// An assumer whose STS calls are made with `sdk`'s credentials (the gateway's own).
    pub fn new(sts: aws_sdk_sts::Client) -> Self {
        Self { sts }
    }

    /// `base` re-signed as `person` with `role` for one session (`tags` name it): credentials
    /// are fetched now (so a refusal fails the start), and again as they near their end.
    pub async fn as_person(
        &self,
        base: &AwsClients,
        person: &str,
        role: &AwsRole,
        tags: Tags,
    ) -> Result<AsPerson, Failure> {
        let name = session_name(person);
        let credentials = AssumedCredentials::new(
            self.sts.clone(),
            AssumeRequest {
                role_arn: role.arn.clone(),
                external_id: role.external_id.clone(),
                session_name: name.clone(),
                source_identity: Some(name.clone()),
                tags: vec![
                    ("porthole:user".into(), person.to_owned()),
                    ("porthole:session-id".into(), tags.session_id),
                    ("porthole:reason-sha256".into(), tags.reason_sha256),
                ],
                source: "porthole-assume-role",
            },
        );
        credentials.get().await?;
        let conf = base
            .ssm
            .config()
            .to_builder()
            .credentials_provider(credentials.provider())
            .build();
        Ok(AsPerson {
            clients: AwsClients {
                ssm: aws_sdk_ssm::Client::from_conf(conf),
                kms: base.kms.clone(),
            },
            assumed_arn: assumed_arn(&role.arn, &name),
            source_identity: name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_the_person_within_stss_rules() {
        assert_eq!(session_name("alice@example.com"), "alice@example.com");
        assert_eq!(session_name("a"), "a_");
        assert_eq!(session_name(&"x".repeat(80)).len(), 64);
        assert_eq!(session_name("bob smith"), "bob_smith");
    }

    #[test]
    fn the_assumed_arn_is_the_one_sts_reports() {
        assert_eq!(
            assumed_arn("arn:aws:iam::111122223333:role/porthole/Oncall", "alice"),
            "arn:aws:sts::111122223333:assumed-role/Oncall/alice"
        );
        assert_eq!(
            assumed_arn("arn:aws-us-gov:iam::111122223333:role/Ops", "bob"),
            "arn:aws-us-gov:sts::111122223333:assumed-role/Ops/bob"
        );
    }
}
