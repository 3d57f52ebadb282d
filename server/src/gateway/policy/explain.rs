//! A decision, role by role: which roles of the user exist, which of their selectors match the
//! target (and why not), whether the document is allowed, whether the reason passes. The
//! server's answer ([`Explanation::outcome`]) and `porthole policy check`'s report
//! ([`Explanation::render`]) come from the same walk, so they cannot disagree.

use std::fmt::Write as _;
use std::time::Duration;

use super::rules::{ApprovalRule, AwsRole, FileTransfer};
use super::{Parameters, Policy, describe_target};
use crate::gateway::facts::{Target, User};

/// An allowed start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The roles that allow it (target, document and reason), in the user's order.
    pub roles: Vec<String>,
    /// The reason, trimmed.
    pub reason: String,
    /// The longest session those roles allow (the most generous; `None`: no limit of theirs).
    pub max_duration: Option<Duration>,
    /// The idle timeout those roles set (the most generous; `None`: none of theirs).
    pub idle_timeout: Option<Duration>,
    /// The hash of the policy that decided.
    pub policy_hash: String,
    /// The IAM role to assume as the person: that of the first allowing role, in the
    /// policy's order, that names one (`None`: the gateway's own credentials).
    pub aws_role: Option<AwsRole>,
    /// The policy role it comes from.
    pub aws_role_from: Option<String>,
    /// The approval the start needs first: `None` when some allowing role needs none.
    pub approval: Option<ApprovalNeed>,
    /// Whether the session's terminal may copy and paste: true when one of the roles that
    /// allow it allows that (the most permissive, as for the limits).
    pub clipboard: bool,
    /// Which way files may move through the session: what any of the roles that allow it
    /// allows ([`FileTransfer::union`]).
    pub file_transfer: FileTransfer,
}

/// What a start needs when every role that allows it requires approval: the approvers of all
/// of them, the fewest approvals and the longest grant any of them asks, and break-glass when
/// one of them allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalNeed {
    /// The roles that require it.
    pub roles: Vec<String>,
    /// The roles whose holders may approve.
    pub approvers: Vec<String>,
    /// How many different people must approve.
    pub min_approvals: u32,
    /// The longest grant.
    pub grant: Duration,
    /// How long a request waits for its decision.
    pub pending: Duration,
    /// The person may grant themselves access without an approver.
    pub break_glass: bool,
}

impl ApprovalNeed {
    /// Combines the rules of the allowing roles; `None` when one of them needs no approval.
    fn of<'a>(rules: impl Iterator<Item = (&'a str, Option<&'a ApprovalRule>)>) -> Option<Self> {
        let mut need: Option<Self> = None;
        for (role, rule) in rules {
            let rule = rule?;
            let n = need.get_or_insert_with(|| Self {
                roles: Vec::new(),
                approvers: Vec::new(),
                min_approvals: rule.min_approvals,
                grant: rule.grant,
                pending: rule.pending,
                break_glass: false,
            });
            n.roles.push(role.to_owned());
            for a in &rule.approvers {
                if !n.approvers.contains(a) {
                    n.approvers.push(a.clone());
                }
            }
            n.min_approvals = n.min_approvals.min(rule.min_approvals);
            n.grant = n.grant.max(rule.grant);
            n.pending = n.pending.max(rule.pending);
            n.break_glass |= rule.break_glass;
        }
        need
    }

    /// In words: `1 approval by sre-leads, grants up to 3600 s, break-glass allowed`.
    pub fn describe(&self) -> String {
        ApprovalRule {
            approvers: self.approvers.clone(),
            min_approvals: self.min_approvals,
            grant: self.grant,
            pending: self.pending,
            break_glass: self.break_glass,
        }
        .describe()
    }
}

/// A refused start, in words for the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No role of the user allows the target with the document (403).
    Denied(String),
    /// Some role allows it, but the reason does not pass its rules (422 `invalid_reason`).
    InvalidReason(String),
}

