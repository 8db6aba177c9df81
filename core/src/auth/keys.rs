//! Access tokens: `EdDSA` (Ed25519) JWTs in JWS compact form (RFC 7515,
//! RFC 8037), keys from the `JWT_SIGNING_KEYS` secret, public keys as a
//! JWK set. Written here on `ed25519-dalek` rather than through a JWT
//! crate: one algorithm, a fixed header and a fixed set of claims are
//! a few dozen lines, and a general JWT library's header and claims
//! handling was 30 KB of each build. The tests check tokens against
//! `jwt-compact`, an independent implementation.
//!
//! `JWT_SIGNING_KEYS` is a comma-separated list of `kid:seed` pairs, the
//! seed being 32 random bytes in base64url. The first key signs; every key
//! verifies. To rotate, put a new key first, keep the old one until the
//! tokens it signed have expired, then remove it.

use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

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
        let iat = now.as_unix_secs();
        let AccessClaims {
            iss,
            aud,
            sub,
            tenant,
            role,
            jti,
        } = claims;
        let header = json!({"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"});
        let payload = json!({
            "iss": iss,
            "aud": aud,
            "sub": sub,
            "tenant": tenant,
            "role": role,
            "jti": jti,
            "iat": iat,
            "nbf": iat,
            "exp": iat + ACCESS_TOKEN_SECONDS,
        });
        let input = format!("{}.{}", segment(&header), segment(&payload));
        let signature = key.signing.sign(input.as_bytes());
        format!(
            "{input}.{}",
            Base64UrlUnpadded::encode_string(&signature.to_bytes())
        )
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
    /// The checks run in this order, each with its own error: the three
    /// segments decode (`Malformed`), `alg` is `EdDSA`, `kid` names a
    /// configured key, the signature verifies (strictly: no malleable or
    /// weak-key signatures), the claims are an object of the expected
    /// types (`Malformed`), then `exp`, `nbf`, `iat`, `iss`, `aud` and the
    /// non-empty identity claims.
    pub fn verify_with_expiry(
        &self,
        token: &str,
        now: Timestamp,
        issuer: &str,
        audience: &str,
    ) -> Result<(AccessClaims, i64), TokenError> {
        let mut segments = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let header = json_object(header).ok_or(TokenError::Malformed)?;
        let payload_bytes =
            Base64UrlUnpadded::decode_vec(payload).map_err(|_| TokenError::Malformed)?;
        let signature =
            Base64UrlUnpadded::decode_vec(signature).map_err(|_| TokenError::Malformed)?;
        match header.get("alg") {
            Some(Value::String(alg)) if alg == ALGORITHM => {}
            Some(Value::String(_)) => return Err(TokenError::UnsupportedAlgorithm),
            _ => return Err(TokenError::Malformed),
        }
        let kid = match header.get("kid") {
            None => return Err(TokenError::UnknownKey),
            Some(Value::String(kid)) => kid,
            Some(_) => return Err(TokenError::Malformed),
        };
        let key = self
            .keys
            .iter()
            .find(|k| &k.kid == kid)
            .ok_or(TokenError::UnknownKey)?;
        let signature: [u8; 64] = signature.try_into().map_err(|_| TokenError::BadSignature)?;
        let signed = &token[..token.rfind('.').unwrap_or(0)];
        key.verifying
            .verify_strict(signed.as_bytes(), &Signature::from_bytes(&signature))
            .map_err(|_| TokenError::BadSignature)?;

        let claims: Map<String, Value> = match serde_json::from_slice(&payload_bytes) {
            Ok(Value::Object(claims)) => claims,
            _ => return Err(TokenError::Malformed),
        };
        let text = |name: &str| match claims.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(TokenError::Malformed),
        };
        let time = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(value) => value.as_i64().map(Some).ok_or(TokenError::Malformed),
        };
        let custom = AccessClaims {
            iss: text("iss")?,
            aud: text("aud")?,
            sub: text("sub")?,
            tenant: text("tenant")?,
            role: text("role")?,
            jti: text("jti")?,
        };
        let (exp, nbf, iat) = (time("exp")?, time("nbf")?, time("iat")?);
        let now = now.as_unix_secs();
        let expires = exp.ok_or(TokenError::MissingClaim)?;
        if expires.saturating_add(LEEWAY_SECONDS) < now {
            return Err(TokenError::Expired);
        }
        if nbf.ok_or(TokenError::MissingClaim)? > now.saturating_add(LEEWAY_SECONDS) {
            return Err(TokenError::NotYetValid);
        }
        if iat.ok_or(TokenError::MissingClaim)? > now.saturating_add(LEEWAY_SECONDS) {
            return Err(TokenError::IssuedInFuture);
        }
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
        Ok((custom, expires))
    }
}

/// A JSON value as a JWS segment: base64url of its bytes, unpadded.
fn segment(value: &Value) -> String {
    Base64UrlUnpadded::encode_string(value.to_string().as_bytes())
}

/// A segment holding a JSON object, or `None`.
fn json_object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = Base64UrlUnpadded::decode_vec(segment).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(object) => Some(object),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
