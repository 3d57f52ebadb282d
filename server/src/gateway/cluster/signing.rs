//! Signed requests between gateways. The sender adds six headers; the signature (HMAC-SHA256
//! under the cluster's signing key, hex) covers the method, the path and query, both gateways'
//! ids, the time, a random nonce, the person's address, and the hashes of the `Cookie` header
//! and of the body, so that none of them can be changed or the request sent to another
//! gateway. The receiver refuses a request for another gateway, one whose clock is off by more
//! than the allowed skew, a bad signature, and a nonce it has seen (a replay).

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::keys::Keys;

/// The sending gateway's id.
pub const FROM: &str = "x-porthole-from";
/// The receiving gateway's id.
pub const TO: &str = "x-porthole-to";
/// Milliseconds since the epoch when it was signed.
pub const TIME: &str = "x-porthole-time";
/// A random value, never used twice.
pub const NONCE: &str = "x-porthole-nonce";
/// The address of the person the request is for (for the audit log).
pub const CLIENT: &str = "x-porthole-client";
/// The signature, hex.
pub const SIGNATURE: &str = "x-porthole-signature";

/// Most nonces a gateway remembers at once; past that, signed requests are refused until
/// some expire (a flood cannot grow memory without bound).
pub const MAX_NONCES: usize = 100_000;

/// What a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path and query, as sent.
    pub path_and_query: &'a str,
    /// The `Cookie` header, or empty.
    pub cookie: &'a str,
    /// The body.
    pub body: &'a [u8],
}

/// The signed headers' values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Sender.
    pub from: String,
    /// Receiver.
    pub to: String,
    /// Milliseconds since the epoch.
    pub time: i64,
    /// Random, hex.
    pub nonce: String,
    /// The person's address.
    pub client: String,
}

impl Signed {
    fn message(&self, request: &Request<'_>) -> Vec<u8> {
        let cookie = hex::encode(Sha256::digest(request.cookie.as_bytes()));
        let body = hex::encode(Sha256::digest(request.body));
        format!(
            "porthole-cluster-v1\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{cookie}\n{body}",
            request.method,
            request.path_and_query,
            self.from,
            self.to,
            self.time,
            self.nonce,
            self.client,
        )
        .into_bytes()
    }

    /// The headers that carry it, signature included.
    pub fn headers(&self, keys: &Keys, request: &Request<'_>) -> [(&'static str, String); 6] {
        let signature = hex::encode(keys.sign(&self.message(request)));
        [
            (FROM, self.from.clone()),
            (TO, self.to.clone()),
            (TIME, self.time.to_string()),
            (NONCE, self.nonce.clone()),
            (CLIENT, self.client.clone()),
            (SIGNATURE, signature),
        ]
    }
}

/// A new [`Signed`] from `from` to `to` for `client`, now, with a fresh nonce.
pub fn fresh(from: &str, to: &str, client: &str, now_ms: i64) -> Signed {
    let nonce: [u8; 16] = rand::random();
    Signed {
        from: from.to_owned(),
        to: to.to_owned(),
        time: now_ms,
        nonce: hex::encode(nonce),
        client: client.to_owned(),
    }
}

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// This gateway has no `cluster.secret`.
    #[error("this gateway takes no requests from other gateways (no cluster.secret)")]
    NotClustered,
    /// A header is missing or not text.
    #[error("the {0} header is missing or malformed")]
    Missing(&'static str),
    /// Addressed to another gateway.
    #[error("signed for gateway {0:?}, not this one")]
    WrongGateway(String),
    /// Signed too long ago, or in the future.
    #[error("signed {0} ms away from this gateway's clock")]
    Skew(i64),
    /// The signature does not match.
    #[error("bad signature")]
    BadSignature,
    /// Its nonce was seen before.
    #[error("replayed request (nonce seen before)")]
    Replay,
    /// Too many nonces to remember.
    #[error("too many signed requests; try again shortly")]
    Busy,
    /// The sender is not a registered, live gateway.
    #[error("{0:?} is not a running gateway of this cluster")]
    UnknownGateway(String),
    /// The database did not answer whether the sender is one.
    #[error("the gateways' registrations cannot be read now; try again")]
    Unavailable,
}

/// Reads the signed headers with `get`, and checks them against `request` for gateway `me` at
/// `now_ms`: the address, the clock, the signature, then the nonce (remembered in `nonces`
/// until it could no longer pass the clock check). Whether the sender is a live gateway is the
/// caller's to check.
pub fn verify<'h>(
    keys: &Keys,
    me: &str,
    now_ms: i64,
    max_skew_ms: i64,
    nonces: &mut Nonces,
    request: &Request<'_>,
    get: impl Fn(&str) -> Option<&'h str>,
) -> Result<Signed, Refusal> {
    let text = |name: &'static str| get(name).map(str::to_owned).ok_or(Refusal::Missing(name));
    let signed = Signed {
        from: text(FROM)?,
        to: text(TO)?,
        time: text(TIME)?.parse().map_err(|_| Refusal::Missing(TIME))?,
        nonce: text(NONCE)?,
        client: text(CLIENT)?,
    };
    let signature = hex::decode(text(SIGNATURE)?).map_err(|_| Refusal::Missing(SIGNATURE))?;
    if signed.to != me {
        return Err(Refusal::WrongGateway(signed.to));
    }
    let off = now_ms.saturating_sub(signed.time);
    if off.abs() > max_skew_ms {
        return Err(Refusal::Skew(off));
    }
    if signed.nonce.len() < 16 || signed.nonce.len() > 64 {
        return Err(Refusal::Missing(NONCE));
    }
    if !keys.verify(&signed.message(request), &signature) {
        return Err(Refusal::BadSignature);
    }
    nonces.remember(
        &signed.nonce,
        signed.time.saturating_add(max_skew_ms),
        now_ms,
    )?;
    Ok(signed)
}

