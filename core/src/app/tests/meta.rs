//! Meta webhooks through `App::handle`: the handshake, signatures checked
//! with an HMAC computed here independently, deduplication, and workflows
//! started by matching events.

use http::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::auth::{problem_code, req, world};
use super::{body_json, header_str};
use crate::ports::{Sql, SqlValue};
use crate::testing::block_on;

const VERIFY: &str = "verify-token-for-tests";
const APP_SECRET: &str = "app-secret-for-tests-only"; // pragma: allowlist secret

/// HMAC-SHA256 (RFC 2104) written out over SHA-256, independent of the
/// `hmac` crate the server uses.
fn independent_hmac(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::digest([pad(0x36), message.to_vec()].concat());
    let outer = Sha256::digest([pad(0x5c), inner.to_vec()].concat());
    outer.iter().fold(String::new(), |mut out, b| {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn configured() -> super::auth::World {
    let w = world();
    let put = w.f.send(
        req(Method::PUT, "/v1/meta/config")
            .token(&w.root.access)
            .json(json!({"verify_token": VERIFY, "app_secret": APP_SECRET})),
    );
    assert_eq!(put.status(), 204);
    w
}

fn message(id: &str) -> Vec<u8> {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messages": [{"id": id, "from": "15550001111", "timestamp": "1795582978", "type": "text", "text": {"body": "hello"}}]
        }}]}]
    })
    .to_string()
    .into_bytes()
}

#[test]
fn the_handshake_echoes_the_challenge_for_the_right_token_only() {
    let w = configured();
    let hand = |token: &str| {
        w.f.send(req(
            Method::GET,
            &format!("/v1/meta/webhook?tenant=acme&hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"),
        ))
    };
    let ok = hand(VERIFY);
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.body().as_ref(), b"1158201444");
    assert_eq!(
        header_str(&ok, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        problem_code(&hand("wrong-token-wrong")),
        "verify_token_mismatch"
    );
    let other_tenant = w.f.send(req(
        Method::GET,
        &format!("/v1/meta/webhook?tenant=globex&hub.mode=subscribe&hub.verify_token={VERIFY}&hub.challenge=1"),
    ));
    assert_eq!(
        problem_code(&other_tenant),
        "verify_token_mismatch",
        "globex configured nothing"
    );
    let config = body_json(&w.f.send(req(Method::GET, "/v1/meta/config").token(&w.root.access)));
    assert_eq!(config["configured"], true);
    assert!(
        !config.to_string().contains(APP_SECRET),
        "secrets are never shown"
    );
}

#[test]
fn a_signed_delivery_is_processed_once_and_a_bad_signature_refused() {
    let w = configured();
    let f = &w.f;
    let workflow = f.send(
        req(Method::POST, "/v1/workflows")
            .token(&w.root.access)
            .json(json!({
                "name": "On message", "trigger": {"type": "event", "event_type": "meta.message.*"},
                "steps": [{"type": "notify", "role": "admin", "message": "new message"}]
            })),
    );
    let workflow_id = body_json(&workflow)["id"].as_str().unwrap().to_owned();

    let body = message("wamid.HBgL1");
    let signature = format!("sha256={}", independent_hmac(APP_SECRET.as_bytes(), &body));
    let deliver = |sig: &str, body: &[u8]| {
        f.send(
            req(Method::POST, "/v1/meta/webhook?tenant=acme")
                .header("x-hub-signature-256", sig)
                .raw("application/json", body),
        )
    };
    let first = deliver(&signature, &body);
    assert_eq!(first.status(), 200, "{}", body_json(&first));
    assert_eq!(body_json(&first), json!({"received": 1, "new": 1}));
    let again = deliver(&signature, &body);
    assert_eq!(
        body_json(&again),
        json!({"received": 1, "new": 0}),
        "a redelivery is not new"
    );

    let wrong = format!("sha256={}", independent_hmac(b"another-secret", &body));
    for (sig, why) in [
        (wrong.as_str(), "another key"),
        ("sha256=00", "garbage"),
        ("", "missing"),
    ] {
        let refused = deliver(sig, &body);
        assert_eq!(refused.status(), 401, "{why}");
        assert_eq!(problem_code(&refused), "invalid_signature", "{why}");
    }
    let tampered = deliver(&signature, &message("wamid.other"));
    assert_eq!(
        problem_code(&tampered),
        "invalid_signature",
        "the signature covers the body"
    );

    // Published once on the meta-events queue (the outbox here)...
    let outbox = block_on(f.db.execute(
        "SELECT envelope FROM job_outbox WHERE queue = 'meta-events'",
        &[],
    ))
    .unwrap();
    assert_eq!(outbox.rows.len(), 1);
    let SqlValue::Text(text) = &outbox.rows[0][0] else {
        panic!("text")
    };
    let envelope: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(envelope["type"], "meta.message.received");
    assert_eq!(envelope["tenantid"], "acme");
    assert_eq!(envelope["data"]["text"], "hello");
    // ...and the meta-events job started the matching workflow exactly once.
    let drained = body_json(&f.send(req(Method::POST, "/v1/jobs/drain").token(&w.root.access)));
    assert_eq!(drained["leased"], 1, "{drained}");
    assert_eq!(drained["acked"], 1, "{drained}");
    let runs = body_json(&f.send(
        req(Method::GET, &format!("/v1/workflows/{workflow_id}/runs")).token(&w.user.access),
    ));
    let runs = runs["items"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["cause"]["type"], "event");
    assert_eq!(runs[0]["cause"]["event_type"], "meta.message.received");
    assert_eq!(runs[0]["cause"]["event_id"], envelope["id"]);
}

#[test]
fn the_independent_hmac_agrees_with_rfc_4231() {
    assert_eq!(
        independent_hmac(b"Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" // pragma: allowlist secret
    );
}
