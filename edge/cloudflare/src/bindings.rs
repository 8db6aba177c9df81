//! The platform bindings declared in `wrangler.toml`, as readiness probes,
//! and the Durable Object class they name.

use async_trait::async_trait;
use tepi_core::api::caching::{Cache, Cached};
use tepi_core::ratelimit::{Limiter, RouteClass};
use tepi_core::{Blob, Blobs, HttpClient, Jobs, KeyValue, PortError, Probe, Queue, Timestamp};
use worker::{DurableObject, Env, KvStore, Request, Response, State, durable_object};

/// Binding names, exactly as in `wrangler.toml`.
pub const DB: &str = "DB";
pub const CACHE: &str = "CACHE";
pub const UPLOADS: &str = "UPLOADS";
pub const METRICS: &str = "METRICS";
/// One Rate Limiting binding per route class (`[[ratelimits]]`).
pub const RATE_LIMITERS: [(RouteClass, &str); 5] = [
    (RouteClass::Login, "RATE_LIMITER_LOGIN"),
    (RouteClass::Public, "RATE_LIMITER_PUBLIC"),
    (RouteClass::Api, "RATE_LIMITER_API"),
    (RouteClass::Admin, "RATE_LIMITER_ADMIN"),
    (RouteClass::Push, "RATE_LIMITER_PUSH"),
];
pub const QUEUES: [&str; 4] = [
    "JOBS_WORKFLOWS",
    "JOBS_NOTIFICATIONS",
    "JOBS_META_EVENTS",
    "JOBS_UPLOADS",
];
/// The dead-letter queue of each, in the same order.
pub const DEAD_LETTER_QUEUES: [&str; 4] = [
    "JOBS_WORKFLOWS_DLQ",
    "JOBS_NOTIFICATIONS_DLQ",
    "JOBS_META_EVENTS_DLQ",
    "JOBS_UPLOADS_DLQ",
];

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
    PortError(reason(UPLOADS, e))
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

fn queue_index(queue: Queue) -> usize {
    match queue {
        Queue::Workflows => 0,
        Queue::Notifications => 1,
        Queue::MetaEvents => 2,
        Queue::Uploads => 3,
    }
}

fn queue_binding(queue: Queue) -> &'static str {
    QUEUES[queue_index(queue)]
}

/// The producer binding of `queue`'s dead-letter queue.
pub fn dead_letter_binding(queue: Queue) -> &'static str {
    DEAD_LETTER_QUEUES[queue_index(queue)]
}

#[async_trait(?Send)]
impl Jobs for QueueJobs<'_> {
    /// Sends the envelope as a JSON object (previewable in the dashboard).
    async fn enqueue_after(
        &self,
        queue: Queue,
        envelope: &str,
        delay_secs: u32,
    ) -> Result<(), PortError> {
        let name = queue_binding(queue);
        let producer = self.0.queue(name).map_err(|e| reason_port(name, &e))?;
        let message = worker::js_sys::JSON::parse(envelope)
            .map_err(|_| PortError(format!("binding {name}: the envelope is not JSON")))?;
        producer
            .send_raw(
                worker::RawMessageBuilder::new(message)
                    .delay_seconds(delay_secs)
                    .build_with_content_type(worker::QueueContentType::Json),
            )
            .await
            .map_err(|e| reason_port(name, &e))
    }
}

/// Outbound HTTP through the runtime's `fetch`.
pub struct Fetch;

#[async_trait(?Send)]
impl HttpClient for Fetch {
    async fn send(
        &self,
        request: tepi_core::http::Request<tepi_core::Bytes>,
    ) -> Result<tepi_core::http::Response<tepi_core::Bytes>, PortError> {
        let fail = |e: worker::Error| PortError(format!("fetch: {e}"));
        let (parts, body) = request.into_parts();
        let headers = worker::Headers::new();
        for (name, value) in &parts.headers {
            if let Ok(value) = value.to_str() {
                headers.append(name.as_str(), value).map_err(fail)?;
            }
        }
        let mut init = worker::RequestInit::new();
        // Redirects are answers, not followed (as on Spin): a 3xx fails the
        // delivery instead of sending the signed body elsewhere.
        init.with_method(worker::Method::from(parts.method.as_str().to_owned()))
            .with_headers(headers)
            .with_redirect(worker::RequestRedirect::Manual);
        if !body.is_empty() {
            init.with_body(Some(worker::js_sys::Uint8Array::from(body.as_ref()).into()));
        }
        let request = Request::new_with_init(&parts.uri.to_string(), &init).map_err(fail)?;
        let mut response = worker::Fetch::Request(request).send().await.map_err(fail)?;
        let status = response.status_code();
        let bytes = response.bytes().await.map_err(fail)?;
        let mut answer = tepi_core::http::Response::new(tepi_core::Bytes::from(bytes));
        *answer.status_mut() = tepi_core::http::StatusCode::from_u16(status)
            .map_err(|e| PortError(format!("fetch: status {status}: {e}")))?;
        Ok(answer)
    }
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
    async fn allow(&self, class: RouteClass, key: &str) -> Result<bool, PortError> {
        let Some((_, name)) = RATE_LIMITERS.iter().find(|(c, _)| *c == class) else {
            return Ok(true);
        };
        let limiter = self
            .0
            .rate_limiter(name)
            .map_err(|e| reason_port(name, &e))?;
        let outcome = limiter
            .limit(key.to_owned())
            .await
            .map_err(|e| reason_port(name, &e))?;
        Ok(outcome.success)
    }
}

