//! The `METRICS` Durable Object: the class that holds the metrics
//! aggregate, and its stub as the core's `aggregator` port. The protocol
//! both sides speak is the core's (`tepi_core::metrics::aggregate::remote`);
//! here requests and answers are only converted.

use async_trait::async_trait;
use tepi_core::{Bytes, HttpClient, PortError, http};
use worker::{DurableObject, Env, Request, Response, State, durable_object};

use crate::bindings::{self, METRICS};

/// The name of the one aggregate object: each isolate writes at most once
/// per flush interval, so even thousands of isolates stay far below what
/// one object serves (docs/ops.md).
pub const AGGREGATE: &str = "aggregate";

/// The path the readiness probe asks for (answered here, not by the core).
pub const PING: &str = "/ping";

/// The Durable Object class behind the `METRICS` binding: the aggregate of
/// every isolate and pusher, in the object's own SQLite.
#[durable_object]
pub struct MetricsAggregator {
    state: State,
    /// `METRICS_TTL_SECS` and the push limits, read once per object.
    config: tepi_core::metrics::MetricsConfig,
    /// Whether the aggregate's table exists in this object's storage.
    migrated: std::cell::Cell<bool>,
}

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
            config: config.config.metrics,
            migrated: std::cell::Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        if req.path() == PING {
            return Response::ok("ok");
        }
        // The path and query as the core takes them, without the `url`
        // crate (ADR 0003), as for the API's requests.
        let url = req.inner().url();
        let request = http::Request::builder()
            .method(req.method().as_ref())
            .uri(crate::origin_form(&url))
            .body(Bytes::from(req.bytes().await?))
            .map_err(|e| worker::Error::RustError(e.to_string()))?;
        let sql = crate::d1::DoSql::new(&self.state.storage());
        if !self.migrated.get() {
            tepi_core::storage::migrate_metrics(&sql)
                .await
                .map_err(|e| worker::Error::RustError(e.0))?;
            self.migrated.set(true);
        }
        let answer =
            tepi_core::metrics::aggregate::remote::serve(&sql, &self.config, &request).await;
        let status = answer.status().as_u16();
        let body = answer.into_body();
        Ok(if body.is_empty() {
            Response::empty()?.with_status(status)
        } else {
            Response::from_bytes(body.to_vec())?.with_status(status)
        })
    }
}

/// The [`AGGREGATE`] object's stub, as the HTTP service the core's
/// `remote::Client` speaks to.
pub struct MetricsStub<'e>(pub &'e Env);

#[async_trait(?Send)]
impl HttpClient for MetricsStub<'_> {
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, PortError> {
        let fail = |e: worker::Error| bindings::port_error(METRICS, &e);
        let stub = self
            .0
            .durable_object(METRICS)
            .and_then(|namespace| namespace.id_from_name(AGGREGATE)?.get_stub())
            .map_err(fail)?;
        let request = bindings::to_worker_request(request).map_err(fail)?;
        let response = stub.fetch_with_request(request).await.map_err(fail)?;
        bindings::from_worker_response(response)
            .await
            .map_err(|e| PortError(format!("binding {METRICS}: {e}")))
    }
}
