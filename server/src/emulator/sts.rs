//! The emulator's STS: `AssumeRole` and `GetCallerIdentity` in the AWS Query protocol (what
//! aws-sdk-sts and boto3 send: `POST /` with a form body `Action=AssumeRole&Version=2011-06-15&…`
//! and no `X-Amz-Target`; XML answers). The keys it issues are remembered, so that a caller
//! using them is the assumed role (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`) in the
//! control plane, and refused with `ExpiredTokenException` once they have expired.
//!
//! Like the rest of the emulator it verifies no signature and holds no IAM: it refuses only
//! what [`StsRules`] say (to test refusals), and checks what the real service checks of the
//! request itself (the role ARN's form, `RoleSessionName` and `SourceIdentity` characters and
//! lengths, `DurationSeconds` within 900 to 43,200).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// What the emulator's STS refuses, and how long its keys last.
#[derive(Debug, Clone, Default)]
pub struct StsRules {
    /// Role ARNs whose `AssumeRole` is refused with `AccessDenied` (the caller may not assume
    /// them).
    pub deny_roles: Vec<String>,
    /// Role ARNs whose trust policy lacks `sts:SetSourceIdentity`: an `AssumeRole` with a
    /// `SourceIdentity` is refused with `AccessDenied` naming that permission.
    pub deny_source_identity: Vec<String>,
    /// Role ARNs whose trust policy lacks `sts:TagSession`: an `AssumeRole` with tags is
    /// refused.
    pub deny_tags: Vec<String>,
    /// How long issued keys last, overriding `DurationSeconds` (the real service allows no
    /// less than 15 minutes; tests use seconds to see keys expire mid-session).
    pub lifetime: Option<Duration>,
}

/// Keys issued by `AssumeRole`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assumed {
    /// The role assumed.
    pub role_arn: String,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub arn: String,
    /// The role session name.
    pub session_name: String,
    /// The source identity, when one was set.
    pub source_identity: Option<String>,
    /// The session tags.
    pub tags: Vec<(String, String)>,
    /// The external id sent.
    pub external_id: Option<String>,
    /// When the keys stop working.
    pub expires: SystemTime,
}

/// The emulator's STS state: the keys it issued, by access key id.
#[derive(Debug, Default)]
pub struct Sts {
    issued: Mutex<HashMap<String, Assumed>>,
    /// Every `AssumeRole` that succeeded, in order (tests read what was sent).
    log: Mutex<Vec<Assumed>>,
}

/// An STS error: code, message, HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsError {
    /// `AccessDenied`, `ValidationError`, `ExpiredToken`, …
    pub code: &'static str,
    /// The message.
    pub message: String,
    /// 403 for `AccessDenied`, else 400.
    pub status: u16,
}

impl StsError {
    fn validation(message: impl Into<String>) -> Self {
        Self {
            code: "ValidationError",
            message: message.into(),
            status: 400,
        }
    }

    fn denied(message: impl Into<String>) -> Self {
        Self {
            code: "AccessDenied",
            message: message.into(),
            status: 403,
        }
    }
}

