//! Targets: the managed nodes of every configured account and region, from
//! `DescribeInstanceInformation` (all pages) and `ListTagsForResource`, asked of at most
//! [`CONCURRENCY`] (account, region) pairs at once. One that fails does not hide the others:
//! the list says which are unavailable and why. Cached briefly so a page of people refreshing
//! does not turn into a storm of API calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_ssm::types::{InstanceInformationStringFilter, ResourceTypeForTagging};
use futures_util::StreamExt as _;
use serde::Serialize;
use tokio::sync::Mutex;

use super::accounts::{Account, Accounts};
use super::{AwsClients, AwsError, Failure, aws_message};
pub use crate::gateway::facts::Target;

/// How long a fetched list is served before it is fetched again.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// How many (account, region) pairs are asked at once.
pub const CONCURRENCY: usize = 4;

/// An (account, region) whose nodes could not be listed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Unavailable {
    /// The account's name (empty: the gateway's own account).
    pub account: String,
    /// The region.
    pub region: String,
    /// Why, in words safe to show anyone (the operation and AWS's error code).
    pub error: String,
}

/// The nodes of every account and region that answered, and those that did not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The nodes, by name then id.
    pub targets: Vec<Target>,
    /// The (account, region) pairs that failed, in the configured order.
    pub unavailable: Vec<Unavailable>,
}

/// The cache of the last list.
#[derive(Debug, Default)]
pub struct Cache {
    last: Mutex<Option<(Instant, Arc<Listing>)>>,
}

impl Cache {
    /// Every node of every account and region, from the cache when it is fresh. One fetch at a
    /// time: callers that arrive during a fetch wait for it and share its result. An error only
    /// when no (account, region) answered: the first failure.
    pub async fn all(&self, aws: &Accounts) -> Result<Arc<Listing>, AwsError> {
        let mut last = self.last.lock().await;
        if let Some((at, list)) = last.as_ref()
            && at.elapsed() < CACHE_TTL
        {
            return Ok(list.clone());
        }
        let listing = fetch_all(aws).await?;
        let list = Arc::new(listing);
        *last = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// One node by id.
    pub async fn find(&self, aws: &Accounts, id: &str) -> Result<Option<Target>, AwsError> {
        Ok(self
            .all(aws)
            .await?
            .targets
            .iter()
            .find(|t| t.id == id)
            .cloned())
    }
}

/// Asks every (account, region), [`CONCURRENCY`] at once.
async fn fetch_all(aws: &Accounts) -> Result<Listing, AwsError> {
    let pairs: Vec<(&Account, &str, &AwsClients)> = aws.each().collect();
    let total = pairs.len();
    // The futures are made first so that the stream's item type names no closure (whose
    // borrowed arguments the compiler cannot prove `Send` for every lifetime).
    let asks: Vec<_> = pairs
        .iter()
        .enumerate()
        .map(|(i, (account, region, clients))| ask(i, account, region, clients))
        .collect();
    let mut answers: Vec<(usize, Result<Vec<Target>, AwsError>)> = futures_util::stream::iter(asks)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    answers.sort_by_key(|(i, _)| *i);
    let mut listing = Listing::default();
    let mut first_error = None;
    for (i, answer) in answers {
        match answer {
            Ok(targets) => listing.targets.extend(targets),
            Err(e) => {
                let (account, region) = pairs
                    .get(i)
                    .map(|(a, r, _)| (a.name.as_str(), *r))
                    .unwrap_or_default();
                if let AwsError::Upstream(failure) = &e {
                    tracing::warn!(account, region, "nodes unavailable: {}", failure.detail);
                }
                listing.unavailable.push(Unavailable {
                    account: account.to_owned(),
                    region: region.to_owned(),
                    error: e.to_string(),
                });
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error
        && listing.unavailable.len() == total
    {
        return Err(e);
    }
    listing
        .targets
        .sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    Ok(listing)
}

/// The nodes of one (account, region), numbered `i`.
async fn ask(
    i: usize,
    account: &Account,
    region: &str,
    clients: &AwsClients,
) -> (usize, Result<Vec<Target>, AwsError>) {
    let fetched = match account.ready().await {
        Ok(()) => fetch_region(&account.name, region, &clients.ssm, None).await,
        Err(failure) => Err(AwsError::Upstream(failure)),
    };
    (i, fetched)
}

/// One node by id, asked of AWS directly (no cache): each account and region in turn, with an
/// `InstanceIds` filter (`porthole policy check`).
pub async fn lookup(aws: &Accounts, id: &str) -> Result<Option<Target>, String> {
    for (account, region, clients) in aws.each() {
        account
            .ready()
            .await
            .map_err(|e| format!("account {}: {}", account.name, e.summary))?;
        let found = fetch_region(&account.name, region, &clients.ssm, Some(id))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(target) = found.into_iter().find(|t| t.id == id) {
            return Ok(Some(target));
        }
    }
    Ok(None)
}

async fn fetch_region(
    account: &str,
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
                &if account.is_empty() {
                    format!("DescribeInstanceInformation in {region}")
                } else {
                    format!("DescribeInstanceInformation in {account} {region}")
                },
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
                account: account.to_owned(),
                tags,
            });
        }
    }
    Ok(out)
}
