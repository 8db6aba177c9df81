//! The one entry point: `App::handle`. Every request passes the same
//! pipeline — context, routing, CORS, body limit, handler, headers,
//! metrics, access log — whichever platform delivered it.

use std::cell::{Cell, RefCell};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde::Serialize;

use crate::config::{Config, LoadedConfig};
use crate::context::{RequestContext, TRACEPARENT};
use crate::cors;
use crate::error::ApiError;
use crate::health::{self, BuildInfo};
use crate::log::AccessLog;
use crate::metrics::{self, HttpMetrics, UNMATCHED_ROUTE};
use crate::ports::{KeyValue, Ports, Sql};
use crate::router::{Match, Router, method_list};
use crate::security;
use crate::storage;
use crate::time::Timestamp;

/// Every route the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Version,
    Metrics,
}

fn router() -> Router<Route> {
    Router::default()
        .route(Method::GET, "/healthz", Route::Healthz)
        .route(Method::GET, "/readyz", Route::Readyz)
        .route(Method::GET, "/version", Route::Version)
        .route(Method::GET, "/metrics", Route::Metrics)
}

type Handled = Result<Response<Bytes>, ApiError>;

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
    migrated: Cell<bool>,
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
            config: loaded.config,
            config_problems: loaded.problems,
            build,
            router: router(),
            metrics: RefCell::new(HttpMetrics::default()),
            metrics_in_sql: false,
            migrated: Cell::new(false),
        }
    }

    /// Keeps request metrics in SQL, summed across instances, for platforms
    /// whose instances live for one request (Spin). Needs `Ports::sql`;
    /// without it metrics stay in memory.
    #[must_use]
    pub fn with_metrics_in_sql(mut self) -> Self {
        self.metrics_in_sql = true;
        self
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
        let (route, handled) = self.dispatch(&req, ports, preflight, now).await;
        let mut response =
            handled.unwrap_or_else(|e| e.to_response(req.uri().path(), cx.request_id.as_str()));
        self.decorate(&req, &cx, preflight, &mut response);
        if req.method() == Method::HEAD {
            *response.body_mut() = Bytes::new();
        }

        let duration_ms = ports.clock.now().millis_since(now);
        let method = method_label(req.method());
        let status = response.status().as_u16();
        self.record(ports, method, route, status, duration_ms).await;
        AccessLog {
            ts: &now.to_rfc3339(),
            method,
            route,
            status,
            duration_ms,
            request_id: cx.request_id.as_str(),
            trace_id: &cx.trace.trace_id_hex(),
            span_id: &cx.trace.span_id_hex(),
            tenant: cx.tenant.as_ref().map(crate::context::TenantId::as_str),
        }
        .emit();
        response
    }

    async fn dispatch(
        &self,
        req: &Request<Bytes>,
        ports: &Ports<'_>,
        preflight: bool,
        now: Timestamp,
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
            Match::Found { value, .. } => self.serve(*value, ports, now).await,
        };
        (route, handled)
    }

    async fn serve(&self, route: Route, ports: &Ports<'_>, now: Timestamp) -> Handled {
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
            Route::Metrics => {
                let text = match (self.metrics_in_sql, ports.sql) {
                    (true, Some(sql)) => metrics::load(sql)
                        .await
                        .map_err(|e| storage_unavailable("metrics load", &e))?
                        .encode(),
                    _ => self.metrics.borrow().encode(),
                };
                let mut response = Response::new(Bytes::from(text));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(metrics::CONTENT_TYPE),
                );
                Ok(response)
            }
        }
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
    ) {
        match (self.metrics_in_sql, ports.sql) {
            (true, Some(sql)) => {
                let mut delta = HttpMetrics::default();
                delta.record(method, route, status, duration_ms);
                if let Err(e) = metrics::flush(sql, &delta).await {
                    tracing::warn!(target: "tepi::metrics", error = %e, "metrics flush failed");
                }
            }
            _ => self
                .metrics
                .borrow_mut()
                .record(method, route, status, duration_ms),
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
        response: &mut Response<Bytes>,
    ) {
        let headers = response.headers_mut();
        security::apply(headers);
        if let Ok(id) = HeaderValue::from_str(cx.request_id.as_str()) {
            headers.insert("x-request-id", id);
        }
        if let Ok(trace) = HeaderValue::from_str(&cx.trace.to_string()) {
            headers.insert(TRACEPARENT, trace);
        }
        headers.append(header::VARY, cors::vary(preflight));
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

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Bytes> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Bytes::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests;
