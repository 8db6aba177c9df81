//! Workflows through `App::handle`: definitions with field-path errors,
//! runs with an idempotency key, the run event, tenant isolation.

use http::Method;
use serde_json::json;

use super::auth::{Fixture, problem_code, req, workflow_definition, world, world_in};
use super::{body_json, header_str};
use crate::ports::{Sql, SqlValue};
use crate::testing::block_on;

#[test]
fn admins_define_users_run_and_everyone_reads_results() {
    let w = world_in(Fixture::new().stateless(&[]));
    let f = &w.f;
    let refused = f.send(
        req(Method::POST, "/v1/workflows")
            .token(&w.user.access)
            .json(workflow_definition()),
    );
    assert_eq!(refused.status(), 403, "users do not define workflows");
    let created = f.send(
        req(Method::POST, "/v1/workflows")
            .token(&w.root.access)
            .json(workflow_definition()),
    );
    assert_eq!(created.status(), 201);
    let workflow = body_json(&created);
    assert_eq!(workflow["trigger"], json!({"type": "manual"}));
    assert_eq!(workflow["steps"].as_array().unwrap().len(), 2);
    let id = workflow["id"].as_str().unwrap();
    assert_eq!(
        header_str(&created, "location"),
        Some(format!("/v1/workflows/{id}").as_str())
    );

    let runs = format!("/v1/workflows/{id}/runs");
    let started = f.send(
        req(Method::POST, &runs)
            .token(&w.user.access)
            .json(json!({"input": {"order": 42}})),
    );
    assert_eq!(started.status(), 201, "{}", body_json(&started));
    let run = body_json(&started);
    assert_eq!(run["status"], "requested");
    assert_eq!(run["input"], json!({"order": 42}));
    assert_eq!(
        run["steps"],
        json!([{"status": "pending", "result": null}, {"status": "pending", "result": null}])
    );
    let run_path = header_str(&started, "location").unwrap().to_owned();
    let read = body_json(&f.send(req(Method::GET, &run_path).token(&w.root.access)));
    assert_eq!(read["id"], run["id"]);
    assert_eq!(read["requested_by"], run["requested_by"]);
    let listed = body_json(&f.send(req(Method::GET, &runs).token(&w.user.access)));
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    // workflow.run.requested sits in the outbox, carrying the run.
    let outbox = block_on(f.db.execute(
        "SELECT queue, envelope FROM job_outbox WHERE queue = 'workflows'",
        &[],
    ))
    .unwrap();
    assert_eq!(outbox.rows.len(), 1);
    let SqlValue::Text(envelope) = &outbox.rows[0][1] else {
        panic!("text")
    };
    let envelope: serde_json::Value = serde_json::from_str(envelope).unwrap();
    assert_eq!(envelope["type"], "workflow.run.requested");
    assert_eq!(envelope["subject"], run["id"]);
    assert_eq!(envelope["data"]["cause"], json!({"type": "manual"}));

    let renamed = f.send(
        req(Method::PATCH, &format!("/v1/workflows/{id}"))
            .token(&w.root.access)
            .json(json!({"name": "Renamed"})),
    );
    assert_eq!(body_json(&renamed)["name"], "Renamed");
    assert_eq!(
        body_json(&renamed)["steps"],
        workflow["steps"],
        "untouched fields stay"
    );
    assert_eq!(
        f.send(req(Method::DELETE, &format!("/v1/workflows/{id}")).token(&w.root.access))
            .status(),
        204
    );
    assert_eq!(
        f.send(req(Method::POST, &runs).token(&w.user.access))
            .status(),
        404
    );
}

#[test]
fn definitions_report_problems_with_field_paths() {
    let w = world();
    let bad = json!({
        "name": " ",
        "trigger": {"type": "event", "event_type": "Meta.*"},
        "steps": [{"type": "webhook", "url": "ftp://x"}, {"type": "wait", "seconds": 999_999}]
    });
    let response = w.f.send(
        req(Method::POST, "/v1/workflows")
            .token(&w.root.access)
            .json(bad),
    );
    assert_eq!(response.status(), 422);
    let body = body_json(&response);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["name", "trigger", "steps/0/url", "steps/1/seconds"]
    );
    let event = json!({"name": "On message", "trigger": {"type": "event", "event_type": "meta.message.*"}, "steps": [{"type": "wait", "seconds": 1}]});
    let ok = w.f.send(
        req(Method::POST, "/v1/workflows")
            .token(&w.root.access)
            .json(event),
    );
    assert_eq!(
        body_json(&ok)["trigger"],
        json!({"type": "event", "event_type": "meta.message.*"})
    );
}

