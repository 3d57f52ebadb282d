//! The policy as written: the `[policy]` section of the configuration file, or the separate
//! file it names (`policy.file`, whose `[[roles]]` tables take the same keys as
//! `[[policy.roles]]`). Turning it into matchers ([`compile`]) is where every mistake is
//! caught, with the key that holds it: `policy.roles[2].reason.pattern: invalid regex …`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rules::{
    ApprovalRule, AwsRole, FileTransfer, Pattern, ReasonRule, RoleDef, Selector, TagPattern,
};

/// Seconds between two looks at the policy file's modification time, by default.
pub const DEFAULT_WATCH_SECONDS: u64 = 5;
/// Shortest reason by default.
pub const DEFAULT_MIN_REASON: usize = 10;
/// Longest reason by default.
pub const DEFAULT_MAX_REASON: usize = 500;
/// Longest reason any role may allow (the body of a start request is at most 16 KiB).
pub const MAX_REASON_CEILING: usize = 4096;
/// The documents a role allows when it names none.
pub const DEFAULT_DOCUMENTS: [&str; 2] =
    ["SSM-SessionManagerRunShell", "AWS-StartInteractiveCommand"];

/// `[policy]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// A separate TOML file of `[[roles]]`; relative to the configuration file's folder.
    pub file: Option<PathBuf>,
    /// Seconds between looks at the policy's file for a change (0: only on SIGHUP).
    pub watch_seconds: u64,
    /// Roles written inline (`[[policy.roles]]`). Neither these nor a file: the built-in
    /// roles admin, operator and auditor. Written but empty (`roles = []`): no roles, so
    /// nobody may do anything.
    pub roles: Option<Vec<RoleSpec>>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            file: None,
            watch_seconds: DEFAULT_WATCH_SECONDS,
            roles: None,
        }
    }
}

/// A separate policy file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Its roles.
    #[serde(default)]
    pub roles: Vec<RoleSpec>,
}

/// One role as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// The name users are assigned (`porthole users add --role NAME`).
    pub name: String,
    /// What it is for, shown by `porthole policy check`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Which targets it opens sessions on: a target is allowed when any selector matches.
    /// None: the role opens no sessions.
    #[serde(default)]
    pub targets: Vec<SelectorSpec>,
    /// Globs of the documents it allows; unset: [`DEFAULT_DOCUMENTS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<Vec<String>>,
    /// The document parameters it allows: for each name, the globs one of which every value
    /// must match; a name not listed is refused. Unset: any parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BTreeMap<String, Vec<String>>>,
    /// What the reason must look like.
    #[serde(default)]
    pub reason: ReasonSpec,
    /// Longest session under this role, in seconds (unset: no limit of the role's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_seconds: Option<u64>,
    /// Longest time without input under this role, in seconds (unset: none of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<u64>,
    /// May watch other people's live sessions (read-only).
    #[serde(default)]
    pub observe_others: bool,
    /// May terminate other people's sessions.
    #[serde(default)]
    pub terminate_others: bool,
    /// May read the audit log.
    #[serde(default)]
    pub read_audit: bool,
    /// May invite other people into one's own live sessions, to type along (`"write"`) or
    /// watch (`"read"`); the invitee's own roles must allow the session's target.
    #[serde(default, skip_serializing_if = "is_no")]
    pub join_others: bool,
    /// Whether the terminal of its sessions may copy and paste (default true). With several
    /// roles that allow a session, the most permissive decides: one that allows it is enough.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub clipboard: bool,
    /// Which way its sessions may move files: `none` (the default), `download`, `upload` or
    /// `both`. With several roles that allow a session, what any of them allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_transfer: Option<String>,
    /// The IAM role the gateway assumes, as the person, to start sessions this role allows
    /// (`sts:AssumeRole` with the person's name as `RoleSessionName` and `SourceIdentity`).
    /// Unset: sessions are started with the gateway's own credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_role_arn: Option<String>,
    /// The `ExternalId` the role's trust policy asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_external_id: Option<String>,
    /// The IAM role to assume as the person in each account (by `[[aws.accounts]]` name): for
    /// a target in an account named here it wins over `aws_role_arn`, which covers the rest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aws_role_arns: BTreeMap<String, String>,
    /// Whether its sessions need a second person's approval first (`[roles.approval]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalSpec>,
}

fn yes() -> bool {
    true
}

// serde's `skip_serializing_if` passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_no(value: &bool) -> bool {
    !*value
}

// serde's `skip_serializing_if` passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_yes(value: &bool) -> bool {
    *value
}

