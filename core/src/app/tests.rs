//! Route tests: the whole pipeline through `App::handle`, with in-process
//! ports.

use bytes::Bytes;
use http::{Method, Request, Response};
use serde_json::Value;

use super::App;
use crate::api::health::BuildInfo;
use crate::config::{Config, vars};
use crate::log::capture;
use crate::ports::{KeyValue, Sql};
use crate::ports::{Ports, Probe};
use crate::testing::{
    CountingEntropy, MemoryKv, SqliteSql, StaticProbe, SteppingClock, bare_ports, block_on,
};
use crate::time::Timestamp;

const START: Timestamp = Timestamp::from_unix_micros(1_795_582_978_000_000);
const ORIGIN: &str = "https://app.example.com";

fn app_with(vars: &[(&str, &str)]) -> App {
    let loaded = Config::load(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    });
    App::new(loaded, BuildInfo::for_target("test"))
}

/// Test-only signing keys (seeds of repeated bytes, obviously not secret).
const KEYS: &str = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";

fn app() -> App {
    app_with(&[
        (vars::ALLOWED_ORIGINS, ORIGIN),
        (vars::MAX_BODY_BYTES, "16"),
        (vars::JWT_SIGNING_KEYS, KEYS),
    ])
}

/// The metrics exposition as `GET /metrics` renders it, read past the
/// route's authorisation (which `auth` tests cover).
fn scrape(app: &App, sql: Option<&dyn Sql>) -> String {
    let entropy = CountingEntropy::default();
    let clock = SteppingClock::new(START, 0);
    let ports = Ports {
        sql,
        ..bare_ports(&entropy, &clock)
    };
    let response =
        block_on(app.metrics_text(&ports, START, crate::metrics::aggregate::Scope::Api)).unwrap();
    assert_eq!(
        header_str(&response, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    String::from_utf8(response.body().to_vec()).unwrap()
}

struct Call<'a> {
    method: Method,
    path: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
}

fn get(path: &str) -> Call<'_> {
    Call {
        method: Method::GET,
        path,
        headers: vec![],
        body: b"",
    }
}

fn send_with(app: &App, call: Call<'_>, probes: &[&dyn Probe]) -> Response<Bytes> {
    send_full(app, call, probes, None, None, START)
}

fn send_full(
    app: &App,
    call: Call<'_>,
    probes: &[&dyn Probe],
    sql: Option<&dyn Sql>,
    kv: Option<&dyn KeyValue>,
    now: Timestamp,
) -> Response<Bytes> {
    let mut builder = Request::builder().method(call.method).uri(call.path);
    for (name, value) in call.headers {
        builder = builder.header(name, value);
    }
    let req = builder.body(Bytes::copy_from_slice(call.body)).unwrap();
    let entropy = CountingEntropy::default();
    // Every request appears to take 2.5 ms.
    let clock = SteppingClock::new(now, 2_500);
    let ports = Ports {
        probes,
        sql,
        kv,
        ..bare_ports(&entropy, &clock)
    };
    block_on(app.handle(req, &ports, now))
}

fn send(app: &App, call: Call<'_>) -> Response<Bytes> {
    send_with(app, call, &[])
}

fn body_json(response: &Response<Bytes>) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

/// Asserts a `422` whose problem lists `code` for `field` among its errors.
fn assert_field_error(response: &Response<Bytes>, field: &str, code: &str) {
    assert_eq!(response.status(), 422, "{field}: {}", body_json(response));
    let errors = body_json(response)["errors"].clone();
    assert!(
        errors
            .as_array()
            .is_some_and(|all| all.iter().any(|e| e["field"] == field && e["code"] == code)),
        "{field} {code}: {errors}"
    );
}

fn header_str<'r>(response: &'r Response<Bytes>, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[test]
fn health_and_version_answer_with_json() {
    let app = app();
    let health = send(&app, get("/healthz"));
    assert_eq!(health.status(), 200);
    assert_eq!(body_json(&health)["status"], "ok");
    assert_eq!(
        header_str(&health, "content-type"),
        Some("application/json")
    );

    let version = body_json(&send(&app, get("/version")));
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(version["target"], "test");
    assert!(
        version["git_revision"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
}

/// The aggregate service as the metrics Durable Object runs it.
struct AggregateService<'a>(&'a dyn Sql);

#[async_trait::async_trait(?Send)]
impl crate::ports::HttpClient for AggregateService<'_> {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, crate::PortError> {
        let config = crate::metrics::MetricsConfig::default();
        Ok(crate::metrics::aggregate::remote::serve(self.0, &config, &request).await)
    }
}

