//! The one entry point: `App::handle`. Every request passes the same
//! pipeline — context, routing, CORS, body limit, handler, headers,
//! metrics, access log — whichever platform delivered it.

use std::cell::{Cell, OnceCell, RefCell};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde::Serialize;

use crate::api::caching::{self, Cache, CachePolicy, Cached, KvCache};
use crate::api::context::{RequestContext, TENANT_ID, TRACEPARENT, TenantId};
use crate::api::cors;
use crate::api::error::ApiError;
use crate::api::health::{self, BuildInfo};
use crate::api::idempotency;
use crate::api::router::{Match, Router, method_list};
use crate::api::security;
use crate::auth::rbac::{self, Requirement};
use crate::auth::{Principal, Role, handlers};
use crate::config::{Config, LoadedConfig};
use crate::jobs::consumer;
use crate::jobs::metrics as worker_metrics;
use crate::jobs::outbox::{Counted, KvBlobs, SqlOutbox};
use crate::log::AccessLog;
use crate::meta_events;
use crate::metrics::aggregate::{Aggregator, Change, Mode, Refusal, Scope, SqlAggregator};
use crate::metrics::push;
use crate::metrics::rum::{self, WebVitals};
use crate::metrics::{self, HttpMetrics, UNMATCHED_ROUTE};
use crate::module;
use crate::notifications;
use crate::ports::Blobs;
use crate::ports::{KeyValue, Ports, Sql};
use crate::ratelimit::{self, LocalTable, PeerAddr, RouteClass, SqlStore, Verdict};
use crate::secret;
use crate::storage;
use crate::time::Timestamp;
use crate::uploads;
use crate::workflows;

/// Most outbox jobs one drain call leases (`POST /v1/jobs/drain?limit=`).
pub const MAX_DRAIN: u32 = 500;

/// `?limit=` of a drain: 1 to `MAX_DRAIN`, default 100.
fn drain_limit(req: &Request<Bytes>) -> Result<u32, ApiError> {
    let pairs = handlers::query_pairs(req.uri().query().unwrap_or(""));
    let Some((_, raw)) = pairs.iter().find(|(k, _)| k == "limit") else {
        return Ok(100);
    };
    match raw.parse::<u32>() {
        Ok(n) if (1..=MAX_DRAIN).contains(&n) => Ok(n),
        _ => Err(ApiError::Validation {
            errors: vec![crate::api::validate::FieldError {
                field: "limit".into(),
                code: "out_of_range",
                message: format!("must be 1 to {MAX_DRAIN}"),
            }],
        }),
    }
}

/// Every route the API serves. Each one has an entry in the permission
/// matrix (`auth::rbac::MATRIX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Version,
    Jwks,
    Metrics,
    MetricsWorkers,
    PushReplace,
    PushAdd,
    PushDelete,
    Rum,
    WebMetrics,
    Bootstrap,
    Login,
    Refresh,
    Logout,
    Me,
    ListUsers,
    CreateUser,
    GetUser,
    UpdateUser,
    DeleteUser,
    ListApiKeys,
    CreateApiKey,
    DeleteApiKey,
    CreateTenant,
    CreateUpload,
    PutUploadContent,
    GetUpload,
    GetUploadContent,
    DeleteUpload,
    ListWorkflows,
    CreateWorkflow,
    GetWorkflow,
    UpdateWorkflow,
    DeleteWorkflow,
    StartWorkflowRun,
    ListWorkflowRuns,
    GetWorkflowRun,
    MetaHandshake,
    MetaReceive,
    GetMetaConfig,
    PutMetaConfig,
    ListNotifications,
    SendNotification,
    MarkNotificationRead,
    ListDeadLetters,
    DrainJobs,
}

