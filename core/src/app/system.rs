//! The pipeline's own endpoints — probes, the build, the signing keys,
//! metrics and pushes, Web Vitals beacons, and the job endpoints — which
//! answer from the instance's state rather than from a product module.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use serde::Serialize;

use super::routes::Ctx;
use crate::api::error::ApiError;
use crate::api::health::{self, BuildInfo};
use crate::api::response::{Handled, json_response as json, query_pairs};
use crate::api::validate::FieldError;
use crate::auth::Principal;
use crate::jobs::dead_letters;
use crate::jobs::metrics as worker_metrics;
use crate::metrics::aggregate::{Aggregator, Refusal, Scope};
use crate::metrics::{self, push, rum};
use crate::ops::history;
use crate::ports::PortError;

/// Most outbox jobs one drain call leases (`POST /v1/jobs/drain?limit=`).
pub const MAX_DRAIN: u32 = 500;

/// The body of `GET /version`.
#[derive(Debug, Serialize)]
struct Version<'a> {
    #[serde(flatten)]
    build: &'a BuildInfo,
    /// When this build first answered here, as recorded in the key-value
    /// store; `null` where the platform wires no store.
    serving_since: Option<String>,
}

pub async fn healthz(_: &Ctx<'_>) -> Handled {
    Ok(json(StatusCode::OK, &health::healthz()))
}

pub async fn readyz(c: &Ctx<'_>) -> Handled {
    let ready = health::readyz(&c.app.config_problems, c.ports.probes).await?;
    Ok(json(StatusCode::OK, &ready))
}

pub async fn version(c: &Ctx<'_>) -> Handled {
    let serving_since = match c.ports.kv {
        Some(kv) => c.app.serving_since(kv, c.now).await,
        None => None,
    };
    let body = Version {
        build: &c.app.build,
        serving_since,
    };
    Ok(json(StatusCode::OK, &body))
}

pub async fn jwks(c: &Ctx<'_>) -> Handled {
    let keys = c
        .app
        .config
        .auth
        .signing_keys
        .as_ref()
        .ok_or(ApiError::AuthUnavailable)?;
    Ok(json(StatusCode::OK, &keys.jwks()))
}

/// `GET /metrics`: the API's aggregate.
pub async fn metrics(c: &Ctx<'_>) -> Handled {
    c.app.metrics_text(c.ports, c.now, Scope::Api).await
}

/// `GET /api/metrics/prometheus`: the web frontend's aggregate.
pub async fn web_metrics(c: &Ctx<'_>) -> Handled {
    c.app.metrics_text(c.ports, c.now, Scope::Web).await
}

/// `GET /v1/ops/metrics/history`: the console's minute snapshots of the
/// last `?minutes=` (this instance's pending deltas counted first) and the
/// live point.
pub async fn metrics_history(c: &Ctx<'_>) -> Handled {
    let minutes = history::minutes_of(c.req.uri().query().unwrap_or(""))?;
    let aggregator = c.app.store(c.ports).ok_or(ApiError::StorageUnavailable)?;
    c.app.flush_to(&aggregator, c.now).await;
    let failed = |e: PortError| storage_unavailable("metrics history", &e);
    let live = history::live(&aggregator, c.sql()?, c.now)
        .await
        .map_err(failed)?;
    let since = c.now.as_unix_secs().div_euclid(60) - minutes + 1;
    let kept = aggregator.minutes(since).await.map_err(failed)?;
    let mut response = Response::new(Bytes::from(history::answer(&kept, &live)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// `GET /metrics/workers`: the queue consumers' metrics.
pub async fn worker_metrics(c: &Ctx<'_>) -> Handled {
    let text = worker_metrics::load(c.sql()?)
        .await
        .map_err(|e| storage_unavailable("worker metrics load", &e))?
        .encode();
    Ok(exposition(text))
}

/// `PUT|POST|DELETE /metrics/job/…`: one change to the aggregate.
pub async fn push(c: &Ctx<'_>) -> Handled {
    let grouping = c.params.first().map_or("", |(_, v)| v.as_str());
    let pusher = match c.principal()? {
        Principal::ApiKey { key_id, .. } => key_id.as_str(),
        Principal::User { user_id, .. } => user_id.as_str(),
    };
    let change = push::change(c.req, grouping, c.now, &c.app.config.metrics.push, pusher)?;
    let aggregator = c.app.store(c.ports).ok_or(ApiError::StorageUnavailable)?;
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
            Refusal::NameCollision { family, other } => {
                ApiError::MetricNameConflict { family, other }
            }
            Refusal::Quota(exceeded) => exceeded.into(),
            Refusal::Storage(e) => storage_unavailable("metrics push", &e),
        })?;
    let mut response = Response::new(Bytes::new());
    if c.req.method() == Method::DELETE {
        *response.status_mut() = StatusCode::ACCEPTED;
    }
    Ok(response)
}

/// `POST /api/rum`: Web Vitals beacons, counted with this instance's
/// other metrics.
pub async fn rum(c: &Ctx<'_>) -> Handled {
    if let Some(media) = c.req.headers().get(header::CONTENT_TYPE) {
        let media = media.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = media.split(';').next().unwrap_or("").trim().to_owned();
        // sendBeacon posts strings as text/plain.
        if essence != "application/json" && essence != "text/plain" {
            return Err(ApiError::UnsupportedMediaType {
                expected: "application/json",
            });
        }
    }
    let beacons = rum::parse(c.req.body())?;
    let mut web = c.app.web.borrow_mut();
    for (vital, value) in beacons {
        web.record(vital, value);
    }
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// `GET /v1/jobs/dead-letters`: the caller's tenant's parked jobs.
pub async fn dead_letters(c: &Ctx<'_>) -> Handled {
    let tenant = c.principal()?.tenant();
    let body = dead_letters::list(c.sql()?, tenant, c.req).await?;
    Ok(json(StatusCode::OK, &body))
}

/// `POST /v1/jobs/drain`: runs due jobs of the SQL outbox (Spin).
pub async fn drain(c: &Ctx<'_>) -> Handled {
    let limit = drain_limit(c)?;
    let drained = c
        .app
        .drain(c.ports, limit)
        .await
        .map_err(|e| storage_unavailable("outbox drain", &e))?;
    Ok(json(StatusCode::OK, &drained))
}

/// `?limit=` of a drain: 1 to `MAX_DRAIN`, default 100.
fn drain_limit(c: &Ctx<'_>) -> Result<u32, ApiError> {
    let pairs = query_pairs(c.req.uri().query().unwrap_or(""));
    let Some((_, raw)) = pairs.iter().find(|(k, _)| k == "limit") else {
        return Ok(100);
    };
    match raw.parse::<u32>() {
        Ok(n) if (1..=MAX_DRAIN).contains(&n) => Ok(n),
        _ => Err(ApiError::Validation {
            errors: vec![FieldError {
                field: "limit".into(),
                code: "out_of_range",
                message: format!("must be 1 to {MAX_DRAIN}"),
            }],
        }),
    }
}

/// A Prometheus text exposition.
pub fn exposition(text: String) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}

/// Logs the cause and answers with a problem that reveals nothing of it.
pub fn storage_unavailable(what: &str, e: &PortError) -> ApiError {
    tracing::error!(target: "tepi::storage", error = %e, "{what} failed");
    ApiError::StorageUnavailable
}