#[test]
fn an_app_told_of_the_aggregate_service_keeps_its_metrics_there_and_no_other_does() {
    let service_sql = SqliteSql::open_in_memory();
    block_on(crate::storage::migrate_metrics(&service_sql)).unwrap();
    let service = AggregateService(&service_sql);
    let entropy = CountingEntropy::default();
    let clock = SteppingClock::new(START, 0);
    let ports = Ports {
        aggregator: Some(&service),
        ..bare_ports(&entropy, &clock)
    };
    let exposition = |app: &App| {
        let scope = crate::metrics::aggregate::Scope::Api;
        let response = block_on(app.metrics_text(&ports, START, scope)).unwrap();
        String::from_utf8(response.body().to_vec()).unwrap()
    };
    let request = |app: &App, path: &str| {
        let req = Request::get(path).body(Bytes::new()).unwrap();
        block_on(app.handle(req, &ports, START));
    };
    let healthz = "http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1";
    let version = "http_requests_total{method=\"GET\",route=\"/version\",status=\"200\"}";

    // Two instances speaking to the service: one's request shows in the
    // other's scrape, so it went to the service, not to memory.
    let first = app().with_aggregate_service();
    request(&first, "/healthz");
    assert!(exposition(&first).contains(healthz));
    let second = app().with_aggregate_service();
    assert!(
        exposition(&second).contains(healthz),
        "{}",
        exposition(&second)
    );

    // An app not told of the service keeps its counts to itself.
    let unaware = app();
    request(&unaware, "/version");
    assert!(exposition(&unaware).contains(version));
    assert!(!exposition(&second).contains(version));
}

#[test]
fn readiness_reports_each_check_and_fails_with_a_reason() {
    let app = app();
    let db = StaticProbe {
        name: "DB",
        result: Ok(()),
    };
    let bucket = StaticProbe {
        name: "UPLOADS",
        result: Err("binding UPLOADS is not configured"),
    };

    let ready = send_with(&app, get("/readyz"), &[&db]);
    assert_eq!(ready.status(), 200);
    assert_eq!(body_json(&ready)["checks"]["DB"], "ok");

    let not_ready = send_with(&app, get("/readyz"), &[&db, &bucket]);
    assert_eq!(not_ready.status(), 503);
    let body = body_json(&not_ready);
    assert_eq!(body["code"], "not_ready");
    assert_eq!(
        body["checks"]["UPLOADS"],
        "binding UPLOADS is not configured"
    );

    let misconfigured = app_with(&[
        (vars::MAX_BODY_BYTES, "lots"),
        (vars::JWT_SIGNING_KEYS, KEYS),
    ]);
    let body = body_json(&send(&misconfigured, get("/readyz")));
    assert!(
        body["checks"]["config"]
            .as_str()
            .unwrap()
            .contains("MAX_BODY_BYTES"),
        "{body}"
    );
}

#[test]
fn unknown_paths_and_wrong_methods_are_problems() {
    let app = app();
    let cases = [
        (Method::GET, "/nope", 404, "not_found", None, "unknown path"),
        (
            Method::POST,
            "/healthz",
            405,
            "method_not_allowed",
            Some("GET, HEAD"),
            "wrong method",
        ),
        (
            Method::DELETE,
            "/metrics",
            405,
            "method_not_allowed",
            Some("GET, HEAD"),
            "wrong method",
        ),
    ];
    for (method, path, status, code, allow, why) in cases {
        let response = send(
            &app,
            Call {
                method,
                path,
                headers: vec![],
                body: b"",
            },
        );
        assert_eq!(response.status(), status, "{why}");
        assert_eq!(
            header_str(&response, "content-type"),
            Some("application/problem+json"),
            "{why}"
        );
        assert_eq!(header_str(&response, "allow"), allow, "{why}");
        let body = body_json(&response);
        assert_eq!(body["code"], code, "{why}");
        assert_eq!(body["instance"], path, "{why}");
        assert_eq!(
            body["request_id"],
            header_str(&response, "x-request-id").unwrap(),
            "{why}"
        );
    }
}

