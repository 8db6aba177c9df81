//! The metrics endpoints through `App::handle`: pushes with a real
//! `metrics:push` key (plain and gzip), refusals with the offending line,
//! Web Vitals beacons, and the aggregate as long-lived (Workers-like) and
//! per-request (Spin-like) instances serve it.

use std::fmt::Write;

use http::Method;
use serde_json::json;

use super::auth::{Fixture, problem_code, req, world, world_in};
use super::body_json;

fn text(response: &http::Response<bytes::Bytes>) -> String {
    String::from_utf8(response.body().to_vec()).unwrap()
}

fn push_key(w: &super::auth::World) -> String {
    let key = w.f.send(
        req(Method::POST, "/v1/api-keys")
            .token(&w.root.access)
            .json(json!({"name": "pusher", "scopes": ["metrics:push"]})),
    );
    assert_eq!(key.status(), 201);
    body_json(&key)["key"].as_str().unwrap().to_owned()
}

const BATCH: &str = "# HELP batch_rows_total Rows a batch job wrote.\n# TYPE batch_rows_total counter\nbatch_rows_total{table=\"orders\"} 12\n";

#[test]
fn a_push_key_pushes_groups_that_merge_into_the_scrape() {
    let w = world();
    let key = push_key(&w);
    for (instance, body) in [
        ("a", BATCH.as_bytes().to_vec()),
        ("b", crate::metrics::gzip::encode(BATCH.as_bytes())),
    ] {
        let path = format!("/metrics/job/nightly/instance/{instance}");
        let mut r = req(Method::PUT, &path)
            .token(&key)
            .raw("text/plain; version=0.0.4", &body);
        if instance == "b" {
            r = r.header("content-encoding", "gzip");
        }
        let pushed = w.f.send(r);
        assert_eq!(pushed.status(), 200, "{}", text(&pushed));
    }
    let scraped = w.f.send(req(Method::GET, "/metrics").token(&w.root.access));
    assert_eq!(scraped.status(), 200);
    let body = text(&scraped);
    assert!(
        body.contains("batch_rows_total{job=\"nightly\",table=\"orders\"} 24\n"),
        "two pushers' counters summed under the job: {body}"
    );
    assert!(
        body.contains("http_requests_total{"),
        "the API's own series too"
    );
    crate::metrics::exposition::parse(body.as_bytes()).expect("a valid exposition");

    let gone =
        w.f.send(req(Method::DELETE, "/metrics/job/nightly/instance/a").token(&key));
    assert_eq!(gone.status(), 202);
    let body = text(&w.f.send(req(Method::GET, "/metrics").token(&w.root.access)));
    assert!(
        body.contains("batch_rows_total{job=\"nightly\",table=\"orders\"} 12\n"),
        "{body}"
    );

    let not_a_scraper = w.f.send(req(Method::GET, "/metrics").token(&key));
    assert_eq!(not_a_scraper.status(), 403, "metrics:push does not read");
}

#[test]
fn bad_pushes_are_refused_with_the_line_and_nothing_is_stored() {
    let w = world();
    let key = push_key(&w);
    let put = |path: &str, body: &str| {
        w.f.send(
            req(Method::PUT, path)
                .token(&key)
                .raw("text/plain", body.as_bytes()),
        )
    };
    let timestamped = put(
        "/metrics/job/x",
        "# TYPE a counter\na 1\na{b=\"c\"} 2 1700000000\n",
    );
    assert_eq!(timestamped.status(), 400);
    assert_eq!(problem_code(&timestamped), "invalid_exposition");
    assert_eq!(body_json(&timestamped)["line"], 3);
    assert_eq!(
        put("/metrics/job/x", "# TYPE a counter\na 1\n").status(),
        200
    );
    let conflict = put("/metrics/job/y", "# TYPE a gauge\na 1\n");
    assert_eq!(conflict.status(), 409);
    assert_eq!(body_json(&conflict)["stored_type"], "counter");
    let bad_key = put("/metrics/instance/x", "");
    assert_eq!(problem_code(&bad_key), "invalid_grouping_key");
    let brotli = w.f.send(
        req(Method::PUT, "/metrics/job/x")
            .token(&key)
            .header("content-encoding", "br")
            .raw("text/plain", b"a 1\n"),
    );
    assert_eq!(problem_code(&brotli), "unsupported_content_encoding");
    let body = text(&w.f.send(req(Method::GET, "/metrics").token(&w.root.access)));
    assert!(body.contains("a{job=\"x\"} 1\n"), "{body}");
    assert!(!body.contains("job=\"y\""), "the refused push left nothing");
}

