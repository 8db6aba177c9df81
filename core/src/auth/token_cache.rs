//! Access tokens already verified by this instance, so a caller's next
//! request within the token's life skips the Ed25519 verification (the
//! largest single cost of an authenticated request on Workers, where an
//! isolate serves many requests).
//!
//! Keyed by the SHA-256 of the whole token, signature included: a token
//! that differs in any byte (a forged signature, edited claims) misses and
//! is verified in full. An entry is only ever made by a complete
//! verification (signature, key id, times, `iss`, `aud`, claims) against
//! this instance's keys and configuration, which do not change for the
//! instance's life; a hit re-checks `exp` against `now` with the same
//! leeway, so a cached token expires exactly when a verified one would.
//! Bounded: at `CAPACITY` entries the expired ones go, and if all are live
//! the table starts again empty.

use std::cell::RefCell;
use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::auth::keys::{AccessClaims, LEEWAY_SECONDS, SigningKeys, TokenError};
use crate::time::Timestamp;

/// Most tokens remembered at once.
pub const CAPACITY: usize = 1024;

struct Entry {
    claims: AccessClaims,
    /// `exp`, seconds since the epoch.
    expires: i64,
}

#[derive(Default)]
pub struct TokenCache {
    entries: RefCell<HashMap<[u8; 32], Entry>>,
}

/// Shows how many tokens are held, never the claims.
impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("len", &self.len())
            .finish()
    }
}

impl TokenCache {
    /// `SigningKeys::verify`, answered from memory when this exact token
    /// was verified before and has not expired.
    pub fn verify(
        &self,
        keys: &SigningKeys,
        token: &str,
        now: Timestamp,
        issuer: &str,
        audience: &str,
    ) -> Result<AccessClaims, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now_secs = now.as_unix_secs();
        if let Some(entry) = self.entries.borrow().get(&digest)
            && now_secs <= entry.expires.saturating_add(LEEWAY_SECONDS)
        {
            return Ok(entry.claims.clone());
        }
        let (claims, expires) = keys.verify_with_expiry(token, now, issuer, audience)?;
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| now_secs <= e.expires.saturating_add(LEEWAY_SECONDS));
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            digest,
            Entry {
                claims: claims.clone(),
                expires,
            },
        );
        Ok(claims)
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{ACCESS_TOKEN_SECONDS, AccessClaims};

    // Test-only seeds, not secrets.
    const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"; // pragma: allowlist secret
    const OTHER: &str = "k1:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8"; // pragma: allowlist secret

    fn claims(sub: &str) -> AccessClaims {
        AccessClaims {
            iss: "tepi".into(),
            aud: "tepi-api".into(),
            sub: sub.into(),
            tenant: "acme".into(),
            role: "user".into(),
            jti: format!("jti-{sub}"),
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_micros(u64::try_from(secs).unwrap() * 1_000_000)
    }

    #[test]
    fn a_verified_token_is_answered_from_memory_until_it_expires() {
        let keys = SigningKeys::parse(KEYS).unwrap();
        let cache = TokenCache::default();
        let issued = 1_800_000_000;
        let token = keys.sign(claims("u1"), at(issued));
        let first = cache.verify(&keys, &token, at(issued), "tepi", "tepi-api");
        assert_eq!(first.unwrap().sub, "u1");
        assert_eq!(cache.len(), 1);
        // Answered again, and still one entry.
        let again = cache.verify(&keys, &token, at(issued + 60), "tepi", "tepi-api");
        assert_eq!(again.unwrap().sub, "u1");
        assert_eq!(cache.len(), 1);
        // Within the leeway after `exp` it still holds, as verification would.
        let edge = issued + ACCESS_TOKEN_SECONDS + LEEWAY_SECONDS;
        assert!(
            cache
                .verify(&keys, &token, at(edge), "tepi", "tepi-api")
                .is_ok()
        );
        assert!(keys.verify(&token, at(edge), "tepi", "tepi-api").is_ok());
        // One second later both refuse it: the cache never outlives `exp`.
        assert_eq!(
            cache.verify(&keys, &token, at(edge + 1), "tepi", "tepi-api"),
            Err(TokenError::Expired)
        );
        assert_eq!(
            keys.verify(&token, at(edge + 1), "tepi", "tepi-api"),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_token_differing_in_any_byte_is_verified_in_full() {
        let keys = SigningKeys::parse(KEYS).unwrap();
        let other_key = SigningKeys::parse(OTHER).unwrap();
        let cache = TokenCache::default();
        let now = at(1_800_000_000);
        let genuine = keys.sign(claims("u1"), now);
        assert!(
            cache
                .verify(&keys, &genuine, now, "tepi", "tepi-api")
                .is_ok()
        );
        // Same kid and claims, another key: refused although a token for
        // the same subject is cached.
        let forged = other_key.sign(claims("u1"), now);
        assert_eq!(
            cache.verify(&keys, &forged, now, "tepi", "tepi-api"),
            Err(TokenError::BadSignature)
        );
        // The genuine token with its last signature character changed.
        let mut tampered = genuine.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(
            cache
                .verify(&keys, &tampered, now, "tepi", "tepi-api")
                .is_err()
        );
        // Refusals are not remembered.
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_token_for_another_audience_is_not_admitted_through_the_cache() {
        let keys = SigningKeys::parse(KEYS).unwrap();
        let cache = TokenCache::default();
        let now = at(1_800_000_000);
        let mut other = claims("u1");
        other.aud = "elsewhere".into();
        let token = keys.sign(other, now);
        for _ in 0..2 {
            assert_eq!(
                cache.verify(&keys, &token, now, "tepi", "tepi-api"),
                Err(TokenError::WrongAudience)
            );
        }
        assert!(cache.is_empty());
    }

    #[test]
    fn the_table_stays_bounded() {
        let keys = SigningKeys::parse(KEYS).unwrap();
        let cache = TokenCache::default();
        let now = at(1_800_000_000);
        for i in 0..=CAPACITY {
            let token = keys.sign(claims(&format!("u{i}")), now);
            assert!(cache.verify(&keys, &token, now, "tepi", "tepi-api").is_ok());
            assert!(cache.len() <= CAPACITY);
        }
        // All live at capacity: it started again with the newest.
        assert_eq!(cache.len(), 1);
        // Expired entries are dropped first when there are some.
        let later = at(1_800_000_000 + ACCESS_TOKEN_SECONDS + LEEWAY_SECONDS + 1);
        for i in 0..CAPACITY {
            let token = keys.sign(claims(&format!("v{i}")), later);
            assert!(
                cache
                    .verify(&keys, &token, later, "tepi", "tepi-api")
                    .is_ok()
            );
        }
        assert_eq!(cache.len(), CAPACITY);
    }
}