impl Refusal {
    /// The text for the person.
    pub fn message(&self) -> &str {
        match self {
            Self::Denied(m) | Self::InvalidReason(m) => m,
        }
    }
}

/// One selector of a role and whether it matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorCheck {
    /// As written: `ids i-0abc*; tags env=prod`.
    pub selector: String,
    /// `Err`: why it does not match.
    pub result: Result<(), String>,
}

/// One role of the user, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleCheck {
    /// The role's name.
    pub role: String,
    /// Whether the policy defines it (an undefined role allows nothing).
    pub defined: bool,
    /// Its description.
    pub description: String,
    /// Its selectors, each checked.
    pub selectors: Vec<SelectorCheck>,
    /// The document: the glob that allows it, or why none does; `None` when the role does not
    /// select the target.
    pub document: Option<Result<String, String>>,
    /// The documents it allows, as written.
    pub documents: String,
    /// The parameters checked against what it allows; `None` when the role does not allow
    /// the target and document.
    pub parameters: Option<Result<(), String>>,
    /// The parameters it allows, in words.
    pub parameters_rule: String,
    /// The reason rule in words.
    pub reason_rule: String,
    /// The reason checked against the rule; `None` when not checked (no reason given, or
    /// the role does not allow the target and document).
    pub reason: Option<Result<(), String>>,
    /// Its session limit.
    pub max_duration: Option<Duration>,
    /// Its idle timeout.
    pub idle_timeout: Option<Duration>,
    /// Whether its sessions may copy and paste.
    pub clipboard: bool,
    /// Which way its sessions may move files.
    pub file_transfer: FileTransfer,
    /// What else it grants, in words.
    pub grants: Vec<&'static str>,
    /// Its position in the policy (`usize::MAX` when undefined).
    pub position: usize,
    /// The IAM role it assumes as the person.
    pub aws_role: Option<AwsRole>,
    /// The approval its sessions need.
    pub approval: Option<ApprovalRule>,
}

impl RoleCheck {
    /// Whether some selector matched.
    pub fn selects(&self) -> bool {
        self.selectors.iter().any(|s| s.result.is_ok())
    }

    /// Whether it allows the target with the document.
    pub fn allows_document(&self) -> bool {
        matches!(self.document, Some(Ok(_)))
    }

    /// Whether it allows the target with the document and its parameters.
    pub fn allows(&self) -> bool {
        self.allows_document() && matches!(self.parameters, Some(Ok(())))
    }
}

/// The decision, role by role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The user's name.
    pub user: String,
    /// The user's role names.
    pub user_roles: Vec<String>,
    /// The target as the policy saw it.
    pub target: Target,
    /// The document.
    pub document: String,
    /// The document's parameters.
    pub parameters: Parameters,
    /// The trimmed reason, when one was checked.
    pub reason: Option<String>,
    /// The user's roles, in order.
    pub roles: Vec<RoleCheck>,
    /// Where the policy came from, in words.
    pub policy: String,
    /// The policy's hash.
    pub policy_hash: String,
}

