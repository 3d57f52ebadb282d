//! Targets: the managed nodes of every configured region, from `DescribeInstanceInformation`
//! (all pages) and `ListTagsForResource`, cached briefly so a page of people refreshing does
//! not turn into a storm of API calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_ssm::types::{InstanceInformationStringFilter, ResourceTypeForTagging};
use tokio::sync::Mutex;

use super::{AwsError, Failure, Regions, aws_message};
pub use crate::gateway::facts::Target;

/// How long a fetched list is served before it is fetched again.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// The cache of the last list.
#[derive(Debug, Default)]
pub struct Cache {
    last: Mutex<Option<(Instant, Arc<Vec<Target>>)>>,
}

impl Cache {
    /// Every node of every region, from the cache when it is fresh. One fetch at a time:
    /// callers that arrive during a fetch wait for it and share its result.
    pub async fn all(&self, aws: &Regions) -> Result<Arc<Vec<Target>>, AwsError> {
        let mut last = self.last.lock().await;
        if let Some((at, list)) = last.as_ref()
            && at.elapsed() < CACHE_TTL
        {
            return Ok(list.clone());
        }
        let mut out = Vec::new();
        for (region, clients) in aws {
            out.extend(fetch_region(region, &clients.ssm, None).await?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        let list = Arc::new(out);
        *last = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// One node by id.
    pub async fn find(&self, aws: &Regions, id: &str) -> Result<Option<Target>, AwsError> {
        Ok(self.all(aws).await?.iter().find(|t| t.id == id).cloned())
    }
}

/// One node by id, asked of AWS directly (no cache): each region in turn, with an
/// `InstanceIds` filter (`porthole policy check`).
pub async fn lookup(aws: &Regions, id: &str) -> Result<Option<Target>, String> {
    for (region, clients) in aws {
        let found = fetch_region(region, &clients.ssm, Some(id))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(target) = found.into_iter().find(|t| t.id == id) {
            return Ok(Some(target));
        }
    }
    Ok(None)
}

async fn fetch_region(
    region: &str,
    ssm: &aws_sdk_ssm::Client,
    only: Option<&str>,
) -> Result<Vec<Target>, AwsError> {
    let mut request = ssm.describe_instance_information().max_results(50);
    if let Some(id) = only {
        let filter = InstanceInformationStringFilter::builder()
            .key("InstanceIds")
            .values(id)
            .build()
            .map_err(|e| AwsError::Internal(format!("InstanceIds filter: {e}")))?;
        request = request.filters(filter);
    }
    let mut pages = request.into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            AwsError::Upstream(Failure::of(
                &format!("DescribeInstanceInformation in {region}"),
                &e,
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
