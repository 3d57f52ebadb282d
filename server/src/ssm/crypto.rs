//! KMS payload encryption of the data channel (AES-256-GCM).
//!
//! A session's 64-byte KMS data key splits in two: bytes 0..32 encrypt agent → client, bytes
//! 32..64 encrypt client → agent. A wire payload is `nonce(12) ‖ ciphertext ‖ tag(16)` with no
//! associated data. Each sealing key draws its nonces from a 96-bit counter with a random start,
//! incremented little-endian (as the agent does), so a nonce is never reused under one key.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};

/// Length of the KMS data key (`NumberOfBytes` of GenerateDataKey).
pub const DATA_KEY_LEN: usize = 64;
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Bytes an encrypted payload adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Why a payload could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Shorter than nonce plus tag.
    #[error("encrypted payload of {len} bytes is shorter than nonce and tag ({OVERHEAD})")]
    TooShort {
        /// Payload length.
        len: usize,
    },
    /// The tag did not verify: wrong key or altered bytes.
    #[error("encrypted payload failed authentication (wrong key or altered bytes)")]
    Authentication,
    /// The data key is not 64 bytes.
    #[error("KMS data key is {len} bytes, expected {DATA_KEY_LEN}")]
    KeyLength {
        /// Key length.
        len: usize,
    },
}

/// Which side of the channel holds the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySide {
    /// Encrypts with bytes 32..64, decrypts with bytes 0..32.
    Client,
    /// Encrypts with bytes 0..32, decrypts with bytes 32..64.
    Agent,
}

/// Seals one payload under `key` with an explicit `nonce`. Public for the test vectors;
/// senders use [`PayloadCipher`], which never repeats a nonce.
pub fn seal_with_nonce(key: &[u8; 32], nonce: &[u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key));
    seal(&cipher, nonce, plaintext)
}

/// Opens a `nonce ‖ ciphertext ‖ tag` payload under `key`.
pub fn open_with_key(key: &[u8; 32], payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
    open(&Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key)), payload)
}

fn seal(cipher: &Aes256Gcm, nonce: &[u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    // Encryption without associated data fails only for plaintexts over 64 GiB; frames are
    // bounded far below that, so an empty result can never be mistaken for a real one.
    let ct = cipher
        .encrypt(&Nonce::from(*nonce), plaintext)
        .unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
    out
}

fn open(cipher: &Aes256Gcm, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if payload.len() < OVERHEAD {
        return Err(CryptoError::TooShort { len: payload.len() });
    }
    let (nonce, ct) = payload.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| CryptoError::TooShort { len: payload.len() })?;
    cipher
        .decrypt(&Nonce::from(nonce), ct)
        .map_err(|_| CryptoError::Authentication)
}

/// The two directional ciphers of one side of a session.
pub struct PayloadCipher {
    side: KeySide,
    /// The data key, kept so that a frozen channel can carry it to another process.
    data_key: Box<[u8; DATA_KEY_LEN]>,
    sealer: Aes256Gcm,
    opener: Aes256Gcm,
    next_nonce: u128,
}

impl std::fmt::Debug for PayloadCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PayloadCipher([redacted])")
    }
}

const NONCE_MASK: u128 = (1u128 << 96) - 1;

impl PayloadCipher {
    /// Builds the ciphers for `side` from the 64-byte data key; `nonce_start` seeds the counter
    /// (draw it at random).
    pub fn new(
        side: KeySide,
        data_key: &[u8],
        nonce_start: [u8; NONCE_LEN],
    ) -> Result<Self, CryptoError> {
        let key: &[u8; DATA_KEY_LEN] = data_key.try_into().map_err(|_| CryptoError::KeyLength {
            len: data_key.len(),
        })?;
        let (agent_to_client, client_to_agent) = key.split_at(32);
        let (seal_half, open_half) = match side {
            KeySide::Client => (client_to_agent, agent_to_client),
            KeySide::Agent => (agent_to_client, client_to_agent),
        };
        let mk = |half: &[u8]| -> Result<Aes256Gcm, CryptoError> {
            let k = Key::<Aes256Gcm>::try_from(half).map_err(|_| CryptoError::KeyLength {
                len: data_key.len(),
            })?;
            Ok(Aes256Gcm::new(&k))
        };
        let mut start = [0u8; 16];
        start[..NONCE_LEN].copy_from_slice(&nonce_start);
        Ok(Self {
            side,
            data_key: Box::new(*key),
            sealer: mk(seal_half)?,
            opener: mk(open_half)?,
            next_nonce: u128::from_le_bytes(start),
        })
    }

