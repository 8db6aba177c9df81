//! The alert inbox through `App::handle`: Alertmanager's payloads stored by
//! fingerprint, transitions notified once, validation with field paths,
//! who may post and read, on-call webhooks, retention.

use http::Method;
use serde_json::{Value, json};

use super::auth::{Fixture, World, problem_code, req, world, world_in};
use super::{assert_field_error, body_json};
use crate::config::vars;
use crate::ports::{Sql, SqlValue};
use crate::testing::block_on;

/// When the test's alerts started (Fixture time is later).
const STARTS: &str = "2026-11-20T10:00:00.123456789Z";

/// An Alertmanager webhook payload (version 4) of `alerts`:
/// (fingerprint, status, alertname).
pub(super) fn payload(status: &str, alerts: &[(&str, &str, &str)]) -> Value {
    payload_at(status, alerts, STARTS)
}

fn payload_at(status: &str, alerts: &[(&str, &str, &str)], starts: &str) -> Value {
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|(fingerprint, status, name)| {
            json!({
                "status": status,
                "labels": {"alertname": name, "severity": "critical", "job": "tepi"},
                "annotations": {
                    "summary": format!("{name} summary"),
                    "description": "5xx answers are 3.2 % of requests",
                    "runbook_url": format!("https://git.example.com/tepi/blob/main/docs/ops.md#{}", name.to_lowercase()),
                },
                "startsAt": starts,
                "endsAt": if *status == "resolved" { "2026-11-20T10:30:00Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up",
                "fingerprint": fingerprint,
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"TepiErrorRateHigh\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "tepi",
        "groupLabels": {"alertname": "TepiErrorRateHigh"},
        "commonLabels": {"alertname": "TepiErrorRateHigh"},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": alerts,
    })
}

/// An `alerts:write` key of acme (the operator).
fn alerts_key(w: &World) -> String {
    let created = w.f.send(
        req(Method::POST, "/v1/api-keys")
            .token(&w.root.access)
            .json(json!({"name": "alertmanager", "scopes": ["alerts:write"]})),
    );
    assert_eq!(created.status(), 201, "{}", body_json(&created));
    body_json(&created)["key"].as_str().unwrap().to_owned()
}

fn post(w: &World, key: &str, body: Value) -> Value {
    let response =
        w.f.send(req(Method::POST, "/v1/ops/alerts").token(key).json(body));
    assert_eq!(response.status(), 200, "{}", body_json(&response));
    body_json(&response)
}

fn listed(w: &World, query: &str) -> Vec<Value> {
    let response =
        w.f.send(req(Method::GET, &format!("/v1/ops/alerts{query}")).token(&w.root.access));
    assert_eq!(response.status(), 200, "{}", body_json(&response));
    body_json(&response)["items"].as_array().unwrap().clone()
}

fn inbox_subjects(w: &World) -> Vec<String> {
    let inbox = body_json(&w.f.send(req(Method::GET, "/v1/notifications").token(&w.root.access)));
    inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["subject"].as_str().unwrap().to_owned())
        .collect()
}

const FP: &str = "00000000000000a1";

#[test]
fn an_alert_fires_repeats_and_resolves_and_admins_hear_each_change_once() {
    let w = world();
    let key = alerts_key(&w);
    let fired = post(
        &w,
        &key,
        payload("firing", &[(FP, "firing", "TepiErrorRateHigh")]),
    );
    assert_eq!(fired["received"], 1);
    assert_eq!(
        fired["changed"],
        json!([{"fingerprint": FP, "alertname": "TepiErrorRateHigh", "status": "firing"}])
    );
    assert_eq!(fired["notified"], 1, "acme has one admin");
    assert_eq!(inbox_subjects(&w), ["[FIRING:1] TepiErrorRateHigh"]);

    // Alertmanager repeats a firing alert every repeat_interval.
    w.f.advance(60);
    let repeat = post(
        &w,
        &key,
        payload("firing", &[(FP, "firing", "TepiErrorRateHigh")]),
    );
    assert_eq!(repeat["changed"], json!([]), "a repeat is not a change");
    assert_eq!(inbox_subjects(&w).len(), 1, "nobody is told twice");
    let items = listed(&w, "");
    assert_eq!(items.len(), 1);
    let alert = &items[0];
    assert_eq!(alert["fingerprint"], FP);
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["summary"], "TepiErrorRateHigh summary");
    assert_eq!(alert["receipts"], 2);
    assert_eq!(alert["starts_at"], "2026-11-20T10:00:00.000Z");
    assert!(
        alert["ends_at"].is_null(),
        "Go's zero time means still firing"
    );
    assert_eq!(
        alert["runbook_url"],
        "https://git.example.com/tepi/blob/main/docs/ops.md#tepierrorratehigh"
    );
    assert_eq!(alert["labels"]["job"], "tepi");

    w.f.advance(60);
    let resolved = post(
        &w,
        &key,
        payload("resolved", &[(FP, "resolved", "TepiErrorRateHigh")]),
    );
    assert_eq!(resolved["changed"][0]["status"], "resolved");
    assert_eq!(
        inbox_subjects(&w),
        [
            "[RESOLVED:1] TepiErrorRateHigh",
            "[FIRING:1] TepiErrorRateHigh"
        ]
    );
    assert!(listed(&w, "?state=firing").is_empty());
    let done = listed(&w, "?state=resolved");
    assert_eq!(done[0]["ends_at"], "2026-11-20T10:30:00.000Z");

    // A late retry of the firing delivery does not reopen it.
    w.f.advance(60);
    let late = post(
        &w,
        &key,
        payload("firing", &[(FP, "firing", "TepiErrorRateHigh")]),
    );
    assert_eq!(late["changed"], json!([]));
    assert_eq!(listed(&w, "")[0]["status"], "resolved");

    // A new occurrence (a later startsAt) fires again.
    let again = post(
        &w,
        &key,
        payload_at(
            "firing",
            &[(FP, "firing", "TepiErrorRateHigh")],
            "2026-11-21T08:00:00+01:00",
        ),
    );
    assert_eq!(again["changed"][0]["status"], "firing");
    assert_eq!(listed(&w, "")[0]["starts_at"], "2026-11-21T07:00:00.000Z");
    assert_eq!(inbox_subjects(&w).len(), 3);
}

