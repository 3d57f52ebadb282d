//! Who may do what: the one place the gateway asks.
//!
//! A [`Policy`] is a list of roles (written in `[[policy.roles]]`, in the file `policy.file`
//! names, or the built-in admin, operator and auditor when neither exists; see
//! `docs/policy.md`). A role selects targets (instance id, name, region and tag globs), allows
//! documents (globs), sets reason rules (length, a regular expression and its message) and
//! session limits, and may grant observing, terminating others' sessions and reading the
//! audit log. A user holds role names ([`RoleSource`]: local assignment today); what the
//! user may do is the union of those roles. Nothing is allowed that no role allows.
//!
//! - [`Policy::decide_start`]: may this user open a session on this target with this
//!   document and this reason? Either a [`Decision`] (which roles allowed it, the session
//!   limits) or a [`Refusal`] that says why in words.
//! - [`Policy::explain`]: the same decision, rule by rule (`porthole policy check`).
//! - [`Policy::reaches`]: whether a target belongs in the user's list.
//! - [`Grants`]: what the user's roles allow beyond their own sessions, resolved once per
//!   request (`identity::resolve`) so that [`sees_all_sessions`], [`may_terminate`],
//!   [`may_observe`], [`may_invite`] and [`may_read_audit`] need only the user.
//! - [`Policy::may_join`]: may an invited person join a session on this target with this
//!   document (their own roles must allow it, as for a start of their own)?
//!
//! The policy in force lives in a [`PolicyHandle`] and is replaced whole on reload (SIGHUP or
//! a change of its file, `gateway::reload`); a bad file keeps the old policy.
//!
//! The policy is a pure decision on plain facts (`gateway::facts`): it reads no database,
//! asks no AWS API and writes no audit row; its callers fetch the facts and record the
//! outcome. Reading its own file is the only IO it does.
//!
//! [`RoleSource`]: crate::gateway::identity::users::RoleSource

mod explain;
mod handle;
pub mod rules;
pub mod spec;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use self::explain::{ApprovalNeed, Decision, Explanation, Refusal, RoleCheck};
pub use self::handle::{PolicyHandle, log_loaded, stamp};
pub use self::spec::{DEFAULT_DOCUMENTS, PolicyConfig, PolicyFile, RoleSpec};

use self::rules::RoleDef;
pub use self::rules::{ApprovalRule, AwsRole, FileTransfer};
pub use crate::gateway::facts::Grants;
use crate::gateway::facts::{Role, Target, User};

/// The rule for reasons when no role says otherwise: at least this many characters.
pub const MIN_REASON: usize = spec::DEFAULT_MIN_REASON;
/// … and at most this many.
pub const MAX_REASON: usize = spec::DEFAULT_MAX_REASON;
/// AWS's limit for `StartSession`'s `Reason`.
pub const AWS_MAX_REASON: usize = 256;
/// The document used when a request names none.
pub const DEFAULT_DOCUMENT: &str = "SSM-SessionManagerRunShell";

/// Audit event types of the policy.
pub mod audit_kind {
    /// A new policy took effect (detail: file, hash, previous hash, roles, trigger).
    pub const RELOAD: &str = "policy.reload";
    /// A changed policy was refused; the old one stays (detail: file, error, trigger).
    pub const RELOAD_FAILED: &str = "policy.reload_failed";
}

/// Where a policy came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// No roles were configured: admin, operator, auditor.
    Builtin,
    /// `[[policy.roles]]` in the configuration file.
    Inline,
    /// The file `policy.file` names.
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Builtin => f.write_str("the built-in roles"),
            Self::Inline => f.write_str("[[policy.roles]] in the configuration"),
            Self::File(path) => write!(f, "policy file {}", path.display()),
        }
    }
}

/// A compiled policy: roles in the order written.
#[derive(Debug, Clone)]
pub struct Policy {
    roles: Vec<RoleDef>,
    source: Source,
    hash: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A relative `policy.file` is taken from the configuration file's folder.
pub fn resolve_file(file: &Path, config_file: Option<&Path>) -> PathBuf {
    match config_file.and_then(Path::parent) {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file.to_path_buf(),
    }
}

impl Policy {
    /// The built-in roles admin, operator and auditor ([`spec::builtin_roles`]).
    pub fn builtin() -> Self {
        let specs = spec::builtin_roles();
        // The built-in roles are written in code and covered by a test; an error here would be
        // a bug, and default deny is the safe answer to it.
        let roles = spec::compile(&specs, "built-in roles").unwrap_or_else(|e| {
            tracing::error!("the built-in roles do not compile: {e}");
            Vec::new()
        });
        Self {
            roles,
            source: Source::Builtin,
            hash: sha256_hex(&serde_json::to_vec(&specs).unwrap_or_default()),
        }
    }