pub(super) fn explain(
    policy: &Policy,
    user: &User,
    target: &Target,
    document: &str,
    parameters: &Parameters,
    reason: Option<&str>,
) -> Explanation {
    let reason = reason.map(|r| r.trim().to_owned());
    let roles = user
        .roles
        .iter()
        .map(|name| {
            let Some(def) = policy.role(name.as_str()) else {
                return RoleCheck {
                    role: name.as_str().to_owned(),
                    defined: false,
                    description: String::new(),
                    selectors: Vec::new(),
                    document: None,
                    documents: String::new(),
                    parameters: None,
                    parameters_rule: String::new(),
                    reason_rule: String::new(),
                    reason: None,
                    max_duration: None,
                    idle_timeout: None,
                    clipboard: false,
                    file_transfer: FileTransfer::None,
                    grants: Vec::new(),
                    position: usize::MAX,
                    aws_role: None,
                    approval: None,
                };
            };
            let selectors: Vec<SelectorCheck> = def
                .targets
                .iter()
                .map(|s| SelectorCheck {
                    selector: s.describe(),
                    result: s.check(target),
                })
                .collect();
            let selects = selectors.iter().any(|s| s.result.is_ok());
            let document = selects.then(|| def.document(document).map(str::to_owned));
            let checked = matches!(document, Some(Ok(_))).then(|| def.check_parameters(parameters));
            let allows = matches!(checked, Some(Ok(())));
            let mut grants = Vec::new();
            if def.observe_others {
                grants.push("observe others' sessions");
            }
            if def.terminate_others {
                grants.push("terminate others' sessions");
            }
            if def.read_audit {
                grants.push("read the audit log");
            }
            if def.join_others {
                grants.push("invite others into their own sessions (join_others)");
            }
            RoleCheck {
                role: def.name.clone(),
                defined: true,
                description: def.description.clone(),
                selectors,
                document,
                documents: def.documents_text(),
                parameters: checked,
                parameters_rule: def.parameters_text(),
                reason_rule: def.reason.describe(),
                reason: match &reason {
                    Some(r) if allows => Some(def.reason.check(r)),
                    _ => None,
                },
                max_duration: def.max_duration,
                idle_timeout: def.idle_timeout,
                clipboard: def.clipboard,
                file_transfer: def.file_transfer,
                grants,
                position: policy.role_position(&def.name).unwrap_or(usize::MAX),
                aws_role: def.aws_role_for(&target.account).cloned(),
                approval: def.approval.clone(),
            }
        })
        .collect();
    Explanation {
        user: user.name.clone(),
        user_roles: user.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        target: target.clone(),
        document: document.to_owned(),
        parameters: parameters.clone(),
        reason,
        roles,
        policy: policy.source().to_string(),
        policy_hash: policy.hash().to_owned(),
    }
}