#[test]
fn the_list_is_newest_change_first_in_pages() {
    let w = world();
    let key = alerts_key(&w);
    for (i, fp) in ["aa01", "aa02", "aa03"].iter().enumerate() {
        w.f.advance(10);
        post(
            &w,
            &key,
            payload("firing", &[(fp, "firing", &format!("Alert{i}"))]),
        );
    }
    let mut seen = Vec::new();
    let mut query = "?limit=1".to_owned();
    loop {
        let page = body_json(
            &w.f.send(req(Method::GET, &format!("/v1/ops/alerts{query}")).token(&w.root.access)),
        );
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["fingerprint"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["aa03", "aa02", "aa01"]);
    for (query, field) in [
        ("?state=open", "state"),
        ("?cursor=zz", "cursor"),
        ("?limit=0", "limit"),
    ] {
        let response =
            w.f.send(req(Method::GET, &format!("/v1/ops/alerts{query}")).token(&w.root.access));
        assert_eq!(response.status(), 422, "{query}");
        assert_eq!(body_json(&response)["errors"][0]["field"], field);
    }
}

/// A good payload with the value at `path` (a JSON pointer's steps)
/// replaced.
fn with(path: &str, value: Value) -> Value {
    let mut body = payload("firing", &[(FP, "firing", "TepiErrorRateHigh")]);
    *body.pointer_mut(path).expect("a path of the payload") = value;
    body
}

#[test]
fn malformed_payloads_are_refused_with_the_path_of_each_problem() {
    let w = world();
    let key = alerts_key(&w);
    // The count is checked before any alert is read.
    let too_many: Vec<Value> = (0..=crate::ops::alerts::MAX_ALERTS)
        .map(|_| json!({}))
        .collect();
    let cases = [
        (with("/version", json!("3")), "version", "invalid"),
        (with("/alerts", Value::Null), "alerts", "required"),
        (with("/alerts", json!([])), "alerts", "out_of_range"),
        (with("/alerts", json!(too_many)), "alerts", "out_of_range"),
        (
            with("/alerts/0/labels", json!({"severity": "critical"})),
            "alerts/0/labels/alertname",
            "required",
        ),
        (
            with("/alerts/0/labels", json!({"alertname": 5})),
            "alerts/0/labels/alertname",
            "type",
        ),
        (
            with(
                "/alerts/0/labels",
                json!({"alertname": "A", "bad\u{7}name": "x"}),
            ),
            "alerts/0/labels/badname",
            "invalid",
        ),
        (
            with("/alerts/0/startsAt", json!("yesterday")),
            "alerts/0/startsAt",
            "invalid",
        ),
        (
            with("/alerts/0/fingerprint", json!("not-hex")),
            "alerts/0/fingerprint",
            "invalid",
        ),
        (
            with("/alerts/0/status", json!("pending")),
            "alerts/0/status",
            "invalid",
        ),
        (
            with("/alerts/0/annotations/description", json!("x".repeat(5000))),
            "alerts/0/annotations/description",
            "too_long",
        ),
        (with("/alerts/0", json!("an alert")), "alerts/0", "type"),
        (
            with("/alerts/0/startsAt", json!("2026-11-20T12:00:00+25:00")),
            "alerts/0/startsAt",
            "invalid",
        ),
        (
            with("/alerts/0/startsAt", json!("12026-11-20T10:00:00Z")),
            "alerts/0/startsAt",
            "invalid",
        ),
        (
            with("/alerts/0/startsAt", json!("2099-01-01T00:00:00Z")),
            "alerts/0/startsAt",
            "out_of_range",
        ),
    ];
    for (body, field, code) in cases {
        let response =
            w.f.send(req(Method::POST, "/v1/ops/alerts").token(&key).json(body));
        assert_field_error(&response, field, code);
    }
    assert!(
        listed(&w, "").is_empty(),
        "nothing of a refused payload is stored"
    );
    let text = w.f.send(
        req(Method::POST, "/v1/ops/alerts")
            .token(&key)
            .raw("text/plain", b"{}"),
    );
    assert_eq!(problem_code(&text), "unsupported_media_type");
    let broken = w.f.send(
        req(Method::POST, "/v1/ops/alerts")
            .token(&key)
            .raw("application/json", b"{\"alerts\": ["),
    );
    assert_eq!(problem_code(&broken), "malformed_json");
}

#[test]
fn unknown_fields_are_ignored_and_only_web_links_are_offered() {
    let w = world();
    let key = alerts_key(&w);
    let mut body = payload("firing", &[(FP, "firing", "TepiErrorRateHigh")]);
    body["alerts"][0]["annotations"]["runbook_url"] = json!("javascript:alert(1)");
    // Unknown fields are newer Alertmanagers' business; links that are not
    // web links are kept as text but never offered as links.
    body["newField"] = json!({"x": 1});
    body["alerts"][0]["generatorURL"] = json!("javascript:alert(2)");
    post(&w, &key, body);
    let alert = &listed(&w, "")[0];
    assert!(alert["runbook_url"].is_null());
    assert!(alert["generator_url"].is_null());
    assert_eq!(alert["annotations"]["runbook_url"], "javascript:alert(1)");
}

#[test]
fn only_alert_keys_and_operator_admins_post_and_only_operator_admins_read() {
    let w = world();
    let body = payload("firing", &[(FP, "firing", "TepiErrorRateHigh")]);
    let scrape_key = body_json(
        &w.f.send(
            req(Method::POST, "/v1/api-keys")
                .token(&w.root.access)
                .json(json!({"name": "scraper2", "scopes": ["metrics:read"]})),
        ),
    )["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = w.f.send(
        req(Method::POST, "/v1/ops/alerts")
            .token(&scrape_key)
            .json(body.clone()),
    );
    assert_eq!(refused.status(), 403);
    assert_eq!(problem_code(&refused), "insufficient_scope");
    for token in [&w.user.access, &w.other_admin.access] {
        let post = w.f.send(
            req(Method::POST, "/v1/ops/alerts")
                .token(token)
                .json(body.clone()),
        );
        assert_eq!(problem_code(&post), "forbidden");
        let get = w.f.send(req(Method::GET, "/v1/ops/alerts").token(token));
        assert_eq!(problem_code(&get), "forbidden");
    }
    let key = alerts_key(&w);
    let get = w.f.send(req(Method::GET, "/v1/ops/alerts").token(&key));
    assert_eq!(
        problem_code(&get),
        "forbidden",
        "a machine key posts, people read"
    );
    // globex's admin cannot mint an alerts key either.
    let minted = w.f.send(
        req(Method::POST, "/v1/api-keys")
            .token(&w.other_admin.access)
            .json(json!({"name": "mine", "scopes": ["alerts:write"]})),
    );
    assert_eq!(minted.status(), 403);
    let other_inbox =
        body_json(&w.f.send(req(Method::GET, "/v1/notifications").token(&w.other_admin.access)));
    post(&w, &key, body);
    let other_after =
        body_json(&w.f.send(req(Method::GET, "/v1/notifications").token(&w.other_admin.access)));
    assert_eq!(
        other_inbox, other_after,
        "other tenants' admins are not told"
    );
    let user_inbox =
        body_json(&w.f.send(req(Method::GET, "/v1/notifications").token(&w.user.access)));
    assert_eq!(
        user_inbox["items"],
        json!([]),
        "the operator's users are not admins"
    );
}

#[test]
fn on_call_webhooks_get_each_change_once_signed_as_the_operator() {
    let w = world_in(
        Fixture::new().stateless(&[(vars::ALERT_WEBHOOK_URLS, "https://oncall.example.com/tepi")]),
    );
    let key = alerts_key(&w);
    let body = payload("firing", &[(FP, "firing", "TepiErrorRateHigh")]);
    let first = post(&w, &key, body.clone());
    assert_eq!(first["webhooks"], 1);
    post(&w, &key, body);
    post(
        &w,
        &key,
        payload("resolved", &[(FP, "resolved", "TepiErrorRateHigh")]),
    );
    let outbox = block_on(w.f.db.execute(
        "SELECT envelope FROM job_outbox WHERE queue = 'notifications' ORDER BY rowid",
        &[],
    ))
    .unwrap();
    let envelopes: Vec<Value> = outbox
        .rows
        .iter()
        .map(|row| {
            let SqlValue::Text(text) = &row[0] else {
                panic!("text")
            };
            serde_json::from_str(text).unwrap()
        })
        .collect();
    let subjects: Vec<&str> = envelopes
        .iter()
        .map(|e| e["data"]["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        [
            "[FIRING:1] TepiErrorRateHigh",
            "[RESOLVED:1] TepiErrorRateHigh"
        ]
    );
    for e in &envelopes {
        assert_eq!(e["type"], "notification.webhook.requested");
        assert_eq!(e["tenantid"], "acme", "signed with the operator's secret");
        assert_eq!(e["data"]["url"], "https://oncall.example.com/tepi");
        assert!(
            e["data"]["body"]
                .as_str()
                .unwrap()
                .contains("runbook: https://git.example.com/")
        );
    }
}

#[test]
fn internal_on_call_webhooks_are_a_configuration_problem() {
    let f =
        Fixture::new().stateless(&[(vars::ALERT_WEBHOOK_URLS, "http://169.254.169.254/latest")]);
    let ready = f.send(req(Method::GET, "/readyz"));
    assert_eq!(ready.status(), 503);
    assert!(
        body_json(&ready)["checks"]["config"]
            .as_str()
            .unwrap()
            .contains("ALERT_WEBHOOK_URLS"),
        "{}",
        body_json(&ready)
    );
}

#[test]
fn resolved_alerts_leave_after_the_retention() {
    let w = world_in(Fixture::new().stateless(&[(vars::ALERT_RETENTION_SECS, "3600")]));
    let key = alerts_key(&w);
    post(
        &w,
        &key,
        payload(
            "firing",
            &[("aa01", "firing", "Old"), ("aa02", "firing", "Still")],
        ),
    );
    post(
        &w,
        &key,
        payload("resolved", &[("aa01", "resolved", "Old")]),
    );
    w.f.advance(1800);
    post(&w, &key, payload("firing", &[("aa02", "firing", "Still")]));
    w.f.advance(1801);
    post(&w, &key, payload("firing", &[("aa03", "firing", "New")]));
    let root = w.f.session("acme", "root@acme.test", "root");
    let list = body_json(&w.f.send(req(Method::GET, "/v1/ops/alerts").token(&root.access)));
    let left: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["fingerprint"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        left,
        ["aa03", "aa02"],
        "the resolved one went, firing ones stay"
    );
}

#[test]
fn the_inbox_is_bounded_and_known_alerts_still_resolve_when_full() {
    let w = world();
    let key = alerts_key(&w);
    let fill = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {}) \
         INSERT INTO alerts (tenant_id, fingerprint, alertname, status, labels, annotations, starts_at, received_at, changed_at) \
         SELECT 'acme', printf('%08x', i), 'Filler', 'firing', '{{}}', '{{}}', 1, {now}, 1 FROM n",
        crate::ops::alerts::MAX_STORED,
        now = w.f.now.get().as_unix_secs(),
    );
    block_on(w.f.db.execute(&fill, &[])).unwrap();
    // One payload: a new alert, and the resolution of a stored one.
    let mixed = post(
        &w,
        &key,
        payload(
            "resolved",
            &[
                ("ffff0001", "firing", "OneTooMany"),
                ("00000001", "resolved", "Filler"),
            ],
        ),
    );
    assert_eq!(mixed["refused"], 1, "no room for the new one");
    assert_eq!(
        mixed["changed"],
        json!([{"fingerprint": "00000001", "alertname": "Filler", "status": "resolved"}]),
        "the known one resolves all the same"
    );
    let count = |status: &str| {
        let rows = block_on(w.f.db.execute(
            "SELECT COUNT(*) FROM alerts WHERE tenant_id = 'acme' AND status = ?1",
            &[status.into()],
        ))
        .unwrap();
        rows.rows[0][0].clone()
    };
    assert_eq!(count("resolved"), SqlValue::Integer(1));
    assert_eq!(
        count("firing"),
        SqlValue::Integer(crate::ops::alerts::MAX_STORED - 1)
    );
}