    /// The policy the `[policy]` section describes; reads `policy.file` when it is set
    /// (relative to `config_file`'s folder). Errors name the file or the key.
    pub fn from_config(policy: &PolicyConfig, config_file: Option<&Path>) -> Result<Self, String> {
        match (&policy.file, &policy.roles) {
            (Some(_), Some(_)) => Err(
                "policy.file and [[policy.roles]] are both set: keep the roles in one place".into(),
            ),
            (Some(file), None) => {
                let path = resolve_file(file, config_file);
                let bytes = std::fs::read(&path)
                    .map_err(|e| format!("policy.file: cannot read {}: {e}", path.display()))?;
                Self::from_file_bytes(&path, &bytes)
            }
            (None, None) => Ok(Self::builtin()),
            // An empty list is a policy too: it allows nothing (not the built-in roles).
            (None, Some(roles)) => Ok(Self {
                roles: spec::compile(roles, "policy.roles")?,
                source: Source::Inline,
                hash: sha256_hex(&serde_json::to_vec(roles).unwrap_or_default()),
            }),
        }
    }

    /// A policy file's content (`[[roles]]`); errors start with the file's name.
    pub fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Self, String> {
        let shown = path.display();
        let text = std::str::from_utf8(bytes)
            .map_err(|e| format!("policy file {shown}: not UTF-8: {e}"))?;
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            let text = e.to_string();
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            format!("policy file {shown}: {text}")
        })?;
        let roles =
            spec::compile(&file.roles, "roles").map_err(|e| format!("policy file {shown}: {e}"))?;
        Ok(Self {
            roles,
            source: Source::File(path.to_path_buf()),
            hash: sha256_hex(bytes),
        })
    }

    /// The roles, in the order written.
    pub fn roles(&self) -> &[RoleDef] {
        &self.roles
    }

    /// Where the role `name` is in the policy (its position as written).
    pub fn role_position(&self, name: &str) -> Option<usize> {
        self.roles.iter().position(|r| r.name == name)
    }

    /// A role by name.
    pub fn role(&self, name: &str) -> Option<&RoleDef> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// The names of the roles, in the order written.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.name.clone()).collect()
    }

    /// Where it came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// SHA-256 (hex) of the policy file, or of the roles as JSON when they are not in a file.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    fn held<'a>(&'a self, roles: &'a [Role]) -> impl Iterator<Item = &'a RoleDef> + 'a {
        roles.iter().filter_map(|r| self.role(r.as_str()))
    }

    /// What `roles` grant beyond opening sessions.
    pub fn grants(&self, roles: &[Role]) -> Grants {
        self.held(roles).fold(Grants::default(), |g, r| Grants {
            opens_sessions: g.opens_sessions || !r.targets.is_empty(),
            observe_others: g.observe_others || r.observe_others,
            terminate_others: g.terminate_others || r.terminate_others,
            read_audit: g.read_audit || r.read_audit,
            join_others: g.join_others || r.join_others,
        })
    }

    /// Whether some role of `user` selects `target` (the targets list shows these).
    pub fn reaches(&self, user: &User, target: &Target) -> bool {
        self.held(&user.roles).any(|r| r.selects(target))
    }

    /// The decision for `user` opening a session on `target` with `document`, role by role;
    /// the reason rules are checked when `reason` is given.
    pub fn explain(
        &self,
        user: &User,
        target: &Target,
        document: &str,
        parameters: &Parameters,
        reason: Option<&str>,
    ) -> Explanation {
        explain::explain(self, user, target, document, parameters, reason)
    }

    /// May `user` open a session on `target` with `document` and its `parameters`, for
    /// `reason` (untrimmed)?
    pub fn decide_start(
        &self,
        user: &User,
        target: &Target,
        document: &str,
        parameters: &Parameters,
        reason: &str,
    ) -> Result<Decision, Refusal> {
        self.explain(user, target, document, parameters, Some(reason))
            .outcome()
    }
}