fn router() -> Router<Route> {
    Router::default()
        .route(Method::GET, "/healthz", Route::Healthz)
        .route(Method::GET, "/readyz", Route::Readyz)
        .route(Method::GET, "/version", Route::Version)
        .route(Method::GET, "/.well-known/jwks.json", Route::Jwks)
        .route(Method::GET, "/metrics", Route::Metrics)
        .route(Method::GET, "/metrics/workers", Route::MetricsWorkers)
        .route_rest(Method::PUT, "/metrics/{grouping}", Route::PushReplace)
        .route_rest(Method::POST, "/metrics/{grouping}", Route::PushAdd)
        .route_rest(Method::DELETE, "/metrics/{grouping}", Route::PushDelete)
        .route(Method::POST, "/api/rum", Route::Rum)
        .route(Method::GET, "/api/metrics/prometheus", Route::WebMetrics)
        .route(Method::POST, "/v1/bootstrap", Route::Bootstrap)
        .route(Method::POST, "/v1/auth/login", Route::Login)
        .route(Method::POST, "/v1/auth/refresh", Route::Refresh)
        .route(Method::POST, "/v1/auth/logout", Route::Logout)
        .route(Method::GET, "/v1/auth/me", Route::Me)
        .route(Method::GET, "/v1/users", Route::ListUsers)
        .route(Method::POST, "/v1/users", Route::CreateUser)
        .route(Method::GET, "/v1/users/{id}", Route::GetUser)
        .route(Method::PATCH, "/v1/users/{id}", Route::UpdateUser)
        .route(Method::DELETE, "/v1/users/{id}", Route::DeleteUser)
        .route(Method::GET, "/v1/api-keys", Route::ListApiKeys)
        .route(Method::POST, "/v1/api-keys", Route::CreateApiKey)
        .route(Method::DELETE, "/v1/api-keys/{id}", Route::DeleteApiKey)
        .route(Method::POST, "/v1/tenants", Route::CreateTenant)
        .route(Method::POST, "/v1/uploads", Route::CreateUpload)
        .route(Method::GET, "/v1/uploads/{id}", Route::GetUpload)
        .route(Method::DELETE, "/v1/uploads/{id}", Route::DeleteUpload)
        .route(
            Method::PUT,
            "/v1/uploads/{id}/content",
            Route::PutUploadContent,
        )
        .route(
            Method::GET,
            "/v1/uploads/{id}/content",
            Route::GetUploadContent,
        )
        .route(Method::GET, "/v1/workflows", Route::ListWorkflows)
        .route(Method::POST, "/v1/workflows", Route::CreateWorkflow)
        .route(Method::GET, "/v1/workflows/{id}", Route::GetWorkflow)
        .route(Method::PATCH, "/v1/workflows/{id}", Route::UpdateWorkflow)
        .route(Method::DELETE, "/v1/workflows/{id}", Route::DeleteWorkflow)
        .route(
            Method::POST,
            "/v1/workflows/{id}/runs",
            Route::StartWorkflowRun,
        )
        .route(
            Method::GET,
            "/v1/workflows/{id}/runs",
            Route::ListWorkflowRuns,
        )
        .route(
            Method::GET,
            "/v1/workflows/{id}/runs/{run_id}",
            Route::GetWorkflowRun,
        )
        .route(Method::GET, "/v1/meta/webhook", Route::MetaHandshake)
        .route(Method::POST, "/v1/meta/webhook", Route::MetaReceive)
        .route(Method::GET, "/v1/meta/config", Route::GetMetaConfig)
        .route(Method::PUT, "/v1/meta/config", Route::PutMetaConfig)
        .route(Method::GET, "/v1/notifications", Route::ListNotifications)
        .route(Method::POST, "/v1/notifications", Route::SendNotification)
        .route(
            Method::POST,
            "/v1/notifications/{id}/read",
            Route::MarkNotificationRead,
        )
        .route(Method::GET, "/v1/jobs/dead-letters", Route::ListDeadLetters)
        .route(Method::POST, "/v1/jobs/drain", Route::DrainJobs)
}

