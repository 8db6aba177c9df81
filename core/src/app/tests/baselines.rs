//! Load-test baselines through `App::handle`: recorded per branch,
//! scenario and build, read back as stored, validated member by member,
//! bounded, and only for `baselines:write` keys and operator admins.

use http::Method;
use serde_json::{Value, json};

use super::auth::{World, problem_code, req, world};
use super::{assert_field_error, body_json};
use crate::ports::{Sql, SqlValue};
use crate::testing::block_on;

/// A baseline body as `scripts/k6-compare.py --record` sends it.
pub(super) fn record(scenario: &str, build: &str) -> Value {
    json!({
        "scenario": scenario,
        "build": build,
        "commit": "22fb517",
        "summary": {
            "error_rate": 0.002,
            "rate": 19.5,
            "routes": {
                "GET /v1/auth/me": {"p50": 4.1, "p95": 9.8, "p99": 15.2, "count": 300, "error_rate": 0},
                "POST /v1/uploads": {"p50": 7.0, "p95": 21.5, "p99": 40.0, "count": 60, "error_rate": 0.0166},
            },
            "jobs": {"uploads": {"lag_p95_s": 1.4, "failed": 0, "processed": 60}},
        },
    })
}

fn key(w: &World, scope: &str) -> String {
    let created = w.f.send(
        req(Method::POST, "/v1/api-keys")
            .token(&w.root.access)
            .json(json!({"name": "k6", "scopes": [scope]})),
    );
    assert_eq!(created.status(), 201, "{}", body_json(&created));
    body_json(&created)["key"].as_str().unwrap().to_owned()
}