/// Whether `text` is 2 to 64 of the characters STS allows in names (`[\w+=,.@-]`).
fn sts_name(text: &str) -> bool {
    (2..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// `arn:aws:iam::ACCOUNT:role/PATH/NAME` → (account, name).
fn role_parts(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty())
        .then_some((account, name))
}

impl Sts {
    /// `AssumeRole` with the form's parameters, by `caller_arn`.
    pub fn assume_role(
        &self,
        rules: &StsRules,
        caller_arn: &str,
        form: &HashMap<String, String>,
    ) -> Result<(String, String, String, Assumed), StsError> {
        let role_arn = form
            .get("RoleArn")
            .ok_or_else(|| StsError::validation("1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null"))?;
        let (account, role_name) = role_parts(role_arn)
            .ok_or_else(|| StsError::validation(format!("{role_arn} is invalid")))?;
        let session_name = form.get("RoleSessionName").ok_or_else(|| {
            StsError::validation("1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null")
        })?;
        if !sts_name(session_name) {
            return Err(StsError::validation(format!(
                "1 validation error detected: Value '{session_name}' at 'roleSessionName' failed \
                 to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
            )));
        }
        let source_identity = form.get("SourceIdentity").cloned();
        if let Some(s) = &source_identity
            && !sts_name(s)
        {
            return Err(StsError::validation(format!(
                "1 validation error detected: Value '{s}' at 'sourceIdentity' failed to satisfy \
                 constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
            )));
        }
        let duration = match form.get("DurationSeconds") {
            None => 3600,
            Some(text) => match text.parse::<u64>() {
                Ok(n) if (900..=43_200).contains(&n) => n,
                _ => {
                    return Err(StsError::validation(format!(
                        "1 validation error detected: Value '{text}' at 'durationSeconds' failed \
                         to satisfy constraint: Member must have value between 900 and 43200"
                    )));
                }
            },
        };
        let mut tags = Vec::new();
        for n in 1..=50 {
            let (Some(k), Some(v)) = (
                form.get(&format!("Tags.member.{n}.Key")),
                form.get(&format!("Tags.member.{n}.Value")),
            ) else {
                break;
            };
            tags.push((k.clone(), v.clone()));
        }
        let not_authorized = |action: &str| {
            StsError::denied(format!(
                "User: {caller_arn} is not authorized to perform: {action} on resource: {role_arn}"
            ))
        };
        if rules.deny_roles.iter().any(|r| r == role_arn) {
            return Err(not_authorized("sts:AssumeRole"));
        }
        if source_identity.is_some() && rules.deny_source_identity.iter().any(|r| r == role_arn) {
            return Err(not_authorized("sts:SetSourceIdentity"));
        }
        if !tags.is_empty() && rules.deny_tags.iter().any(|r| r == role_arn) {
            return Err(not_authorized("sts:TagSession"));
        }
        let lifetime = rules.lifetime.unwrap_or(Duration::from_secs(duration));
        let assumed = Assumed {
            role_arn: role_arn.clone(),
            arn: format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session_name}"),
            session_name: session_name.clone(),
            source_identity,
            tags,
            external_id: form.get("ExternalId").cloned(),
            expires: SystemTime::now() + lifetime,
        };
        let key_id = format!("ASIA{}", random_text(16));
        let secret = random_text(40);
        let token = format!("emulated-session-token-{}", random_text(48));
        lock(&self.issued).insert(key_id.clone(), assumed.clone());
        lock(&self.log).push(assumed.clone());
        Ok((key_id, secret, token, assumed))
    }

    /// The keys `key_id` stands for, when the STS issued them: `Err` once they have expired.
    pub fn lookup(&self, key_id: &str) -> Option<Result<Assumed, StsError>> {
        let issued = lock(&self.issued);
        let assumed = issued.get(key_id)?;
        Some(if assumed.expires > SystemTime::now() {
            Ok(assumed.clone())
        } else {
            Err(StsError {
                code: "ExpiredTokenException",
                message: "The security token included in the request is expired".into(),
                status: 400,
            })
        })
    }

    /// Every `AssumeRole` that succeeded, oldest first.
    pub fn assumed(&self) -> Vec<Assumed> {
        lock(&self.log).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `chars` random upper-case hex digits.
fn random_text(chars: usize) -> String {
    (0..chars)
        .map(|_| char::from(b"0123456789ABCDEF"[usize::from(rand::random::<u8>() % 16)]))
        .collect()
}

/// `2026-12-07T10:00:00Z`.
pub fn iso8601(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Escapes text for XML.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn assumed_keys_name_the_role_and_session_and_expire() {
        let sts = Sts::default();
        let rules = StsRules {
            lifetime: Some(Duration::from_millis(1)),
            ..StsRules::default()
        };
        let (key, _, _, assumed) = sts
            .assume_role(
                &rules,
                "arn:aws:iam::000000000000:user/gw",
                &form(&[
                    ("RoleArn", "arn:aws:iam::111122223333:role/team/Ops"),
                    ("RoleSessionName", "alice@example.com"),
                    ("SourceIdentity", "alice@example.com"),
                    ("Tags.member.1.Key", "porthole:user"),
                    ("Tags.member.1.Value", "alice@example.com"),
                ]),
            )
            .unwrap();
        assert_eq!(
            assumed.arn,
            "arn:aws:sts::111122223333:assumed-role/Ops/alice@example.com"
        );
        assert_eq!(
            assumed.tags,
            [("porthole:user".into(), "alice@example.com".into())]
        );
        std::thread::sleep(Duration::from_millis(5));
        let expired = sts.lookup(&key).unwrap().unwrap_err();
        assert_eq!(expired.code, "ExpiredTokenException");
        assert!(sts.lookup("AKIDUNKNOWN").is_none());
    }

    #[test]
    fn bad_requests_and_missing_permissions_are_refused_in_stss_words() {
        let sts = Sts::default();
        let role = "arn:aws:iam::111122223333:role/Ops";
        let rules = StsRules {
            deny_source_identity: vec![role.into()],
            ..StsRules::default()
        };
        let caller = "arn:aws:iam::000000000000:user/gw";
        let e = sts
            .assume_role(
                &rules,
                caller,
                &form(&[("RoleArn", role), ("RoleSessionName", "a b")]),
            )
            .unwrap_err();
        assert_eq!(e.code, "ValidationError");
        let e = sts
            .assume_role(
                &rules,
                caller,
                &form(&[
                    ("RoleArn", role),
                    ("RoleSessionName", "ab"),
                    ("SourceIdentity", "ab"),
                ]),
            )
            .unwrap_err();
        assert_eq!((e.code, e.status), ("AccessDenied", 403));
        assert!(e.message.contains("sts:SetSourceIdentity"), "{}", e.message);
        let e = sts
            .assume_role(
                &rules,
                caller,
                &form(&[
                    ("RoleArn", "arn:aws:iam::1:role/x"),
                    ("RoleSessionName", "ab"),
                ]),
            )
            .unwrap_err();
        assert_eq!(e.code, "ValidationError");
    }
}