type Handled = Result<Response<Bytes>, ApiError>;

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
    router: Router<Route>,
    metrics: RefCell<HttpMetrics>,
    /// Request metrics go to SQL (summed across instances), not memory.
    metrics_in_sql: bool,
    /// Rate-limit state goes to SQL, not this instance's table.
    limits_in_sql: bool,
    /// The shared cache is the key-value store (when no `Cache` port).
    cache_in_kv: bool,
    local_limits: RefCell<LocalTable>,
    /// Fingerprint of the public signing keys, part of every shared-cache
    /// key: computed on first use, once per instance.
    keys_fingerprint: OnceCell<String>,
    migrated: Cell<bool>,
    /// Web Vitals since the last flush.
    web: RefCell<WebVitals>,
    /// When this instance last sent its deltas to the aggregate.
    last_flush: Cell<Option<Timestamp>>,
    /// A random name for this instance's gauges (long-lived instances only).
    instance: OnceCell<String>,
}

/// The body of `GET /version`.
#[derive(Debug, Serialize)]
struct Version<'a> {
    #[serde(flatten)]
    build: &'a BuildInfo,
    /// When this build first answered here, as recorded in the key-value
    /// store; `null` where the platform wires no store.
    serving_since: Option<String>,
}

impl App {
    pub fn new(loaded: LoadedConfig, build: BuildInfo) -> Self {
        Self {
            keys_fingerprint: OnceCell::new(),
            config: loaded.config,
            config_problems: loaded.problems,
            build,
            router: router(),
            metrics: RefCell::new(HttpMetrics::default()),
            metrics_in_sql: false,
            limits_in_sql: false,
            cache_in_kv: false,
            local_limits: RefCell::new(LocalTable::default()),
            migrated: Cell::new(false),
            web: RefCell::new(WebVitals::default()),
            last_flush: Cell::new(None),
            instance: OnceCell::new(),
        }
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

    /// Processes a batch of queue messages (`consumer::process_batch`),
    /// migrating first like a request would. One decision per delivery.
    pub async fn process_jobs(
        &self,
        queue: crate::ports::Queue,
        deliveries: &[consumer::Delivery],
        ports: &Ports<'_>,
    ) -> Vec<crate::jobs::retry::Decision> {
        if let Some(sql) = ports.sql {
            self.ensure_migrated(sql).await;
        }
        consumer::process_batch(&self.config, ports, queue, deliveries).await
    }

    /// Parks a message of a dead-letter queue (`consumer::park`).
    pub async fn park_dead_letter(
        &self,
        queue: crate::ports::Queue,
        delivery: &consumer::Delivery,
        ports: &Ports<'_>,
    ) -> crate::jobs::retry::Decision {
        if let Some(sql) = ports.sql {
            self.ensure_migrated(sql).await;
        }
        consumer::park(ports, queue, delivery).await
    }

    /// Every (method, pattern) the API serves.
    pub fn routes(&self) -> impl Iterator<Item = (&Method, &'static str)> {
        self.router.routes().map(|(m, p, _)| (m, p))
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
        let handled = match found {
            Match::NotFound => Err(ApiError::NotFound),
            Match::MethodNotAllowed { mut allow, .. } if req.method() == Method::OPTIONS => {
                allow.push(Method::OPTIONS);
                self.options(req, &allow, preflight)
            }
            Match::MethodNotAllowed { allow, .. } => Err(ApiError::MethodNotAllowed { allow }),
            Match::Found { value, params, .. } => {
                self.serve(*value, req, cx, &params, ports, now, out).await
            }
        };
        (route, handled)
    }

    #[allow(clippy::too_many_arguments)]
    async fn serve(
        &self,
        route: Route,
        req: &Request<Bytes>,
        cx: &RequestContext,
        params: &[(&'static str, String)],
        ports: &Ports<'_>,
        now: Timestamp,
        out: &mut Outcome,
    ) -> Handled {
        // Fail closed: a route without a matrix entry is refused.
        let requirement = rbac::requirement(route).ok_or(ApiError::Forbidden)?;
        let authenticated = if requirement.needs_credentials() {
            Some(self.authenticate(req, ports, now).await)
        } else {
            None
        };
        // Limited right after authentication, before permissions and the
        // handler: by tenant and subject when the credentials held (even if
        // the caller is then refused), by client address when not.
        if let Some(class) = ratelimit::class_of(route) {
            let principal = authenticated.as_ref().and_then(|a| a.as_ref().ok());
            let verdict = self.rate_limit(class, principal, req, ports, now).await;
            let refused = (!verdict.decision.allowed).then(|| verdict.retry_after_secs());
            out.rate = Some(verdict);
            if let Some(retry_after_secs) = refused {
                return Err(ApiError::RateLimited { retry_after_secs });
            }
        }
        let principal = authenticated.transpose()?;
        if let Some(principal) = &principal {
            self.permit(req, requirement, principal, ports).await?;
        }
        out.tenant = principal.as_ref().map(|p| p.tenant().clone());
        let policy = if matches!(*req.method(), Method::GET | Method::HEAD) {
            caching::policy(route)
        } else {
            CachePolicy::NoStore
        };
        out.cache_policy = Some(policy);
        if let CachePolicy::Shared { max_age } = policy {
            return self
                .serve_shared(route, req, cx, params, ports, now, max_age, out)
                .await;
        }
        // Creating POSTs of the modules; not API keys or users, whose
        // answers must not be stored (a key's secret, a password's effect).
        let idempotent = matches!(
            route,
            Route::CreateUpload
                | Route::CreateWorkflow
                | Route::StartWorkflowRun
                | Route::SendNotification
        );
        let key = if idempotent {
            idempotency::key_of(req)?
        } else {
            None
        };
        match (key, principal.as_ref()) {
            (Some(key), Some(principal)) => {
                let sql = ports.sql.ok_or(ApiError::StorageUnavailable)?;
                let pattern = self.router.pattern_of(&route).unwrap_or("?");
                // Keys are the caller's own: scoped by tenant, route and
                // subject.
                let subject = match principal {
                    Principal::User { user_id, .. } => user_id.as_str(),
                    Principal::ApiKey { key_id, .. } => key_id.as_str(),
                };
                let scope = format!("{pattern}#{subject}");
                match idempotency::begin(sql, principal.tenant(), &scope, key, req, now).await? {
                    idempotency::Begin::Replay(response) => Ok(response),
                    idempotency::Begin::Proceed(claim) => {
                        let handled = self
                            .serve_route(route, req, cx, params, ports, now, Some(principal))
                            .await;
                        let response = match &handled {
                            Ok(response) => response.clone(),
                            Err(e) => e.to_response(req.uri().path(), cx.request_id.as_str()),
                        };
                        idempotency::finish(sql, claim, &response).await;
                        handled
                    }
                }
            }
            _ => {
                self.serve_route(route, req, cx, params, ports, now, principal.as_ref())
                    .await
            }
        }
    }

    /// A route whose answer is the same for everyone: from the shared cache
    /// when it holds a fresh copy, else computed and stored.
    #[allow(clippy::too_many_arguments)]
    async fn serve_shared(
        &self,
        route: Route,
        req: &Request<Bytes>,
        cx: &RequestContext,
        params: &[(&'static str, String)],
        ports: &Ports<'_>,
        now: Timestamp,
        max_age: u32,
        out: &mut Outcome,
    ) -> Handled {
        let kv_cache = ports.kv.filter(|_| self.cache_in_kv).map(KvCache);
        let cache: Option<&dyn Cache> = match (ports.cache, kv_cache.as_ref()) {
            (Some(cache), _) => Some(cache),
            (None, Some(kv)) => Some(kv),
            (None, None) => None,
        };
        let Some(cache) = cache else {
            return self
                .serve_route(route, req, cx, params, ports, now, None)
                .await;
        };
        let key = self.shared_cache_key(req);
        match cache.get(&key, now).await {
            Ok(Some(cached)) => {
                out.cache_result = Some("hit");
                return Ok(cached.into_response());
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(target: "tepi::cache", error = %e, "shared cache read failed"),
        }
        out.cache_result = Some("miss");
        let response = self
            .serve_route(route, req, cx, params, ports, now, None)
            .await?;
        if response.status() == StatusCode::OK {
            let cached = Cached::from_response(&response);
            if let Err(e) = cache.put(&key, &cached, max_age, now).await {
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
        let peer = req.extensions().get::<PeerAddr>().map(|p| p.0);
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
            match limiter.allow(class, &key).await {
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

    #[allow(clippy::too_many_arguments)]
    async fn serve_route(
        &self,
        route: Route,
        req: &Request<Bytes>,
        cx: &RequestContext,
        params: &[(&'static str, String)],
        ports: &Ports<'_>,
        now: Timestamp,
        principal: Option<&Principal>,
    ) -> Handled {
        match route {
            Route::Healthz => Ok(json(StatusCode::OK, &health::healthz())),
            Route::Readyz => {
                let ready = health::readyz(&self.config_problems, ports.probes).await?;
                Ok(json(StatusCode::OK, &ready))
            }
            Route::Version => {
                let serving_since = match ports.kv {
                    Some(kv) => self.serving_since(kv, now).await,
                    None => None,
                };
                let body = Version {
                    build: &self.build,
                    serving_since,
                };
                Ok(json(StatusCode::OK, &body))
            }
            Route::Jwks => {
                let keys = self
                    .config
                    .auth
                    .signing_keys
                    .as_ref()
                    .ok_or(ApiError::AuthUnavailable)?;
                Ok(json(StatusCode::OK, &keys.jwks()))
            }
            Route::Metrics => self.metrics_text(ports, now, Scope::Api).await,
            Route::WebMetrics => self.metrics_text(ports, now, Scope::Web).await,
            Route::PushReplace | Route::PushAdd | Route::PushDelete => {
                self.serve_push(route, req, params, ports, now).await
            }
            Route::Rum => self.serve_rum(req),
            Route::MetricsWorkers => {
                let sql = ports.sql.ok_or(ApiError::StorageUnavailable)?;
                let text = worker_metrics::load(sql)
                    .await
                    .map_err(|e| storage_unavailable("worker metrics load", &e))?
                    .encode();
                let mut response = Response::new(Bytes::from(text));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(metrics::CONTENT_TYPE),
                );
                Ok(response)
            }
            Route::ListDeadLetters => {
                let sql = ports.sql.ok_or(ApiError::StorageUnavailable)?;
                let tenant = principal.ok_or(ApiError::Forbidden)?.tenant();
                let body = consumer::dead_letters(sql, tenant, req).await?;
                Ok(json(StatusCode::OK, &body))
            }
            Route::DrainJobs => {
                let sql = ports.sql.ok_or(ApiError::StorageUnavailable)?;
                let limit = drain_limit(req)?;
                let drained = consumer::drain(&self.config, ports, sql, limit)
                    .await
                    .map_err(|e| storage_unavailable("outbox drain", &e))?;
                Ok(json(StatusCode::OK, &drained))
            }
            Route::CreateUpload
            | Route::PutUploadContent
            | Route::GetUpload
            | Route::GetUploadContent
            | Route::DeleteUpload
            | Route::ListWorkflows
            | Route::CreateWorkflow
            | Route::GetWorkflow
            | Route::UpdateWorkflow
            | Route::DeleteWorkflow
            | Route::StartWorkflowRun
            | Route::ListWorkflowRuns
            | Route::GetWorkflowRun
            | Route::MetaHandshake
            | Route::MetaReceive
            | Route::GetMetaConfig
            | Route::PutMetaConfig
            | Route::ListNotifications
            | Route::SendNotification
            | Route::MarkNotificationRead => {
                self.serve_module(route, req, cx, params, ports, now, principal)
                    .await
            }
            _ => {
                let sql = ports.sql.ok_or(ApiError::StorageUnavailable)?;
                let call = handlers::Call {
                    req,
                    params,
                    sql,
                    entropy: ports.entropy,
                    now,
                    auth: &self.config.auth,
                };
                self.serve_auth(route, &call, principal).await
            }
        }
    }

    /// The product modules' routes: built on one `module::Call`.
    #[allow(clippy::too_many_arguments)]
    async fn serve_module(
        &self,
        route: Route,
        req: &Request<Bytes>,
        cx: &RequestContext,
        params: &[(&'static str, String)],
        ports: &Ports<'_>,
        now: Timestamp,
        principal: Option<&Principal>,
    ) -> Handled {
        // Meta's webhook calls carry no credentials: the tenant is named in
        // the query and proven by the verify token or the signature.
        let webhook_tenant;
        let (tenant, user_id, role) = match (route, principal) {
            (Route::MetaHandshake | Route::MetaReceive, _) => {
                webhook_tenant =
                    meta_events::tenant_of(req).ok_or(if route == Route::MetaHandshake {
                        ApiError::VerifyTokenMismatch
                    } else {
                        ApiError::InvalidSignature
                    })?;
                (&webhook_tenant, "", Role::User)
            }
            (
                _,
                Some(Principal::User {
                    tenant,
                    user_id,
                    role,
                }),
            ) => (tenant, user_id.as_str(), *role),
            _ => return Err(ApiError::Forbidden),
        };
        let sql = ports.sql.ok_or(ApiError::StorageUnavailable)?;
        // Where the platform has no queue service or object store (Spin),
        // the core provides them over SQL and key-value.
        let outbox = SqlOutbox {
            sql,
            entropy: ports.entropy,
            now,
        };
        let counted = Counted {
            inner: ports.jobs.unwrap_or(&outbox),
            sql,
        };
        let kv_blobs = ports.kv.filter(|_| self.cache_in_kv).map(KvBlobs);
        let call = module::Call {
            req,
            params,
            caller: module::Caller {
                tenant,
                user_id,
                role,
            },
            sql,
            jobs: &counted,
            blobs: ports.blobs.or(kv_blobs.as_ref().map(|b| b as &dyn Blobs)),
            entropy: ports.entropy,
            now,
            cx,
            config: &self.config,
        };
        match route {
            Route::CreateUpload => uploads::create(&call).await,
            Route::PutUploadContent => uploads::put_content(&call).await,
            Route::GetUpload => uploads::get(&call).await,
            Route::GetUploadContent => uploads::content(&call).await,
            Route::DeleteUpload => uploads::delete(&call).await,
            Route::ListWorkflows => workflows::list(&call).await,
            Route::CreateWorkflow => workflows::create(&call).await,
            Route::GetWorkflow => workflows::get(&call).await,
            Route::UpdateWorkflow => workflows::update(&call).await,
            Route::DeleteWorkflow => workflows::delete(&call).await,
            Route::StartWorkflowRun => workflows::run(&call).await,
            Route::ListWorkflowRuns => workflows::runs(&call).await,
            Route::GetWorkflowRun => workflows::get_run(&call).await,
            Route::MetaHandshake => meta_events::handshake(&call).await,
            Route::MetaReceive => meta_events::receive(&call).await,
            Route::GetMetaConfig => meta_events::get_config(&call).await,
            Route::PutMetaConfig => meta_events::put_config(&call).await,
            Route::ListNotifications => notifications::inbox(&call).await,
            Route::SendNotification => notifications::send(&call).await,
            Route::MarkNotificationRead => notifications::mark_read(&call).await,
            _ => Err(ApiError::NotFound),
        }
    }

    async fn serve_auth(
        &self,
        route: Route,
        call: &handlers::Call<'_>,
        principal: Option<&Principal>,
    ) -> Handled {
        let principal = || principal.ok_or(ApiError::Unauthenticated);
        match route {
            Route::Bootstrap => handlers::bootstrap(call).await,
            Route::Login => handlers::login(call).await,
            Route::Refresh => handlers::refresh(call).await,
            Route::Logout => handlers::logout(call).await,
            Route::Me => handlers::me(call, principal()?).await,
            Route::ListUsers => handlers::list_users(call, principal()?).await,
            Route::CreateUser => handlers::create_user(call, principal()?).await,
            Route::GetUser => handlers::get_user(call, principal()?).await,
            Route::UpdateUser => handlers::update_user(call, principal()?).await,
            Route::DeleteUser => handlers::delete_user(call, principal()?).await,
            Route::ListApiKeys => handlers::list_api_keys(call, principal()?).await,
            Route::CreateApiKey => handlers::create_api_key(call, principal()?).await,
            Route::DeleteApiKey => handlers::delete_api_key(call, principal()?).await,
            Route::CreateTenant => handlers::create_tenant(call).await,
            // `serve_route` sends only the auth routes here.
            _ => Err(ApiError::NotFound),
        }
    }

    /// Authenticates the caller: an API key or an access token.
    async fn authenticate(
        &self,
        req: &Request<Bytes>,
        ports: &Ports<'_>,
        now: Timestamp,
    ) -> Result<Principal, ApiError> {
        let auth = &self.config.auth;
        let keys = auth
            .signing_keys
            .as_ref()
            .ok_or(ApiError::AuthUnavailable)?;
        let credential = handlers::bearer(req).ok_or(ApiError::Unauthenticated)?;
        let principal = if credential.starts_with(secret::API_KEY_PREFIX) {
            let sql = ports.sql.ok_or(ApiError::StorageUnavailable)?;
            handlers::authenticate_api_key(sql, credential).await?
        } else {
            let claims = keys
                .verify(credential, now, &auth.issuer, &auth.audience)
                .map_err(|e| ApiError::InvalidToken {
                    reason: e.description(),
                })?;
            let tenant = TenantId::parse(&claims.tenant).ok_or(ApiError::InvalidToken {
                reason: "the token's tenant is malformed",
            })?;
            let role = Role::parse(&claims.role).map_err(|_| ApiError::InvalidToken {
                reason: "the token's role is unknown",
            })?;
            Principal::User {
                tenant,
                user_id: claims.sub,
                role,
            }
        };
        Ok(principal)
    }

    /// Checks that `X-Tenant-ID`, when sent, names the caller's tenant, and
    /// applies the permission matrix.
    async fn permit(
        &self,
        req: &Request<Bytes>,
        requirement: Requirement,
        principal: &Principal,
        ports: &Ports<'_>,
    ) -> Result<(), ApiError> {
        // Any X-Tenant-ID that is not exactly the caller's tenant, malformed
        // ones included, is refused.
        for value in req.headers().get_all(TENANT_ID) {
            if value.as_bytes() != principal.tenant().as_str().as_bytes() {
                return Err(ApiError::TenantMismatch);
            }
        }
        let operator =
            if requirement.needs_operator_flag() && matches!(principal, Principal::User { .. }) {
                let sql = ports.sql.ok_or(ApiError::StorageUnavailable)?;
                handlers::is_operator(sql, principal.tenant()).await?
            } else {
                false
            };
        rbac::decide(requirement, principal, operator)
    }

    /// `PUT|POST|DELETE /metrics/job/…`: one change to the aggregate.
    async fn serve_push(
        &self,
        route: Route,
        req: &Request<Bytes>,
        params: &[(&'static str, String)],
        ports: &Ports<'_>,
        now: Timestamp,
    ) -> Handled {
        let change = push::change(req, params.first().map_or("", |(_, v)| v), now)?;
        let in_sql = ports.sql.map(|sql| self.sql_aggregator(sql));
        let aggregator = ports
            .aggregator
            .or(in_sql.as_ref().map(|a| a as &dyn Aggregator))
            .ok_or(ApiError::StorageUnavailable)?;
        aggregator
            .apply(&change)
            .await
            .map_err(|refusal| match refusal {
                Refusal::Invalid(e) => ApiError::InvalidExposition {
                    line: e.line,
                    message: e.message,
                },
                Refusal::TypeConflict { family, stored } => {
                    ApiError::MetricTypeConflict { family, stored }
                }
                Refusal::Storage(e) => storage_unavailable("metrics push", &e),
            })?;
        let mut response = Response::new(Bytes::new());
        if route == Route::PushDelete {
            *response.status_mut() = StatusCode::ACCEPTED;
        }
        Ok(response)
    }

    /// `POST /api/rum`: Web Vitals beacons, counted with this instance's
    /// other metrics.
    fn serve_rum(&self, req: &Request<Bytes>) -> Handled {
        if let Some(media) = req.headers().get(header::CONTENT_TYPE) {
            let media = media.to_str().unwrap_or("").to_ascii_lowercase();
            let essence = media.split(';').next().unwrap_or("").trim().to_owned();
            // sendBeacon posts strings as text/plain.
            if essence != "application/json" && essence != "text/plain" {
                return Err(ApiError::UnsupportedMediaType {
                    expected: "application/json",
                });
            }
        }
        let beacons = rum::parse(req.body())?;
        let mut web = self.web.borrow_mut();
        for (vital, value) in beacons {
            web.record(vital, value);
        }
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::NO_CONTENT;
        Ok(response)
    }

    fn sql_aggregator<'s>(&self, sql: &'s dyn Sql) -> SqlAggregator<'s> {
        SqlAggregator {
            sql,
            ttl_secs: self.config.metrics.ttl_secs,
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
            });
        }
        changes
    }

    /// For adapters that send deltas themselves (Workers, with
    /// `ctx.wait_until`): the changes due now — at most one flush every
    /// `METRICS_FLUSH_SECS` per instance — or none.
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

    /// Sends this instance's pending deltas through `aggregator`; a
    /// failure is logged (the delta is lost, the aggregate stays valid).
    async fn flush_to(&self, aggregator: &dyn Aggregator, now: Timestamp) {
        for change in self.take_changes(now) {
            if let Err(e) = aggregator.apply(&change).await {
                tracing::warn!(target: "tepi::metrics", error = ?e, "metrics flush failed");
            }
        }
    }

    /// `GET /metrics` and `GET /api/metrics/prometheus`: this instance's
    /// pending deltas first, then the aggregate of every instance.
    async fn metrics_text(&self, ports: &Ports<'_>, now: Timestamp, scope: Scope) -> Handled {
        let in_sql = ports.sql.map(|sql| self.sql_aggregator(sql));
        let aggregator = ports
            .aggregator
            .or(in_sql.as_ref().map(|a| a as &dyn Aggregator));
        let text = match aggregator {
            Some(aggregator) => {
                self.flush_to(aggregator, now).await;
                aggregator
                    .exposition(scope, now)
                    .await
                    .map_err(|e| storage_unavailable("metrics load", &e))?
            }
            // No storage at all: this instance's own counts.
            None if scope == Scope::Api => {
                self.metrics.borrow().encode()
                    + &metrics::encode_memory(metrics::wasm_memory_bytes(), None)
            }
            None => self.web.borrow().encode(),
        };
        let mut response = Response::new(Bytes::from(text));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        );
        Ok(response)
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
        // Instances that live for one request (Spin) flush at once.
        if let (true, None, Some(sql)) = (self.metrics_in_sql, ports.aggregator, ports.sql) {
            self.flush_to(&self.sql_aggregator(sql), ports.clock.now())
                .await;
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

/// Logs the cause and answers with a problem that reveals nothing of it.
fn storage_unavailable(what: &str, e: &crate::ports::PortError) -> ApiError {
    tracing::error!(target: "tepi::storage", error = %e, "{what} failed");
    ApiError::StorageUnavailable
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

use handlers::json_response as json;

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
