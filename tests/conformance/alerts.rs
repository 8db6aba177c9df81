//! The alert inbox over HTTP: Alertmanager's webhook with an `alerts:write`
//! key, a repeat that changes nothing, the resolution, the operator admin's
//! list and inbox, and refusals.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::assert_problem;
use crate::auth::{metrics_key, other_tenant_admin, post_json, root, with_token};

fn payload(fingerprint: &str, status: &str) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"TepiConformance\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "tepi",
        "groupLabels": {"alertname": "TepiConformance"},
        "commonLabels": {"alertname": "TepiConformance", "severity": "warning"},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [{
            "status": status,
            "labels": {"alertname": "TepiConformance", "severity": "warning"},
            "annotations": {"summary": format!("the conformance suite's alert {fingerprint}"), "runbook_url": "https://git.example.com/tepi/blob/main/docs/ops.md#runbooks"},
            "startsAt": "2026-12-01T10:00:00.5+01:00",
            "endsAt": if status == "resolved" { "2026-12-01T09:10:00Z" } else { "0001-01-01T00:00:00Z" },
            "generatorURL": "http://127.0.0.1:9090/graph",
            "fingerprint": fingerprint,
        }],
    })
}

fn listed(token: &str, state: &str, fingerprint: &str) -> Option<Value> {
    let list = with_token(
        "GET",
        &format!("/v1/ops/alerts?state={state}&limit=100"),
        token,
        &[],
    );
    assert_eq!(list.status, 200, "{}", list.body);
    list.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["fingerprint"] == fingerprint)
        .cloned()
}

#[test]
fn alertmanager_deliveries_reach_the_operators_inbox_once() {
    let admin = root();
    let created = post_json(
        "/v1/api-keys",
        Some(&admin.access),
        &json!({"name": "conformance alertmanager", "scopes": ["alerts:write"]}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let key = created.json()["key"].as_str().unwrap().to_owned();
    // A fingerprint of this run: servers under test may keep state.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let fingerprint = format!("{:016x}", nanos % (1 << 64));

    let fired = post_json(
        "/v1/ops/alerts",
        Some(&key),
        &payload(&fingerprint, "firing"),
    );
    assert_eq!(fired.status, 200, "{}", fired.body);
    assert!(
        fired.header("ratelimit-policy").is_some(),
        "the alerts class limits it"
    );
    assert_eq!(fired.json()["changed"][0]["status"], "firing");
    assert!(fired.json()["notified"].as_u64().unwrap() >= 1);
    let again = post_json(
        "/v1/ops/alerts",
        Some(&key),
        &payload(&fingerprint, "firing"),
    );
    assert_eq!(
        again.json()["changed"],
        json!([]),
        "a repeat changes nothing"
    );

    let alert = listed(&admin.access, "firing", &fingerprint).expect("listed as firing");
    assert_eq!(alert["receipts"], 2);
    assert_eq!(
        alert["starts_at"], "2026-12-01T09:00:00.000Z",
        "kept to the second"
    );
    assert_eq!(
        alert["runbook_url"],
        "https://git.example.com/tepi/blob/main/docs/ops.md#runbooks"
    );

    let resolved = post_json(
        "/v1/ops/alerts",
        Some(&key),
        &payload(&fingerprint, "resolved"),
    );
    assert_eq!(resolved.json()["changed"][0]["status"], "resolved");
    assert!(listed(&admin.access, "firing", &fingerprint).is_none());
    assert!(listed(&admin.access, "resolved", &fingerprint).is_some());

    let inbox = with_token("GET", "/v1/notifications?limit=100", &admin.access, &[]).json();
    let subjects: Vec<&str> = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| {
            n["body"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("the conformance suite's alert {fingerprint}"))
        })
        .map(|n| n["subject"].as_str().unwrap())
        .collect();
    // Both may carry the same second: their order is not asserted.
    for told in ["[FIRING:1] TepiConformance", "[RESOLVED:1] TepiConformance"] {
        assert!(subjects.contains(&told), "{told} in {subjects:?}");
    }
}

#[test]
fn malformed_alert_payloads_and_strangers_are_refused() {
    let admin = root();
    let mut bad = payload("00ff", "firing");
    bad["alerts"][0]["labels"] = json!({"severity": "page"});
    bad["alerts"][0]["startsAt"] = json!("yesterday");
    let refused = post_json("/v1/ops/alerts", Some(&admin.access), &bad);
    assert_problem(&refused, 422, "validation_failed", "field paths");
    let problem = refused.json();
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["alerts/0/labels/alertname", "alerts/0/startsAt"]);

    let scraper = post_json(
        "/v1/ops/alerts",
        Some(metrics_key()),
        &payload("00ff", "firing"),
    );
    assert_problem(
        &scraper,
        403,
        "insufficient_scope",
        "a metrics key does not post alerts",
    );
    let other = other_tenant_admin();
    let read = with_token("GET", "/v1/ops/alerts", &other.access, &[]);
    assert_problem(
        &read,
        403,
        "forbidden",
        "another tenant's admin does not read them",
    );
    let anonymous = post_json("/v1/ops/alerts", None, &payload("00ff", "firing"));
    assert_eq!(anonymous.status, 401);
}