#[test]
fn firing_alerts_nobody_resends_leave_after_the_retention() {
    let w = world_in(Fixture::new().stateless(&[(vars::ALERT_RETENTION_SECS, "3600")]));
    let key = alerts_key(&w);
    post(
        &w,
        &key,
        payload(
            "firing",
            &[
                ("aa01", "firing", "Forgotten"),
                ("aa02", "firing", "Resent"),
            ],
        ),
    );
    w.f.advance(3000);
    post(&w, &key, payload("firing", &[("aa02", "firing", "Resent")]));
    w.f.advance(1000);
    post(&w, &key, payload("firing", &[("aa03", "firing", "New")]));
    let rows = block_on(w.f.db.execute(
        "SELECT fingerprint FROM alerts WHERE tenant_id = 'acme' ORDER BY fingerprint",
        &[],
    ))
    .unwrap();
    let left: Vec<SqlValue> = rows.rows.into_iter().map(|mut r| r.remove(0)).collect();
    assert_eq!(left, [SqlValue::from("aa02"), SqlValue::from("aa03")]);
}

#[test]
fn a_group_of_150_alerts_is_stored_in_lookups_d1_can_bind() {
    let w = world();
    let key = alerts_key(&w);
    let fingerprints: Vec<String> = (0..150).map(|i| format!("{i:04x}")).collect();
    let alerts: Vec<(&str, &str, &str)> = fingerprints
        .iter()
        .map(|f| (f.as_str(), "firing", "TepiJobLagHigh"))
        .collect();
    // The test SQL double refuses statements of more than 100 parameters,
    // as D1 does.
    let first = post(&w, &key, payload("firing", &alerts));
    assert_eq!(first["changed"].as_array().unwrap().len(), 150);
    assert_eq!(inbox_subjects(&w), ["[FIRING:150] TepiJobLagHigh"]);
    let again = post(&w, &key, payload("firing", &alerts));
    assert_eq!(again["changed"], json!([]), "all 150 found stored");
}

