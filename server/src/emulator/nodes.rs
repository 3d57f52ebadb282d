//! The emulator's managed nodes: loaded from a TOML file or a built-in default set.
//!
//! ```toml
//! [[node]]
//! id = "i-0a1b2c3d4e5f60001"
//! name = "web-1"
//! platform = "Linux"            # Linux | Windows | MacOS
//! ping_status = "Online"        # Online | ConnectionLost | Inactive
//! agent_version = "3.3.2299.0"
//! tags = { env = "prod", team = "web" }
//! account = "111122223333"      # the AWS account it is in (default 000000000000)
//! # optional per-node modes, overriding the command-line defaults:
//! handshake = true
//! kms_key_id = "alias/porthole"
//! pace = true
//! echo = false
//! deny_start = false             # StartSession answers AccessDeniedException, as IAM would
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Ping statuses DescribeInstanceInformation reports.
pub const PING_STATUSES: [&str; 3] = ["Online", "ConnectionLost", "Inactive"];
/// Platform types DescribeInstanceInformation reports.
pub const PLATFORMS: [&str; 3] = ["Linux", "Windows", "MacOS"];

/// One managed node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// `i-…` for EC2 instances, `mi-…` for hybrid nodes.
    pub id: String,
    /// A friendly name (the `Name` tag).
    #[serde(default)]
    pub name: String,
    /// `Linux`, `Windows` or `MacOS`.
    #[serde(default = "default_platform")]
    pub platform: String,
    /// `Online`, `ConnectionLost` or `Inactive`; only `Online` nodes accept sessions.
    #[serde(default = "default_ping_status")]
    pub ping_status: String,
    /// The agent version reported.
    #[serde(default = "default_agent_version")]
    pub agent_version: String,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Always run a handshake (overrides `--handshake`).
    #[serde(default)]
    pub handshake: Option<bool>,
    /// Encrypt sessions with this KMS key (overrides `--kms`).
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// Pace output like the real agent (overrides `--pace`).
    #[serde(default)]
    pub pace: Option<bool>,
    /// Echo input instead of running a shell (overrides `--echo`).
    #[serde(default)]
    pub echo: Option<bool>,
    /// Refuse `StartSession` on this node as IAM does when a policy denies it
    /// (`AccessDeniedException`, naming the caller's ARN and the node's).
    #[serde(default)]
    pub deny_start: bool,
    /// The 12-digit AWS account the node is in; unset: [`DEFAULT_ACCOUNT`]. Only callers of
    /// that account (their assumed role's account, else the default one) see and reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// The account of nodes that name none, and of callers that are not an assumed role.
pub const DEFAULT_ACCOUNT: &str = "000000000000";

fn default_platform() -> String {
    "Linux".into()
}
fn default_ping_status() -> String {
    "Online".into()
}
fn default_agent_version() -> String {
    crate::ssm::channel::DEFAULT_AGENT_VERSION.into()
}

impl Node {
    /// A plain online Linux node.
    pub fn new(id: &str, name: &str) -> Self {
        let mut tags = BTreeMap::new();
        if !name.is_empty() {
            tags.insert("Name".to_owned(), name.to_owned());
        }
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            platform: default_platform(),
            ping_status: default_ping_status(),
            agent_version: default_agent_version(),
            tags,
            handshake: None,
            kms_key_id: None,
            pace: None,
            echo: None,
            deny_start: false,
            account: None,
        }
    }

    /// Places the node in `account` (12 digits).
    pub fn in_account(mut self, account: &str) -> Self {
        self.account = Some(account.to_owned());
        self
    }

    /// The account the node is in.
    pub fn account(&self) -> &str {
        self.account.as_deref().unwrap_or(DEFAULT_ACCOUNT)
    }

    /// Adds a tag.
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Whether the node is online.
    pub fn is_online(&self) -> bool {
        self.ping_status == "Online"
    }

    /// `EC2Instance` for `i-…`, `ManagedInstance` for `mi-…`.
    pub fn resource_type(&self) -> &'static str {
        if self.id.starts_with("mi-") {
            "ManagedInstance"
        } else {
            "EC2Instance"
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodesFile {
    #[serde(default)]
    node: Vec<Node>,
}

/// The built-in nodes: three online Linux nodes (one hybrid), one offline.
pub fn default_nodes() -> Vec<Node> {
    vec![
        Node::new("i-0a1b2c3d4e5f60001", "web-1")
            .tag("env", "prod")
            .tag("team", "web"),
        Node::new("i-0a1b2c3d4e5f60002", "db-1")
            .tag("env", "prod")
            .tag("team", "data"),
        Node::new("mi-0a1b2c3d4e5f60003", "lab-pi")
            .tag("env", "dev")
            .tag("team", "lab"),
        Node {
            ping_status: "ConnectionLost".into(),
            ..Node::new("i-0a1b2c3d4e5f60004", "old-batch")
                .tag("env", "dev")
                .tag("team", "data")
        },
    ]
}

/// Reads and validates a nodes file; errors name the file and the offending entry.
pub fn load_nodes(path: &Path) -> Result<Vec<Node>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read nodes file {}: {e}", path.display()))?;
    parse_nodes(&text).map_err(|e| format!("nodes file {}: {e}", path.display()))
}

