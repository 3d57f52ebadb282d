//! The compiled rules: glob patterns, target selectors, reason rules and roles, each able to
//! say in words why it matched or not.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use globset::{GlobBuilder, GlobMatcher};

pub use crate::gateway::facts::AwsRole;
use crate::gateway::facts::Target;

/// A glob (`*`, `?`, `[a-z]`, `{a,b}`; case-sensitive; `*` crosses `/`).
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    glob: GlobMatcher,
}

impl Pattern {
    /// Compiles a glob.
    pub fn new(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("empty pattern (\"*\" matches everything)".into());
        }
        let glob = GlobBuilder::new(text)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("invalid glob {text:?}: {}", e.kind()))?;
        Ok(Self {
            text: text.to_owned(),
            glob: glob.compile_matcher(),
        })
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        self.glob.is_match(value)
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// `key=value` with a glob on each side.
#[derive(Debug, Clone)]
pub struct TagPattern {
    text: String,
    key: Pattern,
    /// `None`: the value must be empty (`key=`).
    value: Option<Pattern>,
}

impl TagPattern {
    /// Parses `key=value` (split at the first `=`).
    pub fn new(text: &str) -> Result<Self, String> {
        let Some((key, value)) = text.split_once('=') else {
            return Err(format!(
                "{text:?} is not key=value (write {text}=* for any value)"
            ));
        };
        let key = Pattern::new(key).map_err(|e| format!("the key of {text:?}: {e}"))?;
        // An empty value pattern matches a tag whose value is empty.
        let value = if value.is_empty() {
            None
        } else {
            Some(Pattern::new(value).map_err(|e| format!("the value of {text:?}: {e}"))?)
        };
        Ok(Self {
            text: text.to_owned(),
            key,
            value,
        })
    }

    fn matches(&self, key: &str, value: &str) -> bool {
        self.key.matches(key)
            && match &self.value {
                Some(p) => p.matches(value),
                None => value.is_empty(),
            }
    }
}

/// One selector: every field that is set must match.
#[derive(Debug, Clone)]
pub struct Selector {
    /// Instance id globs (any).
    pub ids: Vec<Pattern>,
    /// Name globs (any).
    pub names: Vec<Pattern>,
    /// Region globs (any).
    pub regions: Vec<Pattern>,
    /// Account name globs (any).
    pub accounts: Vec<Pattern>,
    /// Tag patterns (all).
    pub tags: Vec<TagPattern>,
}

fn list(patterns: &[Pattern]) -> String {
    patterns
        .iter()
        .map(Pattern::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Selector {
    /// The selector as written, for explanations: `ids i-0abc*; tags env=prod`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.ids.is_empty() {
            parts.push(format!("ids {}", list(&self.ids)));
        }
        if !self.names.is_empty() {
            parts.push(format!("names {}", list(&self.names)));
        }
        if !self.regions.is_empty() {
            parts.push(format!("regions {}", list(&self.regions)));
        }
        if !self.accounts.is_empty() {
            parts.push(format!("accounts {}", list(&self.accounts)));
        }
        if !self.tags.is_empty() {
            let tags: Vec<&str> = self.tags.iter().map(|t| t.text.as_str()).collect();
            parts.push(format!("tags {}", tags.join(", ")));
        }
        parts.join("; ")
    }

    /// Whether `target` is selected; when not, why (the first field that does not match).
    pub fn check(&self, target: &Target) -> Result<(), String> {
        let any = |patterns: &[Pattern], value: &str| {
            patterns.is_empty() || patterns.iter().any(|p| p.matches(value))
        };
        if !any(&self.ids, &target.id) {
            return Err(format!(
                "the id {} does not match {}",
                target.id,
                list(&self.ids)
            ));
        }
        if !any(&self.names, &target.name) {
            return Err(format!(
                "the name {:?} does not match {}",
                target.name,
                list(&self.names)
            ));
        }
        if !any(&self.regions, &target.region) {
            let region = if target.region.is_empty() {
                "(none)"
            } else {
                &target.region
            };
            return Err(format!(
                "the region {region} does not match {}",
                list(&self.regions)
            ));
        }
        if !any(&self.accounts, &target.account) {
            let account = if target.account.is_empty() {
                "(none)"
            } else {
                &target.account
            };
            return Err(format!(
                "the account {account} does not match {}",
                list(&self.accounts)
            ));
        }
        for tag in &self.tags {
            if target.tags.iter().any(|(k, v)| tag.matches(k, v)) {
                continue;
            }
            let same_key: Vec<String> = target
                .tags
                .iter()
                .filter(|(k, _)| tag.key.matches(k))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            return Err(if same_key.is_empty() {
                format!("no tag matches {} (no such tag)", tag.text)
            } else {
                format!(
                    "no tag matches {} (it has {})",
                    tag.text,
                    same_key.join(", ")
                )
            });
        }
        Ok(())
    }
}

