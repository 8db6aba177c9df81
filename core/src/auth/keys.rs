//! Access tokens: `EdDSA` (Ed25519) JWTs signed and verified with
//! `jwt-compact`, keys from the `JWT_SIGNING_KEYS` secret, public keys as a
//! JWK set.
//!
//! `JWT_SIGNING_KEYS` is a comma-separated list of `kid:seed` pairs, the
//! seed being 32 random bytes in base64url. The first key signs; every key
//! verifies. To rotate, put a new key first, keep the old one until the
//! tokens it signed have expired, then remove it.

use base64ct::{Base64UrlUnpadded, Encoding};
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jwt_compact::alg::Ed25519;
use jwt_compact::{AlgorithmExt, Claims, Header, TimeOptions, UntrustedToken, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::time::Timestamp;

/// How long an access token lives.
pub const ACCESS_TOKEN_SECONDS: i64 = 15 * 60;
/// Tolerated clock difference between issuer and verifier.
pub const LEEWAY_SECONDS: i64 = 30;
const ALGORITHM: &str = "EdDSA";

/// The claims Tepi puts in an access token, besides `iat`/`nbf`/`exp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The tenant id (slug).
    pub tenant: String,
    /// `admin` or `user`.
    pub role: String,
    /// A unique token id.
    pub jti: String,
}

/// Why a token was refused, as the `error_description` of
/// `WWW-Authenticate`. Says nothing a forger could use beyond the category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    UnsupportedAlgorithm,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
}

impl TokenError {
    pub fn description(self) -> &'static str {
        match self {
            Self::Malformed => "the token is malformed",
            Self::UnsupportedAlgorithm => "the token's algorithm is not EdDSA",
            Self::UnknownKey => "the token's key id is unknown",
            Self::BadSignature => "the token's signature is invalid",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::IssuedInFuture => "the token was issued in the future",
            Self::WrongIssuer => "the token's issuer is not accepted",
            Self::WrongAudience => "the token is for another audience",
            Self::MissingClaim => "the token lacks a required claim",
        }
    }
}

struct Key {
    kid: String,
    signing: SigningKey,
    verifying: VerifyingKey,
}

/// The parsed `JWT_SIGNING_KEYS`. `Debug` shows key ids only.
pub struct SigningKeys {
    keys: Vec<Key>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("SigningKeys").field("kids", &kids).finish()
    }
}

impl Clone for SigningKeys {
    fn clone(&self) -> Self {
        Self {
            keys: self
                .keys
                .iter()
                .map(|k| Key {
                    kid: k.kid.clone(),
                    signing: k.signing.clone(),
                    verifying: k.verifying,
                })
                .collect(),
        }
    }
}

impl PartialEq for SigningKeys {
    fn eq(&self, other: &Self) -> bool {
        self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|(a, b)| a.kid == b.kid && a.verifying == b.verifying)
    }
}

impl Eq for SigningKeys {}

