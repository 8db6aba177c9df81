//! The request pipeline: `App::handle` runs every request through the same
//! steps — context, routing, body limit, CORS, authentication, rate limit,
//! permission, cache, idempotency, the route's handler, headers, metrics,
//! access log — whichever platform delivered it. Which routes exist and
//! what each asks is the route table (`routes.rs`); which job runs for
//! which event is the job table (`jobs.rs`).

mod jobs;
pub mod routes;
mod system;

use std::cell::{Cell, OnceCell, RefCell};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::api::caching::{self, Cache, CachePolicy, Cached, KvCache};
use crate::api::context::{RequestContext, TRACEPARENT, TenantId, UnreadableHeaders};
use crate::api::cors;
use crate::api::error::ApiError;
use crate::api::health::BuildInfo;
use crate::api::idempotency;
use crate::api::response::Handled;
use crate::api::router::{Match, Router, method_list};
use crate::api::security;
use crate::auth::Principal;
use crate::auth::middleware;
use crate::auth::token_cache::TokenCache;
use crate::config::{Config, LoadedConfig};
use crate::jobs::outbox::Fallbacks;
use crate::log::AccessLog;
use crate::metrics::aggregate::{self, Change, Mode, Scope, Store};
use crate::metrics::rum::WebVitals;
use crate::metrics::{self, HttpMetrics, UNMATCHED_ROUTE};
use crate::ports::{KeyValue, Ports, Sql};
use crate::ratelimit::{self, LocalTable, PeerAddr, RouteClass, SqlStore, Verdict};
use crate::secret;
use crate::storage;
use crate::time::Timestamp;

pub use jobs::job_table;
pub use routes::{Ctx, Route};

/// What the pipeline learnt about a request besides its response.
#[derive(Debug, Default)]
struct Outcome {
    /// The verified tenant.
    tenant: Option<TenantId>,
    /// The rate limiter's decision, for the response headers.
    rate: Option<Verdict>,
    /// How a successful `GET` may be cached.
    cache_policy: Option<CachePolicy>,
    /// `hit` or `miss` when the shared cache was consulted.
    cache_result: Option<&'static str>,
}

/// The API. One instance per isolate (Workers) or per request (Spin).
#[derive(Debug)]
pub struct App {
    config: Config,
    config_problems: Vec<String>,
    build: BuildInfo,
    routes: Vec<Route>,
    /// Patterns to indexes of `routes`.
    router: Router<usize>,
    metrics: RefCell<HttpMetrics>,
    /// Request metrics go to SQL (summed across instances), not memory.
    metrics_in_sql: bool,
    /// Rate-limit state goes to SQL, not this instance's table.
    limits_in_sql: bool,
    /// The shared cache and blobs are in the key-value store (when no
    /// `Cache` or `Blobs` port).
    cache_in_kv: bool,
    local_limits: RefCell<LocalTable>,
    /// Fingerprint of the public signing keys, part of every shared-cache
    /// key: computed on first use, once per instance.
    keys_fingerprint: OnceCell<String>,
    /// Access tokens this instance has verified (`auth::token_cache`).
    tokens: TokenCache,
    migrated: Cell<bool>,
    /// A request put jobs in the SQL outbox since the last `after_response`.
    outboxed: Cell<bool>,
    /// Web Vitals since the last flush.
    web: RefCell<WebVitals>,
    /// When this instance last sent its deltas to the aggregate.
    last_flush: Cell<Option<Timestamp>>,
    /// The last minute (Unix seconds / 60) this instance saw a request in:
    /// a long-lived instance (Workers) takes the console's history
    /// snapshot at most once per minute (`history_due`).
    history_minute: Cell<i64>,
    /// A random name for this instance's gauges (long-lived instances only).
    instance: OnceCell<String>,
    /// How to speak to the aggregate service of `Ports::aggregator`, for
    /// platforms that have one (`with_aggregate_service`).
    aggregate_client: Option<aggregate::ServiceClient>,
}

