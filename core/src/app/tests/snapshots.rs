//! Contract snapshots: what clients and operators depend on, written out
//! and reviewed as text (`cargo insta review`, or the `.snap.new` files a
//! failing run leaves). Ids and times are redacted; everything else is
//! compared byte for byte: one problem+json body per error code, the
//! headers every response carries, each CloudEvents envelope type, the
//! exposition of a fixed metrics registry, and the route table itself.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::*;
use crate::api::context::{RequestContext, TenantId};
use crate::api::error::ApiError;
use crate::jobs::events::{
    self, MetaItem, MetaMessageRead, MetaMessageReceived, MetaMessageStatus, MetaPostbackReceived,
    NotificationWebhookRequested, UploadReceived, WorkflowRunRequested,
};
use crate::jobs::metrics::WorkerMetrics;
use crate::jobs::retry::{Decision, FailureClass};
use crate::metrics::HttpMetrics;
use crate::ports::Queue;
use crate::testing::SeededEntropy;
use crate::time::Timestamp;

/// 2026-11-20T10:22:58Z.
const NOW: u64 = 1_795_170_178_000_000;

/// Replaces values that differ per run or per id with placeholders.
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for token in text.split_inclusive(['"', ' ', '\n', ',']) {
        let (word, sep) =
            token.split_at(token.len() - usize::from(token.ends_with(['"', ' ', '\n', ','])));
        let hex = |w: &str, n: usize| w.len() == n && w.bytes().all(|b| b.is_ascii_hexdigit());
        let redacted = if hex(word, 32) {
            "[hex32]".to_owned()
        } else if word.len() == 55 && word.starts_with("00-") {
            "[traceparent]".to_owned()
        } else if word.strip_prefix("evt_").is_some_and(|id| hex(id, 24)) {
            "evt_[id]".to_owned()
        } else if word.len() == 24 && word.ends_with('Z') && word.as_bytes()[10] == b'T' {
            "[time]".to_owned()
        } else {
            word.to_owned()
        };
        out.push_str(&redacted);
        out.push_str(sep);
    }
    out
}

#[test]
fn route_table() {
    let app = app();
    let mut text = String::new();
    for r in app.route_table() {
        let limit = r.limit.map_or("-", |c| c.as_str());
        let cache = match r.cache {
            crate::api::caching::CachePolicy::Shared { max_age } => format!("shared {max_age}s"),
            other => format!("{other:?}").to_lowercase(),
        };
        let replay = if r.idempotent { "idempotent" } else { "" };
        let rest = if r.rest { "…" } else { "" };
        let line = format!(
            "{:<7}{:<36}{:<34}{:<7}{:<14}{:<11}{}",
            r.method.as_str(),
            format!("{}{rest}", r.pattern),
            format!("{:?}", r.access),
            limit,
            cache,
            replay,
            r.handler.name
        );
        let _ = writeln!(text, "{}", line.trim_end());
    }
    insta::assert_snapshot!(text);
}

#[test]
fn problem_bodies() {
    // The same examples as the error tests and the OpenAPI contract test,
    // one per code.
    let mut errors: Vec<ApiError> = crate::api::error::tests::every_error()
        .into_iter()
        .map(|(error, _, _)| error)
        .collect();
    crate::sort::sort_by(&mut errors, |a, b| a.code().cmp(b.code()));
    errors.dedup_by_key(|e| ApiError::code(e));
    let mut text = String::new();
    for error in errors {
        let response = error.to_response("/v1/example", "req-1");
        let _ = writeln!(text, "{} {}", response.status().as_u16(), error.code());
        for (name, value) in response.headers() {
            let _ = writeln!(text, "  {name}: {}", value.to_str().unwrap_or("?"));
        }
        let body: Value = serde_json::from_slice(response.body()).expect("problem+json");
        let _ = writeln!(text, "  {body}");
    }
    insta::assert_snapshot!(text);
}