/// Parses and validates nodes from TOML text.
pub fn parse_nodes(text: &str) -> Result<Vec<Node>, String> {
    let file: NodesFile = toml::from_str(text).map_err(|e| e.to_string())?;
    validate(&file.node)?;
    Ok(file.node)
}

fn validate(nodes: &[Node]) -> Result<(), String> {
    if nodes.is_empty() {
        return Err("no [[node]] entries".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, n) in nodes.iter().enumerate() {
        let valid_id = (n.id.starts_with("i-") || n.id.starts_with("mi-"))
            && n.id.len() <= 64
            && n.id
                .bytes()
                .skip(2)
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid_id {
            return Err(format!(
                "node {} has id {:?}: ids look like i-… or mi-…",
                i + 1,
                n.id
            ));
        }
        if !seen.insert(n.id.as_str()) {
            return Err(format!("node id {} appears twice", n.id));
        }
        if !PING_STATUSES.contains(&n.ping_status.as_str()) {
            return Err(format!(
                "node {} has ping_status {:?}; expected one of {PING_STATUSES:?}",
                n.id, n.ping_status
            ));
        }
        if let Some(account) = &n.account
            && !(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(format!(
                "node {} has account {account:?}: an AWS account id is 12 digits",
                n.id
            ));
        }
        if !PLATFORMS.contains(&n.platform.as_str()) {
            return Err(format!(
                "node {} has platform {:?}; expected one of {PLATFORMS:?}",
                n.id, n.platform
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_include_an_offline_node() {
        let nodes = default_nodes();
        validate(&nodes).unwrap();
        assert!(nodes.iter().any(|n| !n.is_online()));
        assert!(nodes.iter().any(|n| n.resource_type() == "ManagedInstance"));
    }

    #[test]
    fn parses_a_file_with_modes() {
        let nodes = parse_nodes(
            r#"
            [[node]]
            id = "i-1"
            name = "a"
            tags = { env = "prod" }
            kms_key_id = "alias/k"
            "#,
        )
        .unwrap();
        assert_eq!(nodes[0].tags["env"], "prod");
        assert_eq!(nodes[0].kms_key_id.as_deref(), Some("alias/k"));
        assert_eq!(nodes[0].ping_status, "Online");
    }

    #[test]
    fn bad_files_name_the_problem() {
        let err = parse_nodes("[[node]]\nid = \"x-1\"\n").unwrap_err();
        assert!(err.contains("\"x-1\""), "{err}");
        let err = parse_nodes("[[node]]\nid = \"i-1\"\nping_status = \"Up\"\n").unwrap_err();
        assert!(err.contains("ping_status"), "{err}");
        let err = parse_nodes("[[node]]\nid = \"i-1\"\n[[node]]\nid = \"i-1\"\n").unwrap_err();
        assert!(err.contains("twice"), "{err}");
        let err = parse_nodes("[[node]]\nid = \"i-1\"\ncolour = \"red\"\n").unwrap_err();
        assert!(err.contains("colour"), "{err}");
        assert!(parse_nodes("").unwrap_err().contains("no [[node]]"));
        let err = parse_nodes("[[node]]\nid = \"i-1\"\naccount = \"prod\"\n").unwrap_err();
        assert!(err.contains("12 digits"), "{err}");
        let nodes = parse_nodes("[[node]]\nid = \"i-1\"\naccount = \"111122223333\"\n").unwrap();
        assert_eq!(nodes[0].account(), "111122223333");
    }
}
