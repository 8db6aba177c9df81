//! HTTP caching: `Cache-Control` per route, strong `ETag`s with
//! `If-None-Match` → 304, and a shared cache for responses that are the same
//! for every caller (the Workers Cache API, or key-value with a TTL on Spin).
//!
//! Only routes whose policy is `Shared` ever touch the shared cache, and
//! those need no credentials: a response that depends on who asks (anything
//! tenant-scoped) is `Private` and is never stored there.

use async_trait::async_trait;
use base64ct::{Base64UrlUnpadded, Encoding};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::ports::{Cache, Cached};
use crate::ports::{KeyValue, PortError};
use crate::time::Timestamp;

/// How a route's successful `GET` answers may be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// Never stored anywhere (tokens, probes, metrics).
    NoStore,
    /// Per caller: browsers may keep it but must revalidate (`ETag`); shared
    /// caches must not store it.
    Private,
    /// The same for everyone: shared caches keep it `max_age` seconds, and
    /// Tepi serves it from its own shared cache.
    Shared { max_age: u32 },
}

impl CachePolicy {
    pub fn header(self) -> HeaderValue {
        match self {
            Self::NoStore => HeaderValue::from_static("no-store"),
            Self::Private => HeaderValue::from_static("private, no-cache"),
            Self::Shared { max_age } => {
                HeaderValue::from_str(&format!("public, max-age={max_age}"))
                    .unwrap_or(HeaderValue::from_static("no-store"))
            }
        }
    }
}

/// A strong validator: the SHA-256 of the body, base64url, quoted.
pub fn etag(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let tag = format!("\"{}\"", Base64UrlUnpadded::encode_string(&digest[..16]));
    HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"\""))
}

/// Whether `If-None-Match` names `tag` (or is `*`). Weak comparison, as
/// RFC 9110 §13.1.2 prescribes for this header.
pub fn not_modified(request: &HeaderMap, tag: &HeaderValue) -> bool {
    let tag = tag.to_str().unwrap_or_default();
    let bare = tag.trim_start_matches("W/");
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == bare)
}

impl Cached {
    pub fn from_response(response: &Response<Bytes>) -> Self {
        Self {
            status: response.status().as_u16(),
            headers: response
                .headers()
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            body: response.body().to_vec(),
        }
    }

    pub fn into_response(self) -> Response<Bytes> {
        let mut response = Response::new(Bytes::from(self.body));
        *response.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

/// The shared cache on a key-value store (Spin): entries carry their expiry
/// and are ignored, then overwritten, once it has passed.
#[derive(Clone, Copy)]
pub struct KvCache<'a>(pub &'a dyn KeyValue);

impl std::fmt::Debug for KvCache<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KvCache")
    }
}

#[derive(Serialize, Deserialize)]
struct Entry {
    expires_at_micros: u64,
    value: Cached,
}

#[async_trait(?Send)]
impl Cache for KvCache<'_> {
    async fn get(&self, key: &str, now: Timestamp) -> Result<Option<Cached>, PortError> {
        let Some(bytes) = self.0.get(key).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice::<Entry>(&bytes)
            .ok()
            .filter(|e| e.expires_at_micros > now.as_unix_micros())
            .map(|e| e.value))
    }

    async fn put(
        &self,
        key: &str,
        value: &Cached,
        ttl_secs: u32,
        now: Timestamp,
    ) -> Result<(), PortError> {
        let entry = Entry {
            expires_at_micros: now.as_unix_micros() + u64::from(ttl_secs) * 1_000_000,
            value: value.clone(),
        };
        let bytes = serde_json::to_vec(&entry).map_err(|e| PortError(e.to_string()))?;
        self.0.set(key, &bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MemoryKv, block_on};

    #[test]
    fn etags_are_strong_and_change_with_the_body() {
        let a = etag(b"{\"a\":1}");
        let b = etag(b"{\"a\":2}");
        assert_ne!(a, b);
        assert_eq!(a, etag(b"{\"a\":1}"));
        let text = a.to_str().unwrap();
        assert!(text.starts_with('"') && text.ends_with('"') && !text.starts_with("W/"));
    }

    #[test]
    fn if_none_match_matches_listed_tags_and_star() {
        let tag = etag(b"x");
        let t = tag.to_str().unwrap().to_owned();
        let cases = [
            (t.clone(), true, "the same tag"),
            (format!("\"other\", {t}"), true, "one of a list"),
            (format!("W/{t}"), true, "weak comparison"),
            ("*".to_owned(), true, "any"),
            ("\"other\"".to_owned(), false, "another tag"),
        ];
        for (header_value, want, why) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, header_value.parse().unwrap());
            assert_eq!(not_modified(&headers, &tag), want, "{why}");
        }
        assert!(!not_modified(&HeaderMap::new(), &tag), "no header");
    }

    #[test]
    fn kv_cache_entries_expire() {
        let kv = MemoryKv::default();
        let cache = KvCache(&kv);
        let value = Cached {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{}".to_vec(),
        };
        let t0 = Timestamp::from_unix_micros(1_000_000_000);
        block_on(cache.put("k", &value, 60, t0)).unwrap();
        let at = |secs: u64| Timestamp::from_unix_micros(t0.as_unix_micros() + secs * 1_000_000);
        assert_eq!(block_on(cache.get("k", at(59))).unwrap(), Some(value));
        assert_eq!(block_on(cache.get("k", at(60))).unwrap(), None, "expired");
        assert_eq!(block_on(cache.get("absent", t0)).unwrap(), None);
    }
}