#[test]
fn head_is_served_by_get_routes_without_a_body() {
    let response = send(
        &app(),
        Call {
            method: Method::HEAD,
            path: "/healthz",
            headers: vec![],
            body: b"",
        },
    );
    assert_eq!(response.status(), 200);
    assert!(response.body().is_empty());
}

#[test]
fn every_response_carries_ids_trace_and_security_headers() {
    let app = app();
    for path in ["/healthz", "/nope"] {
        let response = send(&app, get(path));
        for name in [
            "x-request-id",
            "traceparent",
            "strict-transport-security",
            "x-content-type-options",
            "referrer-policy",
            "content-security-policy",
            "x-frame-options",
        ] {
            assert!(
                response.headers().contains_key(name),
                "{path}: {name} missing"
            );
        }
        assert_eq!(header_str(&response, "vary"), Some("Origin"), "{path}");
    }
}

#[test]
fn request_context_is_kept_when_valid_and_replaced_when_not() {
    let app = app();
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let kept = send(
        &app,
        Call {
            headers: vec![("x-request-id", "abc.DEF_1-2"), ("traceparent", incoming)],
            ..get("/healthz")
        },
    );
    assert_eq!(header_str(&kept, "x-request-id"), Some("abc.DEF_1-2"));
    let trace = header_str(&kept, "traceparent").unwrap();
    assert!(
        trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "same trace: {trace}"
    );
    assert_ne!(trace, incoming, "new span id");

    let replaced = send(
        &app,
        Call {
            headers: vec![
                ("x-request-id", "no spaces allowed"),
                ("traceparent", "00-bogus"),
            ],
            ..get("/healthz")
        },
    );
    let id = header_str(&replaced, "x-request-id").unwrap();
    assert_ne!(id, "no spaces allowed");
    assert_eq!(id.len(), 32);
    assert!(
        !header_str(&replaced, "traceparent")
            .unwrap()
            .contains("bogus")
    );
}

#[test]
fn cors_grants_allowed_origins_only() {
    let app = app();
    let preflight = |origin| Call {
        method: Method::OPTIONS,
        path: "/healthz",
        headers: vec![
            ("origin", origin),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-request-id, x-secret"),
        ],
        body: b"",
    };
    let granted = send(&app, preflight(ORIGIN));
    assert_eq!(granted.status(), 204);
    assert_eq!(
        header_str(&granted, "access-control-allow-origin"),
        Some(ORIGIN)
    );
    assert_eq!(
        header_str(&granted, "access-control-allow-methods"),
        Some("GET, HEAD, OPTIONS")
    );
    assert_eq!(
        header_str(&granted, "access-control-allow-headers"),
        Some("x-request-id")
    );
    assert_eq!(header_str(&granted, "access-control-max-age"), Some("600"));
    assert!(header_str(&granted, "vary").unwrap().contains("Origin"));

    let refused = send(&app, preflight("https://evil.example"));
    assert_eq!(refused.status(), 403);
    assert_eq!(body_json(&refused)["code"], "cors_origin_refused");
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );

    let simple_ok = send(
        &app,
        Call {
            headers: vec![("origin", ORIGIN)],
            ..get("/healthz")
        },
    );
    assert_eq!(
        header_str(&simple_ok, "access-control-allow-origin"),
        Some(ORIGIN)
    );
    // No origin may send credentials: the console's refresh cookie stays
    // with pages of the API's own origin.
    for answer in [&granted, &simple_ok] {
        assert!(
            !answer
                .headers()
                .contains_key("access-control-allow-credentials")
        );
    }
    let simple_foreign = send(
        &app,
        Call {
            headers: vec![("origin", "https://evil.example")],
            ..get("/healthz")
        },
    );
    assert_eq!(
        simple_foreign.status(),
        200,
        "the request is served; the browser withholds it"
    );
    assert!(
        !simple_foreign
            .headers()
            .contains_key("access-control-allow-origin")
    );

    let plain_options = send(
        &app,
        Call {
            method: Method::OPTIONS,
            ..get("/healthz")
        },
    );
    assert_eq!(plain_options.status(), 204);
    assert_eq!(
        header_str(&plain_options, "allow"),
        Some("GET, HEAD, OPTIONS")
    );
}

