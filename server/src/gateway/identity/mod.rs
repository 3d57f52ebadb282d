//! Who a person is: users and their password hashes ([`users`]), where their roles come from
//! ([`users::RoleSource`]), sign-in and the tokens that carry it ([`login`], [`tokens`]).
//! Knows nothing of HTTP; reads and writes through `store`, asks `policy` what roles grant.

pub mod login;
pub mod oidc;
pub mod proxy;
pub mod settings;
pub mod sso;
pub mod tokens;
pub mod users;

use std::sync::Arc;

use self::tokens::JwtKeys;
use self::users::{LocalRoles, RoleSource};
use crate::gateway::config::{AuthConfig, Config};
use crate::gateway::facts::User;
use crate::gateway::policy::PolicyHandle;
use crate::gateway::store::db::{Db, DbError};

/// What signing people in needs.
#[derive(Debug)]
pub struct Identity {
    /// The database (users, logins, the audit log).
    pub db: Db,
    /// The `[auth]` section.
    pub auth: AuthConfig,
    /// The gateway's origin: the audience of its tokens.
    pub origin: String,
    /// Sign-in token keys.
    pub jwt: JwtKeys,
    /// A real argon2 hash, checked against when the user name is unknown (equal timing).
    pub dummy_hash: String,
    /// Where users' roles come from.
    pub role_source: Box<dyn RoleSource>,
    /// The policy in force (what roles grant).
    pub policy: Arc<PolicyHandle>,
    /// Permits for password checks running at once (`auth.max_concurrent_hashes`).
    pub hashing: tokio::sync::Semaphore,
    /// Sign-ins being checked right now, by user name and by client address: counted with
    /// the recorded failures, so that parallel attempts cannot all pass the limit.
    pub attempts: login::InFlight,
    /// The OpenID Connect client, with `[auth.oidc]`.
    pub oidc: Option<Box<oidc::Oidc>>,
    /// The proxy sign-in, with `[auth.proxy]`.
    pub proxy: Option<Box<proxy::ProxyAuth>>,
}

impl Identity {
    /// Identity with local roles, keys from `[auth]`.
    pub fn new(config: &Config, db: Db, policy: Arc<PolicyHandle>) -> Result<Self, String> {
        let origin = config.origin();
        let jwt = JwtKeys::new(config.auth.jwt_secret.expose().as_bytes(), &origin);
        let oidc = match &config.auth.oidc {
            Some(c) => Some(Box::new(oidc::Oidc::new(
                c,
                &config.server.public_url,
                &origin,
                config.auth.jwt_secret.expose().as_bytes(),
            )?)),
            None => None,
        };
        let proxy = match &config.auth.proxy {
            Some(c) => Some(Box::new(proxy::ProxyAuth::new(c)?)),
            None => None,
        };
        let dummy_hash = users::hash_password("not a real password").map_err(|e| e.to_string())?;
        Ok(Self {
            db,
            auth: config.auth.clone(),
            origin,
            jwt,
            dummy_hash,
            role_source: Box::new(LocalRoles),
            policy,
            hashing: tokio::sync::Semaphore::new(config.auth.max_concurrent_hashes as usize),
            attempts: login::InFlight::default(),
            oidc,
            proxy,
        })
    }

    /// A signed-in user as the policy sees them: roles from the role source, grants from the
    /// policy in force.
    pub fn resolve(&self, mut user: User) -> User {
        user.roles = self.role_source.roles_of(&user);
        user.grants = self.policy.current().grants(&user.roles);
        user
    }
}

/// Why a change of settings was not stored.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The change names an unknown key or a bad value; nothing was stored.
    #[error(transparent)]
    Invalid(#[from] settings::Invalid),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Identity {
    /// The settings of user `user_id`, defaults filled in.
    pub async fn settings(&self, user_id: i64) -> Result<settings::Settings, DbError> {
        Ok(crate::gateway::store::settings::load(&self.db, user_id)
            .await?
            .map(|text| settings::Settings::from_stored(&text))
            .unwrap_or_default())
    }

    /// Applies `change` (a JSON object of some keys, see [`settings::Settings::apply`]) to
    /// user `user_id`'s settings and stores the result, which it returns; a bad change stores
    /// nothing.
    pub async fn save_settings(
        &self,
        user_id: i64,
        change: &serde_json::Value,
    ) -> Result<settings::Settings, SettingsError> {
        // Read, change, write without another write of this process in between (two tabs
        // saving different keys at once both keep theirs).
        let _writing = self.db.lock_writes().await;
        let next = self.settings(user_id).await?.apply(change)?;
        crate::gateway::store::settings::save(&self.db, user_id, &next.to_json().to_string())
            .await?;
        Ok(next)
    }
}
