//! Sign-in tokens: the `porthole_session` cookie carries an HS256 JWT whose id (`jti`) is a
//! row in `logins`. The algorithm is pinned; signature, expiry, issuer and audience (the
//! gateway's origin) are checked.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The JWT issuer.
pub const ISSUER: &str = "porthole";

/// The keys and rules for sign-in tokens.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys([redacted])")
    }
}

impl JwtKeys {
    /// Keys from the configured secret; tokens are for `audience` (the gateway's origin).
    pub fn new(secret: &[u8], audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }
}

/// The claims of a sign-in token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Issuer: [`ISSUER`].
    pub iss: String,
    /// Audience: the gateway's origin.
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The login id (a row of `logins`).
    pub jti: String,
    /// Issued at (seconds).
    pub iat: u64,
    /// Expires at (seconds).
    pub exp: u64,
}

impl JwtKeys {
    /// The claims of `token` when it verifies; `None` otherwise.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }

    /// A signed token of `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| e.to_string())
    }
}