/// A target in words, for refusals: `i-0abc… (web-1, us-east-1, env=prod, team=web)`; the
/// `Name` tag is the name and is not repeated.
pub fn describe_target(target: &Target) -> String {
    let mut parts = Vec::new();
    if !target.name.is_empty() && target.name != target.id {
        parts.push(target.name.clone());
    }
    if !target.account.is_empty() {
        parts.push(format!("account {}", target.account));
    }
    if !target.region.is_empty() {
        parts.push(target.region.clone());
    }
    for (k, v) in &target.tags {
        if k != "Name" || *v != target.name {
            parts.push(format!("{k}={v}"));
        }
    }
    if parts.is_empty() {
        target.id.clone()
    } else {
        format!("{} ({})", target.id, parts.join(", "))
    }
}

/// Whether `user` may open sessions at all (some role selects some target). The decision for
/// one target is [`Policy::decide_start`]; this one is for pages that offer the button.
pub fn may_open_session(user: &User, _target: &str) -> Result<(), String> {
    if user.grants.opens_sessions {
        Ok(())
    } else {
        Err(format!(
            "{} may not open sessions: no role of yours allows any target",
            user.name
        ))
    }
}

/// Whether `user` sees every session (not only their own).
pub fn sees_all_sessions(user: &User) -> bool {
    user.grants.sees_all_sessions()
}

/// Whether `user` may terminate a session owned by `owner_id`.
pub fn may_terminate(user: &User, owner_id: i64) -> bool {
    user.id == owner_id || user.grants.terminate_others
}

/// Whether `user` may attach to a session owned by `owner_id` (owners only).
pub fn may_attach(user: &User, owner_id: i64) -> bool {
    user.id == owner_id
}

/// Whether `user` may invite others into a session owned by `owner_id` (sharing it): only its
/// owner, and only when a role of theirs has `join_others`. The error is for the person.
pub fn may_invite(user: &User, owner: &str, owner_id: i64) -> Result<(), String> {
    if user.id != owner_id {
        return Err(format!(
            "only {owner} may invite people into this session (it is theirs)"
        ));
    }
    if !user.grants.join_others {
        return Err(format!(
            "{} may not invite others into sessions: no role of theirs has join_others",
            user.name
        ));
    }
    Ok(())
}

/// How an invited person takes part in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinMode {
    /// Types along: their input reaches the shell.
    Write,
    /// Watches: read-only, like an observer.
    Read,
}

impl JoinMode {
    /// `write` or `read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::Read => "read",
        }
    }

    /// `write` or `read`; anything else is an error that names it.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "write" => Ok(Self::Write),
            "read" => Ok(Self::Read),
            other => Err(format!("mode must be \"write\" or \"read\", not {other:?}")),
        }
    }
}

/// Whether `invitee` may be invited by `inviter` into a session: not themselves, not a
/// disabled user. (Whether their roles allow the session's target is [`Policy::may_join`].)
pub fn check_invitee(inviter: &User, invitee: &User) -> Result<(), String> {
    if inviter.id == invitee.id {
        return Err(format!(
            "user: {} is you; invite someone else (the session is already yours)",
            invitee.name
        ));
    }
    if invitee.disabled {
        return Err(format!("user: {} is disabled", invitee.name));
    }
    Ok(())
}

impl Policy {
    /// Whether `invitee`'s own roles allow a session on `target` with `document` and its
    /// `parameters` (the decision of a start of their own, without the reason: the session's
    /// reason is its owner's). The error says why not, for the inviter.
    pub fn may_join(
        &self,
        invitee: &User,
        target: &Target,
        document: &str,
        parameters: &Parameters,
    ) -> Result<Decision, String> {
        self.explain(invitee, target, document, parameters, None)
            .outcome()
            .map_err(|refusal| {
                let why = refusal.message();
                let why = why
                    .strip_prefix("no role of yours")
                    .map(|rest| format!("no role of theirs{rest}"))
                    .or_else(|| {
                        why.strip_prefix("your roles")
                            .map(|rest| format!("their roles{rest}"))
                    })
                    .unwrap_or_else(|| why.to_owned());
                format!(
                    "{} may not join a session on this node: {why}",
                    invitee.name
                )
            })
    }
}

/// Whether `user` may watch, read-only, a live session owned by `owner_id`.
pub fn may_observe(user: &User, owner_id: i64) -> bool {
    user.id == owner_id || user.grants.observe_others
}

