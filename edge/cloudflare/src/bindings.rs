//! The platform bindings declared in `wrangler.toml` as the core's ports:
//! KV, R2, the queue producers, `fetch`, timers, the Rate Limiting bindings
//! and the Cache API. The metrics Durable Object is in `metrics_object`,
//! the readiness probes in `probes`.

use async_trait::async_trait;
use tepi_core::api::caching::{Cache, Cached};
use tepi_core::ratelimit::Limiter;
use tepi_core::{
    Blob, Blobs, Bytes, HttpClient, Jobs, KeyValue, PortError, Queue, Timestamp, http,
};
use tepi_queue_consumer::bindings as queues;
use worker::{Env, KvStore, Request, Response, web_sys};

/// Binding names, exactly as in `wrangler.toml`. The queue producers'
/// are `tepi_queue_consumer::bindings`.
pub const DB: &str = "DB";
pub const CACHE: &str = "CACHE";
pub const UPLOADS: &str = "UPLOADS";
pub const METRICS: &str = "METRICS";

/// The Rate Limiting binding of a route class (`RouteClass::as_str`):
/// `RATE_LIMITER_<CLASS>` (`[[ratelimits]]`).
pub fn rate_limiter(class: &str) -> String {
    format!("RATE_LIMITER_{}", class.to_ascii_uppercase())
}

/// The `CACHE` namespace as the core's key-value port.
pub struct WorkersKv(KvStore);

impl WorkersKv {
    pub fn new(env: &Env) -> Option<Self> {
        env.kv(CACHE).ok().map(Self)
    }
}

fn kv_error(e: &worker::kv::KvError) -> PortError {
    PortError(format!("binding {CACHE}: {e}"))
}

#[async_trait(?Send)]
impl KeyValue for WorkersKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        self.0.get(key).bytes().await.map_err(|e| kv_error(&e))
    }
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), PortError> {
        self.0
            .put_bytes(key, value)
            .map_err(|e| kv_error(&e))?
            .execute()
            .await
            .map_err(|e| kv_error(&e))
    }
    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.0.delete(key).await.map_err(|e| kv_error(&e))
    }
}

/// The `UPLOADS` R2 bucket as the core's blob store.
pub struct R2Blobs<'e>(pub &'e Env);

fn r2_error(e: &impl std::fmt::Display) -> PortError {
    port_error(UPLOADS, e)
}

#[async_trait(?Send)]
impl Blobs for R2Blobs<'_> {
    async fn put(&self, key: &str, body: &[u8], content_type: &str) -> Result<(), PortError> {
        let bucket = self.0.bucket(UPLOADS).map_err(|e| r2_error(&e))?;
        bucket
            .put(key, body.to_vec())
            .http_metadata(worker::HttpMetadata {
                content_type: Some(content_type.to_owned()),
                ..Default::default()
            })
            .execute()
            .await
            .map(drop)
            .map_err(|e| r2_error(&e))
    }

    async fn get(&self, key: &str) -> Result<Option<Blob>, PortError> {
        let bucket = self.0.bucket(UPLOADS).map_err(|e| r2_error(&e))?;
        let Some(object) = bucket.get(key).execute().await.map_err(|e| r2_error(&e))? else {
            return Ok(None);
        };
        let content_type = object
            .http_metadata()
            .content_type
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let body = match object.body() {
            Some(body) => body.bytes().await.map_err(|e| r2_error(&e))?,
            None => Vec::new(),
        };
        Ok(Some(Blob { body, content_type }))
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        let bucket = self.0.bucket(UPLOADS).map_err(|e| r2_error(&e))?;
        bucket.delete(key).await.map_err(|e| r2_error(&e))
    }
}

/// The Queue producer bindings: one per job family.
pub struct QueueJobs<'e>(pub &'e Env);

#[async_trait(?Send)]
impl Jobs for QueueJobs<'_> {
    /// Sends the envelope as a JSON object (previewable in the dashboard).
    async fn enqueue_after(
        &self,
        queue: Queue,
        envelope: &str,
        delay_secs: u32,
    ) -> Result<(), PortError> {
        let name = queues::jobs(queue);
        let producer = self.0.queue(&name).map_err(|e| port_error(&name, &e))?;
        let message = worker::js_sys::JSON::parse(envelope)
            .map_err(|_| PortError(format!("binding {name}: the envelope is not JSON")))?;
        producer
            .send_raw(
                worker::RawMessageBuilder::new(message)
                    .delay_seconds(delay_secs)
                    .build_with_content_type(worker::QueueContentType::Json),
            )
            .await
            .map_err(|e| port_error(&name, &e))
    }
}

/// Outbound HTTP through the runtime's `fetch`.
pub struct Fetch;

#[async_trait(?Send)]
impl HttpClient for Fetch {
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, PortError> {
        let fail = |e: worker::Error| PortError(format!("fetch: {e}"));
        let request = to_worker_request(request).map_err(fail)?;
        let response = worker::Fetch::Request(request).send().await.map_err(fail)?;
        from_worker_response(response).await.map_err(fail)
    }
}