#[test]
fn bodies_over_the_limit_are_refused_with_413() {
    type Case<'a> = (&'a [u8], Vec<(&'a str, &'a str)>, u16, &'a str);
    let app = app();
    let cases: [Case<'_>; 4] = [
        (b"0123456789abcdef", vec![], 200, "exactly at the limit"),
        (b"0123456789abcdefX", vec![], 413, "one byte over"),
        (
            b"",
            vec![("content-length", "1000000")],
            413,
            "declared length over the limit",
        ),
        (
            b"small",
            vec![("content-length", "5")],
            200,
            "declared and small",
        ),
    ];
    for (body, headers, status, why) in cases {
        let response = send(
            &app,
            Call {
                headers,
                body,
                ..get("/healthz")
            },
        );
        assert_eq!(response.status(), status, "{why}");
    }
    let cases: [(Method, &str, u16, &str); 2] = [
        (Method::POST, "/healthz", 413, "checked before the method"),
        (Method::PUT, "/nowhere", 413, "checked before routing"),
    ];
    for (method, path, status, why) in cases {
        let response = send(
            &app,
            Call {
                method,
                path,
                headers: vec![],
                body: b"0123456789abcdefX",
            },
        );
        assert_eq!(response.status(), status, "{why}");
        if status == 413 {
            let problem = body_json(&response);
            assert_eq!(problem["code"], "payload_too_large", "{why}");
            assert_eq!(problem["limit_bytes"], 16, "{why}");
        }
    }
}

#[test]
fn metrics_count_requests_by_route_pattern() {
    let app = app();
    send(&app, get("/healthz"));
    send(&app, get("/healthz"));
    send(&app, get("/does/not/exist/123"));
    send(
        &app,
        Call {
            method: Method::from_bytes(b"BREW").unwrap(),
            ..get("/healthz")
        },
    );
    let text = scrape(&app, None);
    let cases = [
        (
            "http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2\n",
            "two health checks",
        ),
        (
            "http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1\n",
            "raw path never a label",
        ),
        (
            "http_requests_total{method=\"OTHER\",route=\"/healthz\",status=\"405\"} 1\n",
            "unknown method folded",
        ),
        (
            "http_request_duration_ms_bucket{method=\"GET\",route=\"/healthz\",le=\"5\"} 2\n",
            "2.5 ms each",
        ),
        (
            "http_request_duration_ms_count{method=\"GET\",route=\"/healthz\"} 2\n",
            "count",
        ),
    ];
    for (needle, why) in cases {
        assert!(text.contains(needle), "{why}: {needle:?} not in\n{text}");
    }
    assert!(!text.contains("/does/not/exist"));
}

