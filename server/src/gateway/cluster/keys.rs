//! The keys a cluster derives from `cluster.secret` (HKDF-SHA256, one key per use): one signs
//! requests between gateways (HMAC-SHA256), the other seals handed-over session state
//! (AES-256-GCM with a random nonce).

use base64::Engine as _;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::ssm::crypto;

const SALT: &[u8] = b"porthole cluster v1";
const SIGN_INFO: &[u8] = b"porthole: requests between gateways";
const SEAL_INFO: &[u8] = b"porthole: handed-over session state";

/// The derived keys. Debug shows none of them.
#[derive(Clone)]
pub struct Keys {
    sign: [u8; 32],
    seal: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

/// Why sealed state cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not base64.
    #[error("sealed state is not base64")]
    Encoding,
    /// Sealed with another key, or changed.
    #[error(
        "sealed state does not open with this cluster's key (another cluster.secret, or changed)"
    )]
    Key,
}

impl Keys {
    /// The keys of `secret`.
    pub fn derive(secret: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(SALT), secret);
        let mut sign = [0u8; 32];
        let mut seal = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit (8160): expand cannot fail here.
        let _ = hk.expand(SIGN_INFO, &mut sign);
        let _ = hk.expand(SEAL_INFO, &mut seal);
        Self { sign, seal }
    }

    /// The HMAC-SHA256 of `message` under the signing key.
    pub fn sign(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = self.mac();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the signature of `message` (compared in constant time).
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac();
        mac.update(message);
        mac.verify_slice(tag).is_ok()
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.sign)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    /// `plaintext` sealed with the sealing key, as base64.
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let nonce: [u8; crypto::NONCE_LEN] = rand::random();
        let sealed = crypto::seal_with_nonce(&self.seal, &nonce, plaintext);
        base64::engine::general_purpose::STANDARD.encode(sealed)
    }

    /// Opens what [`Keys::seal`] sealed.
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, OpenError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| OpenError::Encoding)?;
        crypto::open_with_key(&self.seal, &bytes).map_err(|_| OpenError::Key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_use_has_its_own_key_and_a_secret_its_own_keys() {
        let a = Keys::derive(b"0123456789abcdef0123456789abcdef");
        let b = Keys::derive(b"0123456789abcdef0123456789abcdeF");
        assert_ne!(a.sign, a.seal);
        assert_ne!(a.sign, b.sign);
        assert_ne!(a.seal, b.seal);
        assert_eq!(
            a.sign,
            Keys::derive(b"0123456789abcdef0123456789abcdef").sign
        );
        assert_eq!(format!("{a:?}"), "Keys([redacted])");
    }

    #[test]
    fn signatures_and_sealed_state_hold_only_under_the_same_secret() {
        let a = Keys::derive(b"0123456789abcdef0123456789abcdef");
        let b = Keys::derive(b"another secret of at least 32 bytes");
        let tag = a.sign(b"GET /x");
        assert!(a.verify(b"GET /x", &tag));
        assert!(!a.verify(b"GET /y", &tag));
        assert!(!b.verify(b"GET /x", &tag));
        assert!(!a.verify(b"GET /x", &tag[..31]));

        let sealed = a.seal(b"channel state");
        assert_ne!(sealed, a.seal(b"channel state"), "a fresh nonce each time");
        assert_eq!(a.open(&sealed).as_deref(), Ok(&b"channel state"[..]));
        assert_eq!(b.open(&sealed), Err(OpenError::Key));
        assert_eq!(a.open("not base64!"), Err(OpenError::Encoding));
        let mut changed = base64::engine::general_purpose::STANDARD
            .decode(&sealed)
            .unwrap_or_default();
        if let Some(last) = changed.last_mut() {
            *last ^= 1;
        }
        let changed = base64::engine::general_purpose::STANDARD.encode(changed);
        assert_eq!(a.open(&changed), Err(OpenError::Key));
    }
}
