//! The route table: every route the API serves, one row each. A row says
//! everything the pipeline asks about a route — method and pattern, who may
//! call it, its rate-limit class, how a `GET` of it may be cached, whether
//! `Idempotency-Key` applies, and the handler. The router, the permission
//! check, the rate limiter, the cache, the idempotency layer, the RBAC and
//! OpenAPI contract tests and the route-table snapshot all read these rows.
//!
//! To add a route: one row here, and its handler next to the module's
//! other handlers.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{Method, Request};

use super::App;
use crate::api::caching::CachePolicy::{self, NoStore, Private, Shared};
use crate::api::context::{RequestContext, TenantId};
use crate::api::error::ApiError;
use crate::api::response::Handled;
use crate::auth::rbac::Requirement::{
    self, Admin, BootstrapToken, OperatorAdmin, Public, ScopeOrOperatorAdmin, User,
};
use crate::auth::{Principal, Role, Scope, handlers as auth};
use crate::jobs::outbox::Fallbacks;
use crate::module;
use crate::ports::{Ports, Sql};
use crate::ratelimit::RouteClass::{self, Api, Login, Push};
use crate::time::Timestamp;
use crate::{meta_events, notifications, ops, uploads, workflows};

use super::system;

/// What a handler answers, borrowing the request's context while it runs.
pub type Reply<'a> = Pin<Box<dyn Future<Output = Handled> + 'a>>;

/// A route's handler, and its name (for the route-table snapshot).
#[derive(Clone, Copy)]
pub struct Handler {
    pub name: &'static str,
    pub run: for<'a> fn(&'a Ctx<'a>) -> Reply<'a>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// One row of the route table.
#[derive(Clone, Copy)]
pub struct Route {
    pub method: &'static Method,
    pub pattern: &'static str,
    /// The last parameter takes the rest of the path (`/metrics/job/a/b`).
    pub rest: bool,
    /// Who may call it; checked before the handler runs.
    pub access: Requirement,
    /// The limit it counts against; `None` for probes.
    pub limit: Option<RouteClass>,
    /// How a successful `GET` or `HEAD` may be cached (other methods are
    /// never stored).
    pub cache: CachePolicy,
    /// `Idempotency-Key` applies: a retried create answers as the first did.
    pub idempotent: bool,
    pub handler: Handler,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.pattern)
    }
}

/// Everything a handler may use: the request, the verified caller and the
/// ports, with the core's stand-ins where the platform has none.
pub struct Ctx<'a> {
    pub app: &'a App,
    pub req: &'a Request<Bytes>,
    pub cx: &'a RequestContext,
    pub params: &'a [(&'static str, String)],
    pub ports: &'a Ports<'a>,
    pub fallbacks: &'a Fallbacks<'a>,
    pub now: Timestamp,
    pub principal: Option<&'a Principal>,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("path", &self.req.uri().path())
            .finish_non_exhaustive()
    }
}

impl<'a> Ctx<'a> {
    pub fn sql(&self) -> Result<&'a dyn Sql, ApiError> {
        self.ports.sql.ok_or(ApiError::StorageUnavailable)
    }

    /// The verified caller; routes that ask for credentials always have one.
    pub fn principal(&self) -> Result<&'a Principal, ApiError> {
        self.principal.ok_or(ApiError::Unauthenticated)
    }

    /// What an auth handler works with.
    pub fn auth(&self) -> Result<auth::Call<'a>, ApiError> {
        Ok(auth::Call {
            req: self.req,
            params: self.params,
            sql: self.sql()?,
            entropy: self.ports.entropy,
            now: self.now,
            auth: &self.app.config.auth,
            webhook_key: self.app.config.jobs.webhook_secret.as_ref(),
        })
    }

    /// What a product module's handler works with: a verified user.
    pub fn module(&'a self) -> Result<module::Call<'a>, ApiError> {
        let Some(Principal::User {
            tenant,
            user_id,
            role,
        }) = self.principal
        else {
            return Err(ApiError::Forbidden);
        };
        self.module_as(tenant, user_id, *role)
    }

    /// A module call for `tenant` without a user: webhooks whose sender
    /// proves the tenant themselves.
    pub fn module_as(
        &'a self,
        tenant: &'a TenantId,
        user_id: &'a str,
        role: Role,
    ) -> Result<module::Call<'a>, ApiError> {
        Ok(module::Call {
            req: self.req,
            params: self.params,
            caller: module::Caller {
                tenant,
                user_id,
                role,
            },
            sql: self.sql()?,
            jobs: self.fallbacks.jobs().ok_or(ApiError::StorageUnavailable)?,
            blobs: self.fallbacks.blobs(),
            entropy: self.ports.entropy,
            now: self.now,
            cx: self.cx,
            config: &self.app.config,
        })
    }
}