fn reason_port(binding: &str, e: &impl std::fmt::Display) -> PortError {
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

/// Each probe makes one real call through its binding where that is free of
/// side effects, and otherwise checks that the binding exists.
pub struct Probes<'e> {
    db: D1Probe<'e>,
    cache: KvProbe<'e>,
    uploads: R2Probe<'e>,
    metrics: DurableObjectProbe<'e>,
    present: Vec<Present<'e>>,
}

impl<'e> Probes<'e> {
    pub fn new(env: &'e Env) -> Self {
        let mut present: Vec<Present<'e>> = QUEUES
            .iter()
            .chain(DEAD_LETTER_QUEUES.iter())
            .map(|name| Present {
                env,
                name,
                kind: Kind::Queue,
            })
            .collect();
        present.extend(RATE_LIMITERS.iter().map(|(_, name)| Present {
            env,
            name,
            kind: Kind::RateLimiter,
        }));
        Self {
            db: D1Probe(env),
            cache: KvProbe(env),
            uploads: R2Probe(env),
            metrics: DurableObjectProbe(env),
            present,
        }
    }

    pub fn all(&self) -> Vec<&dyn Probe> {
        let mut all: Vec<&dyn Probe> = vec![&self.db, &self.cache, &self.uploads, &self.metrics];
        all.extend(self.present.iter().map(|p| p as &dyn Probe));
        all
    }
}

fn reason(binding: &str, e: &impl std::fmt::Display) -> String {
    format!("binding {binding}: {e}")
}

struct D1Probe<'e>(&'e Env);

#[async_trait(?Send)]
impl Probe for D1Probe<'_> {
    fn name(&self) -> &str {
        DB
    }
    async fn check(&self) -> Result<(), String> {
        let db = self.0.d1(DB).map_err(|e| reason(DB, &e))?;
        db.exec("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| reason(DB, &e))
    }
}

struct KvProbe<'e>(&'e Env);

#[async_trait(?Send)]
impl Probe for KvProbe<'_> {
    fn name(&self) -> &str {
        CACHE
    }
    async fn check(&self) -> Result<(), String> {
        let kv = self.0.kv(CACHE).map_err(|e| reason(CACHE, &e))?;
        kv.get("readyz")
            .text()
            .await
            .map(|_| ())
            .map_err(|e| reason(CACHE, &e))
    }
}

struct R2Probe<'e>(&'e Env);

#[async_trait(?Send)]
impl Probe for R2Probe<'_> {
    fn name(&self) -> &str {
        UPLOADS
    }
    async fn check(&self) -> Result<(), String> {
        let bucket = self.0.bucket(UPLOADS).map_err(|e| reason(UPLOADS, &e))?;
        bucket
            .head("readyz")
            .await
            .map(|_| ())
            .map_err(|e| reason(UPLOADS, &e))
    }
}

struct DurableObjectProbe<'e>(&'e Env);

#[async_trait(?Send)]
impl Probe for DurableObjectProbe<'_> {
    fn name(&self) -> &str {
        METRICS
    }
    async fn check(&self) -> Result<(), String> {
        let call = async {
            let stub = self
                .0
                .durable_object(METRICS)?
                .id_from_name("readyz")?
                .get_stub()?;
            let response = stub.fetch_with_str("https://metrics.internal/ping").await?;
            Ok::<u16, worker::Error>(response.status_code())
        };
        match call.await {
            Ok(200) => Ok(()),
            Ok(status) => Err(format!("binding {METRICS}: ping answered {status}")),
            Err(e) => Err(reason(METRICS, &e)),
        }
    }
}

enum Kind {
    Queue,
    RateLimiter,
}

/// Bindings whose only side-effect-free check is that they exist.
struct Present<'e> {
    env: &'e Env,
    name: &'static str,
    kind: Kind,
}

