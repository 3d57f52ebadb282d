//! People who sign in through an identity provider: the group-to-role mapping, and the
//! sign-in of an identity the provider vouched for ([`External`]). The first sign-in creates
//! the person (known by issuer and subject, never merged with a name that is taken); every
//! sign-in recomputes their roles from their groups. The protocols that produce an
//! [`External`] are elsewhere ([`super::oidc`], the proxy modes).

use globset::{Glob, GlobMatcher};
use serde_json::json;
use sqlx::Row;

use super::Identity;
use super::login::SignedIn;
use super::users;
use crate::gateway::config::RoleMapping;
use crate::gateway::facts::{Role, User, valid_user_name};
use crate::gateway::store::audit::{self, Client, Event, kind};
use crate::gateway::store::db::{DbError, now_ms};
use crate::gateway::telemetry::{self, SignInMethod};

/// An identity a provider vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    /// How: `oidc` or `proxy`.
    pub method: &'static str,
    /// The provider (its issuer URL; for a proxy, `proxy:headers` or the load balancer).
    pub issuer: String,
    /// The provider's stable id of the person.
    pub subject: String,
    /// The name the person asks for (already lower-cased).
    pub name: String,
    /// Their email, when the provider gave one.
    pub email: Option<String>,
    /// Their display name, when given.
    pub display_name: Option<String>,
    /// Their groups.
    pub groups: Vec<String>,
}

/// Groups to roles: `[[auth.oidc.role_mapping]]`, compiled.
#[derive(Debug, Clone, Default)]
pub struct GroupRoles {
    rules: Vec<(GlobMatcher, Vec<Role>)>,
}

impl GroupRoles {
    /// Compiles a mapping (checked when the configuration was read).
    pub fn new(mapping: &[RoleMapping]) -> Result<Self, String> {
        let mut rules = Vec::new();
        for rule in mapping {
            let glob = Glob::new(&rule.group)
                .map_err(|e| format!("role mapping {:?}: {e}", rule.group))?
                .compile_matcher();
            let roles = rule
                .roles
                .iter()
                .map(|r| Role::parse(r).ok_or_else(|| format!("{r:?} is not a role name")))
                .collect::<Result<Vec<_>, _>>()?;
            rules.push((glob, roles));
        }
        Ok(Self { rules })
    }

    /// The roles `groups` grant, in the mapping's order, without repeats.
    pub fn roles_for(&self, groups: &[String]) -> Vec<Role> {
        let mut roles: Vec<Role> = Vec::new();
        for (glob, granted) in &self.rules {
            if groups.iter().any(|g| glob.is_match(g)) {
                for role in granted {
                    if !roles.contains(role) {
                        roles.push(role.clone());
                    }
                }
            }
        }
        roles
    }
}

/// Why an identity the provider vouched for was not signed in.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    /// The name is not one Porthole can use.
    #[error(
        "your sign-in name {0:?} cannot be used here (1 to 64 characters of a-z, 0-9, '.', '_', \
         '-', '@' and '+'); ask an administrator to set the provider's username claim"
    )]
    InvalidName(String),
    /// The name belongs to a local user or to another identity.
    #[error(
        "the name {0:?} already belongs to another account here, so your sign-in was not \
         linked to it; ask an administrator to sort it out"
    )]
    NameTaken(String),
    /// The person was disabled here.
    #[error("your account {0:?} is disabled here; ask an administrator")]
    Disabled(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl ExternalError {
    /// The short reason in the `login.failed` audit row.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidName(_) => "name not usable",
            Self::NameTaken(_) => "name belongs to another account",
            Self::Disabled(_) => "user disabled",
            Self::Db(_) => "database",
            Self::Internal(_) => "internal",
        }
    }
}

/// A sign-in through a provider.
#[derive(Debug)]
pub struct ExternalSignIn {
    /// The login (cookie token, CSRF token, the user with their new roles).
    pub signed: SignedIn,
    /// Roles the person held before this sign-in and no longer does.
    pub lost_roles: Vec<Role>,
}

impl Identity {
    /// Signs in a person a provider vouched for, with roles from `mapping`: creates them at
    /// their first sign-in, updates their roles, email and display name at every one. Audited
    /// as `login` (method, issuer, subject, groups, roles) or `login.failed` (why).
    pub async fn sign_in_external(
        &self,
        who: &External,
        mapping: &GroupRoles,
        client: &Client,
    ) -> Result<ExternalSignIn, ExternalError> {
        let result = self.link(who, mapping).await;
        let (user, lost_roles) = match result {
            Ok(linked) => linked,
            Err(e) => {
                self.external_failed(
                    who.method,
                    &who.name,
                    e.reason(),
                    json!({
                        "issuer": who.issuer, "subject": who.subject, "message": e.to_string(),
                    }),
                    client,
                )
                .await?;
                return Err(e);
            }
        };
        let detail = json!({
            "method": who.method,
            "issuer": who.issuer,
            "subject": who.subject,
            "groups": who.groups,
            "roles": user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "roles_lost": lost_roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        });
        let signed = self
            .issue_login(user, who.method, detail, client)
            .await
            .map_err(|e| match e {
                super::login::SignInError::Db(e) => ExternalError::Db(e),
                other => ExternalError::Internal(other.to_string()),
            })?;
        if let Some(method) = SignInMethod::named(who.method) {
            telemetry::sign_in(method, true);
        }
        Ok(ExternalSignIn { signed, lost_roles })
    }

