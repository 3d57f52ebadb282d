//! Users: argon2id password hashes, role names, disabling. The only module that touches the
//! `users` table. What a role allows is the policy's to say; where a user's roles come from is
//! a [`RoleSource`] (local assignment today).

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sqlx::Row;

use crate::gateway::facts::Grants;
pub use crate::gateway::facts::{Role, User};
use crate::gateway::store::audit::{self, Client, Event, kind};
use crate::gateway::store::db::{Db, DbError, now_ms};

/// Who changes a user, for the audit row every change writes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedBy {
    /// The actor: `cli:root` for the command line (the operating-system user who ran it).
    pub actor: String,
    /// Where from (the command line: `local` and the command).
    pub client: Client,
}

impl ChangedBy {
    /// A change made by `porthole COMMAND` run by the current operating-system user.
    pub fn command_line(command: &str) -> Self {
        let who = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|u| !u.is_empty() && u.len() <= 64)
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            actor: format!("cli:{who}"),
            client: Client {
                addr: "local".into(),
                user_agent: format!("porthole {command} (pid {})", std::process::id()),
            },
        }
    }
}

/// Where a user's roles come from. The gateway asks it for every signed-in request, so a
/// source may map an outside identity to policy roles (an SSO group claim, later). Today's one
/// source is [`LocalRoles`]: the comma-separated `users.roles` column, set with
/// `porthole users add --role`.
pub trait RoleSource: Send + Sync + std::fmt::Debug {
    /// The roles of `user`, a row just read from the users table.
    fn roles_of(&self, user: &User) -> Vec<Role>;
}

/// Roles by local assignment: what the users table says.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalRoles;

impl RoleSource for LocalRoles {
    fn roles_of(&self, user: &User) -> Vec<Role> {
        user.roles.clone()
    }
}

/// Why a user operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name is not acceptable.
    #[error("user names are 1 to 64 characters of a-z, 0-9, '.', '_', '-', '@' and '+'; got {0:?}")]
    InvalidName(String),
    /// The password is too short or too long.
    #[error("passwords are {MIN_PASSWORD} to {MAX_PASSWORD} characters")]
    InvalidPassword,
    /// No role, or a name that cannot be a role.
    #[error("role names are 1 to 64 characters of a-z, 0-9, '.', '_' and '-'; got {0:?}")]
    InvalidRole(String),
    /// A role the policy does not define.
    #[error("unknown role {role:?}; the policy defines {defined}")]
    UnknownRole {
        /// The name given.
        role: String,
        /// The roles the policy defines, comma-separated.
        defined: String,
    },
    /// The name is taken.
    #[error("a user named {0:?} already exists")]
    Exists(String),
    /// No such user.
    #[error("no user named {0:?}")]
    NotFound(String),
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Shortest accepted password.
pub const MIN_PASSWORD: usize = 8;
/// Longest accepted password (argon2 hashes anything, but unbounded input is a DoS lever).
pub const MAX_PASSWORD: usize = 1024;

pub use crate::gateway::facts::{valid_name, valid_user_name};

/// Parses a comma-separated role list, in the order given, without repeats (names only; see
/// [`check_defined`]).
pub fn parse_roles(text: &str) -> Result<Vec<Role>, UserError> {
    let mut roles = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let role = Role::parse(part).ok_or_else(|| UserError::InvalidRole(part.to_owned()))?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        return Err(UserError::InvalidRole(text.to_owned()));
    }
    Ok(roles)
}

/// Checks that the policy defines every role in `roles` (`defined`: its role names), so that a
/// typo is caught when a role is assigned rather than when the user is refused.
pub fn check_defined(roles: &[Role], defined: &[String]) -> Result<(), UserError> {
    match roles
        .iter()
        .find(|r| !defined.iter().any(|d| d == r.as_str()))
    {
        None => Ok(()),
        Some(unknown) => Err(UserError::UnknownRole {
            role: unknown.as_str().to_owned(),
            defined: if defined.is_empty() {
                "no roles".to_owned()
            } else {
                defined.join(", ")
            },
        }),
    }
}

/// The roles stored in a row: the valid names among them (a name the policy does not define
/// is kept; it allows nothing).
fn stored_roles(text: &str) -> Vec<Role> {
    let mut roles: Vec<Role> = Vec::new();
    for role in text.split(',').map(str::trim).filter_map(Role::parse) {
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    roles
}

/// The roles stored in a row's `roles` column.
pub fn parse_stored_roles(text: &str) -> Vec<Role> {
    stored_roles(text)
}

fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Hashes a password with argon2id and a fresh salt.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Checks a password against a stored hash. A malformed hash never verifies.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

pub(crate) fn user_from_row(row: &sqlx::any::AnyRow) -> Result<User, sqlx::Error> {
    let roles: String = row.try_get("roles")?;
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        roles: stored_roles(&roles),
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        grants: Grants::default(),
    })
}

/// Creates a user.
pub async fn create(
    db: &Db,
    name: &str,
    password: &str,
    roles: &[Role],
    by: &ChangedBy,
) -> Result<User, UserError> {
    if !valid_user_name(name) {
        return Err(UserError::InvalidName(name.to_owned()));
    }
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&password.chars().count()) {
        return Err(UserError::InvalidPassword);
    }
    if roles.is_empty() {
        return Err(UserError::InvalidRole(String::new()));
    }
    let hash = hash_password(password)?;
    // One write transaction: the row and its audit event land together or not at all.
    let mut tx = db.begin_write().await?;
    let result = sqlx::query(
        "INSERT INTO users (name, password_hash, roles, disabled, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(name)
    .bind(&hash)
    .bind(roles_text(roles))
    .bind(0i64)
    .bind(now_ms())
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("create user", e));
    match result {
        Ok(_) => {}
        Err(e) if e.is_unique_violation() => return Err(UserError::Exists(name.to_owned())),
        Err(e) => return Err(e.into()),
    }
    audit::append(
        &mut tx.tx,
        &Event::new(kind::USER_ADD, &by.actor, &by.client)
            .detail(serde_json::json!({"user": name, "roles": roles_text(roles)})),
    )
    .await?;
    tx.commit().await?;
    find(db, name)
        .await?
        .map(|(u, _)| u)
        .ok_or_else(|| UserError::NotFound(name.to_owned()))
}