/// What a reason must look like.
#[derive(Debug, Clone)]
pub struct ReasonRule {
    /// Whether one must be given.
    pub required: bool,
    /// Shortest, in characters after trimming.
    pub min: usize,
    /// Longest, in characters after trimming.
    pub max: usize,
    /// A regular expression and the message shown when it does not match.
    pub pattern: Option<(regex::Regex, String)>,
}

impl ReasonRule {
    /// Checks a trimmed reason; the error is the text shown to the person.
    pub fn check(&self, reason: &str) -> Result<(), String> {
        let len = reason.chars().count();
        if len == 0 && !self.required {
            return Ok(());
        }
        if len == 0 && self.min == 0 {
            return Err("a reason is required".into());
        }
        if len < self.min {
            return Err(format!(
                "the reason must be at least {} characters (got {len} after trimming)",
                self.min
            ));
        }
        if len > self.max {
            return Err(format!(
                "the reason must be at most {} characters (got {len})",
                self.max
            ));
        }
        if let Some(c) = reason.chars().find(|c| c.is_control()) {
            return Err(format!(
                "the reason must not contain control characters (found U+{:04X})",
                u32::from(c)
            ));
        }
        if let Some((regex, message)) = &self.pattern
            && !regex.is_match(reason)
        {
            return Err(message.clone());
        }
        Ok(())
    }

    /// The rule in words: `required, 10 to 500 characters, matching ^INC-`.
    pub fn describe(&self) -> String {
        let mut text = String::from(if self.required {
            "required"
        } else {
            "optional"
        });
        let _ = write!(text, ", {} to {} characters", self.min, self.max);
        if let Some((regex, _)) = &self.pattern {
            let _ = write!(text, ", matching {}", regex.as_str());
        }
        text
    }
}

/// What a role's sessions need first: a grant, given by enough approvers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    /// The roles whose holders may approve.
    pub approvers: Vec<String>,
    /// How many different people must approve.
    pub min_approvals: u32,
    /// The longest grant.
    pub grant: Duration,
    /// How long a request waits for its decision.
    pub pending: Duration,
    /// Holders may grant themselves access without an approver.
    pub break_glass: bool,
}

impl ApprovalRule {
    /// The rule in words: `1 approval by sre-leads, grants up to 3600 s, break-glass allowed`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} approval{} by {}, grants up to {} s",
            self.min_approvals,
            if self.min_approvals == 1 { "" } else { "s" },
            self.approvers.join(" or "),
            self.grant.as_secs()
        );
        if self.break_glass {
            text.push_str(", break-glass allowed");
        }
        text
    }
}

/// Which way a role's sessions may move files (`file_transfer`): `none` (the default),
/// `download` (from the node), `upload` (to the node) or `both`. Several roles that allow a
/// session combine into what any of them allows ([`FileTransfer::union`]): `download` and
/// `upload` make `both`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileTransfer {
    /// No file transfer.
    #[default]
    None,
    /// Files may be read from the node.
    Download,
    /// Files may be written to the node.
    Upload,
    /// Both ways.
    Both,
}

impl FileTransfer {
    /// The words of the policy file.
    pub const NAMES: &'static [&'static str] = &["none", "download", "upload", "both"];

    /// From the policy file's words; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "none" => Some(Self::None),
            "download" => Some(Self::Download),
            "upload" => Some(Self::Upload),
            "both" => Some(Self::Both),
            _ => None,
        }
    }

    /// As the policy file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Download => "download",
            Self::Upload => "upload",
            Self::Both => "both",
        }
    }

    /// Whether files may be written to the node.
    pub fn allows_upload(self) -> bool {
        matches!(self, Self::Upload | Self::Both)
    }

    /// Whether files may be read from the node.
    pub fn allows_download(self) -> bool {
        matches!(self, Self::Download | Self::Both)
    }

    /// What either allows.
    pub fn union(self, other: Self) -> Self {
        match (
            self.allows_download() || other.allows_download(),
            self.allows_upload() || other.allows_upload(),
        ) {
            (false, false) => Self::None,
            (true, false) => Self::Download,
            (false, true) => Self::Upload,
            (true, true) => Self::Both,
        }
    }
}

