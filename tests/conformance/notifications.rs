//! Notifications over HTTP: an admin sends, the user reads and marks read;
//! webhook notifications are queued.

use serde_json::json;

use crate::assert_problem;
use crate::auth::{member, post_json, root, with_token};

#[test]
fn send_read_and_mark_read() {
    let (id, ann) = member("inbox@conformance.test", "user");
    let admin = root();
    let sent = post_json(
        "/v1/notifications",
        Some(&admin.access),
        &json!({"to": {"user_id": id}, "subject": "Welcome", "body": "Hello from the conformance suite"}),
    );
    assert_eq!(sent.status, 201, "{}", sent.body);
    assert_eq!(sent.json()["recipients"], 1);
    let notification = sent.json()["ids"][0].as_str().unwrap().to_owned();

    let inbox = with_token("GET", "/v1/notifications", &ann.access, &[]);
    assert_eq!(inbox.status, 200);
    assert_eq!(inbox.header("cache-control"), Some("private, no-cache"));
    let inbox = inbox.json();
    assert_eq!(inbox["items"][0]["subject"], "Welcome");
    assert!(inbox["items"][0]["read_at"].is_null());

    let read = with_token(
        "POST",
        &format!("/v1/notifications/{notification}/read"),
        &ann.access,
        &[],
    );
    assert_eq!(read.status, 200);
    assert!(read.json()["read_at"].is_string());
    let not_yours = with_token(
        "POST",
        &format!("/v1/notifications/{notification}/read"),
        &admin.access,
        &[],
    );
    assert_eq!(not_yours.status, 404);

    let refused = post_json(
        "/v1/notifications",
        Some(&ann.access),
        &json!({"to": {"role": "user"}, "subject": "s", "body": "b"}),
    );
    assert_problem(&refused, 403, "forbidden", "users do not send");
    let queued = post_json(
        "/v1/notifications",
        Some(&admin.access),
        &json!({"to": {"webhook_url": "http://127.0.0.1:9/tepi"}, "subject": "Ping", "body": "pong"}),
    );
    assert_eq!(queued.status, 202, "{}", queued.body);
    assert_eq!(queued.json()["status"], "queued");
}
