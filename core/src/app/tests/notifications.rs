//! Notifications through `App::handle`: inboxes, read marks, role-wide and
//! webhook sends, isolation.

use http::Method;
use serde_json::json;

use super::auth::{Fixture, problem_code, req, world, world_in};
use super::body_json;
use crate::ports::{Sql, SqlValue};
use crate::testing::block_on;

#[test]
fn admins_send_users_read_their_own_inbox() {
    let w = world();
    let f = &w.f;
    let send = |body: serde_json::Value| {
        f.send(
            req(Method::POST, "/v1/notifications")
                .token(&w.root.access)
                .json(body),
        )
    };
    let one = send(json!({"to": {"user_id": w.user_id}, "subject": "First", "body": "one"}));
    assert_eq!(body_json(&one)["recipients"], 1);
    f.advance(1);
    let role = send(json!({"to": {"role": "user"}, "subject": "Second", "body": "all users"}));
    assert_eq!(role.status(), 201);
    assert_eq!(
        body_json(&role)["recipients"],
        1,
        "acme has one user with the user role"
    );

    let inbox = body_json(&f.send(req(Method::GET, "/v1/notifications").token(&w.user.access)));
    let subjects: Vec<&str> = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["Second", "First"], "newest first");
    assert!(inbox["items"][0]["read_at"].is_null());

    // Pages of one walk the same list.
    let mut seen = Vec::new();
    let mut path = "/v1/notifications?limit=1".to_owned();
    loop {
        let page = body_json(&f.send(req(Method::GET, &path).token(&w.user.access)));
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["subject"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/notifications?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["Second", "First"]);

    let id = inbox["items"][1]["id"].as_str().unwrap();
    let read =
        f.send(req(Method::POST, &format!("/v1/notifications/{id}/read")).token(&w.user.access));
    assert_eq!(read.status(), 200);
    assert!(body_json(&read)["read_at"].is_string());
    let theirs =
        f.send(req(Method::POST, &format!("/v1/notifications/{id}/read")).token(&w.root.access));
    assert_eq!(
        theirs.status(),
        404,
        "another user's entry does not exist for you"
    );
    let root_inbox =
        body_json(&f.send(req(Method::GET, "/v1/notifications").token(&w.root.access)));
    assert_eq!(root_inbox["items"], json!([]));
    let other =
        body_json(&f.send(req(Method::GET, "/v1/notifications").token(&w.other_admin.access)));
    assert_eq!(other["items"], json!([]), "other tenants see nothing");
}

#[test]
fn sends_are_validated_and_checked_against_the_tenant() {
    let w = world();
    let cases = [
        (
            json!({"to": {"user_id": "usr_nope"}, "subject": "s", "body": "b"}),
            "to/user_id",
            "not_found",
        ),
        (
            json!({"to": {"role": "owner"}, "subject": "s", "body": "b"}),
            "to",
            "invalid",
        ),
        (
            json!({"to": {"webhook_url": "http://plain"}, "subject": "s", "body": "b"}),
            "to",
            "invalid",
        ),
        (
            json!({"to": {"role": "user", "user_id": "x"}, "subject": "s", "body": "b"}),
            "to",
            "invalid",
        ),
        (
            json!({"to": {"role": "user"}, "subject": " ", "body": "b"}),
            "subject",
            "required",
        ),
    ];
    for (body, field, code) in cases {
        let response = w.f.send(
            req(Method::POST, "/v1/notifications")
                .token(&w.root.access)
                .json(body),
        );
        assert_eq!(response.status(), 422, "{field}");
        assert_eq!(body_json(&response)["errors"][0]["field"], field);
        assert_eq!(body_json(&response)["errors"][0]["code"], code);
    }
    let globex_user = w.f.send(
        req(Method::POST, "/v1/notifications")
            .token(&w.other_admin.access)
            .json(json!({"to": {"user_id": w.user_id}, "subject": "s", "body": "b"})),
    );
    assert_eq!(
        body_json(&globex_user)["errors"][0]["code"],
        "not_found",
        "acme's users are not globex's"
    );
    let user = w.f.send(
        req(Method::POST, "/v1/notifications")
            .token(&w.user.access)
            .json(json!({"to": {"role": "user"}, "subject": "s", "body": "b"})),
    );
    assert_eq!(problem_code(&user), "forbidden");
}

#[test]
fn webhook_notifications_become_jobs_with_the_trace() {
    let w = world_in(Fixture::new().stateless(&[]));
    let sent = w.f.send(
        req(Method::POST, "/v1/notifications")
            .token(&w.root.access)
            .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .json(json!({"to": {"webhook_url": "https://hooks.example.com/tepi"}, "subject": "Deploy", "body": "done"})),
    );
    assert_eq!(sent.status(), 202);
    assert_eq!(body_json(&sent)["status"], "queued");
    let outbox = block_on(w.f.db.execute(
        "SELECT envelope FROM job_outbox WHERE queue = 'notifications'",
        &[],
    ))
    .unwrap();
    assert_eq!(outbox.rows.len(), 1);
    let SqlValue::Text(text) = &outbox.rows[0][0] else {
        panic!("text")
    };
    let envelope: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(envelope["type"], "notification.webhook.requested");
    assert_eq!(envelope["data"]["url"], "https://hooks.example.com/tepi");
    assert!(
        envelope["traceparent"]
            .as_str()
            .unwrap()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "the delivery continues the caller's trace"
    );
}

#[test]
fn webhook_notifications_to_internal_targets_are_refused() {
    let w = world();
    for (url, why) in super::workflows::INTERNAL_TARGETS {
        let response = w.f.send(
            req(Method::POST, "/v1/notifications")
                .token(&w.root.access)
                .json(json!({"to": {"webhook_url": url}, "subject": "s", "body": "b"})),
        );
        assert_eq!(response.status(), 422, "{url}");
        let error = &body_json(&response)["errors"][0];
        assert_eq!(error["field"], "to", "{url}");
        assert!(
            error["message"].as_str().unwrap().contains(why),
            "{url}: {error}"
        );
    }
}