/// A compiled role.
#[derive(Debug, Clone)]
pub struct RoleDef {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Target selectors (any).
    pub targets: Vec<Selector>,
    /// Document globs (any).
    pub documents: Vec<Pattern>,
    /// The parameters it allows, each with its value globs (any); `None`: any parameters.
    pub parameters: Option<Vec<(String, Vec<Pattern>)>>,
    /// Reason rules.
    pub reason: ReasonRule,
    /// Longest session.
    pub max_duration: Option<Duration>,
    /// Longest time without input.
    pub idle_timeout: Option<Duration>,
    /// May observe others' sessions.
    pub observe_others: bool,
    /// May terminate others' sessions.
    pub terminate_others: bool,
    /// May read the audit log.
    pub read_audit: bool,
    /// May invite others into its holders' own live sessions (sharing).
    pub join_others: bool,
    /// Its sessions' terminals may copy and paste.
    pub clipboard: bool,
    /// Which way its sessions may move files.
    pub file_transfer: FileTransfer,
    /// The IAM role assumed as the person for the sessions it allows (in accounts not in
    /// `aws_roles`).
    pub aws_role: Option<AwsRole>,
    /// The IAM role assumed as the person for the sessions it allows, by account name.
    pub aws_roles: std::collections::BTreeMap<String, AwsRole>,
    /// The approval its sessions need first (`None`: none).
    pub approval: Option<ApprovalRule>,
}

impl RoleDef {
    /// The IAM role to assume as the person on a target in `account`: the account's own
    /// (`aws_role_arns`), else `aws_role_arn`.
    pub fn aws_role_for(&self, account: &str) -> Option<&AwsRole> {
        self.aws_roles.get(account).or(self.aws_role.as_ref())
    }

    /// Whether some selector selects `target`.
    pub fn selects(&self, target: &Target) -> bool {
        self.targets.iter().any(|s| s.check(target).is_ok())
    }

    /// The document glob that allows `document`, or why none does.
    pub fn document(&self, document: &str) -> Result<&str, String> {
        self.documents
            .iter()
            .find(|p| p.matches(document))
            .map(Pattern::as_str)
            .ok_or_else(|| {
                format!(
                    "the document {document} does not match {}",
                    list(&self.documents)
                )
            })
    }

    /// The documents it allows, as written.
    pub fn documents_text(&self) -> String {
        list(&self.documents)
    }

    /// Whether it allows `parameters` (every name listed, every value matching one of that
    /// name's globs), or why not.
    pub fn check_parameters(
        &self,
        parameters: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), String> {
        let Some(rules) = &self.parameters else {
            return Ok(());
        };
        for (name, values) in parameters {
            let Some((_, globs)) = rules.iter().find(|(n, _)| n == name) else {
                return Err(format!(
                    "the parameter {name} is not allowed (allowed: {})",
                    self.parameters_text()
                ));
            };
            if let Some(value) = values.iter().find(|v| !globs.iter().any(|g| g.matches(v))) {
                return Err(format!(
                    "the parameter {name} = {value:?} does not match {}",
                    list(globs)
                ));
            }
        }
        Ok(())
    }

    /// The parameters it allows, in words: `any`, `none`, `command: ls *, df *`.
    pub fn parameters_text(&self) -> String {
        match &self.parameters {
            None => "any".into(),
            Some(rules) if rules.is_empty() => "none".into(),
            Some(rules) => rules
                .iter()
                .map(|(name, globs)| format!("{name}: {}", list(globs)))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let table: &[(&str, &str, bool)] = &[
            ("*", "i-0abc", true),
            ("*", "", true),
            ("i-0abc*", "i-0abc123", true),
            ("i-0abc*", "i-0abd123", false),
            ("i-0abc*", "mi-0abc123", false),
            ("?i-*", "mi-1", true),
            ("web-[0-9]", "web-7", true),
            ("web-[0-9]", "web-x", false),
            ("{web,api}-*", "api-2", true),
            ("{web,api}-*", "db-2", false),
            ("Web-*", "web-1", false),
            ("arn:*/prod/*", "arn:aws:x/prod/y", true),
            ("eu-*", "eu-west-1", true),
            ("eu-*", "us-east-1", false),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
        ];
        for (glob, value, want) in table {
            assert_eq!(
                Pattern::new(glob).unwrap().matches(value),
                *want,
                "{glob} vs {value}"
            );
        }
        assert!(Pattern::new("").is_err());
        assert!(Pattern::new("web-[").unwrap_err().contains("invalid glob"));
    }

    #[test]
    fn tag_patterns() {
        let table: &[(&str, (&str, &str), bool)] = &[
            ("env=prod", ("env", "prod"), true),
            ("env=prod", ("env", "production"), false),
            ("env=prod*", ("env", "production"), true),
            ("env=*", ("env", ""), true),
            ("env=", ("env", ""), true),
            ("env=", ("env", "x"), false),
            ("team*=web", ("team-name", "web"), true),
            ("*=secret", ("anything", "secret"), true),
            ("a=b=c", ("a", "b=c"), true),
        ];
        for (pattern, (k, v), want) in table {
            assert_eq!(
                TagPattern::new(pattern).unwrap().matches(k, v),
                *want,
                "{pattern} vs {k}={v}"
            );
        }
        assert!(TagPattern::new("env").unwrap_err().contains("key=value"));
        assert!(TagPattern::new("=x").is_err());
    }
}