/// The most generous of some limits: no limit beats any limit.
fn most_generous(limits: impl Iterator<Item = Option<Duration>>) -> Option<Duration> {
    let mut best = Some(Duration::ZERO);
    for limit in limits {
        best = match (best, limit) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    best
}

impl Explanation {
    /// The decision: allowed by the roles that pass everything, or refused with the words for
    /// the person. Without a reason, the reason rules are not part of it.
    pub fn outcome(&self) -> Result<Decision, Refusal> {
        let target = describe_target(&self.target);
        if !self.roles.iter().any(RoleCheck::selects) {
            return Err(Refusal::Denied(format!("no role of yours allows {target}")));
        }
        let allowing: Vec<&RoleCheck> = self.roles.iter().filter(|r| r.allows()).collect();
        if allowing.is_empty() && self.roles.iter().any(RoleCheck::allows_document) {
            let mut messages: Vec<&str> = Vec::new();
            for role in &self.roles {
                if let Some(Err(m)) = &role.parameters
                    && !messages.contains(&m.as_str())
                {
                    messages.push(m);
                }
            }
            return Err(Refusal::Denied(format!(
                "your roles allow {target} with the document {} but not with these parameters: \
                 {}",
                self.document,
                messages.join("; or: ")
            )));
        }
        if allowing.is_empty() {
            let mut documents: Vec<&str> = Vec::new();
            for role in self.roles.iter().filter(|r| r.selects()) {
                if !documents.contains(&role.documents.as_str()) {
                    documents.push(&role.documents);
                }
            }
            return Err(Refusal::Denied(format!(
                "your roles allow {target} but not with the document {} (they allow {})",
                self.document,
                documents.join("; ")
            )));
        }
        let passing: Vec<&RoleCheck> = match &self.reason {
            None => allowing,
            Some(_) => {
                let passing: Vec<&RoleCheck> = allowing
                    .iter()
                    .copied()
                    .filter(|r| matches!(r.reason, Some(Ok(()))))
                    .collect();
                if passing.is_empty() {
                    let mut messages: Vec<&str> = Vec::new();
                    for role in &allowing {
                        if let Some(Err(m)) = &role.reason
                            && !messages.contains(&m.as_str())
                        {
                            messages.push(m);
                        }
                    }
                    return Err(Refusal::InvalidReason(messages.join("; or: ")));
                }
                passing
            }
        };
        let assumed = passing
            .iter()
            .filter(|r| r.aws_role.is_some())
            .min_by_key(|r| r.position);
        Ok(Decision {
            approval: ApprovalNeed::of(
                passing
                    .iter()
                    .map(|r| (r.role.as_str(), r.approval.as_ref())),
            ),
            aws_role: assumed.and_then(|r| r.aws_role.clone()),
            aws_role_from: assumed.map(|r| r.role.clone()),
            roles: passing.iter().map(|r| r.role.clone()).collect(),
            reason: self.reason.clone().unwrap_or_default(),
            max_duration: most_generous(passing.iter().map(|r| r.max_duration)),
            idle_timeout: most_generous(passing.iter().map(|r| r.idle_timeout)),
            clipboard: passing.iter().any(|r| r.clipboard),
            file_transfer: passing
                .iter()
                .fold(FileTransfer::None, |all, r| all.union(r.file_transfer)),
            policy_hash: self.policy_hash.clone(),
        })
    }

    /// The report of `porthole policy check`: the inputs, each role rule by rule, the verdict.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let hash: String = self.policy_hash.chars().take(12).collect();
        let _ = writeln!(out, "policy    {} (sha256 {hash}…)", self.policy);
        let roles = if self.user_roles.is_empty() {
            "none".to_owned()
        } else {
            self.user_roles.join(", ")
        };
        let _ = writeln!(out, "user      {} (roles: {roles})", self.user);
        let _ = writeln!(out, "target    {}", describe_target(&self.target));
        let _ = writeln!(out, "document  {}", self.document);
        if !self.parameters.is_empty() {
            let given: Vec<String> = self
                .parameters
                .iter()
                .map(|(name, values)| format!("{name}={values:?}"))
                .collect();
            let _ = writeln!(out, "params    {}", given.join(" "));
        }
        match &self.reason {
            Some(r) => {
                let _ = writeln!(out, "reason    {r:?}");
            }
            None => {
                let _ = writeln!(out, "reason    (not given: reason rules not checked)");
            }
        }
        for role in &self.roles {
            out.push('\n');
            if !role.defined {
                let _ = writeln!(
                    out,
                    "role {}: not defined in this policy, allows nothing",
                    role.role
                );
                continue;
            }
            if role.description.is_empty() {
                let _ = writeln!(out, "role {}", role.role);
            } else {
                let _ = writeln!(out, "role {} ({})", role.role, role.description);
            }
            if role.selectors.is_empty() {
                let _ = writeln!(out, "  targets: none (this role opens no sessions)");
            }
            for (i, s) in role.selectors.iter().enumerate() {
                match &s.result {
                    Ok(()) => {
                        let _ = writeln!(out, "  targets[{i}] {}: matches", s.selector);
                    }
                    Err(why) => {
                        let _ = writeln!(out, "  targets[{i}] {}: no, {why}", s.selector);
                    }
                }
            }
            match &role.document {
                None => {
                    let _ = writeln!(out, "  -> does not select this target");
                }
                Some(Err(why)) => {
                    let _ = writeln!(out, "  document: no, {why}");
                    let _ = writeln!(out, "  -> does not allow this document");
                }
                Some(Ok(glob)) => {
                    let _ = writeln!(out, "  document: allowed by {glob}");
                    if let Some(Err(why)) = &role.parameters {
                        let _ = writeln!(out, "  parameters: {}: no, {why}", role.parameters_rule);
                        let _ = writeln!(out, "  -> does not allow these parameters");
                        if !role.grants.is_empty() {
                            let _ = writeln!(out, "  also may: {}", role.grants.join(", "));
                        }
                        continue;
                    }
                    if role.parameters_rule != "any" || !self.parameters.is_empty() {
                        let _ = writeln!(out, "  parameters: {}: allowed", role.parameters_rule);
                    }
                    match &role.reason {
                        None => {
                            let _ = writeln!(out, "  reason: {} (not checked)", role.reason_rule);
                        }
                        Some(Ok(())) => {
                            let _ = writeln!(out, "  reason: {}: passes", role.reason_rule);
                        }
                        Some(Err(m)) => {
                            let _ = writeln!(out, "  reason: {}: fails: {m}", role.reason_rule);
                        }
                    }
                    let _ = writeln!(out, "  limits: {}", limits(role));
                    if !role.clipboard {
                        let _ = writeln!(out, "  clipboard: off (copy and paste turned off)");
                    }
                    if role.file_transfer != FileTransfer::None {
                        let _ = writeln!(out, "  file_transfer: {}", role.file_transfer.as_str());
                    }
                    if let Some(approval) = &role.approval {
                        let _ = writeln!(out, "  approval: {}", approval.describe());
                    }
                    let verdict = if matches!(role.reason, Some(Err(_))) {
                        "allows the target and document, not this reason"
                    } else {
                        "allows"
                    };
                    let _ = writeln!(out, "  -> {verdict}");
                }
            }
            if !role.grants.is_empty() {
                let _ = writeln!(out, "  also may: {}", role.grants.join(", "));
            }
        }
        if self.roles.is_empty() {
            let _ = writeln!(out, "\n{} has no roles", self.user);
        }
        out.push('\n');
        match self.outcome() {
            Ok(d) => {
                let _ = write!(out, "ALLOWED by {}", d.roles.join(", "));
                let mut limits = Vec::new();
                if let Some(m) = d.max_duration {
                    limits.push(format!("sessions of at most {} s", m.as_secs()));
                }
                if let Some(i) = d.idle_timeout {
                    limits.push(format!("idle timeout {} s", i.as_secs()));
                }
                if !limits.is_empty() {
                    let _ = write!(out, " ({})", limits.join(", "));
                }
                out.push('\n');
                if let Some(need) = &d.approval {
                    let _ = writeln!(
                        out,
                        "APPROVAL  needed first (roles {}): {}",
                        need.roles.join(", "),
                        need.describe()
                    );
                }
                let _ = writeln!(
                    out,
                    "CLIPBOARD {}",
                    if d.clipboard {
                        "copy and paste allowed"
                    } else {
                        "copy and paste off (every allowing role has clipboard = false)"
                    }
                );
                let _ = writeln!(
                    out,
                    "FILES     {}",
                    match d.file_transfer {
                        FileTransfer::None =>
                            "no file transfer (no allowing role has file_transfer)",
                        FileTransfer::Download => "download from the node",
                        FileTransfer::Upload => "upload to the node",
                        FileTransfer::Both => "upload and download",
                    }
                );
                match (&d.aws_role, &d.aws_role_from) {
                    (Some(aws), Some(from)) => {
                        let _ = writeln!(
                            out,
                            "AWS role  {} (from role {from}, the first in the policy that names \
                             one), assumed as {}",
                            aws.arn, self.user
                        );
                    }
                    _ => {
                        let _ = writeln!(out, "AWS role  none: the gateway's own credentials");
                    }
                }
            }
            Err(Refusal::Denied(m)) => {
                let _ = writeln!(out, "DENIED: {m}");
            }
            Err(Refusal::InvalidReason(m)) => {
                let _ = writeln!(out, "DENIED (invalid reason): {m}");
            }
        }
        out
    }
}

fn limits(role: &RoleCheck) -> String {
    match (role.max_duration, role.idle_timeout) {
        (None, None) => "none of its own".into(),
        (m, i) => {
            let mut parts = Vec::new();
            if let Some(m) = m {
                parts.push(format!("sessions of at most {} s", m.as_secs()));
            }
            if let Some(i) = i {
                parts.push(format!("idle timeout {} s", i.as_secs()));
            }
            parts.join(", ")
        }
    }
}
