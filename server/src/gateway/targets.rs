//! Targets: the managed nodes of every configured region, from `DescribeInstanceInformation`
//! (all pages) and `ListTagsForResource`, cached briefly so a page of people refreshing does
//! not turn into a storm of API calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_ssm::types::{InstanceInformationStringFilter, ResourceTypeForTagging};
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Mutex;

use super::auth::SignedIn;
use super::error::ApiError;
use super::state::{AppState, aws_message};
use crate::ssm::client::AwsClients;

/// How long a fetched list is served before it is fetched again.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// A managed node as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
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
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// The cache of the last list.
#[derive(Debug, Default)]
pub struct Cache {
    last: Mutex<Option<(Instant, Arc<Vec<Target>>)>>,
}

/// Every node of every region, from the cache when it is fresh. One fetch at a time: callers
/// that arrive during a fetch wait for it and share its result.
pub async fn all(state: &AppState) -> Result<Arc<Vec<Target>>, ApiError> {
    let mut last = state.targets.last.lock().await;
    if let Some((at, list)) = last.as_ref()
        && at.elapsed() < CACHE_TTL
    {
        return Ok(list.clone());
    }
    let mut out = Vec::new();
    for (region, clients) in &state.aws {
        out.extend(fetch_region(region, &clients.ssm, None).await?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    let list = Arc::new(out);
    *last = Some((Instant::now(), list.clone()));
    Ok(list)
}

/// One node by id.
pub async fn find(state: &AppState, id: &str) -> Result<Option<Target>, ApiError> {
    Ok(all(state).await?.iter().find(|t| t.id == id).cloned())
}

/// One node by id, asked of AWS directly (no cache): each region in turn, with an
/// `InstanceIds` filter (`porthole policy check`).
pub async fn lookup(
    aws: &BTreeMap<String, AwsClients>,
    id: &str,
) -> Result<Option<Target>, String> {
    for (region, clients) in aws {
        let found = fetch_region(region, &clients.ssm, Some(id))
            .await
            .map_err(|e| e.message)?;
        if let Some(target) = found.into_iter().find(|t| t.id == id) {
            return Ok(Some(target));
        }
    }
    Ok(None)
}

/// A target that is not among the managed nodes, as the policy sees it: only its id.
pub fn unknown(id: &str) -> Target {
    Target {
        id: id.to_owned(),
        name: id.to_owned(),
        platform: String::new(),
        ping_status: String::new(),
        region: String::new(),
        tags: BTreeMap::new(),
    }
}

async fn fetch_region(
    region: &str,
    ssm: &aws_sdk_ssm::Client,
    only: Option<&str>,
) -> Result<Vec<Target>, ApiError> {
    let mut request = ssm.describe_instance_information().max_results(50);
    if let Some(id) = only {
        let filter = InstanceInformationStringFilter::builder()
            .key("InstanceIds")
            .values(id)
            .build()
            .map_err(|e| ApiError::internal(format!("InstanceIds filter: {e}")))?;
        request = request.filters(filter);
    }
    let mut pages = request.into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            ApiError::upstream(format!(
                "DescribeInstanceInformation in {region}: {}",
                aws_message(&e)
            ))
        })?;
        for info in page.instance_information_list() {
            let Some(id) = info.instance_id() else {
                continue;
            };
            // Tags are best-effort: a node whose tags cannot be read is still listed.
            let tags: BTreeMap<String, String> = match ssm
                .list_tags_for_resource()
                .resource_type(ResourceTypeForTagging::ManagedInstance)
                .resource_id(id)
                .send()
                .await
            {
                Ok(reply) => reply
                    .tag_list()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned()))
                    .collect(),
                Err(e) => {
                    tracing::debug!(node = id, "tags unavailable: {}", aws_message(&e));
                    BTreeMap::new()
                }
            };
            let name = tags
                .get("Name")
                .cloned()
                .or_else(|| info.name().map(str::to_owned))
                .or_else(|| info.computer_name().map(str::to_owned))
                .unwrap_or_else(|| id.to_owned());
            out.push(Target {
                id: id.to_owned(),
                name,
                platform: info
                    .platform_type()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
                ping_status: info
                    .ping_status()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
                region: region.to_owned(),
                tags,
            });
        }
    }
    Ok(out)
}

/// `GET /api/v1/targets`: what this user may reach.
pub async fn list(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
) -> Result<Json<serde_json::Value>, ApiError> {
    let policy = state.policy.current();
    let targets: Vec<Target> = all(&state)
        .await?
        .iter()
        .filter(|t| policy.reaches(&signed.user, t))
        .cloned()
        .collect();
    Ok(Json(json!({ "targets": targets })))
}
