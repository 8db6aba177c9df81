//! Uploads through `App::handle`: declaration, verified content, events,
//! idempotency and tenant isolation.

use http::Method;
use serde_json::json;

use super::auth::{CONTENT, Fixture, content_sha256, problem_code, req, world, world_in};
use super::{body_json, header_str};
use crate::ports::{Sql, SqlValue};
use crate::testing::block_on;

fn declare(size: usize, sha: &str) -> serde_json::Value {
    json!({"filename": "notes.txt", "content_type": "text/plain", "size": size, "sha256": sha})
}

#[test]
fn declare_send_read_and_delete() {
    let w = world_in(Fixture::new().stateless(&[]));
    let f = &w.f;
    let created = f.send(
        req(Method::POST, "/v1/uploads")
            .token(&w.user.access)
            .json(declare(CONTENT.len(), &content_sha256())),
    );
    assert_eq!(created.status(), 201);
    let location = header_str(&created, "location").unwrap().to_owned();
    let upload = body_json(&created);
    assert_eq!(upload["status"], "pending");
    let id = upload["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/uploads/{id}"));
    let content_path = format!("/v1/uploads/{id}/content");

    let early = f.send(req(Method::GET, &content_path).token(&w.user.access));
    assert_eq!(problem_code(&early), "upload_not_stored");

    let put = f.send(
        req(Method::PUT, &content_path)
            .token(&w.user.access)
            .raw("text/plain", CONTENT),
    );
    assert_eq!(put.status(), 200, "{}", body_json(&put));
    assert_eq!(body_json(&put)["status"], "stored");
    let again = f.send(
        req(Method::PUT, &content_path)
            .token(&w.user.access)
            .raw("text/plain", CONTENT),
    );
    assert_eq!(
        again.status(),
        200,
        "sending the same content again is harmless"
    );

    let read = f.send(req(Method::GET, &content_path).token(&w.root.access));
    assert_eq!(read.status(), 200, "any user of the tenant reads");
    assert_eq!(read.body().as_ref(), CONTENT);
    assert_eq!(header_str(&read, "content-type"), Some("text/plain"));
    assert_eq!(
        header_str(&read, "content-disposition"),
        Some("attachment; filename=\"notes.txt\"")
    );
    let tag = header_str(&read, "etag").unwrap().to_owned();
    let cached = f.send(
        req(Method::GET, &content_path)
            .token(&w.root.access)
            .header("if-none-match", &tag),
    );
    assert_eq!(cached.status(), 304);

    // Exactly one upload.received for it sits in the outbox (Spin's queue).
    let outbox = block_on(f.db.execute("SELECT queue, envelope FROM job_outbox", &[])).unwrap();
    let mine: Vec<serde_json::Value> = outbox
        .rows
        .iter()
        .filter_map(|r| match (&r[0], &r[1]) {
            (SqlValue::Text(q), SqlValue::Text(e)) if q == "uploads" => {
                serde_json::from_str(e).ok()
            }
            _ => None,
        })
        .filter(|e: &serde_json::Value| e["subject"] == id)
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["type"], "upload.received");
    assert_eq!(mine[0]["tenantid"], "acme");
    assert_eq!(mine[0]["data"]["sha256"], content_sha256().as_str());

    let deleted = f.send(req(Method::DELETE, &location).token(&w.user.access));
    assert_eq!(deleted.status(), 204, "the uploader deletes");
    assert_eq!(
        f.send(req(Method::GET, &location).token(&w.user.access))
            .status(),
        404
    );
    assert!(
        !f.kv.keys().iter().any(|k| k.contains(id)),
        "the content went with it"
    );
}