/// The nonces seen, each until the time it expires.
#[derive(Debug, Default)]
pub struct Nonces {
    seen: HashMap<String, i64>,
}

impl Nonces {
    fn remember(&mut self, nonce: &str, until: i64, now_ms: i64) -> Result<(), Refusal> {
        if self.seen.len() >= MAX_NONCES {
            self.seen.retain(|_, until| *until >= now_ms);
        }
        if self.seen.contains_key(nonce) {
            return Err(Refusal::Replay);
        }
        if self.seen.len() >= MAX_NONCES {
            return Err(Refusal::Busy);
        }
        self.seen.insert(nonce.to_owned(), until);
        Ok(())
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn keys() -> Keys {
        Keys::derive(b"0123456789abcdef0123456789abcdef")
    }

    fn request() -> Request<'static> {
        Request {
            method: "GET",
            path_and_query: "/internal/v1/sessions/s1/attach?since=5",
            cookie: "porthole_session=abc",
            body: b"",
        }
    }

    fn check(
        headers: &[(&'static str, String)],
        request: &Request<'_>,
        nonces: &mut Nonces,
        now: i64,
    ) -> Result<Signed, Refusal> {
        verify(&keys(), "gw-a", now, 30_000, nonces, request, |name| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        })
    }

    #[test]
    fn a_signed_request_passes_once() {
        let signed = fresh("gw-b", "gw-a", "192.0.2.7", NOW);
        let headers = signed.headers(&keys(), &request());
        let mut nonces = Nonces::default();
        assert_eq!(
            check(&headers, &request(), &mut nonces, NOW + 10),
            Ok(signed)
        );
        assert_eq!(
            check(&headers, &request(), &mut nonces, NOW + 20),
            Err(Refusal::Replay)
        );
    }

    #[test]
    fn every_covered_part_is_bound_by_the_signature() {
        let headers = fresh("gw-b", "gw-a", "192.0.2.7", NOW).headers(&keys(), &request());
        let base = request();
        for changed in [
            Request {
                method: "POST",
                ..base
            },
            Request {
                path_and_query: "/internal/v1/sessions/s2/attach?since=5",
                ..base
            },
            Request {
                cookie: "porthole_session=other",
                ..base
            },
            Request {
                body: b"{}",
                ..base
            },
        ] {
            assert_eq!(
                check(&headers, &changed, &mut Nonces::default(), NOW),
                Err(Refusal::BadSignature),
                "{changed:?}"
            );
        }
        for (name, value) in [
            (FROM, "gw-c"),
            (CLIENT, "198.51.100.1"),
            (TIME, "1800000000001"),
        ] {
            let mut edited = headers.clone();
            for (n, v) in &mut edited {
                if *n == name {
                    *v = value.into();
                }
            }
            assert_eq!(
                check(&edited, &base, &mut Nonces::default(), NOW),
                Err(Refusal::BadSignature),
                "{name}"
            );
        }
        let other = Keys::derive(b"another secret of at least 32 bytes");
        let forged = fresh("gw-b", "gw-a", "192.0.2.7", NOW).headers(&other, &base);
        assert_eq!(
            check(&forged, &base, &mut Nonces::default(), NOW),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn address_clock_and_headers_are_checked() {
        let base = request();
        let elsewhere = fresh("gw-b", "gw-c", "x", NOW).headers(&keys(), &base);
        assert_eq!(
            check(&elsewhere, &base, &mut Nonces::default(), NOW),
            Err(Refusal::WrongGateway("gw-c".into()))
        );
        let old = fresh("gw-b", "gw-a", "x", NOW - 31_000).headers(&keys(), &base);
        assert_eq!(
            check(&old, &base, &mut Nonces::default(), NOW),
            Err(Refusal::Skew(31_000))
        );
        let ahead = fresh("gw-b", "gw-a", "x", NOW + 31_000).headers(&keys(), &base);
        assert_eq!(
            check(&ahead, &base, &mut Nonces::default(), NOW),
            Err(Refusal::Skew(-31_000))
        );
        let whole = fresh("gw-b", "gw-a", "x", NOW).headers(&keys(), &base);
        for missing in [FROM, TO, TIME, NONCE, CLIENT, SIGNATURE] {
            let less: Vec<_> = whole
                .iter()
                .filter(|(n, _)| *n != missing)
                .cloned()
                .collect();
            assert_eq!(
                check(&less, &base, &mut Nonces::default(), NOW),
                Err(Refusal::Missing(missing))
            );
        }
    }

    #[test]
    fn nonces_expire_and_are_bounded() {
        let mut nonces = Nonces::default();
        for i in 0..MAX_NONCES {
            nonces
                .remember(&format!("{i:032}"), NOW + 1000, NOW)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(
            nonces.remember("one-more-nonce-0000", NOW + 1000, NOW),
            Err(Refusal::Busy)
        );
        // Once they have expired, room is made.
        assert_eq!(
            nonces.remember("one-more-nonce-0000", NOW + 5000, NOW + 2000),
            Ok(())
        );
        assert_eq!(nonces.len(), 1);
    }
}