/// Longest grant by default, in seconds.
pub const DEFAULT_GRANT_SECONDS: u64 = 3600;
/// How long an undecided request waits by default, in seconds.
pub const DEFAULT_PENDING_SECONDS: u64 = 86_400;
/// Longest grant any role may allow: 30 days.
pub const MAX_GRANT_SECONDS: u64 = 30 * 86_400;
/// Most approvals a role may ask for.
pub const MAX_MIN_APPROVALS: u32 = 10;

/// `[roles.approval]`: sessions under the role need a grant, which approvers give.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalSpec {
    /// Whether approval is needed (false: the table is written but not in force).
    pub required: bool,
    /// The roles whose holders may approve.
    pub approvers: Vec<String>,
    /// How many different people must approve (2: dual control).
    pub min_approvals: u32,
    /// The longest grant one may ask for, in seconds.
    pub grant_seconds: u64,
    /// How long a request waits for its decision before it lapses, in seconds.
    pub pending_seconds: u64,
    /// Holders may grant themselves access without an approver (loudly, with a reason).
    pub break_glass: bool,
}

impl Default for ApprovalSpec {
    fn default() -> Self {
        Self {
            required: true,
            approvers: Vec::new(),
            min_approvals: 1,
            grant_seconds: DEFAULT_GRANT_SECONDS,
            pending_seconds: DEFAULT_PENDING_SECONDS,
            break_glass: false,
        }
    }
}

/// A target selector: every field that is set must match (a field matches when any of its
/// patterns does; `tags` matches when every `key=value` pattern matches a tag).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectorSpec {
    /// Instance id globs (`i-0abc*`, `mi-*`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    /// Name globs (the `Name` tag, else the node's name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Region globs (`eu-*`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// Account name globs (`prod-*`; the names of `[[aws.accounts]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    /// `key=value` tag patterns, globs on both sides (`env=prod`, `team=web*`, `owner=*`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// The reason rules of a role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReasonSpec {
    /// Whether a reason must be given (a given reason is checked either way).
    pub required: bool,
    /// Shortest reason, in characters after trimming.
    pub min_length: usize,
    /// Longest reason, in characters after trimming.
    pub max_length: usize,
    /// A regular expression the reason must match (unanchored unless it anchors itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// What to tell a person whose reason does not match `pattern`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern_message: Option<String>,
}

impl Default for ReasonSpec {
    fn default() -> Self {
        Self {
            required: true,
            min_length: DEFAULT_MIN_REASON,
            max_length: DEFAULT_MAX_REASON,
            pattern: None,
            pattern_message: None,
        }
    }
}

/// The roles used when the configuration defines none: today's admin, operator and auditor.
/// Admin and operator open sessions on every target with every document (the gateway always
/// allowed any document; AWS refuses the ones that do not exist), with the default reason
/// rules; the auditor opens none. Admin may observe and terminate others' sessions and read
/// the audit log; the auditor may read the audit log (and so sees every session).
pub fn builtin_roles() -> Vec<RoleSpec> {
    let everywhere = || {
        vec![SelectorSpec {
            ids: vec!["*".into()],
            ..SelectorSpec::default()
        }]
    };
    let role = |name: &str, description: &str| RoleSpec {
        name: name.into(),
        description: description.into(),
        targets: Vec::new(),
        documents: None,
        parameters: None,
        reason: ReasonSpec::default(),
        max_duration_seconds: None,
        idle_timeout_seconds: None,
        observe_others: false,
        terminate_others: false,
        read_audit: false,
        join_others: false,
        clipboard: true,
        file_transfer: None,
        aws_role_arn: None,
        aws_external_id: None,
        aws_role_arns: BTreeMap::new(),
        approval: None,
    };
    vec![
        RoleSpec {
            targets: everywhere(),
            documents: Some(vec!["*".into()]),
            observe_others: true,
            terminate_others: true,
            read_audit: true,
            join_others: true,
            file_transfer: Some("both".into()),
            ..role("admin", "built-in: everything, including others' sessions")
        },
        RoleSpec {
            targets: everywhere(),
            documents: Some(vec!["*".into()]),
            join_others: true,
            file_transfer: Some("both".into()),
            ..role("operator", "built-in: opens sessions on any target")
        },
        RoleSpec {
            read_audit: true,
            ..role("auditor", "built-in: reads sessions and audit; opens none")
        },
    ]
}

/// Checks a role name: what user names allow (a-z, 0-9, `.`, `_`, `-`; 1 to 64).
pub fn valid_role_name(name: &str) -> bool {
    crate::gateway::facts::valid_name(name)
}

