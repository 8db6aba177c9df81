//! Uploads over HTTP: declare, send verified content, read it back, delete;
//! refusals for content that does not match its declaration; idempotent
//! declaration; tenant isolation.

use serde_json::{Value, json};

use crate::auth::{member, other_tenant_admin, post_json, with_token};
use crate::{Reply, assert_problem, send};

const CONTENT: &[u8] = b"conformance upload\n";
/// SHA-256 of `CONTENT`, computed independently (`sha256sum`).
const CONTENT_SHA256: &str = "fd03e3122916ae0d2667304a3c089f9c3094cc4babb4b4d4c6467cce7dc861f2"; // pragma: allowlist secret

fn declaration() -> Value {
    json!({
        "filename": "notes.txt",
        "content_type": "text/plain",
        "size": CONTENT.len(),
        "sha256": CONTENT_SHA256,
    })
}

fn put_content(token: &str, id: &str, content_type: &str, body: &[u8]) -> Reply {
    let bearer = format!("Bearer {token}");
    send(
        "PUT",
        &format!("/v1/uploads/{id}/content"),
        &[("authorization", &bearer), ("content-type", content_type)],
        body,
    )
}

#[test]
fn declare_send_read_and_delete_an_upload() {
    let (_, ann) = member("uploads@conformance.test", "user");
    let created = post_json("/v1/uploads", Some(&ann.access), &declaration());
    assert_eq!(created.status, 201, "{}", created.body);
    let upload = created.json();
    assert_eq!(upload["status"], "pending");
    let id = upload["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("/v1/uploads/{id}").as_str())
    );

    let refusals = [
        ("text/csv", CONTENT.to_vec(), 415, "content_type_mismatch"),
        ("text/plain", [CONTENT, b"x"].concat(), 422, "size_mismatch"),
        (
            "text/plain",
            CONTENT.to_ascii_uppercase(),
            422,
            "checksum_mismatch",
        ),
    ];
    for (content_type, body, status, code) in refusals {
        let reply = put_content(&ann.access, &id, content_type, &body);
        assert_problem(&reply, status, code, code);
    }

    let stored = put_content(&ann.access, &id, "text/plain", CONTENT);
    assert_eq!(stored.status, 200, "{}", stored.body);
    assert_eq!(stored.json()["status"], "stored");

    let read = with_token(
        "GET",
        &format!("/v1/uploads/{id}/content"),
        &ann.access,
        &[],
    );
    assert_eq!(read.status, 200);
    assert_eq!(read.body.as_bytes(), CONTENT, "the same bytes back");
    assert_eq!(read.header("content-type"), Some("text/plain"));
    assert_eq!(read.header("cache-control"), Some("private, no-cache"));

    let boss = other_tenant_admin();
    let foreign = with_token("GET", &format!("/v1/uploads/{id}"), &boss.access, &[]);
    assert_eq!(foreign.status, 404, "another tenant cannot see it");

    let deleted = with_token("DELETE", &format!("/v1/uploads/{id}"), &ann.access, &[]);
    assert_eq!(deleted.status, 204);
    let gone = with_token("GET", &format!("/v1/uploads/{id}"), &ann.access, &[]);
    assert_eq!(gone.status, 404);
}

#[test]
fn declarations_are_validated_and_idempotent() {
    let (_, ann) = member("uploads-idem@conformance.test", "user");
    let refused = post_json(
        "/v1/uploads",
        Some(&ann.access),
        &json!({"filename": "x.html", "content_type": "text/html", "size": 0, "sha256": "nope"}),
    );
    assert_problem(&refused, 422, "validation_failed", "bad declaration");
    let fields: Vec<String> = refused.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["field"].as_str().unwrap(),
                e["code"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            "content_type:not_allowed",
            "size:too_small",
            "sha256:invalid"
        ]
    );

    let bearer = format!("Bearer {}", ann.access);
    let declare = |key: &str| {
        send(
            "POST",
            "/v1/uploads",
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
                ("idempotency-key", key),
            ],
            declaration().to_string().as_bytes(),
        )
    };
    let key = format!("conformance-{}", &ann.access[ann.access.len() - 12..]);
    let first = declare(&key);
    let again = declare(&key);
    assert_eq!((first.status, again.status), (201, 201));
    assert_eq!(
        first.json()["id"],
        again.json()["id"],
        "same key, same upload"
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}