impl App {
    pub fn new(loaded: LoadedConfig, build: BuildInfo) -> Self {
        let table = routes::table();
        let router = table
            .iter()
            .enumerate()
            .fold(Router::default(), |router, (i, route)| {
                let method = route.method.clone();
                if route.rest {
                    router.route_rest(method, route.pattern, i)
                } else {
                    router.route(method, route.pattern, i)
                }
            });
        Self {
            keys_fingerprint: OnceCell::new(),
            tokens: TokenCache::default(),
            config: loaded.config,
            config_problems: loaded.problems,
            build,
            routes: table,
            router,
            metrics: RefCell::new(HttpMetrics::default()),
            metrics_in_sql: false,
            limits_in_sql: false,
            cache_in_kv: false,
            local_limits: RefCell::new(LocalTable::default()),
            migrated: Cell::new(false),
            outboxed: Cell::new(false),
            web: RefCell::new(WebVitals::default()),
            last_flush: Cell::new(None),
            history_minute: Cell::new(i64::MIN),
            instance: OnceCell::new(),
            aggregate_client: None,
        }
    }

    /// For platforms that wire `Ports::aggregator` (the metrics Durable
    /// Object on Workers): the aggregate is spoken to there, in
    /// `metrics::aggregate::remote`'s protocol. Without this call that
    /// port is not used and the client's code stays out of the build.
    #[must_use]
    pub fn with_aggregate_service(mut self) -> Self {
        self.aggregate_client = Some(aggregate::service_client);
        self
    }

