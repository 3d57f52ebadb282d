//! What a receiver checks: the headers of every delivery and its signature.
//!
//! `X-Porthole-Signature: v1=<hex>` is HMAC-SHA256 keyed with the webhook's `secret` over the
//! bytes `{X-Porthole-Timestamp}.{body}` (the decimal Unix seconds, a full stop, the body
//! exactly as received). The timestamp is that of the attempt, so a receiver can refuse old
//! ones (replays); the delivery id stays the same across attempts, so it can drop repeats.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The topic (`request`, `decision`, `break_glass`, `session`).
pub const EVENT_HEADER: &str = "x-porthole-event";
/// The delivery's id: the same at every attempt.
pub const DELIVERY_HEADER: &str = "x-porthole-delivery";
/// The attempt's time, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-porthole-timestamp";
/// `v1=` and the signature in lowercase hex.
pub const SIGNATURE_HEADER: &str = "x-porthole-signature";
/// The scheme's version, before the `=`.
pub const VERSION: &str = "v1";

/// The `X-Porthole-Signature` value of `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("{VERSION}={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers, computed apart from this code:
    /// `printf %s '1765000000.{"text":"hi"}' | openssl dgst -sha256 -hmac "$SECRET"`.
    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        let secret = b"0123456789abcdef0123456789abcdef";
        assert_eq!(
            signature(secret, 1_765_000_000, br#"{"text":"hi"}"#),
            "v1=327e56a15bbe459343d2903ba14afdbc75a8d9b4f5b9f8599a122adf531d7320"
        );
        assert_eq!(
            signature(b"key", 0, b""),
            "v1=85841b4efc3cd7776c3c8f9b7cca9e281c550e5d19889d78e9e669c6337f000d"
        );
        // Any change of secret, time or body changes it.
        let base = signature(secret, 1_765_000_000, b"{}");
        assert_ne!(
            base,
            signature(b"0123456789abcdef0123456789abcdeF", 1_765_000_000, b"{}")
        );
        assert_ne!(base, signature(secret, 1_765_000_001, b"{}"));
        assert_ne!(base, signature(secret, 1_765_000_000, b"{ }"));
    }
}