    /// Which side's keys these are.
    pub fn side(&self) -> KeySide {
        self.side
    }

    /// The 64-byte data key (a secret): with [`PayloadCipher::next_nonce`], what
    /// [`PayloadCipher::new`] needs to carry on in another process.
    pub fn data_key(&self) -> &[u8; DATA_KEY_LEN] {
        &self.data_key
    }

    /// The nonce the next [`PayloadCipher::seal`] uses.
    pub fn next_nonce(&self) -> [u8; NONCE_LEN] {
        let bytes = self.next_nonce.to_le_bytes();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[..NONCE_LEN]);
        nonce
    }

    /// Encrypts an outgoing payload with the next nonce.
    pub fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let bytes = self.next_nonce.to_le_bytes();
        self.next_nonce = (self.next_nonce + 1) & NONCE_MASK;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[..NONCE_LEN]);
        seal(&self.sealer, &nonce, plaintext)
    }

    /// Decrypts an incoming payload.
    pub fn open(&self, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open(&self.opener, payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_key() -> [u8; 64] {
        std::array::from_fn(|i| i as u8)
    }

    #[test]
    fn client_and_agent_ciphers_talk_to_each_other() {
        let mut client = PayloadCipher::new(KeySide::Client, &test_key(), [7; 12]).unwrap();
        let mut agent = PayloadCipher::new(KeySide::Agent, &test_key(), [9; 12]).unwrap();
        let up = client.seal(b"ls -la\r");
        assert_eq!(agent.open(&up).unwrap(), b"ls -la\r");
        let down = agent.seal(b"total 0\r\n");
        assert_eq!(client.open(&down).unwrap(), b"total 0\r\n");
        // A side cannot open what it sealed itself: the directions use different keys.
        assert_eq!(client.open(&up), Err(CryptoError::Authentication));
    }

    #[test]
    fn nonces_never_repeat_and_wrap_within_96_bits() {
        let mut c = PayloadCipher::new(KeySide::Client, &test_key(), [0xff; 12]).unwrap();
        let a = c.seal(b"x");
        let b = c.seal(b"x");
        assert_eq!(&a[..12], &[0xff; 12]);
        assert_eq!(&b[..12], &[0; 12]);
        assert_ne!(a, b);
    }

    #[test]
    fn a_cipher_rebuilt_from_its_key_and_next_nonce_carries_on() {
        let mut a = PayloadCipher::new(KeySide::Client, &test_key(), [5; 12]).unwrap();
        a.seal(b"one");
        let mut b = PayloadCipher::new(a.side(), a.data_key(), a.next_nonce()).unwrap();
        assert_eq!(a.seal(b"two"), b.seal(b"two"), "same key, same next nonce");
        let agent = PayloadCipher::new(KeySide::Agent, &test_key(), [1; 12]).unwrap();
        assert_eq!(agent.open(&b.seal(b"three")).unwrap(), b"three");
    }

    #[test]
    fn short_or_altered_payloads_are_refused() {
        let c = PayloadCipher::new(KeySide::Client, &test_key(), [0; 12]).unwrap();
        assert_eq!(c.open(&[0; 27]), Err(CryptoError::TooShort { len: 27 }));
        let mut agent = PayloadCipher::new(KeySide::Agent, &test_key(), [0; 12]).unwrap();
        let mut sealed = agent.seal(b"hello");
        sealed[14] ^= 1;
        assert_eq!(c.open(&sealed), Err(CryptoError::Authentication));
        assert_eq!(
            PayloadCipher::new(KeySide::Agent, &[0; 32], [0; 12]).err(),
            Some(CryptoError::KeyLength { len: 32 })
        );
    }
}