#[test]
fn content_is_verified_against_the_declaration() {
    let w = world();
    let f = &w.f;
    let id = body_json(
        &f.send(
            req(Method::POST, "/v1/uploads")
                .token(&w.user.access)
                .json(declare(CONTENT.len(), &content_sha256())),
        ),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/uploads/{id}/content");
    let cases: [(&str, &[u8], u16, &str); 3] = [
        ("text/csv", CONTENT, 415, "content_type_mismatch"),
        ("text/plain", b"hello, tepi!", 422, "size_mismatch"),
        ("text/plain", b"HELLO, TEPI", 422, "checksum_mismatch"),
    ];
    for (content_type, body, status, code) in cases {
        let response = f.send(
            req(Method::PUT, &path)
                .token(&w.user.access)
                .raw(content_type, body),
        );
        assert_eq!(
            (response.status().as_u16(), problem_code(&response)),
            (status, code.to_owned())
        );
    }
    let upload =
        body_json(&f.send(req(Method::GET, &format!("/v1/uploads/{id}")).token(&w.user.access)));
    assert_eq!(upload["status"], "pending", "nothing was kept");
    let other = f.send(
        req(Method::PUT, &path)
            .token(&w.other_admin.access)
            .raw("text/plain", CONTENT),
    );
    assert_eq!(other.status(), 404, "other tenants' uploads do not exist");
}

#[test]
fn declarations_are_validated_field_by_field() {
    let w = world();
    let cases = [
        (
            json!({"filename": "../etc/passwd", "content_type": "text/plain", "size": 1, "sha256": content_sha256()}),
            "filename",
            "invalid",
        ),
        (
            json!({"filename": "a.html", "content_type": "text/html", "size": 1, "sha256": content_sha256()}),
            "content_type",
            "not_allowed",
        ),
        (
            json!({"filename": "a.txt", "content_type": "text/plain", "size": 2_000_000, "sha256": content_sha256()}),
            "size",
            "too_large",
        ),
        (
            json!({"filename": "a.txt", "content_type": "text/plain", "size": 0, "sha256": content_sha256()}),
            "size",
            "too_small",
        ),
        (
            json!({"filename": "a.txt", "content_type": "text/plain", "size": 1, "sha256": "abc"}),
            "sha256",
            "invalid",
        ),
    ];
    for (body, field, code) in cases {
        let response = w.f.send(
            req(Method::POST, "/v1/uploads")
                .token(&w.user.access)
                .json(body),
        );
        assert_eq!(response.status(), 422, "{field}");
        let errors = body_json(&response)["errors"].clone();
        assert_eq!(errors[0]["field"], field, "{errors}");
        assert_eq!(errors[0]["code"], code, "{errors}");
    }
}

#[test]
fn an_idempotency_key_replays_the_first_answer() {
    let w = world();
    let f = &w.f;
    let body = declare(CONTENT.len(), &content_sha256());
    let send = |key: &str, body: serde_json::Value| {
        f.send(
            req(Method::POST, "/v1/uploads")
                .token(&w.user.access)
                .header("idempotency-key", key)
                .json(body),
        )
    };
    let first = send("key-1", body.clone());
    let second = send("key-1", body.clone());
    assert_eq!(
        (first.status(), second.status()),
        (http::StatusCode::CREATED, http::StatusCode::CREATED)
    );
    assert_eq!(
        body_json(&first)["id"],
        body_json(&second)["id"],
        "same key, same upload"
    );
    assert_eq!(header_str(&second, "idempotent-replayed"), Some("true"));
    let other = send("key-2", body.clone());
    assert_ne!(body_json(&other)["id"], body_json(&first)["id"]);
    let misuse = send("key-1", declare(3, &content_sha256()));
    assert_eq!(problem_code(&misuse), "idempotency_key_reused");
    // Keys are per tenant: globex may use the same key for its own upload.
    let globex = f.send(
        req(Method::POST, "/v1/uploads")
            .token(&w.other_admin.access)
            .header("idempotency-key", "key-1")
            .json(body),
    );
    assert_eq!(globex.status(), 201);
    assert_ne!(body_json(&globex)["id"], body_json(&first)["id"]);
    // A failed request releases its key.
    let bad = send("key-3", json!({"filename": ""}));
    assert_eq!(bad.status(), 422);
    assert_eq!(
        send("key-3", declare(CONTENT.len(), &content_sha256())).status(),
        201
    );
}