#[test]
fn every_request_writes_one_access_log_line() {
    let app = app();
    let (response, lines) = capture::lines(|| {
        send(
            &app,
            Call {
                headers: vec![("x-request-id", "req-42"), ("x-tenant-id", "acme")],
                ..get("/version")
            },
        )
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line: Value = serde_json::from_str(&lines[0]).unwrap();
    let trace = header_str(&response, "traceparent").unwrap();
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/version");
    assert_eq!(line["status"], 200);
    assert_eq!(line["duration_ms"], 2.5);
    assert_eq!(line["request_id"], "req-42");
    assert_eq!(line["tenant"], "acme");
    assert_eq!(line["ts"], "2026-11-25T05:02:58.000Z");
    assert_eq!(
        &trace[3..35],
        line["trace_id"].as_str().unwrap(),
        "log and response share the trace"
    );
}

#[test]
fn route_table_lists_every_route_once() {
    let app = app();
    let routes: Vec<String> = app.routes().map(|(m, p)| format!("{m} {p}")).collect();
    assert_eq!(
        routes,
        [
            "GET /healthz",
            "GET /readyz",
            "GET /version",
            "GET /.well-known/jwks.json",
            "GET /metrics",
            "GET /metrics/workers",
            "PUT /metrics/{grouping}",
            "POST /metrics/{grouping}",
            "DELETE /metrics/{grouping}",
            "POST /api/rum",
            "GET /api/metrics/prometheus",
            "GET /v1/ops/metrics/history",
            "POST /v1/bootstrap",
            "POST /v1/auth/login",
            "POST /v1/auth/refresh",
            "POST /v1/auth/logout",
            "GET /v1/auth/me",
            "GET /v1/users",
            "POST /v1/users",
            "GET /v1/users/{id}",
            "PATCH /v1/users/{id}",
            "DELETE /v1/users/{id}",
            "GET /v1/api-keys",
            "POST /v1/api-keys",
            "DELETE /v1/api-keys/{id}",
            "POST /v1/tenants",
            "GET /v1/webhook-secret",
            "POST /v1/webhook-secret/rotate",
            "POST /v1/uploads",
            "GET /v1/uploads/{id}",
            "DELETE /v1/uploads/{id}",
            "PUT /v1/uploads/{id}/content",
            "GET /v1/uploads/{id}/content",
            "GET /v1/workflows",
            "POST /v1/workflows",
            "GET /v1/workflows/{id}",
            "PATCH /v1/workflows/{id}",
            "DELETE /v1/workflows/{id}",
            "POST /v1/workflows/{id}/runs",
            "GET /v1/workflows/{id}/runs",
            "GET /v1/workflows/{id}/runs/{run_id}",
            "GET /v1/meta/webhook",
            "POST /v1/meta/webhook",
            "GET /v1/meta/config",
            "PUT /v1/meta/config",
            "GET /v1/notifications",
            "POST /v1/notifications",
            "POST /v1/notifications/{id}/read",
            "GET /v1/jobs/dead-letters",
            "POST /v1/jobs/drain",
            "POST /v1/ops/alerts",
            "GET /v1/ops/alerts",
            "GET /v1/ops/baselines",
            "PUT /v1/ops/baselines/{branch}",
            "GET /v1/ops/baselines/{branch}",
        ]
    );
}

#[test]
fn route_rows_keep_tenant_data_out_of_shared_caches_and_replays() {
    use crate::api::caching::CachePolicy;
    let app = app();
    let mut seen = std::collections::BTreeSet::new();
    for route in app.route_table() {
        assert!(
            seen.insert((route.method.as_str(), route.pattern)),
            "{route:?} has two rows"
        );
        if route.access.needs_credentials() {
            assert!(
                !matches!(route.cache, CachePolicy::Shared { .. }),
                "{route:?} answers per caller: it must never be in the shared cache"
            );
        }
        if route.idempotent {
            assert_eq!(
                route.method,
                &Method::POST,
                "{route:?}: only creating POSTs replay"
            );
            assert!(
                route.access.needs_credentials(),
                "{route:?}: replays are scoped by the caller"
            );
        }
        if route.limit.is_none() {
            assert!(
                ["/healthz", "/readyz"].contains(&route.pattern),
                "{route:?}: only probes go unlimited"
            );
        }
    }
}

#[test]
fn metrics_in_sql_are_summed_across_instances() {
    let db = SqliteSql::open_in_memory();
    // Every request gets a fresh App, as on Spin.
    let fresh = || app().with_metrics_in_sql();
    for _ in 0..3 {
        send_full(&fresh(), get("/version"), &[], Some(&db), None, START);
    }
    send_full(&fresh(), get("/nope"), &[], Some(&db), None, START);
    let text = scrape(&fresh(), Some(&db));
    let cases = [
        "http_requests_total{method=\"GET\",route=\"/version\",status=\"200\"} 3\n",
        "http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1\n",
        "http_request_duration_ms_count{method=\"GET\",route=\"/version\"} 3\n",
    ];
    for needle in cases {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
}

#[test]
fn metrics_in_sql_without_a_database_stay_in_memory() {
    let app = app().with_metrics_in_sql();
    send(&app, get("/version"));
    let text = scrape(&app, None);
    assert!(
        text.contains("route=\"/version\",status=\"200\"} 1"),
        "{text}"
    );
}

#[test]
fn version_reports_when_the_build_first_served() {
    let kv = MemoryKv::default();
    let later = Timestamp::from_unix_micros(START.as_unix_micros() + 60_000_000);
    let first = body_json(&send_full(
        &app(),
        get("/version"),
        &[],
        None,
        Some(&kv),
        START,
    ));
    let second = body_json(&send_full(
        &app(),
        get("/version"),
        &[],
        None,
        Some(&kv),
        later,
    ));
    assert_eq!(first["serving_since"], "2026-11-25T05:02:58.000Z");
    assert_eq!(
        second["serving_since"], first["serving_since"],
        "read back, not rewritten"
    );
    let without_store = body_json(&send(&app(), get("/version")));
    assert_eq!(without_store["serving_since"], Value::Null);
}

mod alerts;
mod auth;
mod baselines;
mod contract;
mod limits;
mod meta;
mod metrics;
mod notifications;
mod snapshots;
mod uploads;
mod webhook_secrets;
mod workflows;
