//! `porthole policy check USER TARGET`: the decision for one user and one target, explained
//! rule by rule, from the configured policy (the file, not a running gateway's memory).
//!
//! The user's roles come from the users table (or `--roles`); the target's name, region,
//! account and tags from AWS with the configured settings (DescribeInstanceInformation and
//! ListTagsForResource, in each configured account and region), or, when any of `--name`,
//! `--region`, `--account` or `--tag` is given, from those flags alone, without asking AWS.

use std::collections::BTreeMap;

use crate::gateway::aws::targets;
use crate::gateway::config::Config;
use crate::gateway::facts::{Grants, Target, User};
use crate::gateway::identity::users::{self, LocalRoles, RoleSource};
use crate::gateway::policy::{
    DEFAULT_DOCUMENT, Parameters, Policy, check_document, check_parameters, holds_any,
};
use crate::gateway::store::db::Db;

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckRequest {
    /// The user's name.
    pub user: String,
    /// The target's instance id.
    pub target: String,
    /// The document (default [`DEFAULT_DOCUMENT`]).
    pub document: Option<String>,
    /// A reason to check against the reason rules.
    pub reason: Option<String>,
    /// Document parameters, `name=value` each (a name given twice has two values).
    pub parameters: Vec<String>,
    /// Roles to check instead of the user's (comma-separated): no database needed.
    pub roles: Option<String>,
    /// The target's name (offline).
    pub name: Option<String>,
    /// The target's region (offline).
    pub region: Option<String>,
    /// The name of the target's account (offline).
    pub account: Option<String>,
    /// The target's tags, `key=value` (offline).
    pub tags: Vec<String>,
}

/// The verdict and its explanation.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Whether the start would be allowed.
    pub allowed: bool,
    /// The explanation, for a person.
    pub text: String,
}

/// Explains the decision. `Err`: the check could not be made (bad flags, unknown user or
/// target, unreadable policy).
pub async fn run(config: &Config, request: &CheckRequest) -> Result<CheckReport, String> {
    let policy = Policy::from_config(&config.policy, config.source.as_deref())?;
    let document = request
        .document
        .clone()
        .unwrap_or_else(|| DEFAULT_DOCUMENT.to_owned());
    check_document(&document).map_err(|e| format!("--document: {e}"))?;
    let parameters = parameters_of(&request.parameters)?;
    let (user, roles_from) = user_of(config, request).await?;
    let (target, target_from) = target_of(config, request).await?;
    let explanation = policy.explain(
        &user,
        &target,
        &document,
        &parameters,
        request.reason.as_deref(),
    );
    let mut text = format!("(roles {roles_from}; target {target_from})\n");
    text.push_str(&explanation.render());
    let outcome = explanation.outcome();
    let mut allowed = outcome.is_ok();
    if let Ok(Some(need)) = outcome.map(|d| d.approval) {
        text.push_str(&who_approves(config, request, &user, &need.approvers).await?);
    }
    if user.disabled {
        allowed = false;
        text.push_str(&format!(
            "DENIED: {} is disabled and cannot sign in\n",
            user.name
        ));
    }
    Ok(CheckReport { allowed, text })
}

/// Who can approve, in a line: the enabled users (from the users table) holding one of
/// `approvers`, never `user` themselves.
async fn who_approves(
    config: &Config,
    request: &CheckRequest,
    user: &User,
    approvers: &[String],
) -> Result<String, String> {
    let roles = approvers.join(" or ");
    if request.roles.is_some() {
        return Ok(format!(
            "APPROVERS holders of {roles} (leave out --roles to list them)\n"
        ));
    }
    let db = Db::connect(config.database.url.expose())
        .await
        .map_err(|e| e.to_string())?;
    let listed = users::list(&db).await.map_err(|e| e.to_string());
    db.pool().close().await;
    let names: Vec<String> = listed?
        .into_iter()
        .filter(|u| !u.disabled && u.id != user.id)
        .filter(|u| {
            holds_any(
                &User {
                    roles: LocalRoles.roles_of(u),
                    ..u.clone()
                },
                approvers,
            )
        })
        .map(|u| u.name)
        .collect();
    Ok(if names.is_empty() {
        format!(
            "APPROVERS none: no enabled user but {} holds {roles}, so nobody can approve\n",
            user.name
        )
    } else {
        format!(
            "APPROVERS {} (holders of {roles}; never {} for their own request)\n",
            names.join(", "),
            user.name
        )
    })
}

/// `--parameter name=value` flags as parameters, checked as the gateway checks a start's.
fn parameters_of(flags: &[String]) -> Result<Parameters, String> {
    let mut parameters = Parameters::new();
    for flag in flags {
        let Some((name, value)) = flag.split_once('=') else {
            return Err(format!("--parameter {flag:?}: write NAME=VALUE"));
        };
        parameters
            .entry(name.to_owned())
            .or_default()
            .push(value.to_owned());
    }
    check_parameters(&parameters).map_err(|e| format!("--parameter: {e}"))?;
    Ok(parameters)
}

async fn user_of(config: &Config, request: &CheckRequest) -> Result<(User, &'static str), String> {
    if let Some(list) = &request.roles {
        let roles = users::parse_roles(list).map_err(|e| format!("--roles: {e}"))?;
        let user = User {
            id: 0,
            name: request.user.clone(),
            roles,
            disabled: false,
            grants: Grants::default(),
        };
        return Ok((user, "as given with --roles"));
    }
    let db = Db::connect(config.database.url.expose())
        .await
        .map_err(|e| e.to_string())?;
    db.migrate().await.map_err(|e| e.to_string())?;
    let found = users::find(&db, &request.user)
        .await
        .map_err(|e| e.to_string());
    db.pool().close().await;
    let Some((mut user, _)) = found? else {
        return Err(format!(
            "no user named {:?} (pass --roles to check roles without a user)",
            request.user
        ));
    };
    user.roles = LocalRoles.roles_of(&user);
    Ok((user, "from the users table"))
}

async fn target_of(
    config: &Config,
    request: &CheckRequest,
) -> Result<(Target, &'static str), String> {
    let offline = request.name.is_some()
        || request.region.is_some()
        || request.account.is_some()
        || !request.tags.is_empty();
    if !offline {
        let sts = crate::gateway::aws::sts_client(config).await;
        let own = if config.aws.accounts.is_empty() {
            crate::gateway::aws::aws_clients(config).await
        } else {
            crate::gateway::aws::Regions::new()
        };
        let aws = crate::gateway::aws::accounts::accounts(config, own, &sts).await;
        let regions = config.aws.all_regions().join(", ");
        return match targets::lookup(&aws, &request.target).await? {
            Some(target) => Ok((target, "from AWS")),
            None => Err(format!(
                "no managed node {:?} in {regions}; pass --name, --region, --account or --tag to check \
                 without asking AWS",
                request.target
            )),
        };
    }
    let mut tags = BTreeMap::new();
    for tag in &request.tags {
        let Some((k, v)) = tag.split_once('=') else {
            return Err(format!("--tag {tag:?}: write key=value"));
        };
        tags.insert(k.to_owned(), v.to_owned());
    }
    let name = request
        .name
        .clone()
        .or_else(|| tags.get("Name").cloned())
        .unwrap_or_else(|| request.target.clone());
    let region = request
        .region
        .clone()
        .or_else(|| config.aws.all_regions().into_iter().next())
        .unwrap_or_default();
    Ok((
        Target {
            id: request.target.clone(),
            name,
            platform: String::new(),
            ping_status: String::new(),
            region,
            account: request.account.clone().unwrap_or_default(),
            tags,
        },
        "as given",
    ))
}