/// Looks a user up by id.
pub async fn find_by_id(db: &Db, id: i64) -> Result<Option<User>, DbError> {
    let row = sqlx::query("SELECT id, name, roles, disabled FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .map_err(|e| DbError::new("find user", e))?;
    row.map(|r| user_from_row(&r))
        .transpose()
        .map_err(|e| DbError::new("read user", e))
}

/// Looks a user up by name, with the password hash.
pub async fn find(db: &Db, name: &str) -> Result<Option<(User, String)>, DbError> {
    let row =
        sqlx::query("SELECT id, name, password_hash, roles, disabled FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(db.pool())
            .await
            .map_err(|e| DbError::new("find user", e))?;
    row.map(|r| {
        let user = user_from_row(&r)?;
        let hash: String = r.try_get("password_hash")?;
        Ok((user, hash))
    })
    .transpose()
    .map_err(|e| DbError::new("read user", e))
}

/// Looks a user up by id.
pub async fn get(db: &Db, id: i64) -> Result<Option<User>, DbError> {
    let row = sqlx::query("SELECT id, name, roles, disabled FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .map_err(|e| DbError::new("get user", e))?;
    row.map(|r| user_from_row(&r))
        .transpose()
        .map_err(|e| DbError::new("read user", e))
}

/// Every user, by name.
pub async fn list(db: &Db) -> Result<Vec<User>, DbError> {
    let rows = sqlx::query("SELECT id, name, roles, disabled FROM users ORDER BY name")
        .fetch_all(db.pool())
        .await
        .map_err(|e| DbError::new("list users", e))?;
    rows.iter()
        .map(user_from_row)
        .collect::<Result<_, _>>()
        .map_err(|e| DbError::new("read user", e))
}

/// Disables (or re-enables) a user.
pub async fn set_disabled(
    db: &Db,
    name: &str,
    disabled: bool,
    by: &ChangedBy,
) -> Result<User, UserError> {
    let mut tx = db.begin_write().await?;
    let done = sqlx::query("UPDATE users SET disabled = $1 WHERE name = $2")
        .bind(i64::from(disabled))
        .bind(name)
        .execute(&mut *tx.tx)
        .await
        .map_err(|e| DbError::new("disable user", e))?;
    if done.rows_affected() == 0 {
        return Err(UserError::NotFound(name.to_owned()));
    }
    let what = if disabled {
        kind::USER_DISABLE
    } else {
        kind::USER_ENABLE
    };
    audit::append(
        &mut tx.tx,
        &Event::new(what, &by.actor, &by.client).detail(serde_json::json!({"user": name})),
    )
    .await?;
    tx.commit().await?;
    find(db, name)
        .await?
        .map(|(u, _)| u)
        .ok_or_else(|| UserError::NotFound(name.to_owned()))
}

/// Sets a new password (the demo resets its users' passwords at every start); audited.
pub async fn set_password(
    db: &Db,
    name: &str,
    password: &str,
    by: &ChangedBy,
) -> Result<User, UserError> {
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&password.chars().count()) {
        return Err(UserError::InvalidPassword);
    }
    let hash = hash_password(password)?;
    let mut tx = db.begin_write().await?;
    let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
        .bind(&hash)
        .bind(name)
        .execute(&mut *tx.tx)
        .await
        .map_err(|e| DbError::new("set password", e))?;
    if done.rows_affected() == 0 {
        return Err(UserError::NotFound(name.to_owned()));
    }
    audit::append(
        &mut tx.tx,
        &Event::new(kind::USER_PASSWORD, &by.actor, &by.client)
            .detail(serde_json::json!({"user": name})),
    )
    .await?;
    tx.commit().await?;
    find(db, name)
        .await?
        .map(|(u, _)| u)
        .ok_or_else(|| UserError::NotFound(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_roles() {
        assert!(valid_name("alice.ops-1"));
        assert!(!valid_name("Alice"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(""));
        assert!(!valid_name("x'; DROP TABLE users; --"));
        assert_eq!(
            parse_roles("operator, admin").unwrap(),
            vec![Role::Operator, Role::Admin]
        );
        assert_eq!(
            parse_roles("web-oncall,dba, web-oncall").unwrap(),
            vec![
                Role::parse("web-oncall").unwrap(),
                Role::parse("dba").unwrap()
            ]
        );
        assert!(matches!(parse_roles("Root"), Err(UserError::InvalidRole(r)) if r == "Root"));
        assert!(matches!(parse_roles("a b"), Err(UserError::InvalidRole(_))));
        assert!(parse_roles(" , ").is_err());
        let defined = [
            "admin".to_owned(),
            "operator".to_owned(),
            "auditor".to_owned(),
        ];
        assert!(check_defined(&parse_roles("operator,admin").unwrap(), &defined).is_ok());
        let err = check_defined(&parse_roles("operator,root").unwrap(), &defined).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown role \"root\"; the policy defines admin, operator, auditor"
        );
        assert_eq!(
            stored_roles("operator,Bad Name,,admin,operator"),
            [Role::Operator, Role::Admin]
        );
    }

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "wrong horse"));
        assert!(!verify_password("not a hash", "correct horse"));
    }
}
