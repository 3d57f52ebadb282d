//! `AmazonSSM.DescribeInstanceInformation` and `ListTagsForResource`: the managed nodes.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{ApiError, Caller, epoch_seconds, max_results, page, required};
use crate::emulator::State;
use crate::emulator::nodes::{Node, PING_STATUSES, PLATFORMS};

const DESCRIBE_RANGE: RangeInclusive<i64> = 5..=50;
const DESCRIBE_DEFAULT: usize = 50;
const RESOURCE_TYPES: [&str; 2] = ["ManagedInstance", "EC2Instance"];
const FILTER_KEYS: &str = "InstanceIds, PingStatus, PlatformTypes, ResourceType, AgentVersion";

/// DescribeInstanceInformation's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DescribeRequest {
    instance_information_filter_list: Option<Vec<LegacyFilter>>,
    filters: Option<Vec<StringFilter>>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

/// The older `{key, valueSet}` filter (no tags).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LegacyFilter {
    key: String,
    value_set: Vec<String>,
}

/// The `{Key, Values}` filter (tags too).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StringFilter {
    key: String,
    values: Vec<String>,
}

/// DescribeInstanceInformation's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DescribeResponse {
    instance_information_list: Vec<InstanceInformation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceInformation {
    instance_id: String,
    ping_status: String,
    last_ping_date_time: f64,
    agent_version: String,
    is_latest_version: bool,
    platform_type: String,
    platform_name: &'static str,
    platform_version: &'static str,
    resource_type: &'static str,
    computer_name: String,
    #[serde(rename = "IPAddress")]
    ip_address: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
}

impl InstanceInformation {
    fn of(node: &Node, now: SystemTime) -> Self {
        let (platform_name, platform_version) = match node.platform.as_str() {
            "Windows" => ("Microsoft Windows Server 2022 Datacenter", "10.0.20348"),
            "MacOS" => ("macOS", "14.5"),
            _ => ("Amazon Linux", "2023"),
        };
        // Offline nodes were last heard from a while ago.
        let silent = match node.ping_status.as_str() {
            "Online" => Duration::ZERO,
            "ConnectionLost" => Duration::from_secs(3600),
            _ => Duration::from_secs(30 * 86_400),
        };
        Self {
            instance_id: node.id.clone(),
            ping_status: node.ping_status.clone(),
            last_ping_date_time: epoch_seconds(now.checked_sub(silent).unwrap_or(now)),
            agent_version: node.agent_version.clone(),
            is_latest_version: node.agent_version == crate::ssm::channel::DEFAULT_AGENT_VERSION,
            platform_type: node.platform.clone(),
            platform_name,
            platform_version,
            resource_type: node.resource_type(),
            computer_name: if node.name.is_empty() {
                node.id.clone()
            } else {
                node.name.clone()
            },
            ip_address: "127.0.0.1",
            name: node.name.clone(),
        }
    }
}

/// `AmazonSSM.DescribeInstanceInformation`: the nodes of the caller's account, by id, filtered
/// and paged.
pub(super) fn describe(
    state: &Arc<State>,
    caller: &Caller,
    request: DescribeRequest,
) -> Result<DescribeResponse, ApiError> {
    let max = max_results(request.max_results, DESCRIBE_RANGE, DESCRIBE_DEFAULT)?;
    let legacy = request.instance_information_filter_list.unwrap_or_default();
    let string = request.filters.unwrap_or_default();
    if !legacy.is_empty() && !string.is_empty() {
        return Err(ApiError::validation(
            "InstanceInformationFilterList and Filters cannot be used together; use Filters",
        ));
    }
    let filters = legacy
        .into_iter()
        .map(|f| Filter::parse(f.key, f.value_set, false))
        .chain(
            string
                .into_iter()
                .map(|f| Filter::parse(f.key, f.values, true)),
        )
        .collect::<Result<Vec<_>, _>>()?;
    let nodes: Vec<&Node> = state
        .config
        .nodes
        .iter()
        .filter(|n| n.account() == caller.account && filters.iter().all(|f| f.matches(n)))
        .collect();
    let (nodes, next_token) = page(
        nodes,
        |n| n.id.clone(),
        "instances",
        max,
        request.next_token.as_deref(),
    )?;
    let now = SystemTime::now();
    Ok(DescribeResponse {
        instance_information_list: nodes
            .into_iter()
            .map(|n| InstanceInformation::of(n, now))
            .collect(),
        next_token,
    })
}