#[async_trait(?Send)]
impl Probe for Present<'_> {
    fn name(&self) -> &str {
        self.name
    }
    async fn check(&self) -> Result<(), String> {
        let found = match self.kind {
            Kind::Queue => self.env.queue(self.name).map(|_| ()),
            Kind::RateLimiter => self.env.rate_limiter(self.name).map(|_| ()),
        };
        found.map_err(|e| reason(self.name, &e))
    }
}

/// The Durable Object class behind the `METRICS` binding: the metrics
/// aggregate of every isolate and pusher, in the object's own SQLite
/// (`tepi_core::metrics::aggregate::remote` is its protocol). One object, named
/// [`AGGREGATE`]: each isolate writes at most once per flush interval, so
/// even thousands of isolates stay far below what one object serves
/// (docs/ops.md).
#[durable_object]
pub struct MetricsAggregator {
    state: State,
    /// `METRICS_TTL_SECS`, read once per object.
    ttl_secs: u32,
    /// Whether the aggregate's table exists in this object's storage.
    migrated: std::cell::Cell<bool>,
}

/// The name of the one aggregate object.
pub const AGGREGATE: &str = "aggregate";

impl std::fmt::Debug for MetricsAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsAggregator").finish_non_exhaustive()
    }
}

impl DurableObject for MetricsAggregator {
    fn new(state: State, env: Env) -> Self {
        let config = tepi_core::Config::load(|name| env.var(name).ok().map(|v| v.to_string()));
        Self {
            state,
            ttl_secs: config.config.metrics.ttl_secs,
            migrated: std::cell::Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        if req.path() == "/ping" {
            return Response::ok("ok");
        }
        let url = req.url()?;
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let request = tepi_core::http::Request::builder()
            .method(req.method().as_ref())
            .uri(target)
            .body(tepi_core::Bytes::from(req.bytes().await?))
            .map_err(|e| worker::Error::RustError(e.to_string()))?;
        let sql = crate::d1::DoSql(self.state.storage().sql());
        if !self.migrated.get() {
            tepi_core::storage::migrate_metrics(&sql)
                .await
                .map_err(|e| worker::Error::RustError(e.0))?;
            self.migrated.set(true);
        }
        let answer =
            tepi_core::metrics::aggregate::remote::serve(&sql, self.ttl_secs, &request).await;
        let status = answer.status().as_u16();
        let body = answer.into_body();
        Ok(if body.is_empty() {
            Response::empty()?.with_status(status)
        } else {
            Response::from_bytes(body.to_vec())?.with_status(status)
        })
    }
}

/// The aggregate, reached through the `METRICS` Durable Object.
pub struct DurableAggregator<'e>(pub &'e Env);

impl DurableAggregator<'_> {
    async fn call(
        &self,
        method: worker::Method,
        path: &str,
        body: Option<String>,
    ) -> worker::Result<(u16, Vec<u8>)> {
        let stub = self
            .0
            .durable_object(METRICS)?
            .id_from_name(AGGREGATE)?
            .get_stub()?;
        let mut init = worker::RequestInit::new();
        init.with_method(method);
        if let Some(body) = body {
            init.with_body(Some(body.into()));
        }
        let request = Request::new_with_init(&format!("https://metrics.internal{path}"), &init)?;
        let mut response = stub.fetch_with_request(request).await?;
        Ok((response.status_code(), response.bytes().await?))
    }
}

#[async_trait(?Send)]
impl tepi_core::metrics::aggregate::Aggregator for DurableAggregator<'_> {
    async fn apply(
        &self,
        change: &tepi_core::metrics::aggregate::Change,
    ) -> Result<(), tepi_core::metrics::aggregate::Refusal> {
        let (path, body) = tepi_core::metrics::aggregate::remote::apply_request(change);
        match self.call(worker::Method::Post, &path, Some(body)).await {
            Ok((204, _)) => Ok(()),
            Ok((status, body)) => Err(tepi_core::metrics::aggregate::remote::refusal(
                status, &body,
            )),
            Err(e) => Err(tepi_core::metrics::aggregate::Refusal::Storage(PortError(
                reason(METRICS, &e),
            ))),
        }
    }

    async fn exposition(
        &self,
        scope: tepi_core::metrics::aggregate::Scope,
        now: Timestamp,
    ) -> Result<String, PortError> {
        let path = tepi_core::metrics::aggregate::remote::exposition_path(scope, now);
        match self.call(worker::Method::Get, &path, None).await {
            Ok((200, body)) => Ok(String::from_utf8_lossy(&body).into_owned()),
            Ok((status, body)) => Err(PortError(format!(
                "binding {METRICS}: {status} {}",
                String::from_utf8_lossy(&body)
            ))),
            Err(e) => Err(PortError(reason(METRICS, &e))),
        }
    }
}