/// Turns a handler of one of the handler shapes into a table [`Handler`].
macro_rules! handler {
    // The pipeline's own endpoints: `async fn(&Ctx) -> Handled`.
    (app $f:path) => {{
        fn handle<'a>(c: &'a Ctx<'a>) -> Reply<'a> {
            Box::pin($f(c))
        }
        Handler {
            name: stringify!($f),
            run: handle,
        }
    }};
    // Auth endpoints without a caller (login, bootstrap, …).
    (auth $f:path) => {{
        fn handle<'a>(c: &'a Ctx<'a>) -> Reply<'a> {
            Box::pin(async move { $f(&c.auth()?).await })
        }
        Handler {
            name: stringify!($f),
            run: handle,
        }
    }};
    // Auth endpoints of a verified caller.
    (caller $f:path) => {{
        fn handle<'a>(c: &'a Ctx<'a>) -> Reply<'a> {
            Box::pin(async move { $f(&c.auth()?, c.principal()?).await })
        }
        Handler {
            name: stringify!($f),
            run: handle,
        }
    }};
    // Product modules, for a verified user.
    (module $f:path) => {{
        fn handle<'a>(c: &'a Ctx<'a>) -> Reply<'a> {
            Box::pin(async move { $f(&c.module()?).await })
        }
        Handler {
            name: stringify!($f),
            run: handle,
        }
    }};
    // Operator endpoints a machine may call: an API key or an operator
    // admin (the requirement has been checked), acting in its own tenant.
    (operator $f:path) => {{
        fn handle<'a>(c: &'a Ctx<'a>) -> Reply<'a> {
            Box::pin(async move {
                let (tenant, id, role) = match c.principal()? {
                    Principal::User {
                        tenant,
                        user_id,
                        role,
                    } => (tenant, user_id.as_str(), *role),
                    Principal::ApiKey { tenant, key_id, .. } => {
                        (tenant, key_id.as_str(), Role::User)
                    }
                };
                $f(&c.module_as(tenant, id, role)?).await
            })
        }
        Handler {
            name: stringify!($f),
            run: handle,
        }
    }};
    // Meta's webhook calls: the tenant is named in the query and proven by
    // the verify token or the signature; `$refused` when it is not named.
    (meta $f:path, $refused:expr) => {{
        fn handle<'a>(c: &'a Ctx<'a>) -> Reply<'a> {
            Box::pin(async move {
                let tenant = meta_events::tenant_of(c.req).ok_or($refused)?;
                $f(&c.module_as(&tenant, "", Role::User)?).await
            })
        }
        Handler {
            name: stringify!($f),
            run: handle,
        }
    }};
}

/// A row: method, pattern, access, limit, cache, idempotent, handler.
const fn row(
    method: &'static Method,
    pattern: &'static str,
    access: Requirement,
    limit: Option<RouteClass>,
    cache: CachePolicy,
    idempotent: bool,
    handler: Handler,
) -> Route {
    Route {
        method,
        pattern,
        rest: false,
        access,
        limit,
        cache,
        idempotent,
        handler,
    }
}

/// A row whose last parameter takes the rest of the path.
const fn rest(route: Route) -> Route {
    Route {
        rest: true,
        ..route
    }
}

const GET: &Method = &Method::GET;
const POST: &Method = &Method::POST;
const PUT: &Method = &Method::PUT;
const PATCH: &Method = &Method::PATCH;
const DELETE: &Method = &Method::DELETE;
const IDEMPOTENT: bool = true;
const ONCE: bool = false;
/// Limit classes (`RATE_LIMIT_<CLASS>`); probes have none.
const PROBE: Option<RouteClass> = None;
const LOGIN: Option<RouteClass> = Some(Login);
const PUBLIC: Option<RouteClass> = Some(RouteClass::Public);
const API: Option<RouteClass> = Some(Api);
const ADMIN: Option<RouteClass> = Some(RouteClass::Admin);
const PUSH: Option<RouteClass> = Some(Push);
const ALERTS: Option<RouteClass> = Some(RouteClass::Alerts);
const METRICS_READ: Requirement = ScopeOrOperatorAdmin(Scope::MetricsRead);
const METRICS_PUSH: Requirement = ScopeOrOperatorAdmin(Scope::MetricsPush);
const JOBS_DRAIN: Requirement = ScopeOrOperatorAdmin(Scope::JobsDrain);
const ALERTS_WRITE: Requirement = ScopeOrOperatorAdmin(Scope::AlertsWrite);
const BASELINES: Requirement = ScopeOrOperatorAdmin(Scope::BaselinesWrite);