/// What a filter looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FilterKey {
    InstanceIds,
    PingStatus,
    PlatformTypes,
    ResourceType,
    AgentVersion,
    /// `tag:<key>`: the tag's value is one of the values.
    Tag(String),
    /// `tag-key`: the node has one of the tag keys.
    TagKey,
}

/// One filter: a node matches when what the key names is one of the values.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filter {
    key: FilterKey,
    values: Vec<String>,
}

impl Filter {
    /// Checks a filter; `tags` allows the `tag:` and `tag-key` keys (only `Filters` has them).
    fn parse(key: String, values: Vec<String>, tags: bool) -> Result<Self, ApiError> {
        let parsed = match key.as_str() {
            "InstanceIds" => FilterKey::InstanceIds,
            "PingStatus" => FilterKey::PingStatus,
            "PlatformTypes" => FilterKey::PlatformTypes,
            "ResourceType" => FilterKey::ResourceType,
            "AgentVersion" => FilterKey::AgentVersion,
            "tag-key" if tags => FilterKey::TagKey,
            other => match other.strip_prefix("tag:") {
                Some(tag) if tags && !tag.is_empty() => FilterKey::Tag(tag.to_owned()),
                _ => {
                    let tag_keys = if tags { ", tag:<key>, tag-key" } else { "" };
                    return Err(ApiError::new(
                        "InvalidFilterKey",
                        format!(
                            "The filter key {other:?} is not valid. \
                             Valid keys: {FILTER_KEYS}{tag_keys}."
                        ),
                    ));
                }
            },
        };
        if values.is_empty() || values.len() > 100 {
            return Err(ApiError::validation(format!(
                "the {key} filter needs 1 to 100 values, not {}",
                values.len()
            )));
        }
        let allowed: &[&str] = match parsed {
            FilterKey::PingStatus => &PING_STATUSES,
            FilterKey::PlatformTypes => &PLATFORMS,
            FilterKey::ResourceType => &RESOURCE_TYPES,
            _ => &[],
        };
        if let Some(bad) = values
            .iter()
            .find(|v| !allowed.is_empty() && !allowed.contains(&v.as_str()))
        {
            return Err(ApiError::new(
                "InvalidInstanceInformationFilterValue",
                format!(
                    "{bad:?} is not a valid value for the {key} filter; use one of {allowed:?}"
                ),
            ));
        }
        Ok(Self {
            key: parsed,
            values,
        })
    }

    fn matches(&self, node: &Node) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match &self.key {
            FilterKey::InstanceIds => has(&node.id),
            FilterKey::PingStatus => has(&node.ping_status),
            FilterKey::PlatformTypes => has(&node.platform),
            FilterKey::ResourceType => has(node.resource_type()),
            FilterKey::AgentVersion => has(&node.agent_version),
            FilterKey::Tag(tag) => node.tags.get(tag).is_some_and(|v| has(v)),
            FilterKey::TagKey => node.tags.keys().any(|k| has(k)),
        }
    }
}

/// ListTagsForResource's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListTagsRequest {
    resource_type: Option<String>,
    resource_id: Option<String>,
}

/// ListTagsForResource's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListTagsResponse {
    tag_list: Vec<Tag>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    value: String,
}