/// Turns written roles into matchers; `key` is where they were written (`policy.roles`, or
/// `roles` in a policy file) and starts every error.
pub fn compile(specs: &[RoleSpec], key: &str) -> Result<Vec<RoleDef>, String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let at = format!("{key}[{i}]");
        if !valid_role_name(&spec.name) {
            return Err(format!(
                "{at}.name: role names are 1 to 64 characters of a-z, 0-9, '.', '_' and '-'; \
                 got {:?}",
                spec.name
            ));
        }
        if !seen.insert(spec.name.as_str()) {
            return Err(format!("{at}.name: role {:?} is defined twice", spec.name));
        }
        out.push(compile_role(spec, &at)?);
    }
    // Approvers are roles of the same policy: a misspelt one would leave nobody to approve.
    for (i, spec) in specs.iter().enumerate() {
        if let Some(approval) = &spec.approval {
            for (k, name) in approval.approvers.iter().enumerate() {
                if !seen.contains(name.as_str()) {
                    return Err(format!(
                        "{key}[{i}].approval.approvers[{k}]: no role named {name:?} in this \
                         policy"
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn compile_role(spec: &RoleSpec, at: &str) -> Result<RoleDef, String> {
    let mut targets = Vec::with_capacity(spec.targets.len());
    for (j, s) in spec.targets.iter().enumerate() {
        let at = format!("{at}.targets[{j}]");
        if s.ids.is_empty()
            && s.names.is_empty()
            && s.regions.is_empty()
            && s.accounts.is_empty()
            && s.tags.is_empty()
        {
            return Err(format!(
                "{at}: a selector needs at least one of ids, names, regions, accounts, tags \
                 (ids = [\"*\"] selects every target)"
            ));
        }
        let globs = |field: &str, list: &[String]| -> Result<Vec<Pattern>, String> {
            list.iter()
                .enumerate()
                .map(|(k, p)| Pattern::new(p).map_err(|e| format!("{at}.{field}[{k}]: {e}")))
                .collect()
        };
        let tags = s
            .tags
            .iter()
            .enumerate()
            .map(|(k, t)| TagPattern::new(t).map_err(|e| format!("{at}.tags[{k}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        targets.push(Selector {
            ids: globs("ids", &s.ids)?,
            names: globs("names", &s.names)?,
            regions: globs("regions", &s.regions)?,
            accounts: globs("accounts", &s.accounts)?,
            tags,
        });
    }
    let documents = match &spec.documents {
        None => DEFAULT_DOCUMENTS
            .iter()
            .map(|d| Pattern::new(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{at}.documents: {e}"))?,
        Some(list) if list.is_empty() => {
            return Err(format!(
                "{at}.documents: name at least one document (leave the key out for {})",
                DEFAULT_DOCUMENTS.join(" and ")
            ));
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(k, d)| Pattern::new(d).map_err(|e| format!("{at}.documents[{k}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let parameters = match &spec.parameters {
        None => None,
        Some(map) => {
            let mut rules = Vec::with_capacity(map.len());
            for (name, globs) in map {
                if !super::valid_parameter_name(name) {
                    return Err(format!(
                        "{at}.parameters: {name:?} is not a parameter name \
                         (1 to 64 of A-Z a-z 0-9 _ - .)"
                    ));
                }
                if globs.is_empty() {
                    return Err(format!(
                        "{at}.parameters.{name}: name at least one pattern (\"*\" allows any \
                         value; leave the name out to refuse the parameter)"
                    ));
                }
                let patterns = globs
                    .iter()
                    .enumerate()
                    .map(|(k, g)| {
                        Pattern::new(g).map_err(|e| format!("{at}.parameters.{name}[{k}]: {e}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                rules.push((name.clone(), patterns));
            }
            Some(rules)
        }
    };
    let r = &spec.reason;
    if r.max_length == 0 || r.max_length > MAX_REASON_CEILING {
        return Err(format!(
            "{at}.reason.max_length: 1 to {MAX_REASON_CEILING}, got {}",
            r.max_length
        ));
    }
    if r.min_length > r.max_length {
        return Err(format!(
            "{at}.reason.min_length: {} is more than reason.max_length ({})",
            r.min_length, r.max_length
        ));
    }
    let pattern = match &r.pattern {
        None => {
            if r.pattern_message.is_some() {
                return Err(format!(
                    "{at}.reason.pattern_message: there is no reason.pattern for it to explain"
                ));
            }
            None
        }
        Some(p) => {
            let regex = regex::RegexBuilder::new(p)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| {
                    // The regex crate's message spans lines (it draws the pattern); one line.
                    let text = e.to_string();
                    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    format!("{at}.reason.pattern: invalid regex: {text}")
                })?;
            let message = match &r.pattern_message {
                Some(m) if m.trim().is_empty() => {
                    return Err(format!("{at}.reason.pattern_message: must not be empty"));
                }
                Some(m) => m.clone(),
                None => format!("the reason must match {p}"),
            };
            Some((regex, message))
        }
    };
    let seconds = |field: &str, v: Option<u64>| -> Result<Option<Duration>, String> {
        match v {
            Some(0) => Err(format!(
                "{at}.{field}: at least 1 (leave the key out for no limit of the role's own)"
            )),
            v => Ok(v.map(Duration::from_secs)),
        }
    };
    if spec.aws_role_arn.is_none()
        && spec.aws_role_arns.is_empty()
        && spec.aws_external_id.is_some()
    {
        return Err(format!(
            "{at}.aws_external_id: there is no aws_role_arn for it to go with"
        ));
    }
    if let Some(id) = &spec.aws_external_id
        && !(2..=1224).contains(&id.len())
    {
        return Err(format!("{at}.aws_external_id: 2 to 1224 characters"));
    }
    let role_of = |key: &str, arn: &String| -> Result<AwsRole, String> {
        if !crate::gateway::facts::valid_role_arn(arn) {
            return Err(format!(
                "{at}.{key}: {arn:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)"
            ));
        }
        Ok(AwsRole {
            arn: arn.clone(),
            external_id: spec.aws_external_id.clone(),
        })
    };
    let aws_role = spec
        .aws_role_arn
        .as_ref()
        .map(|arn| role_of("aws_role_arn", arn))
        .transpose()?;
    let mut aws_roles = BTreeMap::new();
    for (account, arn) in &spec.aws_role_arns {
        if !crate::gateway::facts::valid_name(account) {
            return Err(format!(
                "{at}.aws_role_arns: {account:?} is not an account name (1 to 64 of a-z, 0-9, \
                 '.', '_' and '-')"
            ));
        }
        aws_roles.insert(
            account.clone(),
            role_of(&format!("aws_role_arns.{account}"), arn)?,
        );
    }
    let file_transfer = match spec.file_transfer.as_deref() {
        None => FileTransfer::None,
        Some(text) => FileTransfer::parse(text).ok_or_else(|| {
            format!(
                "{at}.file_transfer: one of {}, got {text:?}",
                FileTransfer::NAMES.join(", ")
            )
        })?,
    };
    let approval = spec
        .approval
        .as_ref()
        .map(|a| compile_approval(a, &format!("{at}.approval")))
        .transpose()?
        .flatten();
    Ok(RoleDef {
        approval,
        aws_role,
        aws_roles,
        name: spec.name.clone(),
        description: spec.description.clone(),
        targets,
        documents,
        parameters,
        reason: ReasonRule {
            required: r.required,
            min: r.min_length,
            max: r.max_length,
            pattern,
        },
        max_duration: seconds("max_duration_seconds", spec.max_duration_seconds)?,
        idle_timeout: seconds("idle_timeout_seconds", spec.idle_timeout_seconds)?,
        observe_others: spec.observe_others,
        terminate_others: spec.terminate_others,
        read_audit: spec.read_audit,
        join_others: spec.join_others,
        clipboard: spec.clipboard,
        file_transfer,
    })
}

fn compile_approval(spec: &ApprovalSpec, at: &str) -> Result<Option<ApprovalRule>, String> {
    if !spec.required {
        return Ok(None);
    }
    if spec.approvers.is_empty() {
        return Err(format!(
            "{at}.approvers: name the roles whose holders may approve (approvers = [\"leads\"])"
        ));
    }
    if !(1..=MAX_MIN_APPROVALS).contains(&spec.min_approvals) {
        return Err(format!(
            "{at}.min_approvals: 1 to {MAX_MIN_APPROVALS}, got {}",
            spec.min_approvals
        ));
    }
    if !(1..=MAX_GRANT_SECONDS).contains(&spec.grant_seconds) {
        return Err(format!(
            "{at}.grant_seconds: 1 to {MAX_GRANT_SECONDS} (30 days), got {}",
            spec.grant_seconds
        ));
    }
    if !(1..=MAX_GRANT_SECONDS).contains(&spec.pending_seconds) {
        return Err(format!(
            "{at}.pending_seconds: 1 to {MAX_GRANT_SECONDS} (30 days), got {}",
            spec.pending_seconds
        ));
    }
    let mut approvers: Vec<String> = Vec::with_capacity(spec.approvers.len());
    for name in &spec.approvers {
        if !approvers.contains(name) {
            approvers.push(name.clone());
        }
    }
    Ok(Some(ApprovalRule {
        approvers,
        min_approvals: spec.min_approvals,
        grant: Duration::from_secs(spec.grant_seconds),
        pending: Duration::from_secs(spec.pending_seconds),
        break_glass: spec.break_glass,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(toml_text: &str) -> Result<Vec<RoleDef>, String> {
        let file: PolicyFile = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        compile(&file.roles, "policy.roles")
    }

    #[test]
    fn the_builtin_roles_compile() {
        let roles = compile(&builtin_roles(), "builtin").unwrap();
        let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["admin", "operator", "auditor"]);
    }

    #[test]
    fn mistakes_are_named_by_their_key() {
        let cases: &[(&str, &str)] = &[
            (
                "[[roles]]\nname = \"a\"\n[[roles]]\nname = \"b\"\n[[roles]]\nname = \"c\"\nreason.pattern = \"^(INC\"\n",
                "policy.roles[2].reason.pattern: invalid regex",
            ),
            ("[[roles]]\nname = \"Bad Name\"\n", "policy.roles[0].name"),
            (
                "[[roles]]\nname = \"a\"\n[[roles]]\nname = \"a\"\n",
                "policy.roles[1].name: role \"a\" is defined twice",
            ),
            (
                "[[roles]]\nname = \"a\"\ntargets = [{}]\n",
                "policy.roles[0].targets[0]: a selector needs",
            ),
            (
                "[[roles]]\nname = \"a\"\ntargets = [{ids = [\"*\"]}, {tags = [\"env\"]}]\n",
                "policy.roles[0].targets[1].tags[0]: \"env\" is not key=value",
            ),
            (
                "[[roles]]\nname = \"a\"\ntargets = [{names = [\"web-[\"]}]\n",
                "policy.roles[0].targets[0].names[0]: invalid glob",
            ),
            (
                "[[roles]]\nname = \"a\"\ndocuments = []\n",
                "policy.roles[0].documents: name at least one",
            ),
            (
                "[[roles]]\nname = \"a\"\ndocuments = [\"\"]\n",
                "policy.roles[0].documents[0]: empty pattern",
            ),
            (
                "[[roles]]\nname = \"a\"\nreason = {min_length = 20, max_length = 10}\n",
                "policy.roles[0].reason.min_length",
            ),
            (
                "[[roles]]\nname = \"a\"\nreason = {max_length = 100000}\n",
                "policy.roles[0].reason.max_length",
            ),
            (
                "[[roles]]\nname = \"a\"\nreason = {pattern_message = \"x\"}\n",
                "policy.roles[0].reason.pattern_message",
            ),
            (
                "[[roles]]\nname = \"a\"\nmax_duration_seconds = 0\n",
                "policy.roles[0].max_duration_seconds",
            ),
            (
                "[[roles]]\nname = \"a\"\nidle_timeout_seconds = 0\n",
                "policy.roles[0].idle_timeout_seconds",
            ),
            (
                "[[roles]]\nname = \"a\"\napproval = {required = true}\n",
                "policy.roles[0].approval.approvers: name the roles",
            ),
            (
                "[[roles]]\nname = \"a\"\n[[roles]]\nname = \"b\"\napproval = {approvers = [\"a\", \"lead\"]}\n",
                "policy.roles[1].approval.approvers[1]: no role named \"lead\"",
            ),
            (
                "[[roles]]\nname = \"a\"\napproval = {approvers = [\"a\"], min_approvals = 0}\n",
                "policy.roles[0].approval.min_approvals: 1 to 10",
            ),
            (
                "[[roles]]\nname = \"a\"\napproval = {approvers = [\"a\"], grant_seconds = 0}\n",
                "policy.roles[0].approval.grant_seconds",
            ),
            (
                "[[roles]]\nname = \"a\"\napproval = {approvers = [\"a\"], pending_seconds = 99999999}\n",
                "policy.roles[0].approval.pending_seconds",
            ),
        ];
        for (text, needle) in cases {
            let err = role(text).map(|_| ()).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        let err = role("[[roles]]\nname = \"a\"\napproval = {approver = [\"a\"]}\n")
            .map(|_| ())
            .unwrap_err();
        assert!(err.contains("approver"), "{err}");
        let err = role("[[roles]]\nname = \"a\"\ncolour = \"red\"\n")
            .map(|_| ())
            .unwrap_err();
        assert!(err.contains("colour"), "{err}");
    }
}