#[test]
fn web_vitals_beacons_are_exposed_as_histograms_with_the_web_job() {
    let w = world();
    let beacon = w.f.send(req(Method::POST, "/api/rum").raw(
        "text/plain;charset=UTF-8",
        br#"[{"name":"LCP","value":1900},{"name":"INP","value":90}]"#,
    ));
    assert_eq!(beacon.status(), 204, "{}", text(&beacon));
    let bad =
        w.f.send(req(Method::POST, "/api/rum").json(json!({"name": "LCP", "value": -5})));
    assert_eq!(bad.status(), 422);
    let key = push_key(&w);
    let web_push = "# TYPE next_requests_total counter\nnext_requests_total{route=\"/\"} 3\n";
    let pushed = w.f.send(
        req(Method::POST, "/metrics/job/web/instance/edge-1")
            .token(&key)
            .raw("text/plain", web_push.as_bytes()),
    );
    assert_eq!(pushed.status(), 200);
    let web =
        w.f.send(req(Method::GET, "/api/metrics/prometheus").token(&w.root.access));
    assert_eq!(web.status(), 200);
    let body = text(&web);
    for needle in [
        "tepi_web_vitals_lcp_seconds_count 1\n",
        "tepi_web_vitals_lcp_seconds_bucket{le=\"2.5\"} 1\n",
        "tepi_web_vitals_inp_seconds_bucket{le=\"0.1\"} 1\n",
        "tepi_web_vitals_reports_total{metric=\"LCP\",rating=\"good\"} 1\n",
        "next_requests_total{job=\"web\",route=\"/\"} 3\n",
    ] {
        assert!(body.contains(needle), "{needle} missing in {body}");
    }
    let api = text(&w.f.send(req(Method::GET, "/metrics").token(&w.root.access)));
    assert!(
        !api.contains("tepi_web_vitals"),
        "web metrics stay on their endpoint"
    );
}

#[test]
fn per_request_instances_add_up_in_the_aggregate() {
    // As on Spin: every request is a fresh App that flushes before it ends.
    let w = world_in(Fixture::new().stateless(&[]));
    for _ in 0..25 {
        assert_eq!(w.f.send(req(Method::GET, "/healthz")).status(), 200);
    }
    for _ in 0..3 {
        let beacon =
            w.f.send(req(Method::POST, "/api/rum").json(json!({"name": "CLS", "value": 0.02})));
        assert_eq!(beacon.status(), 204);
    }
    let body = text(&w.f.send(req(Method::GET, "/metrics").token(&w.root.access)));
    assert!(
        body.contains("http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 25\n"),
        "{body}"
    );
    let web = text(&w.f.send(req(Method::GET, "/api/metrics/prometheus").token(&w.root.access)));
    assert!(web.contains("tepi_web_vitals_cls_count 3\n"), "{web}");
}

#[test]
fn configured_push_limits_refuse_with_problems_that_name_them() {
    let w = world_in(Fixture::with_vars(&[
        (crate::config::vars::JWT_SIGNING_KEYS, super::KEYS),
        (crate::config::vars::BOOTSTRAP_TOKEN, super::auth::BOOTSTRAP),
        (crate::config::vars::MAX_BODY_BYTES, "65536"),
        ("PUSH_MAX_BYTES", "4096"),
        ("PUSH_MAX_SERIES", "5"),
        ("PUSH_MAX_PUSHER_GROUPS", "2"),
        ("METRICS_MAX_SERIES", "400"),
    ]));
    assert!(
        w.f.app.config_problems.is_empty(),
        "{:?}",
        w.f.app.config_problems
    );
    let (one, two) = (push_key(&w), push_key(&w));
    let push = |key: &str, path: &str, body: String| {
        w.f.send(
            req(Method::PUT, path)
                .token(key)
                .raw("text/plain; version=0.0.4", body.as_bytes()),
        )
    };
    let refused = |response: http::Response<bytes::Bytes>, status: u16, limit: &str, max: u64| {
        let problem = body_json(&response);
        assert_eq!(response.status(), status, "{problem}");
        assert_eq!(problem["limit"], limit, "{problem}");
        assert_eq!(problem["max"], max, "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(limit),
            "{problem}"
        );
    };
    let body = |n: u32| {
        (0..n).fold(String::new(), |mut out, i| {
            let _ = writeln!(out, "s{i} 1");
            out
        })
    };
    refused(
        push(&one, "/metrics/job/a", body(6)),
        413,
        "PUSH_MAX_SERIES",
        5,
    );
    refused(
        push(
            &one,
            "/metrics/job/a",
            format!("# HELP s {}\ns 1\n", "h".repeat(5000)),
        ),
        413,
        "PUSH_MAX_BYTES",
        4096,
    );
    assert_eq!(push(&one, "/metrics/job/a", body(5)).status(), 200);
    assert_eq!(push(&one, "/metrics/job/b", body(5)).status(), 200);
    let third = push(&one, "/metrics/job/c", body(5));
    assert_eq!(problem_code(&third), "push_quota_exceeded");
    refused(third, 429, "PUSH_MAX_PUSHER_GROUPS", 2);
    // The budget is the first key's: the second key pushes its own groups.
    assert_eq!(push(&two, "/metrics/job/c", body(5)).status(), 200);
    let scraped = text(&w.f.send(req(Method::GET, "/metrics").token(&w.root.access)));
    let line = scraped
        .lines()
        .find(|l| l.starts_with("tepi_metrics_series "))
        .expect("the aggregate's size is exposed");
    let total: f64 = line["tepi_metrics_series ".len()..].parse().unwrap();
    assert!(total >= 15.0, "{line}");
    assert!(scraped.contains("tepi_metrics_series_limit 400\n"));
    crate::metrics::exposition::parse(scraped.as_bytes()).expect("a valid exposition");
}

