//! A local KMS for encrypted sessions: `GenerateDataKey` and `Decrypt` with an encryption
//! context, as Session Manager uses them.
//!
//! Ciphertext blobs are sealed with AES-256-GCM under a master key drawn at start-up, with the
//! key id and the canonical encryption context as associated data, so a blob decrypts only
//! with the exact context it was made with — the property the KMS handshake relies on.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rand::Rng as _;

const BLOB_MAGIC: &[u8; 4] = b"PHK1";
/// The largest data key GenerateDataKey makes (the real service's limit).
pub const MAX_DATA_KEY_BYTES: usize = 1024;

/// A KMS error with the service's `__type`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct KmsError {
    /// `NotFoundException`, `InvalidCiphertextException`, `ValidationException`.
    pub code: &'static str,
    /// Text for a person.
    pub message: String,
}

impl KmsError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The emulator's KMS.
pub struct LocalKms {
    master: Aes256Gcm,
    key_ids: Vec<String>,
}

impl std::fmt::Debug for LocalKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKms")
            .field("key_ids", &self.key_ids)
            .finish_non_exhaustive()
    }
}

/// The ARN the emulator reports for a key id.
pub fn key_arn(key_id: &str) -> String {
    if key_id.starts_with("arn:") {
        key_id.to_owned()
    } else if let Some(alias) = key_id.strip_prefix("alias/") {
        format!("arn:aws:kms:us-east-1:000000000000:alias/{alias}")
    } else {
        format!("arn:aws:kms:us-east-1:000000000000:key/{key_id}")
    }
}

fn aad(key_id: &str, context: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = key_id.as_bytes().to_vec();
    out.push(0);
    // A BTreeMap serialises in key order: the same context always gives the same bytes.
    out.extend(serde_json::to_vec(context).unwrap_or_default());
    out
}

impl LocalKms {
    /// A KMS that knows `key_ids` (ids, aliases or ARNs).
    pub fn new(key_ids: Vec<String>) -> Self {
        let mut master = [0u8; 32];
        rand::rng().fill_bytes(&mut master);
        Self {
            master: Aes256Gcm::new(&Key::<Aes256Gcm>::from(master)),
            key_ids,
        }
    }

    /// Resolves a key id, alias or ARN to the configured id.
    fn resolve(&self, key_id: &str) -> Result<String, KmsError> {
        self.key_ids
            .iter()
            .find(|k| *k == key_id || key_arn(k) == key_id || key_arn(key_id) == key_arn(k))
            .cloned()
            .ok_or_else(|| {
                KmsError::new(
                    "NotFoundException",
                    format!("Key '{key_id}' does not exist"),
                )
            })
    }

    /// The ARN of a known key given its id, alias or ARN; `NotFoundException` otherwise.
    pub fn arn_of(&self, key_id: &str) -> Result<String, KmsError> {
        self.resolve(key_id).map(|k| key_arn(&k))
    }

    /// Makes a data key: `(plaintext, ciphertext blob, key ARN)`.
    pub fn generate_data_key(
        &self,
        key_id: &str,
        number_of_bytes: usize,
        context: &BTreeMap<String, String>,
    ) -> Result<(Vec<u8>, Vec<u8>, String), KmsError> {
        let key = self.resolve(key_id)?;
        if !(1..=MAX_DATA_KEY_BYTES).contains(&number_of_bytes) {
            return Err(KmsError::new(
                "ValidationException",
                format!(
                    "NumberOfBytes must be between 1 and {MAX_DATA_KEY_BYTES}, got {number_of_bytes}"
                ),
            ));
        }
        let mut plaintext = vec![0u8; number_of_bytes];
        rand::rng().fill_bytes(&mut plaintext);
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .master
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad(&key, context),
                },
            )
            .map_err(|_| KmsError::new("KMSInternalException", "sealing the data key failed"))?;
        let mut blob = BLOB_MAGIC.to_vec();
        blob.push(u8::try_from(key.len()).unwrap_or(u8::MAX));
        blob.extend_from_slice(&key.as_bytes()[..key.len().min(255)]);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok((plaintext, blob, key_arn(&key)))
    }

    /// Decrypts a blob made by [`LocalKms::generate_data_key`] with the same context:
    /// `(plaintext, key ARN)`.
    pub fn decrypt(
        &self,
        blob: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<(Vec<u8>, String), KmsError> {
        let invalid = || {
            KmsError::new(
                "InvalidCiphertextException",
                "the ciphertext is not valid for this key or encryption context",
            )
        };
        let rest = blob
            .strip_prefix(BLOB_MAGIC.as_slice())
            .ok_or_else(invalid)?;
        let (&len, rest) = rest.split_first().ok_or_else(invalid)?;
        let key = rest.get(..len as usize).ok_or_else(invalid)?;
        let key = std::str::from_utf8(key).map_err(|_| invalid())?;
        let rest = &rest[len as usize..];
        let nonce: [u8; 12] = rest
            .get(..12)
            .and_then(|n| n.try_into().ok())
            .ok_or_else(invalid)?;
        let sealed = &rest[12..];
        let plaintext = self
            .master
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad(key, context),
                },
            )
            .map_err(|_| invalid())?;
        Ok((plaintext, key_arn(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(target: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("aws:ssm:SessionId".to_owned(), "s-1".to_owned()),
            ("aws:ssm:TargetId".to_owned(), target.to_owned()),
        ])
    }

    #[test]
    fn round_trip_needs_the_same_context() {
        let kms = LocalKms::new(vec!["alias/porthole".into()]);
        let (plain, blob, arn) = kms
            .generate_data_key("alias/porthole", 64, &ctx("i-1"))
            .unwrap();
        assert_eq!(plain.len(), 64);
        assert_eq!(arn, "arn:aws:kms:us-east-1:000000000000:alias/porthole");
        assert_eq!(kms.decrypt(&blob, &ctx("i-1")).unwrap().0, plain);
        assert_eq!(
            kms.decrypt(&blob, &ctx("i-2")).unwrap_err().code,
            "InvalidCiphertextException"
        );
        assert_eq!(
            kms.decrypt(b"junk", &ctx("i-1")).unwrap_err().code,
            "InvalidCiphertextException"
        );
        // The ARN names the same key.
        assert!(kms.generate_data_key(&arn, 64, &ctx("i-1")).is_ok());
    }

    #[test]
    fn unknown_keys_and_bad_sizes_are_refused() {
        let kms = LocalKms::new(vec!["k1".into()]);
        assert_eq!(
            kms.generate_data_key("k2", 64, &ctx("i")).unwrap_err().code,
            "NotFoundException"
        );
        assert_eq!(
            kms.generate_data_key("k1", 0, &ctx("i")).unwrap_err().code,
            "ValidationException"
        );
        assert_eq!(
            kms.generate_data_key("k1", 2000, &ctx("i"))
                .unwrap_err()
                .code,
            "ValidationException"
        );
    }
}