#[test]
fn utf8_label_names_are_kept() {
    let w = world();
    let key = alerts_key(&w);
    let mut body = payload("firing", &[(FP, "firing", "TepiErrorRateHigh")]);
    body["alerts"][0]["labels"]["service.name"] = json!("tepi-api");
    post(&w, &key, body);
    assert_eq!(listed(&w, "")[0]["labels"]["service.name"], "tepi-api");
}

#[test]
fn an_occurrence_alertmanager_resolved_itself_can_fire_again() {
    let w = world();
    let key = alerts_key(&w);
    let firing = || payload("firing", &[(FP, "firing", "TepiErrorRateHigh")]);
    post(&w, &key, firing());
    w.f.advance(10);
    post(
        &w,
        &key,
        payload("resolved", &[(FP, "resolved", "TepiErrorRateHigh")]),
    );
    w.f.advance(10);
    assert_eq!(
        post(&w, &key, firing())["changed"],
        json!([]),
        "a late retry"
    );
    w.f.advance(crate::ops::alerts::REFIRE_AFTER_SECS.unsigned_abs());
    let again = post(&w, &key, firing());
    assert_eq!(
        again["changed"][0]["status"], "firing",
        "the same startsAt, later"
    );
    let root = w.f.session("acme", "root@acme.test", "root");
    let inbox = body_json(&w.f.send(req(Method::GET, "/v1/notifications").token(&root.access)));
    let subjects: Vec<&str> = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        [
            "[FIRING:1] TepiErrorRateHigh",
            "[RESOLVED:1] TepiErrorRateHigh",
            "[FIRING:1] TepiErrorRateHigh"
        ],
        "the second firing is a notification of its own"
    );
}