    /// The aggregate this request's metrics go to (`Store::of`).
    pub(crate) fn store<'p>(&self, ports: &Ports<'p>) -> Option<Store<'p>> {
        Store::of(ports, &self.config.metrics, self.aggregate_client)
    }

    /// For platforms whose instances live for one request (Spin): metrics
    /// and rate-limit state in SQL, the shared cache in key-value — nothing
    /// that must outlive the request stays in memory.
    #[must_use]
    pub fn stateless(mut self) -> Self {
        self.metrics_in_sql = true;
        self.limits_in_sql = true;
        self.cache_in_kv = true;
        self
    }

    /// Keeps request metrics in SQL, summed across instances, for platforms
    /// whose instances live for one request (Spin). Needs `Ports::sql`;
    /// without it metrics stay in memory.
    #[must_use]
    pub fn with_metrics_in_sql(mut self) -> Self {
        self.metrics_in_sql = true;
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The route table, in the order the router was built.
    pub fn route_table(&self) -> &[Route] {
        &self.routes
    }

    /// Every (method, pattern) the API serves.
    pub fn routes(&self) -> impl Iterator<Item = (&Method, &'static str)> {
        self.routes.iter().map(|r| (r.method, r.pattern))
    }

    /// Handles one request. `now` is when the platform received it; the
    /// clock port is read once more at the end to measure the duration.
    pub async fn handle(
        &self,
        req: Request<Bytes>,
        ports: &Ports<'_>,
        now: Timestamp,
    ) -> Response<Bytes> {
        let cx = RequestContext::from_headers(req.headers(), ports.entropy);
        if let Some(sql) = ports.sql {
            self.ensure_migrated(sql).await;
        }
        let preflight = cors::is_preflight(req.method(), req.headers());
        let mut out = Outcome::default();
        let (route, handled) = self
            .dispatch(&req, &cx, ports, preflight, now, &mut out)
            .await;
        let mut response = match handled {
            Ok(mut response) => {
                revalidate(&req, &mut out, &mut response);
                response
            }
            Err(e) => e.to_response(req.uri().path(), cx.request_id.as_str()),
        };
        self.decorate(&req, &cx, preflight, &out, &mut response);
        if req.method() == Method::HEAD {
            *response.body_mut() = Bytes::new();
        }

        let duration_ms = ports.clock.now().millis_since(now);
        let method = method_label(req.method());
        let status = response.status().as_u16();
        self.record(ports, method, route, status, duration_ms, &out)
            .await;
        AccessLog {
            ts: &now.to_rfc3339(),
            method,
            route,
            status,
            duration_ms,
            request_id: cx.request_id.as_str(),
            trace_id: &cx.trace.trace_id_hex(),
            span_id: &cx.trace.span_id_hex(),
            // The verified tenant; the header only for anonymous requests.
            tenant: out
                .tenant
                .as_ref()
                .or(cx.tenant.as_ref())
                .map(TenantId::as_str),
        }
        .emit();
        response
    }

    async fn dispatch(
        &self,
        req: &Request<Bytes>,
        cx: &RequestContext,
        ports: &Ports<'_>,
        preflight: bool,
        now: Timestamp,
        out: &mut Outcome,
    ) -> (&'static str, Handled) {
        let found = self.router.find(req.method(), req.uri().path());
        let route = match &found {
            Match::Found { pattern, .. } | Match::MethodNotAllowed { pattern, .. } => pattern,
            Match::NotFound => UNMATCHED_ROUTE,
        };
        // The body limit guards every request, routed or not.
        if let Err(e) = self.check_body(req) {
            return (route, Err(e));
        }
        // A header the adapter could not carry is refused, never ignored:
        // an `Idempotency-Key` dropped that way would run a create twice.
        if let Some(UnreadableHeaders(names)) = req.extensions().get::<UnreadableHeaders>()
            && let Some(name) = names.first()
        {
            return (route, Err(ApiError::MalformedHeader { name: name.clone() }));
        }
        let handled = match found {
            Match::NotFound => Err(ApiError::NotFound),
            Match::MethodNotAllowed { mut allow, .. } if req.method() == Method::OPTIONS => {
                allow.push(Method::OPTIONS);
                self.options(req, &allow, preflight)
            }
            Match::MethodNotAllowed { allow, .. } => Err(ApiError::MethodNotAllowed { allow }),
            Match::Found { value, params, .. } => {
                let route = &self.routes[*value];
                self.serve(route, req, cx, &params, ports, now, out).await
            }
        };
        (route, handled)
    }

    /// Runs a matched route: authentication, rate limit, permission,
    /// cache, idempotency, then its handler.
    #[allow(clippy::too_many_arguments)]
    async fn serve(
        &self,
        route: &Route,
        req: &Request<Bytes>,
        cx: &RequestContext,
        params: &[(&'static str, String)],
        ports: &Ports<'_>,
        now: Timestamp,
        out: &mut Outcome,
    ) -> Handled {
        let authenticated = if route.access.needs_credentials() {
            Some(
                middleware::authenticate(&self.config.auth, &self.tokens, req, ports.sql, now)
                    .await,
            )
        } else {
            None
        };
        // Limited right after authentication, before permissions and the
        // handler: by tenant and subject when the credentials held (even if
        // the caller is then refused), by client address when not.
        if let Some(class) = route.limit {
            let principal = authenticated.as_ref().and_then(|a| a.as_ref().ok());
            let verdict = self.rate_limit(class, principal, req, ports, now).await;
            let refused = (!verdict.decision.allowed).then(|| verdict.retry_after_secs());
            out.rate = Some(verdict);
            if let Some(retry_after_secs) = refused {
                return Err(ApiError::RateLimited { retry_after_secs });
            }
        }
        let principal = match authenticated.transpose()? {
            Some(principal) => {
                Some(middleware::permit(req, route.access, principal, ports.sql).await?)
            }
            None => None,
        };
        out.tenant = principal.as_ref().map(|p| p.tenant().clone());
        let policy = if matches!(*req.method(), Method::GET | Method::HEAD) {
            route.cache
        } else {
            CachePolicy::NoStore
        };
        out.cache_policy = Some(policy);
        let fallbacks = Fallbacks::new(ports, now, self.cache_in_kv).noting_outbox(&self.outboxed);
        let ctx = Ctx {
            app: self,
            req,
            cx,
            params,
            ports,
            fallbacks: &fallbacks,
            now,
            principal: principal.as_ref(),
        };
        if let CachePolicy::Shared { max_age } = policy {
            return self.serve_shared(route, &ctx, max_age, out).await;
        }
        let key = if route.idempotent {
            idempotency::key_of(req)?
        } else {
            None
        };
        let (Some(key), Some(principal)) = (key, principal.as_ref()) else {
            return (route.handler.run)(&ctx).await;
        };
        let sql = ports.sql.ok_or(ApiError::StorageUnavailable)?;
        // Keys are the caller's own: scoped by tenant, route and subject.
        let subject = match principal {
            Principal::User { user_id, .. } => user_id.as_str(),
            Principal::ApiKey { key_id, .. } => key_id.as_str(),
        };
        let scope = format!("{}#{subject}", route.pattern);
        match idempotency::begin(sql, principal.tenant(), &scope, key, req, now).await? {
            idempotency::Begin::Replay(response) => Ok(response),
            idempotency::Begin::Proceed(claim) => {
                let handled = (route.handler.run)(&ctx).await;
                let response = match &handled {
                    Ok(response) => response.clone(),
                    Err(e) => e.to_response(req.uri().path(), cx.request_id.as_str()),
                };
                idempotency::finish(sql, claim, &response).await;
                handled
            }
        }
    }

    /// A route whose answer is the same for everyone: from the shared cache
    /// when it holds a fresh copy, else computed and stored.
    async fn serve_shared(
        &self,
        route: &Route,
        ctx: &Ctx<'_>,
        max_age: u32,
        out: &mut Outcome,
    ) -> Handled {
        let kv_cache = ctx.ports.kv.filter(|_| self.cache_in_kv).map(KvCache);
        let cache: Option<&dyn Cache> = match (ctx.ports.cache, kv_cache.as_ref()) {
            (Some(cache), _) => Some(cache),
            (None, Some(kv)) => Some(kv),
            (None, None) => None,
        };
        let Some(cache) = cache else {
            return (route.handler.run)(ctx).await;
        };
        let key = self.shared_cache_key(ctx.req);
        match cache.get(&key, ctx.now).await {
            Ok(Some(cached)) => {
                out.cache_result = Some("hit");
                return Ok(cached.into_response());
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(target: "tepi::cache", error = %e, "shared cache read failed"),
        }
        out.cache_result = Some("miss");
        let response = (route.handler.run)(ctx).await?;
        if response.status() == StatusCode::OK {
            let cached = Cached::from_response(&response);
            if let Err(e) = cache.put(&key, &cached, max_age, ctx.now).await {
                tracing::warn!(target: "tepi::cache", error = %e, "shared cache write failed");
            }
        }
        Ok(response)
    }

    /// The shared-cache key: the build and a fingerprint of the public keys
    /// are part of it, so a deploy or a key change never serves a stale
    /// copy. Shared routes read no query, so the query is not part of it
    /// (callers cannot mint entries).
    fn shared_cache_key(&self, req: &Request<Bytes>) -> String {
        format!(
            "cache:{}:{}:{}:{}:{}",
            self.build.target,
            self.build.version,
            self.build.git_revision,
            self.keys_fingerprint.get_or_init(|| {
                self.config
                    .auth
                    .signing_keys
                    .as_ref()
                    .map(|k| secret::digest(&k.jwks().to_string())[..16].to_owned())
                    .unwrap_or_default()
            }),
            req.uri().path()
        )
    }

    async fn rate_limit(
        &self,
        class: RouteClass,
        principal: Option<&Principal>,
        req: &Request<Bytes>,
        ports: &Ports<'_>,
        now: Timestamp,
    ) -> Verdict {
        let policy = self.config.rate_limits.get(class);
        // Where a client can set the platform's peer header itself (a local
        // `wrangler dev`), the configuration says not to believe it.
        let peer = req
            .extensions()
            .get::<PeerAddr>()
            .filter(|_| self.config.trust_platform_peer)
            .map(|p| p.0);
        let client = ratelimit::client_ip(req.headers(), peer, &self.config.trusted_proxies);
        let key = ratelimit::key(class, principal, client);
        let at = now.as_unix_micros();
        let mut decision = match (self.limits_in_sql, ports.sql) {
            (true, Some(sql)) => SqlStore::decide(sql, ports.entropy, &key, at, &policy)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(target: "tepi::ratelimit", error = %e, "rate-limit state unavailable; admitting");
                    ratelimit::decide(None, at, &policy)
                }),
            _ => self.local_limits.borrow_mut().decide(&key, at, &policy),
        };
        if decision.allowed
            && let Some(limiter) = ports.limiter
        {
            match limiter.allow(class.as_str(), &key).await {
                Ok(true) => {}
                Ok(false) => {
                    // The binding counts per window of the policy's period.
                    decision.allowed = false;
                    decision.remaining = 0;
                    decision.retry_after_micros = u64::from(policy.period_secs) * 1_000_000;
                }
                Err(e) => {
                    tracing::warn!(target: "tepi::ratelimit", error = %e, "rate-limit binding failed; admitting");
                }
            }
        }
        Verdict {
            class,
            policy,
            decision,
        }
    }

    /// This instance's deltas since its last flush, as changes to the
    /// aggregate (none when nothing happened), and the flush clock reset.
    fn take_changes(&self, now: Timestamp) -> Vec<Change> {
        self.last_flush.set(Some(now));
        let mut changes = Vec::new();
        let http = std::mem::take(&mut *self.metrics.borrow_mut());
        if !http.is_empty() {
            // Long-lived instances (isolates) report their memory under
            // their own name, so the aggregate keeps each one's latest and
            // the memory alert sees the fullest.
            let instance = self.instance.get().map(String::as_str);
            let body =
                http.encode() + &metrics::encode_memory(metrics::wasm_memory_bytes(), instance);
            changes.push(Change {
                source: "api".to_owned(),
                scope: Scope::Api,
                mode: Mode::Add,
                body,
                labels: Vec::new(),
                at: now.as_unix_secs(),
                pusher: None,
            });
        }
        let web = std::mem::take(&mut *self.web.borrow_mut());
        if !web.is_empty() {
            changes.push(Change {
                source: "web".to_owned(),
                scope: Scope::Web,
                mode: Mode::Add,
                body: web.encode(),
                labels: Vec::new(),
                at: now.as_unix_secs(),
                pusher: None,
            });
        }
        changes
    }

    /// For adapters that send deltas themselves (Workers, with
    /// `ctx.wait_until` and [`aggregate::apply_all`]): the changes due
    /// now — at most one flush every `METRICS_FLUSH_SECS` per instance —
    /// or none.
    pub fn due_changes(&self, now: Timestamp) -> Vec<Change> {
        let due = self.last_flush.get().is_none_or(|last| {
            now.millis_since(last) >= f64::from(self.config.metrics.flush_secs) * 1000.0
        });
        if due {
            self.take_changes(now)
        } else {
            Vec::new()
        }
    }

    /// Whether this request is this instance's first in its minute: then
    /// an adapter that flushes by itself (Workers) records the minute's
    /// history snapshot with [`crate::ops::history::record`], unless
    /// another instance did.
    pub fn history_due(&self, now: Timestamp) -> bool {
        let minute = now.as_unix_secs().div_euclid(60);
        self.history_minute.replace(minute) != minute
    }

    /// Sends this instance's pending deltas to `aggregator`.
    pub(super) async fn flush_to(&self, aggregator: &dyn aggregate::Aggregator, now: Timestamp) {
        aggregate::apply_all(aggregator, self.take_changes(now)).await;
    }

    /// `GET /metrics` and `GET /api/metrics/prometheus`: this instance's
    /// pending deltas first, then the aggregate of every instance.
    async fn metrics_text(&self, ports: &Ports<'_>, now: Timestamp, scope: Scope) -> Handled {
        let text = match self.store(ports) {
            Some(aggregator) => {
                self.flush_to(&aggregator, now).await;
                aggregate::Aggregator::exposition(&aggregator, scope, now)
                    .await
                    .map_err(|e| system::storage_unavailable("metrics load", &e))?
            }
            // No storage at all: this instance's own counts.
            None if scope == Scope::Api => {
                self.metrics.borrow().encode()
                    + &metrics::encode_memory(metrics::wasm_memory_bytes(), None)
            }
            None => self.web.borrow().encode(),
        };
        Ok(system::exposition(text))
    }

    /// Applies pending migrations once per instance. A failure is logged and
    /// retried on the next request; requests that need SQL then fail on
    /// their own.
    async fn ensure_migrated(&self, sql: &dyn Sql) {
        if self.migrated.get() {
            return;
        }
        match storage::migrate(sql).await {
            Ok(_) => self.migrated.set(true),
            Err(e) => tracing::error!(target: "tepi::storage", error = %e, "migrations failed"),
        }
    }

    async fn record(
        &self,
        ports: &Ports<'_>,
        method: &str,
        route: &str,
        status: u16,
        duration_ms: f64,
        out: &Outcome,
    ) {
        let add = |m: &mut HttpMetrics| {
            m.record(method, route, status, duration_ms);
            if let Some(verdict) = out.rate.as_ref().filter(|v| !v.decision.allowed) {
                m.record_rate_limited(verdict.class.as_str());
            }
            if let Some(result) = out.cache_result {
                m.record_cache(result);
            }
        };
        add(&mut self.metrics.borrow_mut());
        if !self.metrics_in_sql {
            self.instance
                .get_or_init(|| secret::id(ports.entropy, "isolate_"));
        }
        // Instances that live for one request (Spin) flush at once (the
        // minute's history snapshot waits for `after_response`).
        if self.metrics_in_sql
            && ports.aggregator.is_none()
            && let Some(aggregator) = self.store(ports)
        {
            self.flush_to(&aggregator, ports.clock.now()).await;
        }
    }

    /// When this build first answered, recorded once in the key-value store.
    async fn serving_since(&self, kv: &dyn KeyValue, now: Timestamp) -> Option<String> {
        let key = format!(
            "build:{}:{}:{}:serving-since",
            self.build.target, self.build.version, self.build.git_revision
        );
        match kv.get(&key).await {
            Ok(Some(bytes)) => return String::from_utf8(bytes).ok(),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(target: "tepi::storage", error = %e, "key-value read failed");
                return None;
            }
        }
        let since = now.to_rfc3339();
        match kv.set(&key, since.as_bytes()).await {
            Ok(()) => Some(since),
            Err(e) => {
                tracing::warn!(target: "tepi::storage", error = %e, "key-value write failed");
                None
            }
        }
    }

    /// `OPTIONS`: a CORS preflight, or a plain question about the methods.
    fn options(&self, req: &Request<Bytes>, allow: &[Method], preflight: bool) -> Handled {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::NO_CONTENT;
        if preflight {
            let origin = req.headers().get(header::ORIGIN);
            let Some(origin) = origin.filter(|o| self.origin_allowed(o)) else {
                return Err(ApiError::CorsOriginRefused);
            };
            response
                .headers_mut()
                .extend(cors::preflight_grant(origin, allow, req.headers()));
        } else if let Ok(value) = HeaderValue::from_str(&method_list(allow)) {
            response.headers_mut().insert(header::ALLOW, value);
        }
        Ok(response)
    }

    fn check_body(&self, req: &Request<Bytes>) -> Result<(), ApiError> {
        let limit = self.config.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_large = declared.is_some_and(|n| n > limit as u64) || req.body().len() > limit;
        if too_large {
            Err(ApiError::PayloadTooLarge { limit })
        } else {
            Ok(())
        }
    }

    fn origin_allowed(&self, origin: &HeaderValue) -> bool {
        origin.to_str().is_ok_and(|o| self.config.origin_allowed(o))
    }

    /// Headers every response carries, whatever produced it.
    fn decorate(
        &self,
        req: &Request<Bytes>,
        cx: &RequestContext,
        preflight: bool,
        out: &Outcome,
        response: &mut Response<Bytes>,
    ) {
        let headers = response.headers_mut();
        if let Some(verdict) = &out.rate {
            for (name, value) in verdict.headers() {
                headers.insert(name, value);
            }
        }

        security::apply(headers);
        if let Ok(id) = HeaderValue::from_str(cx.request_id.as_str()) {
            headers.insert("x-request-id", id);
        }
        if let Ok(trace) = HeaderValue::from_str(&cx.trace.to_string()) {
            headers.insert(TRACEPARENT, trace);
        }
        // One Vary line: spin-sdk 5.2 keeps a single value per header name.
        let vary = cors::vary(preflight);
        if out.cache_policy == Some(CachePolicy::Private) {
            let joined = format!("{}, Authorization", vary.to_str().unwrap_or("Origin"));
            headers.insert(header::VARY, HeaderValue::from_str(&joined).unwrap_or(vary));
        } else {
            headers.insert(header::VARY, vary);
        }
        let origin = req.headers().get(header::ORIGIN);
        if let Some(origin) = origin.filter(|o| !preflight && self.origin_allowed(o)) {
            headers.extend(cors::request_grant(origin));
        }
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
}

/// Known methods by name; anything else is `OTHER`, so that made-up methods
/// cannot grow the metric label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Sets `Cache-Control` and a strong `ETag` on a successful `GET` of JSON,
/// and answers `304 Not Modified` when `If-None-Match` names that tag.
fn revalidate(req: &Request<Bytes>, out: &mut Outcome, response: &mut Response<Bytes>) {
    let Some(policy) = out.cache_policy else {
        return;
    };
    if response.status() != StatusCode::OK {
        return;
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, policy.header());
    if policy == CachePolicy::NoStore {
        return;
    }
    let tag = caching::etag(response.body());
    if caching::not_modified(req.headers(), &tag) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        *response.body_mut() = Bytes::new();
        response.headers_mut().remove(header::CONTENT_TYPE);
        out.cache_result = Some("revalidated");
    }
    response.headers_mut().insert(header::ETAG, tag);
}

#[cfg(test)]
mod tests;