#[test]
fn a_run_is_recorded_per_branch_scenario_and_build_and_read_back() {
    let w = world();
    let k6 = key(&w, "baselines:write");
    let put = w.f.send(
        req(Method::PUT, "/v1/ops/baselines/feature/k6-smoke")
            .token(&k6)
            .json(record("smoke", "workers")),
    );
    assert_eq!(put.status(), 200, "{}", body_json(&put));
    let stored = body_json(&put);
    assert_eq!(stored["branch"], "feature/k6-smoke");
    assert_eq!(stored["summary"]["routes"]["GET /v1/auth/me"]["p95"], 9.8);

    let got = w.f.send(
        req(
            Method::GET,
            "/v1/ops/baselines/feature/k6-smoke?scenario=smoke&build=workers",
        )
        .token(&k6),
    );
    assert_eq!(got.status(), 200);
    assert_eq!(body_json(&got), stored, "read back as stored");
    for other in [
        "/v1/ops/baselines/feature/k6-smoke?scenario=smoke&build=spin",
        "/v1/ops/baselines/main?scenario=smoke&build=workers",
    ] {
        let missing = w.f.send(req(Method::GET, other).token(&k6));
        assert_eq!(problem_code(&missing), "not_found", "{other}");
    }
    // Recording again replaces the branch's baseline of that scenario and build.
    let mut newer = record("smoke", "workers");
    newer["summary"]["rate"] = json!(25.0);
    w.f.advance(60);
    w.f.send(
        req(Method::PUT, "/v1/ops/baselines/feature/k6-smoke")
            .token(&k6)
            .json(newer),
    );
    w.f.send(
        req(Method::PUT, "/v1/ops/baselines/main")
            .token(&k6)
            .json(record("smoke", "spin")),
    );
    let again = body_json(
        &w.f.send(
            req(
                Method::GET,
                "/v1/ops/baselines/feature/k6-smoke?scenario=smoke&build=workers",
            )
            .token(&k6),
        ),
    );
    assert_eq!(again["summary"]["rate"], 25.0);
    let list = body_json(&w.f.send(req(Method::GET, "/v1/ops/baselines").token(&w.root.access)));
    let listed: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            format!(
                "{} {} {}",
                b["branch"].as_str().unwrap(),
                b["scenario"].as_str().unwrap(),
                b["build"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        listed,
        ["feature/k6-smoke smoke workers", "main smoke spin"]
    );
    assert!(
        list["items"][0].get("summary").is_none(),
        "the list leaves summaries out"
    );
}

#[test]
fn bad_baselines_are_refused_with_the_path_of_each_problem() {
    let w = world();
    let k6 = key(&w, "baselines:write");
    // Sets (or adds) the member at a JSON pointer.
    let with = |pointer: &str, value: Value| {
        let mut body = record("smoke", "workers");
        let (parent, last) = pointer.rsplit_once('/').unwrap();
        let last = last.replace("~1", "/").replace("~0", "~");
        body.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap()
            .insert(last, value);
        body
    };
    let many: serde_json::Map<String, Value> = (0..=crate::ops::baselines::MAX_ROUTES)
        .map(|i| {
            (
                format!("GET /r{i}"),
                json!({"p50": 1, "p95": 1, "p99": 1, "count": 1, "error_rate": 0}),
            )
        })
        .collect();
    let cases = [
        (
            with("/scenario", json!("Smoke Test")),
            "scenario",
            "invalid",
        ),
        (with("/commit", json!("not-a-sha")), "commit", "invalid"),
        (
            with("/summary/error_rate", json!(1.5)),
            "summary/error_rate",
            "out_of_range",
        ),
        (
            with("/summary/rate", json!("fast")),
            "summary/rate",
            "required",
        ),
        (
            with("/summary/routes/GET ~1v1~1auth~1me/p95", json!(-1)),
            "summary/routes/GET /v1/auth/me/p95",
            "out_of_range",
        ),
        (
            with("/summary/routes/GET ~1v1~1auth~1me/count", json!(2.5)),
            "summary/routes/GET /v1/auth/me/count",
            "out_of_range",
        ),
        (
            with("/summary/routes/GET ~1v1~1auth~1me/p95", Value::Null),
            "summary/routes/GET /v1/auth/me/p95",
            "required",
        ),
        (
            with("/summary/jobs/uploads/extra", json!(1)),
            "summary/jobs/uploads/extra",
            "unknown_field",
        ),
        (
            with("/summary/jobs/Bad Queue", json!({})),
            "summary/jobs/Bad Queue",
            "invalid",
        ),
        (
            with("/summary/routes", Value::Object(many)),
            "summary/routes",
            "out_of_range",
        ),
        (with("/summary", json!([])), "summary", "required"),
    ];
    for (body, field, code) in cases {
        let refused = w.f.send(
            req(Method::PUT, "/v1/ops/baselines/main")
                .token(&k6)
                .json(body),
        );
        assert_field_error(&refused, field, code);
    }
    let listed = body_json(&w.f.send(req(Method::GET, "/v1/ops/baselines").token(&k6)));
    assert_eq!(
        listed["items"],
        json!([]),
        "nothing of a refused baseline is stored"
    );
}

#[test]
fn branches_and_lookups_are_checked() {
    let w = world();
    let k6 = key(&w, "baselines:write");
    for path in [
        "/v1/ops/baselines/../x",
        "/v1/ops/baselines/a//b",
        "/v1/ops/baselines/a%20b",
    ] {
        let refused = w.f.send(
            req(Method::PUT, path)
                .token(&k6)
                .json(record("smoke", "workers")),
        );
        assert_eq!(refused.status(), 422, "{path}");
        assert_eq!(
            body_json(&refused)["errors"][0]["field"],
            "branch",
            "{path}"
        );
    }
    let no_query =
        w.f.send(req(Method::GET, "/v1/ops/baselines/main").token(&k6));
    assert_eq!(problem_code(&no_query), "validation_failed");
}

#[test]
fn only_baseline_keys_and_operator_admins_record_or_read() {
    let w = world();
    let scraper = key(&w, "metrics:read");
    let refused = w.f.send(
        req(Method::PUT, "/v1/ops/baselines/main")
            .token(&scraper)
            .json(record("smoke", "workers")),
    );
    assert_eq!(problem_code(&refused), "insufficient_scope");
    for token in [&w.user.access, &w.other_admin.access] {
        let put = w.f.send(
            req(Method::PUT, "/v1/ops/baselines/main")
                .token(token)
                .json(record("smoke", "workers")),
        );
        assert_eq!(problem_code(&put), "forbidden");
        let get = w.f.send(req(Method::GET, "/v1/ops/baselines").token(token));
        assert_eq!(problem_code(&get), "forbidden");
    }
    let minted = w.f.send(
        req(Method::POST, "/v1/api-keys")
            .token(&w.other_admin.access)
            .json(json!({"name": "mine", "scopes": ["baselines:write"]})),
    );
    assert_eq!(problem_code(&minted), "scope_not_grantable");
}

#[test]
fn a_tenant_keeps_the_most_recently_recorded_baselines() {
    let w = world();
    let k6 = key(&w, "baselines:write");
    let max = crate::ops::baselines::MAX_BASELINES;
    let fill = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {max}) \
         INSERT INTO baselines (tenant_id, branch, scenario, build, summary, recorded_at) \
         SELECT 'acme', printf('b%04d', i), 'smoke', 'workers', '{{}}', i FROM n"
    );
    block_on(w.f.db.execute(&fill, &[])).unwrap();
    let put = w.f.send(
        req(Method::PUT, "/v1/ops/baselines/main")
            .token(&k6)
            .json(record("smoke", "workers")),
    );
    assert_eq!(put.status(), 200);
    let rows = block_on(w.f.db.execute(
        "SELECT COUNT(*), MIN(branch) FROM baselines WHERE tenant_id = 'acme'",
        &[],
    ))
    .unwrap();
    assert_eq!(
        rows.rows[0],
        [SqlValue::Integer(max), SqlValue::from("b0002")],
        "the oldest went"
    );
}

#[test]
fn a_large_baseline_is_refused_before_it_is_read() {
    let w = world();
    let k6 = key(&w, "baselines:write");
    let mut body = record("smoke", "workers");
    body["pad"] = json!("x".repeat(crate::ops::baselines::MAX_BODY));
    let refused = w.f.send(
        req(Method::PUT, "/v1/ops/baselines/main")
            .token(&k6)
            .json(body),
    );
    assert_eq!(problem_code(&refused), "payload_too_large");
}