fn valid_kid(kid: &str) -> bool {
    (1..=64).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl SigningKeys {
    /// Parses `kid:seed[,kid:seed…]`. The error names the offending entry by
    /// position and kid, never by its seed.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut keys: Vec<Key> = Vec::new();
        for (i, entry) in raw.split(',').map(str::trim).enumerate() {
            let n = i + 1;
            let Some((kid, seed)) = entry.split_once(':') else {
                return Err(format!("entry {n} is not `kid:base64url-seed`"));
            };
            if !valid_kid(kid) {
                return Err(format!(
                    "entry {n}: key id must be 1-64 characters of A-Z a-z 0-9 - _ ."
                ));
            }
            if keys.iter().any(|k| k.kid == kid) {
                return Err(format!("entry {n}: key id {kid:?} appears twice"));
            }
            let mut bytes = [0u8; 32];
            let decoded = Base64UrlUnpadded::decode(seed.trim_end_matches('='), &mut bytes)
                .map_err(|_| format!("key {kid:?}: the seed is not base64url"))?;
            if decoded.len() != 32 {
                return Err(format!(
                    "key {kid:?}: the seed must be 32 bytes, got {}",
                    decoded.len()
                ));
            }
            let signing = SigningKey::from_bytes(&bytes);
            keys.push(Key {
                kid: kid.to_owned(),
                verifying: signing.verifying_key(),
                signing,
            });
        }
        if keys.is_empty() {
            return Err("no keys".to_owned());
        }
        Ok(Self { keys })
    }

    /// Every key id, the signing one first.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    /// The key id new tokens are signed with.
    pub fn active_kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// Every public key as a JWK set (RFC 7517, OKP keys of RFC 8037).
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": Base64UrlUnpadded::encode_string(k.verifying.as_bytes()),
                    "kid": k.kid,
                    "alg": ALGORITHM,
                    "use": "sig",
                })
            })
            .collect();
        json!({ "keys": keys })
    }

    /// Signs an access token valid from `now` for `ACCESS_TOKEN_SECONDS`.
    pub fn sign(&self, claims: AccessClaims, now: Timestamp) -> String {
        let key = &self.keys[0];
        let now = to_datetime(now);
        let mut claims = Claims::new(claims);
        claims.issued_at = Some(now);
        claims.not_before = Some(now);
        claims.expiration = Some(now + Duration::seconds(ACCESS_TOKEN_SECONDS));
        let header = Header::empty()
            .with_key_id(key.kid.clone())
            .with_token_type("JWT");
        Ed25519
            .token(&header, &claims, &key.signing)
            .expect("claims of strings and times always serialise")
    }

    /// Verifies signature, algorithm, key id, `exp`/`nbf`/`iat` (with
    /// leeway against `now`), `iss` and `aud`.
    pub fn verify(
        &self,
        token: &str,
        now: Timestamp,
        issuer: &str,
        audience: &str,
    ) -> Result<AccessClaims, TokenError> {
        self.verify_with_expiry(token, now, issuer, audience)
            .map(|(claims, _)| claims)
    }

    /// `verify`, also answering the token's `exp` (seconds since the epoch).
    pub fn verify_with_expiry(
        &self,
        token: &str,
        now: Timestamp,
        issuer: &str,
        audience: &str,
    ) -> Result<(AccessClaims, i64), TokenError> {
        let untrusted = UntrustedToken::new(token).map_err(|_| TokenError::Malformed)?;
        if untrusted.algorithm() != ALGORITHM {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let kid = untrusted
            .header()
            .key_id
            .as_deref()
            .ok_or(TokenError::UnknownKey)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::UnknownKey)?;
        let token = Ed25519
            .validator::<AccessClaims>(&key.verifying)
            .validate(&untrusted)
            .map_err(|e| match e {
                ValidationError::AlgorithmMismatch { .. } => TokenError::UnsupportedAlgorithm,
                ValidationError::InvalidSignature | ValidationError::MalformedSignature(_) => {
                    TokenError::BadSignature
                }
                _ => TokenError::Malformed,
            })?;
        let claims = token.claims();
        let now = to_datetime(now);
        let leeway = Duration::seconds(LEEWAY_SECONDS);
        let options = TimeOptions::new(leeway, move || now);
        claims.validate_expiration(&options).map_err(time_error)?;
        claims.validate_maturity(&options).map_err(time_error)?;
        match claims.issued_at {
            None => return Err(TokenError::MissingClaim),
            Some(iat) if iat > now + leeway => return Err(TokenError::IssuedInFuture),
            Some(_) => {}
        }
        let custom = &claims.custom;
        if custom.iss != issuer {
            return Err(TokenError::WrongIssuer);
        }
        if custom.aud != audience {
            return Err(TokenError::WrongAudience);
        }
        if [&custom.sub, &custom.tenant, &custom.role, &custom.jti]
            .iter()
            .any(|c| c.is_empty())
        {
            return Err(TokenError::MissingClaim);
        }
        let expires = claims
            .expiration
            .ok_or(TokenError::MissingClaim)?
            .timestamp();
        Ok((custom.clone(), expires))
    }
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(time_error)`
fn time_error(e: ValidationError) -> TokenError {
    match e {
        ValidationError::Expired => TokenError::Expired,
        ValidationError::NotMature => TokenError::NotYetValid,
        _ => TokenError::MissingClaim,
    }
}

fn to_datetime(now: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(now.as_unix_secs(), 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests;