/// `AmazonSSM.ListTagsForResource` with `ResourceType: ManagedInstance`: a node's tags, by key.
///
/// The emulator answers for every node, `i-…` ones too. The real service only has tags here
/// for hybrid (`mi-…`) managed instances; an EC2 instance's tags come from
/// `ec2:DescribeInstances`, which the emulator does not serve.
pub(super) fn list_tags(
    state: &Arc<State>,
    caller: &Caller,
    request: ListTagsRequest,
) -> Result<ListTagsResponse, ApiError> {
    let resource_type = required(request.resource_type, "resourceType")?;
    let id = required(request.resource_id, "resourceId")?;
    if resource_type != "ManagedInstance" {
        return Err(ApiError::new(
            "InvalidResourceType",
            format!(
                "the resource type {resource_type:?} is not valid here: the emulator only has \
                 ManagedInstance resources (its nodes)"
            ),
        ));
    }
    let node = state.node_of(&id, &caller.account).ok_or_else(|| {
        ApiError::new(
            "InvalidResourceId",
            format!("The resource ID {id:?} is not valid. Verify the ID and try again."),
        )
    })?;
    let tag_list = node
        .tags
        .iter()
        .map(|(key, value)| Tag {
            key: key.clone(),
            value: value.clone(),
        })
        .collect();
    Ok(ListTagsResponse { tag_list })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::nodes::default_nodes;

    fn filter(key: &str, values: &[&str]) -> Result<Filter, ApiError> {
        Filter::parse(
            key.into(),
            values.iter().map(|v| v.to_string()).collect(),
            true,
        )
    }

    fn ids(key: &str, values: &[&str]) -> Vec<String> {
        let f = filter(key, values).unwrap();
        default_nodes()
            .into_iter()
            .filter(|n| f.matches(n))
            .map(|n| n.id)
            .collect()
    }

    #[test]
    fn filters_select_the_named_nodes() {
        assert_eq!(
            ids("InstanceIds", &["i-0a1b2c3d4e5f60002", "i-nope"]),
            ["i-0a1b2c3d4e5f60002"]
        );
        assert_eq!(
            ids("PingStatus", &["ConnectionLost"]),
            ["i-0a1b2c3d4e5f60004"]
        );
        assert_eq!(ids("PingStatus", &["Online"]).len(), 3);
        assert_eq!(ids("PlatformTypes", &["Linux"]).len(), 4);
        assert!(ids("PlatformTypes", &["Windows"]).is_empty());
        assert_eq!(
            ids("ResourceType", &["ManagedInstance"]),
            ["mi-0a1b2c3d4e5f60003"]
        );
        assert_eq!(
            ids(
                "AgentVersion",
                &[crate::ssm::channel::DEFAULT_AGENT_VERSION]
            )
            .len(),
            4
        );
        assert_eq!(
            ids("tag:team", &["web", "lab"]),
            ["i-0a1b2c3d4e5f60001", "mi-0a1b2c3d4e5f60003"]
        );
        assert!(
            ids("tag:team", &["Web"]).is_empty(),
            "tag values are case-sensitive"
        );
        assert_eq!(ids("tag-key", &["env", "nope"]).len(), 4);
        assert!(ids("tag-key", &["nope"]).is_empty());
    }

    #[test]
    fn bad_filters_name_the_problem() {
        let err = filter("Colour", &["red"]).unwrap_err();
        assert_eq!(err.code(), "InvalidFilterKey");
        assert!(err.message().contains("Colour"), "{}", err.message());
        let err = Filter::parse("tag:env".into(), vec!["prod".into()], false).unwrap_err();
        assert_eq!(
            err.code(),
            "InvalidFilterKey",
            "the legacy list has no tag filters"
        );
        assert_eq!(
            filter("tag:", &["x"]).unwrap_err().code(),
            "InvalidFilterKey"
        );
        let err = filter("PingStatus", &["Up"]).unwrap_err();
        assert_eq!(err.code(), "InvalidInstanceInformationFilterValue");
        assert!(err.message().contains("\"Up\""), "{}", err.message());
        assert_eq!(
            filter("PlatformTypes", &["Linux", "BeOS"])
                .unwrap_err()
                .code(),
            "InvalidInstanceInformationFilterValue"
        );
        let err = filter("InstanceIds", &[]).unwrap_err();
        assert_eq!(err.code(), "ValidationException");
        assert!(err.message().contains("InstanceIds"), "{}", err.message());
    }
}