/// The core's request as the runtime's. Redirects are answers, not
/// followed (as on Spin): a 3xx fails a webhook delivery instead of sending
/// the signed body elsewhere.
pub fn to_worker_request(request: http::Request<Bytes>) -> worker::Result<Request> {
    let (parts, body) = request.into_parts();
    let headers = worker::Headers::new();
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            headers.append(name.as_str(), value)?;
        }
    }
    // The runtime's own `RequestInit`, not workers-rs's: that one converts
    // its `cf` options (image resizing and the like) on every request, code
    // nothing here sets.
    let init = web_sys::RequestInit::new();
    init.set_method(parts.method.as_str());
    init.set_headers(headers.as_ref());
    init.set_redirect(web_sys::RequestRedirect::Manual);
    if !body.is_empty() {
        init.set_body(&worker::js_sys::Uint8Array::from(body.as_ref()).into());
    }
    web_sys::Request::new_with_str_and_init(&parts.uri.to_string(), &init)
        .map(Request::from)
        .map_err(|e| {
            worker::Error::JsError(
                e.as_string()
                    .unwrap_or_else(|| "invalid URL or options for Request".to_owned()),
            )
        })
}

/// The runtime's answer, buffered: its status and body.
pub async fn from_worker_response(mut response: Response) -> worker::Result<http::Response<Bytes>> {
    let status = response.status_code();
    let mut answer = http::Response::new(Bytes::from(response.bytes().await?));
    *answer.status_mut() = http::StatusCode::from_u16(status)
        .map_err(|e| worker::Error::RustError(format!("status {status}: {e}")))?;
    Ok(answer)
}

/// Timers: `setTimeout`.
pub struct Timer;

#[async_trait(?Send)]
impl tepi_core::Timer for Timer {
    async fn sleep(&self, millis: u32) {
        worker::Delay::from(std::time::Duration::from_millis(u64::from(millis))).await;
    }
}

/// The class's Rate Limiting binding, per Cloudflare location.
pub struct RateLimiters<'e>(pub &'e Env);

#[async_trait(?Send)]
impl Limiter for RateLimiters<'_> {
    async fn allow(&self, class: &str, key: &str) -> Result<bool, PortError> {
        let name = rate_limiter(class);
        let limiter = self
            .0
            .rate_limiter(&name)
            .map_err(|e| port_error(&name, &e))?;
        let outcome = limiter
            .limit(key.to_owned())
            .await
            .map_err(|e| port_error(&name, &e))?;
        Ok(outcome.success)
    }
}

/// An operator's reason: which binding failed, in the platform's words.
pub fn reason(binding: &str, e: &impl std::fmt::Display) -> String {
    format!("binding {binding}: {e}")
}

pub fn port_error(binding: &str, e: &impl std::fmt::Display) -> PortError {
    PortError(reason(binding, e))
}

/// The zone's Cache API (`caches.default`) as the shared cache. Entries
/// live under a synthetic URL per key; `max-age` sets their lifetime. (On
/// `workers.dev` hostnames Cloudflare keeps nothing; `wrangler dev`
/// simulates the cache locally.)
pub struct WorkersCache;

fn cache_url(key: &str) -> String {
    format!(
        "https://shared-cache.tepi.invalid/{}",
        tepi_core::secret::digest(key)
    )
}

#[async_trait(?Send)]
impl Cache for WorkersCache {
    async fn get(&self, key: &str, _now: Timestamp) -> Result<Option<Cached>, PortError> {
        let cache = worker::Cache::default();
        let Some(mut response) = cache
            .get(cache_url(key), true)
            .await
            .map_err(|e| PortError(format!("cache: {e}")))?
        else {
            return Ok(None);
        };
        let headers = response
            .headers()
            .get("content-type")
            .ok()
            .flatten()
            .map(|v| vec![("content-type".to_owned(), v)])
            .unwrap_or_default();
        let body = response
            .bytes()
            .await
            .map_err(|e| PortError(format!("cache: {e}")))?;
        Ok(Some(Cached {
            status: response.status_code(),
            headers,
            body,
        }))
    }

    async fn put(
        &self,
        key: &str,
        value: &Cached,
        ttl_secs: u32,
        _now: Timestamp,
    ) -> Result<(), PortError> {
        let headers = worker::Headers::new();
        for (name, v) in &value.headers {
            headers
                .append(name, v)
                .map_err(|e| PortError(format!("cache: {e}")))?;
        }
        headers
            .set("cache-control", &format!("public, max-age={ttl_secs}"))
            .map_err(|e| PortError(format!("cache: {e}")))?;
        let response = worker::ResponseBuilder::new()
            .with_status(value.status)
            .with_headers(headers)
            .fixed(value.body.clone());
        worker::Cache::default()
            .put(cache_url(key), response)
            .await
            .map_err(|e| PortError(format!("cache: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use tepi_core::ratelimit::RouteClass;

    use super::rate_limiter;

    #[test]
    fn every_route_class_has_its_rate_limiter_in_wrangler_toml() {
        let wrangler = include_str!("../../../wrangler.toml");
        assert_eq!(
            rate_limiter(RouteClass::Login.as_str()),
            "RATE_LIMITER_LOGIN"
        );
        for class in RouteClass::ALL {
            let name = rate_limiter(class.as_str());
            assert!(
                wrangler.contains(&format!("name = \"{name}\"")),
                "{name} is not a [[ratelimits]] binding of wrangler.toml"
            );
        }
    }
}
