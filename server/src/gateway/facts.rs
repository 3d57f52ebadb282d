//! Plain facts that every layer of the gateway shares: a person ([`User`], the [`Role`] names
//! they hold and the [`Grants`] those roles give), and a managed node ([`Target`]). Data only:
//! the policy decides on them, identity reads people from the database, `aws` discovers nodes.
//! This module imports nothing of the gateway.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

/// A role name. What a role allows is the policy's business (`policy`, the roles of the
/// configuration); a user only holds names. `Role::Admin`, `Role::Operator` and
/// `Role::Auditor` name the built-in roles, used when the configuration defines none.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Role(Cow<'static, str>);

// Spelled like the enum variants they replace, so `Role::Operator` reads as it always did.
#[allow(non_upper_case_globals)]
impl Role {
    /// The built-in role that may do everything, including to others' sessions.
    pub const Admin: Role = Role(Cow::Borrowed("admin"));
    /// The built-in role that opens sessions on any target.
    pub const Operator: Role = Role(Cow::Borrowed("operator"));
    /// The built-in role that reads sessions and the audit log and opens none.
    pub const Auditor: Role = Role(Cow::Borrowed("auditor"));
}

impl Role {
    /// The name used in the database, the CLI, the API and the policy.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A role name, when it is one (the characters of user names: a-z, 0-9, `.`, `_`, `-`;
    /// 1 to 64). Whether the policy defines it is another question
    /// (`identity::users::check_defined`).
    pub fn parse(s: &str) -> Option<Self> {
        valid_name(s).then(|| Self(Cow::Owned(s.to_owned())))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user as the rest of the gateway sees it (no password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Sign-in name.
    pub name: String,
    /// Role names.
    pub roles: Vec<Role>,
    /// Disabled users cannot sign in and their sign-ins stop working.
    pub disabled: bool,
    /// What the roles allow beyond one's own sessions, resolved by the policy for a signed-in
    /// request (`identity::resolve`); none for a user merely read from the table.
    pub grants: Grants,
}

impl User {
    /// Whether the user holds `role` (a name; what it allows is the policy's to say).
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// What a user's roles allow beyond opening sessions on targets: resolved from the policy in
/// force when a request is signed in ([`resolve`]); none until then.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grants {
    /// Some role selects at least one target (coarse: the decision per target is
    /// [`Policy::decide_start`]).
    pub opens_sessions: bool,
    /// May watch others' live sessions, read-only.
    pub observe_others: bool,
    /// May terminate others' sessions.
    pub terminate_others: bool,
    /// May read the audit log.
    pub read_audit: bool,
    /// May invite others into their own live sessions (sharing, `join_others`).
    pub join_others: bool,
}

impl Grants {
    /// Whether the user sees every session, not only their own: anyone who may observe,
    /// terminate or audit others' sessions must be able to find them.
    pub fn sees_all_sessions(&self) -> bool {
        self.observe_others || self.terminate_others || self.read_audit
    }
}

/// A managed node as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Target {
    /// Instance id (`i-…`, `mi-…`).
    pub id: String,
    /// The `Name` tag, else the node's name, else its computer name.
    pub name: String,
    /// Linux, Windows, MacOS.
    pub platform: String,
    /// Online, ConnectionLost, Inactive.
    pub ping_status: String,
    /// The region it is in.
    pub region: String,
    /// The name of the account it is in (`[[aws.accounts]]`); empty for the gateway's own
    /// account when no accounts are configured.
    pub account: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

impl Target {
    /// A target that is not among the managed nodes, as the policy sees it: only its id.
    pub fn unknown(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: id.to_owned(),
            platform: String::new(),
            ping_status: String::new(),
            region: String::new(),
            account: String::new(),
            tags: BTreeMap::new(),
        }
    }
}

/// An IAM role the gateway assumes as a person (a policy role's `aws_role_arn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsRole {
    /// Its ARN.
    pub arn: String,
    /// The external id its trust policy asks for.
    pub external_id: Option<String>,
}

/// Checks a user name: a [`valid_name`], or an email address (`@` and `+` too), as single
/// sign-on names people.
pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-@+".contains(&b))
}

/// Checks a role name (and a local user name as it was before single sign-on).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// `arn:aws:iam::123456789012:role/NAME` (also `aws-cn`, `aws-us-gov`; a path allowed).
pub fn valid_role_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:") else {
        return false;
    };
    let mut parts = rest.splitn(5, ':');
    let (Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    partition.starts_with("aws")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource.strip_prefix("role/").is_some_and(|name| {
            !name.is_empty()
                && name.len() <= 512
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
        })
}