fn history(w: &super::auth::World, token: &str, query: &str) -> http::Response<bytes::Bytes> {
    w.f.send(req(Method::GET, &format!("/v1/ops/metrics/history{query}")).token(token))
}

#[test]
fn the_history_keeps_a_snapshot_per_minute_and_ends_with_the_live_point() {
    // Spin-like: every request is a fresh instance writing to SQLite, and
    // the snapshot is taken after the answer.
    let w = world_in(Fixture::new().stateless(&[]).with_after_response());
    let f = &w.f;
    let get = |path: &str| f.send(req(Method::GET, path));
    f.advance(60);
    for _ in 0..3 {
        assert_eq!(get("/healthz").status(), 200);
    }
    f.advance(60);
    assert_eq!(get("/nope").status(), 404);
    assert_eq!(get("/healthz").status(), 200);
    f.advance(60);

    let answer = history(&w, &w.root.access, "");
    assert_eq!(answer.status(), 200, "{}", body_json(&answer));
    let body = body_json(&answer);
    assert_eq!(body["step_secs"], 60);
    let points = body["points"].as_array().unwrap();
    assert!(points.len() >= 3, "{body}");
    let live = points.last().unwrap();
    assert_eq!(live["live"], true);
    let times: Vec<i64> = points.iter().map(|p| p["t"].as_i64().unwrap()).collect();
    assert!(
        times.windows(2).all(|t| t[0] < t[1]),
        "oldest first: {times:?}"
    );
    let totals: Vec<f64> = points
        .iter()
        .map(|p| p["requests"]["total"].as_f64().unwrap())
        .collect();
    assert!(
        totals.windows(2).all(|t| t[0] <= t[1]),
        "cumulative: {totals:?}"
    );
    let first = &points[0];
    let grew = |class: &str| {
        live["requests"][class].as_f64().unwrap() - first["requests"][class].as_f64().unwrap()
    };
    assert!(grew("2xx") >= 4.0, "the four probes and more: {body}");
    assert!(grew("4xx") >= 1.0, "the 404: {body}");
    let latency = live["latency_ms"]["counts"].as_array().unwrap();
    assert_eq!(
        latency.last().unwrap().as_f64(),
        Some(live["requests"]["total"].as_f64().unwrap()),
        "every request is in the +Inf bucket"
    );
    assert!(live["queues"]["workflows"]["lag_seconds"]["le"].is_array());

    // A shorter window keeps fewer kept points; the window is bounded.
    let short = body_json(&history(&w, &w.root.access, "?minutes=1"));
    assert!(short["points"].as_array().unwrap().len() < points.len());
    let refused = history(&w, &w.root.access, "?minutes=121");
    super::assert_field_error(&refused, "minutes", "out_of_range");
}

#[test]
fn the_history_is_the_operators_only() {
    let w = world();
    assert_eq!(history(&w, &w.user.access, "").status(), 403);
    assert_eq!(history(&w, &w.other_admin.access, "").status(), 403);
    let anonymous = w.f.send(req(Method::GET, "/v1/ops/metrics/history"));
    assert_eq!(anonymous.status(), 401);
}

#[test]
fn a_long_lived_instance_takes_one_snapshot_per_minute() {
    let app = super::app();
    let at = |secs: u64| crate::time::Timestamp::from_unix_micros(secs * 1_000_000);
    assert!(app.history_due(at(600)), "its first request");
    assert!(!app.history_due(at(630)), "the same minute");
    assert!(app.history_due(at(660)), "the next minute");
    assert!(!app.history_due(at(719)));
}
