//! Opaque credentials (refresh tokens, API keys), ids and digests.
//!
//! Opaque credentials carry 256 bits from the entropy port and are stored
//! only as SHA-256 digests: they are random, so a plain digest is enough to
//! make a stolen table useless (unlike passwords, which need Argon2id).

use base64ct::{Base64UrlUnpadded, Encoding};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ports::Entropy;

/// Prefix of refresh tokens, so a leaked one is recognisable.
pub const REFRESH_PREFIX: &str = "tpr_";
/// Prefix of API keys; `Authorization: Bearer tpk_…` selects key auth.
pub const API_KEY_PREFIX: &str = "tpk_";

/// A new credential: `prefix` + 32 random bytes, base64url.
pub fn credential(entropy: &dyn Entropy, prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    entropy.fill(&mut bytes);
    format!("{prefix}{}", Base64UrlUnpadded::encode_string(&bytes))
}

/// A new identifier: `prefix` + 12 random bytes in lowercase hex.
pub fn id(entropy: &dyn Entropy, prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    entropy.fill(&mut bytes);
    let mut out = String::with_capacity(prefix.len() + 24);
    out.push_str(prefix);
    out.push_str(&hex(&bytes));
    out
}

/// `bytes` random bytes from the entropy port, in lowercase hex.
pub fn random_hex(entropy: &dyn Entropy, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    entropy.fill(&mut buf);
    hex(&buf)
}

/// SHA-256 of `value`, lowercase hex: what the database stores.
pub fn digest(value: &str) -> String {
    hex(&Sha256::digest(value.as_bytes()))
}

/// Compares secrets in time independent of where they first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SeededEntropy;

    #[test]
    fn credentials_are_prefixed_long_and_distinct() {
        let entropy = SeededEntropy::new(1);
        let a = credential(&entropy, API_KEY_PREFIX);
        let b = credential(&entropy, API_KEY_PREFIX);
        assert!(a.starts_with("tpk_"));
        assert_eq!(a.len(), 4 + 43, "32 bytes of base64url without padding");
        assert_ne!(a, b);
        assert!(
            a[4..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "URL- and header-safe: {a}"
        );
    }

    #[test]
    fn digest_is_sha256_hex() {
        // FIPS 180-2 test vector.
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" // pragma: allowlist secret
        );
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret-longer"));
    }
}

/// A secret value: compared in constant time, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn matches(&self, candidate: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), candidate.as_bytes())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The value itself, for the one answer that shows it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}
