//! Workflows over HTTP: an admin defines one, a user starts runs (the same
//! Idempotency-Key gives the same run) and reads their status.

use serde_json::json;

use crate::auth::{member, other_tenant_admin, post_json, root, with_token};
use crate::{assert_problem, send};

#[test]
fn define_run_and_read_a_workflow() {
    let (_, ann) = member("workflows@conformance.test", "user");
    let admin = root();
    let definition = json!({
        "name": "Notify admins",
        "trigger": {"type": "manual"},
        "steps": [{"type": "notify", "role": "admin", "message": "hello"}, {"type": "wait", "seconds": 1}]
    });
    let refused = post_json("/v1/workflows", Some(&ann.access), &definition);
    assert_problem(&refused, 403, "forbidden", "users do not define workflows");
    let invalid = post_json(
        "/v1/workflows",
        Some(&admin.access),
        &json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "webhook", "url": "http://plain"}]}),
    );
    assert_problem(&invalid, 422, "validation_failed", "plain http webhook");
    assert_eq!(invalid.json()["errors"][0]["field"], "steps/0/url");

    let created = post_json("/v1/workflows", Some(&admin.access), &definition);
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();

    let bearer = format!("Bearer {}", ann.access);
    let start = |key: &str| {
        send(
            "POST",
            &format!("/v1/workflows/{id}/runs"),
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
                ("idempotency-key", key),
            ],
            json!({"input": {"ticket": 7}}).to_string().as_bytes(),
        )
    };
    let key = format!("run-{}", &ann.access[ann.access.len() - 12..]);
    let first = start(&key);
    assert_eq!(first.status, 201, "{}", first.body);
    let again = start(&key);
    assert_eq!(again.json()["id"], first.json()["id"], "same key, same run");
    let run = first.json();
    assert_eq!(run["status"], "requested");
    assert_eq!(run["steps"].as_array().unwrap().len(), 2);

    let read = with_token(
        "GET",
        &format!("/v1/workflows/{id}/runs/{}", run["id"].as_str().unwrap()),
        &ann.access,
        &[],
    );
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["input"], json!({"ticket": 7}));

    let foreign = with_token(
        "GET",
        &format!("/v1/workflows/{id}"),
        &other_tenant_admin().access,
        &[],
    );
    assert_eq!(foreign.status, 404, "another tenant cannot see it");

    let runs = with_token("GET", &format!("/v1/workflows/{id}/runs"), &ann.access, &[]);
    assert_eq!(runs.json()["items"].as_array().unwrap().len(), 1);
    let listed = with_token("GET", "/v1/workflows", &ann.access, &[]);
    assert!(
        listed.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == id.as_str())
    );
    let bearer = format!("Bearer {}", admin.access);
    let renamed = send(
        "PATCH",
        &format!("/v1/workflows/{id}"),
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        json!({"name": "Renamed"}).to_string().as_bytes(),
    );
    assert_eq!(renamed.status, 200);
    assert_eq!(renamed.json()["name"], "Renamed");
    let deleted = with_token("DELETE", &format!("/v1/workflows/{id}"), &admin.access, &[]);
    assert_eq!(deleted.status, 204);
    assert_eq!(
        with_token("GET", &format!("/v1/workflows/{id}"), &ann.access, &[]).status,
        404
    );
}

/// A tenant admin names webhook URLs: every notation of an internal
/// address, internal names and URLs hiding their host behind credentials
/// are refused, by both builds, with the reason.
#[test]
fn webhook_urls_that_reach_inside_are_refused() {
    let admin = root();
    let cases = [
        ("https://127.1/", "loopback"),
        ("https://0x7f000001/", "loopback"),
        ("https://2130706433/", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://169.254.169.254/latest/meta-data/", "loopback"),
        ("https://192.168.0.1/", "loopback"),
        ("https://localhost/", "public host"),
        ("https://metadata.google.internal/", "public host"),
        (
            "https://hooks.example.com:443@169.254.169.254/",
            "credentials",
        ),
        ("http://127.0.0.1:1@localhost:8080/", "credentials"),
    ];
    for (url, why) in cases {
        let workflow = post_json(
            "/v1/workflows",
            Some(&admin.access),
            &json!({"name": "probe", "trigger": {"type": "manual"}, "steps": [{"type": "webhook", "url": url}]}),
        );
        assert_problem(&workflow, 422, "validation_failed", url);
        let error = &workflow.json()["errors"][0];
        assert_eq!(error["field"], "steps/0/url", "{url}");
        assert!(
            error["message"].as_str().unwrap().contains(why),
            "{url}: {error}"
        );
        let notification = post_json(
            "/v1/notifications",
            Some(&admin.access),
            &json!({"to": {"webhook_url": url}, "subject": "s", "body": "b"}),
        );
        assert_problem(&notification, 422, "validation_failed", url);
    }
}