/// Webhook URLs that reach inside a network, in the notations an attacker
/// would try; each is refused when a workflow or a notification names it.
pub(super) const INTERNAL_TARGETS: &[(&str, &str)] = &[
    ("https://127.1/", "loopback"),
    ("https://0x7f000001/", "loopback"),
    ("https://2130706433/", "loopback"),
    ("https://[::1]/", "loopback"),
    ("https://[::ffff:127.0.0.1]/", "loopback"),
    ("https://169.254.169.254/latest/meta-data/", "loopback"),
    ("https://10.0.0.7/", "loopback"),
    ("https://[fd00::1]/", "loopback"),
    ("https://localhost/", "public host"),
    ("https://metadata.google.internal/", "public host"),
    ("https://intranet/", "public host"),
    (
        "https://hooks.example.com:443@169.254.169.254/",
        "credentials",
    ),
    ("http://127.0.0.1:1@localhost:8080/", "credentials"),
];

#[test]
fn webhook_steps_to_internal_targets_are_refused() {
    let w = world();
    for (url, why) in INTERNAL_TARGETS {
        let definition = json!({"name": "probe", "trigger": {"type": "manual"}, "steps": [{"type": "webhook", "url": url}]});
        let response = w.f.send(
            req(Method::POST, "/v1/workflows")
                .token(&w.root.access)
                .json(definition),
        );
        assert_eq!(response.status(), 422, "{url}");
        let error = &body_json(&response)["errors"][0];
        assert_eq!(error["field"], "steps/0/url", "{url}");
        assert!(
            error["message"].as_str().unwrap().contains(why),
            "{url}: {error}"
        );
    }
    let public = json!({"name": "hook", "trigger": {"type": "manual"}, "steps": [{"type": "webhook", "url": "https://hooks.example.com/in"}]});
    let created = w.f.send(
        req(Method::POST, "/v1/workflows")
            .token(&w.root.access)
            .json(public),
    );
    assert_eq!(created.status(), 201, "a public receiver is fine");
}

#[test]
fn the_same_idempotency_key_starts_one_run() {
    let w = world();
    let f = &w.f;
    let id = body_json(
        &f.send(
            req(Method::POST, "/v1/workflows")
                .token(&w.root.access)
                .json(workflow_definition()),
        ),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let runs = format!("/v1/workflows/{id}/runs");
    let start = |key: &str| {
        f.send(
            req(Method::POST, &runs)
                .token(&w.user.access)
                .header("idempotency-key", key),
        )
    };
    let first = body_json(&start("order-42"));
    let again = start("order-42");
    assert_eq!(header_str(&again, "idempotent-replayed"), Some("true"));
    assert_eq!(body_json(&again)["id"], first["id"], "same key, same run");
    let other = body_json(&start("order-43"));
    assert_ne!(other["id"], first["id"]);
    let listed = body_json(&f.send(req(Method::GET, &runs).token(&w.user.access)));
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        2,
        "two keys, two runs"
    );
}

#[test]
fn other_tenants_cannot_see_or_start_workflows() {
    let w = world();
    let f = &w.f;
    let id = body_json(
        &f.send(
            req(Method::POST, "/v1/workflows")
                .token(&w.root.access)
                .json(workflow_definition()),
        ),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (method, path) in [
        (Method::GET, format!("/v1/workflows/{id}")),
        (Method::POST, format!("/v1/workflows/{id}/runs")),
        (Method::GET, format!("/v1/workflows/{id}/runs")),
        (Method::DELETE, format!("/v1/workflows/{id}")),
    ] {
        let response = f.send(req(method.clone(), &path).token(&w.other_admin.access));
        assert_eq!(response.status(), 404, "{method} {path}");
        assert_eq!(problem_code(&response), "not_found");
    }
    let theirs = body_json(&f.send(req(Method::GET, "/v1/workflows").token(&w.other_admin.access)));
    assert_eq!(theirs["items"], json!([]));
}