/// Whether `user` may read the recording of a session owned by `owner_id`: the owner always;
/// those who see every session only once it has ended (`running` false). A running session's
/// output reaches others only through observing it, which is audited and tells the owner.
pub fn may_read_recording(user: &User, owner_id: i64, running: bool) -> bool {
    user.id == owner_id || (user.grants.sees_all_sessions() && !running)
}

/// Whether `user` may label (tag and annotate) a session owned by `owner_id`: the owner at any
/// time, those who see every session once it has ended (as for its recording).
pub fn may_label(user: &User, owner_id: i64, running: bool) -> bool {
    may_read_recording(user, owner_id, running)
}

/// Whether `user` oversees everyone's live sessions (the live-sessions page and
/// `GET /api/v1/sessions?scope=all`): a role lets them observe or terminate others' sessions.
pub fn oversees_live_sessions(user: &User) -> bool {
    user.grants.observe_others || user.grants.terminate_others
}

/// Whether `user` holds one of `approvers` (role names): may decide requests that name them.
/// Never their own request: that is for the caller, who knows whose request it is.
pub fn holds_any(user: &User, approvers: &[String]) -> bool {
    user.roles
        .iter()
        .any(|r| approvers.iter().any(|a| a == r.as_str()))
}

impl Policy {
    /// Whether some role of the policy names a role of `user` among its approvers.
    pub fn is_approver(&self, user: &User) -> bool {
        self.roles
            .iter()
            .filter_map(|r| r.approval.as_ref())
            .any(|a| holds_any(user, &a.approvers))
    }
}

/// Whether `user` may read the audit log.
pub fn may_read_audit(user: &User) -> bool {
    user.grants.read_audit
}

/// The reason as sent to AWS: at most [`AWS_MAX_REASON`] characters.
pub fn aws_reason(reason: &str) -> String {
    reason.chars().take(AWS_MAX_REASON).collect()
}

/// A session document's parameters, as `StartSession` takes them: names and their values.
pub type Parameters = BTreeMap<String, Vec<String>>;

/// Most parameters a start may name.
pub const MAX_PARAMETERS: usize = 20;
/// Most values one parameter may have.
pub const MAX_PARAMETER_VALUES: usize = 16;
/// Longest value, in characters.
pub const MAX_PARAMETER_VALUE_CHARS: usize = 4096;

/// Whether `name` is a parameter name: 1 to 64 of A-Z a-z 0-9 `_` `-` `.`.
pub fn valid_parameter_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// Checks the shape of a start's parameters (what any role may then restrict further): at
/// most [`MAX_PARAMETERS`] names, each a [`valid_parameter_name`] with 1 to
/// [`MAX_PARAMETER_VALUES`] values of at most [`MAX_PARAMETER_VALUE_CHARS`] characters and
/// no NUL. The error names the parameter.
pub fn check_parameters(parameters: &Parameters) -> Result<(), String> {
    if parameters.len() > MAX_PARAMETERS {
        return Err(format!(
            "parameters: at most {MAX_PARAMETERS} names (got {})",
            parameters.len()
        ));
    }
    for (name, values) in parameters {
        if !valid_parameter_name(name) {
            return Err(format!(
                "parameters: {name:?} is not a parameter name (1 to 64 of A-Z a-z 0-9 _ - .)"
            ));
        }
        if values.is_empty() || values.len() > MAX_PARAMETER_VALUES {
            return Err(format!(
                "parameters.{name}: 1 to {MAX_PARAMETER_VALUES} values (got {})",
                values.len()
            ));
        }
        for value in values {
            let n = value.chars().count();
            if n > MAX_PARAMETER_VALUE_CHARS {
                return Err(format!(
                    "parameters.{name}: a value of at most {MAX_PARAMETER_VALUE_CHARS} \
                     characters (got {n})"
                ));
            }
            if value.contains('\0') {
                return Err(format!("parameters.{name}: a value must not contain NUL"));
            }
        }
    }
    Ok(())
}

/// Checks a document name (SSM's pattern: letters, digits, `_`, `-`, `.`, 3 to 128).
pub fn check_document(name: &str) -> Result<(), String> {
    let ok = (3..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "document {name:?} is not a document name (3 to 128 of A-Z a-z 0-9 _ - .)"
        ))
    }
}

#[cfg(test)]
mod tests;