/// Every route the API serves.
#[rustfmt::skip]
pub fn table() -> Vec<Route> {
    vec![
        // Probes and the build: anyone.
        row(GET, "/healthz", Public, PROBE, NoStore, ONCE, handler!(app system::healthz)),
        row(GET, "/readyz", Public, PROBE, NoStore, ONCE, handler!(app system::readyz)),
        row(GET, "/version", Public, PUBLIC, Shared { max_age: 60 }, ONCE, handler!(app system::version)),
        row(GET, "/.well-known/jwks.json", Public, PUBLIC, Shared { max_age: 3600 }, ONCE, handler!(app system::jwks)),
        // Metrics: a `metrics:read` key or an operator admin scrapes; a
        // `metrics:push` key (batch jobs, the web frontend's server) pushes.
        row(GET, "/metrics", METRICS_READ, API, NoStore, ONCE, handler!(app system::metrics)),
        row(GET, "/metrics/workers", METRICS_READ, API, NoStore, ONCE, handler!(app system::worker_metrics)),
        rest(row(PUT, "/metrics/{grouping}", METRICS_PUSH, PUSH, NoStore, ONCE, handler!(app system::push))),
        rest(row(POST, "/metrics/{grouping}", METRICS_PUSH, PUSH, NoStore, ONCE, handler!(app system::push))),
        rest(row(DELETE, "/metrics/{grouping}", METRICS_PUSH, PUSH, NoStore, ONCE, handler!(app system::push))),
        // Browsers' Web Vitals beacons carry no credentials.
        row(POST, "/api/rum", Public, PUBLIC, NoStore, ONCE, handler!(app system::rum)),
        row(GET, "/api/metrics/prometheus", METRICS_READ, API, NoStore, ONCE, handler!(app system::web_metrics)),
        // The console's dashboard: minute snapshots and the live point.
        row(GET, "/v1/ops/metrics/history", METRICS_READ, API, NoStore, ONCE, handler!(app system::metrics_history)),
        // Auth.
        row(POST, "/v1/bootstrap", BootstrapToken, LOGIN, NoStore, ONCE, handler!(auth auth::bootstrap)),
        row(POST, "/v1/auth/login", Public, LOGIN, NoStore, ONCE, handler!(auth auth::login)),
        row(POST, "/v1/auth/refresh", Public, LOGIN, NoStore, ONCE, handler!(auth auth::refresh)),
        row(POST, "/v1/auth/logout", Public, LOGIN, NoStore, ONCE, handler!(auth auth::logout)),
        row(GET, "/v1/auth/me", User, API, Private, ONCE, handler!(caller auth::me)),
        row(GET, "/v1/users", Admin, ADMIN, Private, ONCE, handler!(caller auth::list_users)),
        row(POST, "/v1/users", Admin, ADMIN, NoStore, ONCE, handler!(caller auth::create_user)),
        row(GET, "/v1/users/{id}", Admin, ADMIN, Private, ONCE, handler!(caller auth::get_user)),
        row(PATCH, "/v1/users/{id}", Admin, ADMIN, NoStore, ONCE, handler!(caller auth::update_user)),
        row(DELETE, "/v1/users/{id}", Admin, ADMIN, NoStore, ONCE, handler!(caller auth::delete_user)),
        row(GET, "/v1/api-keys", Admin, ADMIN, Private, ONCE, handler!(caller auth::list_api_keys)),
        row(POST, "/v1/api-keys", Admin, ADMIN, NoStore, ONCE, handler!(caller auth::create_api_key)),
        row(DELETE, "/v1/api-keys/{id}", Admin, ADMIN, NoStore, ONCE, handler!(caller auth::delete_api_key)),
        row(POST, "/v1/tenants", OperatorAdmin, ADMIN, NoStore, ONCE, handler!(auth auth::create_tenant)),
        // The caller's tenant's webhook signing secret: metadata, rotation.
        row(GET, "/v1/webhook-secret", Admin, ADMIN, Private, ONCE, handler!(caller auth::get_webhook_secret)),
        row(POST, "/v1/webhook-secret/rotate", Admin, ADMIN, NoStore, ONCE, handler!(caller auth::rotate_webhook_secret)),
        // Uploads: any user of the tenant reads; the uploader or an admin
        // changes (checked by the handler).
        row(POST, "/v1/uploads", User, API, NoStore, IDEMPOTENT, handler!(module uploads::create)),
        row(GET, "/v1/uploads/{id}", User, API, Private, ONCE, handler!(module uploads::get)),
        row(DELETE, "/v1/uploads/{id}", User, API, NoStore, ONCE, handler!(module uploads::delete)),
        row(PUT, "/v1/uploads/{id}/content", User, API, NoStore, ONCE, handler!(module uploads::put_content)),
        row(GET, "/v1/uploads/{id}/content", User, API, Private, ONCE, handler!(module uploads::content)),
        // Workflows: users read and start runs; admins define them.
        row(GET, "/v1/workflows", User, API, Private, ONCE, handler!(module workflows::list)),
        row(POST, "/v1/workflows", Admin, ADMIN, NoStore, IDEMPOTENT, handler!(module workflows::create)),
        row(GET, "/v1/workflows/{id}", User, API, Private, ONCE, handler!(module workflows::get)),
        row(PATCH, "/v1/workflows/{id}", Admin, ADMIN, NoStore, ONCE, handler!(module workflows::update)),
        row(DELETE, "/v1/workflows/{id}", Admin, ADMIN, NoStore, ONCE, handler!(module workflows::delete)),
        row(POST, "/v1/workflows/{id}/runs", User, API, NoStore, IDEMPOTENT, handler!(module workflows::run)),
        row(GET, "/v1/workflows/{id}/runs", User, API, Private, ONCE, handler!(module workflows::runs)),
        row(GET, "/v1/workflows/{id}/runs/{run_id}", User, API, Private, ONCE, handler!(module workflows::get_run)),
        // Meta webhooks: Meta calls without credentials (the verify token
        // and the body signature prove it); admins configure them.
        row(GET, "/v1/meta/webhook", Public, PUBLIC, NoStore, ONCE, handler!(meta meta_events::handshake, ApiError::VerifyTokenMismatch)),
        row(POST, "/v1/meta/webhook", Public, PUBLIC, NoStore, ONCE, handler!(meta meta_events::receive, ApiError::InvalidSignature)),
        row(GET, "/v1/meta/config", Admin, ADMIN, Private, ONCE, handler!(module meta_events::get_config)),
        row(PUT, "/v1/meta/config", Admin, ADMIN, NoStore, ONCE, handler!(module meta_events::put_config)),
        // Notifications: everyone reads their own inbox; admins send.
        row(GET, "/v1/notifications", User, API, Private, ONCE, handler!(module notifications::inbox)),
        row(POST, "/v1/notifications", Admin, ADMIN, NoStore, IDEMPOTENT, handler!(module notifications::send)),
        row(POST, "/v1/notifications/{id}/read", User, API, NoStore, ONCE, handler!(module notifications::mark_read)),
        // Jobs: admins see their tenant's dead letters; the outbox drain
        // (Spin) is for a scheduler with a `jobs:drain` key.
        row(GET, "/v1/jobs/dead-letters", Admin, ADMIN, Private, ONCE, handler!(app system::dead_letters)),
        row(POST, "/v1/jobs/drain", JOBS_DRAIN, ADMIN, NoStore, ONCE, handler!(app system::drain)),
        // The alert inbox: Alertmanager posts with an `alerts:write` key;
        // operator admins read.
        row(POST, "/v1/ops/alerts", ALERTS_WRITE, ALERTS, NoStore, ONCE, handler!(operator ops::alerts::receive)),
        row(GET, "/v1/ops/alerts", OperatorAdmin, ADMIN, Private, ONCE, handler!(operator ops::alerts::list)),
        // Load-test baselines per branch (a branch may hold `/`): k6 runs
        // record and compare with a `baselines:write` key.
        row(GET, "/v1/ops/baselines", BASELINES, ADMIN, Private, ONCE, handler!(operator ops::baselines::list)),
        rest(row(PUT, "/v1/ops/baselines/{branch}", BASELINES, ADMIN, NoStore, ONCE, handler!(operator ops::baselines::put))),
        rest(row(GET, "/v1/ops/baselines/{branch}", BASELINES, ADMIN, Private, ONCE, handler!(operator ops::baselines::get))),
    ]
}
