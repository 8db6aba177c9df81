//! Each tenant's webhook signing secret over HTTP: shown when the tenant is
//! made and when its admin rotates it, otherwise described by fingerprint
//! only.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::{bootstrap_webhook_secret, post_json, root, session, with_token};
use crate::{Reply, assert_problem};

/// The first 16 hex digits of the secret's SHA-256, as receivers compute it.
fn fingerprint(secret: &str) -> String {
    use std::fmt::Write;
    Sha256::digest(secret.as_bytes())
        .iter()
        .take(8)
        .fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// `whsec_` and 64 lowercase hex digits.
fn assert_secret(secret: &str, why: &str) {
    let hex = secret
        .strip_prefix("whsec_")
        .unwrap_or_else(|| panic!("{why}: {secret:?} is not whsec_…"));
    assert!(
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{why}: {secret:?}"
    );
}

fn shown(reply: &Reply, why: &str) -> String {
    let secret = reply.json()["webhook_secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{why}: no webhook_secret in {}", reply.body))
        .to_owned();
    assert_secret(&secret, why);
    secret
}

/// GET /v1/webhook-secret: the metadata, checked to hold no secret.
fn metadata(token: &str) -> Value {
    let reply = with_token("GET", "/v1/webhook-secret", token, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("private, no-cache"));
    assert!(
        !reply.body.contains("whsec_"),
        "never the secret: {}",
        reply.body
    );
    reply.json()
}

#[test]
fn bootstrap_shows_the_operator_tenants_webhook_secret() {
    let secret = bootstrap_webhook_secret().expect(
        "the bootstrap answer's webhook_secret: the suite's own bootstrap, or \
         TEPI_TEST_BOOTSTRAP_WEBHOOK_SECRET from scripts/conformance.sh",
    );
    assert_secret(&secret, "bootstrap");
    // The suite never rotates the operator tenant's secret.
    let current = metadata(&root().access);
    assert_eq!(current["fingerprint"], fingerprint(&secret), "{current}");
    assert_eq!(current["previous"], Value::Null);
}

#[test]
fn a_tenants_secret_is_shown_once_and_rotation_replaces_it() {
    // A tenant of this run's own: its secret starts unrotated.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let id = format!("rotation-{nanos}");
    let email = format!("admin@{id}.test");
    let password = format!("rotation-{nanos}-password");
    let created = post_json(
        "/v1/tenants",
        Some(&root().access),
        &json!({"id": id, "name": "Rotation", "admin_email": email, "admin_password": password}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let first = shown(&created, "tenant creation");
    let admin = session(&id, &email, &password);

    let before = metadata(&admin.access);
    assert_eq!(before["fingerprint"], fingerprint(&first));
    assert!(before["created_at"].is_string(), "{before}");
    assert_eq!(before["previous"], Value::Null);

    let rotated = post_json(
        "/v1/webhook-secret/rotate",
        Some(&admin.access),
        &json!({"overlap_seconds": 3600}),
    );
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    assert_eq!(rotated.header("location"), Some("/v1/webhook-secret"));
    let second = shown(&rotated, "rotation");
    assert_ne!(second, first, "a new secret");
    let body = rotated.json();
    assert_eq!(body["fingerprint"], fingerprint(&second));
    assert_eq!(
        body["previous"]["fingerprint"],
        fingerprint(&first),
        "{body}"
    );
    assert!(body["previous"]["valid_until"].is_string(), "{body}");

    let after = metadata(&admin.access);
    assert_eq!(after["fingerprint"], fingerprint(&second));
    assert_eq!(after["previous"], body["previous"]);

    let refused = post_json(
        "/v1/webhook-secret/rotate",
        Some(&admin.access),
        &json!({"overlap_seconds": 604_801}),
    );
    assert_problem(&refused, 422, "validation_failed", "over a week");
    assert_eq!(refused.json()["errors"][0]["field"], "overlap_seconds");
    assert_eq!(
        metadata(&admin.access)["fingerprint"],
        fingerprint(&second),
        "a refused rotation changes nothing"
    );
}