    /// Audits a refused sign-in through a provider: `login.failed` with the method, why, and
    /// what else is known. `actor` is the claimed name when known, else `-`.
    pub async fn external_failed(
        &self,
        method: &str,
        actor: &str,
        why: &str,
        mut detail: serde_json::Value,
        client: &Client,
    ) -> Result<(), DbError> {
        if let Some(method) = SignInMethod::named(method) {
            telemetry::sign_in(method, false);
        }
        if let Some(map) = detail.as_object_mut() {
            map.insert("method".into(), json!(method));
            map.insert("why".into(), json!(why));
        }
        let actor = if actor.is_empty() { "-" } else { actor };
        let mut tx = self.db.begin_write().await?;
        audit::append(
            &mut tx.tx,
            &Event::new(kind::LOGIN_FAILED, actor, client).detail(detail),
        )
        .await?;
        tx.commit().await
    }

    /// Finds or creates the user for `who` and stores their new roles; the roles they lost.
    async fn link(
        &self,
        who: &External,
        mapping: &GroupRoles,
    ) -> Result<(User, Vec<Role>), ExternalError> {
        let roles = mapping.roles_for(&who.groups);
        let roles_text = roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let groups_text = who.groups.join("\n");
        let mut tx = self.db.begin_write().await?;
        let row = sqlx::query(
            "SELECT id, name, roles, disabled FROM users WHERE issuer = $1 AND subject = $2",
        )
        .bind(&who.issuer)
        .bind(&who.subject)
        .fetch_optional(&mut *tx.tx)
        .await
        .map_err(|e| DbError::new("find user by identity", e))?;
        let (id, lost) = match row {
            Some(row) => {
                let read = |e| DbError::new("read user", e);
                let id: i64 = row.try_get("id").map_err(read)?;
                let name: String = row.try_get("name").map_err(read)?;
                if row.try_get::<i64, _>("disabled").map_err(read)? != 0 {
                    return Err(ExternalError::Disabled(name));
                }
                let before: String = row.try_get("roles").map_err(read)?;
                let lost = users::parse_stored_roles(&before)
                    .into_iter()
                    .filter(|r| !roles.contains(r))
                    .collect();
                sqlx::query(
                    "UPDATE users SET roles = $1, email = $2, display_name = $3, groups = $4 \
                     WHERE id = $5",
                )
                .bind(&roles_text)
                .bind(&who.email)
                .bind(&who.display_name)
                .bind(&groups_text)
                .bind(id)
                .execute(&mut *tx.tx)
                .await
                .map_err(|e| DbError::new("update user", e))?;
                (id, lost)
            }
            None => {
                if !valid_user_name(&who.name) {
                    return Err(ExternalError::InvalidName(who.name.clone()));
                }
                let inserted = sqlx::query(
                    "INSERT INTO users (name, password_hash, roles, disabled, created_at, source, \
                     issuer, subject, email, display_name, groups) \
                     VALUES ($1, '', $2, 0, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                )
                .bind(&who.name)
                .bind(&roles_text)
                .bind(now_ms())
                .bind(who.method)
                .bind(&who.issuer)
                .bind(&who.subject)
                .bind(&who.email)
                .bind(&who.display_name)
                .bind(&groups_text)
                .fetch_one(&mut *tx.tx)
                .await
                .map_err(|e| DbError::new("create user", e));
                let row = match inserted {
                    Ok(row) => row,
                    Err(e) if e.is_unique_violation() => {
                        return Err(ExternalError::NameTaken(who.name.clone()));
                    }
                    Err(e) => return Err(e.into()),
                };
                let id: i64 = row
                    .try_get("id")
                    .map_err(|e| DbError::new("read new user", e))?;
                (id, Vec::new())
            }
        };
        tx.commit().await?;
        let user = users::find_by_id(&self.db, id)
            .await?
            .ok_or_else(|| ExternalError::Internal(format!("user {id} vanished")))?;
        Ok((user, lost))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(group: &str, roles: &[&str]) -> RoleMapping {
        RoleMapping {
            group: group.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    #[test]
    fn groups_map_to_roles_by_glob_in_order_without_repeats() {
        let mapping = GroupRoles::new(&[
            rule("sre", &["prod-oncall", "support"]),
            rule("team-*", &["support"]),
            rule("auditors", &["auditor"]),
        ])
        .unwrap();
        let roles = |groups: &[&str]| {
            mapping
                .roles_for(&groups.iter().map(|g| (*g).to_owned()).collect::<Vec<_>>())
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(roles(&["team-db", "sre"]), ["prod-oncall", "support"]);
        assert_eq!(roles(&["team-web"]), ["support"]);
        assert_eq!(roles(&["auditors", "teams"]), ["auditor"]);
        assert!(roles(&[]).is_empty());
        assert!(roles(&["SRE"]).is_empty(), "group names match exactly");
    }
}