#[test]
fn standard_response_headers() {
    let app = app();
    let mut text = String::new();
    for call in [get("/healthz"), get("/nope")] {
        let response = send(&app, call);
        let _ = writeln!(text, "{}", response.status().as_u16());
        let mut headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
            .collect();
        crate::sort::sort(&mut headers);
        for (name, value) in headers {
            let _ = writeln!(text, "  {name}: {}", redact(&value));
        }
    }
    insta::assert_snapshot!(text);
}

#[test]
fn cloudevents_envelopes() {
    let entropy = SeededEntropy::new(7);
    let cx = RequestContext::from_headers(&http::HeaderMap::new(), &entropy);
    let tenant = TenantId::parse("acme").unwrap();
    let now = Timestamp::from_unix_micros(NOW);
    let item = MetaItem {
        platform: "whatsapp",
        item_id: "wamid.1".into(),
        from: Some("15550001111".into()),
        timestamp: Some(1_795_170_100),
        text: Some("hello".into()),
        status: None,
    };
    let envelopes = [
        events::envelope(
            &UploadReceived {
                upload_id: "upl_1".into(),
                filename: "report.pdf".into(),
                content_type: "application/pdf".into(),
                size: 1024,
                sha256: "ab".repeat(32),
                uploaded_by: "usr_1".into(),
            },
            &tenant,
            &cx,
            &entropy,
            now,
        ),
        events::envelope(
            &WorkflowRunRequested {
                workflow_id: "wfl_1".into(),
                run_id: "run_1".into(),
                cause: json!({"type": "manual"}),
                input: json!({"x": 1}),
            },
            &tenant,
            &cx,
            &entropy,
            now,
        ),
        events::envelope(
            &NotificationWebhookRequested {
                notification_id: "ntf_1".into(),
                url: "https://hooks.example.com/in".into(),
                subject: "Hi".into(),
                body: "Hello".into(),
            },
            &tenant,
            &cx,
            &entropy,
            now,
        ),
        events::envelope(
            &MetaMessageReceived(item.clone()),
            &tenant,
            &cx,
            &entropy,
            now,
        ),
        events::envelope(
            &MetaMessageStatus(MetaItem {
                text: None,
                status: Some("delivered".into()),
                ..item.clone()
            }),
            &tenant,
            &cx,
            &entropy,
            now,
        ),
        events::envelope(&MetaMessageRead(item.clone()), &tenant, &cx, &entropy, now),
        events::envelope(&MetaPostbackReceived(item), &tenant, &cx, &entropy, now),
    ];
    let mut text = String::new();
    for envelope in envelopes {
        // What redaction hides from the snapshot, checked here.
        assert_eq!(envelope["time"], "2026-11-20T10:22:58.000Z");
        assert_eq!(envelope["requestid"], cx.request_id.as_str());
        let trace = envelope["traceparent"].as_str().unwrap();
        assert!(
            trace.contains(&cx.trace.trace_id_hex()),
            "{trace} continues the request's trace"
        );
        assert!(envelope["id"].as_str().unwrap().starts_with("evt_"));
        let pretty = serde_json::to_string_pretty(&envelope).unwrap();
        let _ = writeln!(text, "{}", redact(&pretty));
    }
    insta::assert_snapshot!(text);
}

#[test]
fn exposition_of_a_fixed_registry() {
    let mut http = HttpMetrics::default();
    http.record("GET", "/healthz", 200, 3.0);
    http.record("GET", "/healthz", 200, 301.0);
    http.record("POST", "/v1/uploads", 201, 42.5);
    http.record("POST", "/v1/auth/login", 429, 1.0);
    http.record_rate_limited("login");
    http.record_cache("hit");
    let mut workers = WorkerMetrics::default();
    workers.record_enqueued(Queue::Uploads);
    workers.record_active(Queue::Uploads, 1);
    workers.record_attempt(Queue::Uploads, 1.5, 120.0, None, &Decision::Ack);
    workers.record_attempt(
        Queue::Notifications,
        0.2,
        15_000.0,
        Some(FailureClass::Timeout),
        &Decision::Retry {
            delay_secs: 4,
            class: FailureClass::Timeout,
        },
    );
    insta::assert_snapshot!(format!(
        "# api\n{}\n# workers\n{}",
        http.encode(),
        workers.encode()
    ));
}
