//! Meta webhooks over HTTP: the handshake, a delivery signed with an HMAC
//! computed here (independently of the server's implementation), accepted
//! and processed once even when delivered twice, and a bad signature
//! refused.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::{post_json, root, with_token};
use crate::{assert_problem, get, send};

/// HMAC-SHA256 (RFC 2104) spelled out over SHA-256.
fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::digest([pad(0x36), message.to_vec()].concat());
    let outer = Sha256::digest([pad(0x5c), inner.to_vec()].concat());
    outer.iter().fold(String::new(), |mut out, b| {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[test]
fn a_signed_delivery_is_accepted_once_and_a_bad_signature_refused() {
    let admin = root();
    // Derived from this run's token so nothing secret-looking is in the source.
    let app_secret = format!("app-{}", &admin.refresh[4..28]);
    let verify = format!("verify-{}", &admin.refresh[8..28]);
    let bearer = format!("Bearer {}", admin.access);
    let put = send(
        "PUT",
        "/v1/meta/config",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        json!({"verify_token": verify, "app_secret": app_secret})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(put.status, 204, "{}", put.body);
    let config = with_token("GET", "/v1/meta/config", &admin.access, &[]).json();
    assert_eq!(config["configured"], true);
    assert!(
        !config.to_string().contains(&app_secret),
        "secrets are never shown"
    );

    let handshake = get(
        &format!(
            "/v1/meta/webhook?tenant=conformance&hub.mode=subscribe&hub.verify_token={verify}&hub.challenge=424242"
        ),
        &[],
    );
    assert_eq!((handshake.status, handshake.body.as_str()), (200, "424242"));
    let refused = get(
        "/v1/meta/webhook?tenant=conformance&hub.mode=subscribe&hub.verify_token=not-the-token&hub.challenge=1",
        &[],
    );
    assert_problem(&refused, 403, "verify_token_mismatch", "wrong verify token");

    let workflow = post_json(
        "/v1/workflows",
        Some(&admin.access),
        &json!({"name": "On WhatsApp message", "trigger": {"type": "event", "event_type": "meta.message.received"},
                "steps": [{"type": "notify", "role": "admin", "message": "new message"}]}),
    );
    assert_eq!(workflow.status, 201, "{}", workflow.body);
    let workflow_id = workflow.json()["id"].as_str().unwrap().to_owned();

    let message_id = format!("wamid.conf.{}", &admin.refresh[4..16]);
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messages": [{"id": message_id, "from": "15550001111", "timestamp": "1795582978", "type": "text", "text": {"body": "hi"}}]
        }}]}]
    })
    .to_string();
    let signature = format!(
        "sha256={}",
        hmac_sha256(app_secret.as_bytes(), body.as_bytes())
    );
    let deliver = |sig: &str| {
        send(
            "POST",
            "/v1/meta/webhook?tenant=conformance",
            &[
                ("content-type", "application/json"),
                ("x-hub-signature-256", sig),
            ],
            body.as_bytes(),
        )
    };
    let first = deliver(&signature);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json(), json!({"received": 1, "new": 1}));
    let second = deliver(&signature);
    assert_eq!(
        second.json(),
        json!({"received": 1, "new": 0}),
        "delivered twice, processed once"
    );

    let forged = format!("sha256={}", hmac_sha256(b"someone-else", body.as_bytes()));
    assert_problem(&deliver(&forged), 401, "invalid_signature", "another key");
    assert_problem(&deliver(""), 401, "invalid_signature", "no signature");

    let runs = runs_once_done(&admin.access, &workflow_id);
    assert_eq!(
        runs.len(),
        1,
        "the matching workflow started once: {runs:?}"
    );
    assert_eq!(runs[0]["cause"]["event_type"], "meta.message.received");
    assert_eq!(
        runs[0]["status"], "succeeded",
        "its steps ran: {:?}",
        runs[0]
    );
    assert_eq!(runs[0]["steps"][0]["status"], "succeeded");
    let inbox = with_token("GET", "/v1/notifications", &admin.access, &[]);
    let inbox = inbox.json();
    assert!(
        inbox["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["body"] == "new message"),
        "the notify step wrote the admins' inbox: {inbox}"
    );
}

/// The workflow's runs once the first has finished (or after two minutes,
/// time enough for a busy machine): the meta-events consumer starts the
/// run, the workflows consumer runs it. On Spin, drain calls stand in for
/// the queues, as a scheduler's would. Polls back off from 0.5 s to 5 s, so
/// the caller spends few calls of its rate limit.
fn runs_once_done(token: &str, workflow_id: &str) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(2);
    let mut pause = std::time::Duration::from_millis(500);
    let mut runs = Vec::new();
    while std::time::Instant::now() < deadline {
        if crate::TARGET.name == "spin" {
            let drained = with_token("POST", "/v1/jobs/drain", token, &[]);
            assert_eq!(drained.status, 200, "{}", drained.body);
        }
        let listed = with_token(
            "GET",
            &format!("/v1/workflows/{workflow_id}/runs"),
            token,
            &[],
        );
        runs = listed.json()["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if runs.first().is_some_and(|r| r["status"] == "succeeded") {
            break;
        }
        std::thread::sleep(pause);
        pause = (pause * 3 / 2).min(std::time::Duration::from_secs(5));
    }
    runs
}
