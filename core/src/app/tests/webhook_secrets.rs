//! Each tenant's webhook signing secret through `App::handle`, on real
//! SQLite: shown once when the tenant is made and when an admin rotates
//! it, never read back, rotated only by the caller's own tenant's live
//! admins, and what deliveries sign with (`auth::webhook_secret`).

use http::Method;
use serde_json::{Value, json};

use super::auth::{BOOTSTRAP, Fixture, WEBHOOK_KEY, password, problem_code, req, world};
use super::{KEYS, body_json, header_str};
use crate::api::response::rfc3339;
use crate::auth::store::{WEBHOOK_SECRET_BY_TENANT, first};
use crate::auth::webhook_secret::Salts;
use crate::config::vars;
use crate::ports::Sql;
use crate::secret::{Secret, digest};
use crate::testing::block_on;

const GET: &str = "/v1/webhook-secret";
const ROTATE: &str = "/v1/webhook-secret/rotate";

fn key() -> Secret {
    Secret::new(WEBHOOK_KEY.to_owned())
}

/// The first 16 hex digits of the secret's SHA-256, as a receiver computes
/// it.
fn fingerprint_of(secret: &str) -> String {
    digest(secret)[..16].to_owned()
}

/// A secret as answered: `whsec_` and 64 hex digits.
fn shown_secret(body: &Value) -> String {
    let secret = body["webhook_secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no webhook_secret in {body}"))
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(secret.len(), 6 + 64, "{secret}");
    secret
}

/// The tenant's row as deliveries read it.
fn salts(f: &Fixture, tenant: &str) -> Option<Salts> {
    let rows = block_on(f.db.execute(WEBHOOK_SECRET_BY_TENANT, &[tenant.into()])).unwrap();
    first(&rows).map(|row| Salts::read(&row).unwrap())
}

/// The secrets deliveries of `tenant` are signed with now.
fn signing_now(f: &Fixture, tenant: &str) -> Vec<String> {
    salts(f, tenant)
        .unwrap()
        .secrets(&key(), tenant, f.now.get().as_unix_secs())
        .iter()
        .map(|s| s.expose().to_owned())
        .collect()
}

fn now_secs(f: &Fixture) -> i64 {
    f.now.get().as_unix_secs()
}

#[test]
fn the_secret_is_shown_once_when_a_tenant_is_made_and_never_read_back() {
    let f = Fixture::new();
    let bootstrapped = f.bootstrap();
    let acme = shown_secret(&bootstrapped);
    assert_eq!(
        signing_now(&f, "acme"),
        [acme.as_str()],
        "deliveries sign with the secret shown"
    );
    let stored = block_on(f.db.execute("SELECT * FROM webhook_secrets", &[])).unwrap();
    assert!(
        !format!("{:?}", stored.rows).contains(&acme[6..]),
        "the database holds a salt, not the secret"
    );

    let root = f.session("acme", "root@acme.test", "root");
    let created = f.send(
        req(Method::POST, "/v1/tenants")
            .token(&root.access)
            .json(json!({
                "id": "globex", "name": "Globex",
                "admin_email": "boss@globex.test", "admin_password": password("boss"),
            })),
    );
    assert_eq!(created.status(), 201, "{}", body_json(&created));
    let globex = shown_secret(&body_json(&created));
    assert_ne!(globex, acme, "each tenant has its own");
    assert_eq!(signing_now(&f, "globex"), [globex.as_str()]);

    let boss = f.session("globex", "boss@globex.test", "boss");
    for (token, secret, who) in [
        (&root.access, &acme, "acme"),
        (&boss.access, &globex, "globex"),
    ] {
        let read = f.send(req(Method::GET, GET).token(token));
        assert_eq!(read.status(), 200, "{who}: {}", body_json(&read));
        assert_eq!(
            header_str(&read, "cache-control"),
            Some("private, no-cache")
        );
        let body = body_json(&read);
        assert_eq!(
            body,
            json!({
                "fingerprint": fingerprint_of(secret),
                "created_at": rfc3339(now_secs(&f)),
                "previous": null,
            }),
            "{who}: metadata only"
        );
        assert!(!read_body_text(&read).contains("whsec_"), "{who}");
    }
}

fn read_body_text(response: &http::Response<bytes::Bytes>) -> String {
    String::from_utf8_lossy(response.body()).into_owned()
}

#[test]
fn rotation_shows_a_new_secret_once_and_the_old_one_signs_until_the_overlap_ends() {
    let f = Fixture::new();
    let old = shown_secret(&f.bootstrap());
    let root = f.session("acme", "root@acme.test", "root");
    f.advance(100);
    let rotated = f.send(req(Method::POST, ROTATE).token(&root.access));
    assert_eq!(rotated.status(), 201, "{}", body_json(&rotated));
    assert_eq!(header_str(&rotated, "location"), Some(GET));
    assert_eq!(header_str(&rotated, "cache-control"), Some("no-store"));
    let body = body_json(&rotated);
    let new = shown_secret(&body);
    assert_ne!(new, old);
    let until = now_secs(&f) + 86_400;
    let metadata = json!({
        "fingerprint": fingerprint_of(&new),
        "created_at": rfc3339(now_secs(&f)),
        "previous": {"fingerprint": fingerprint_of(&old), "valid_until": rfc3339(until)},
    });
    let mut without_secret = body.clone();
    without_secret
        .as_object_mut()
        .unwrap()
        .remove("webhook_secret");
    assert_eq!(without_secret, metadata, "a day's overlap by default");
    assert_eq!(
        signing_now(&f, "acme"),
        [new.clone(), old.clone()],
        "both sign during the overlap, the new one first"
    );

    let read = f.send(req(Method::GET, GET).token(&root.access));
    assert_eq!(body_json(&read), metadata, "never the secret again");

    f.advance(86_399);
    assert_eq!(
        signing_now(&f, "acme"),
        [new.clone(), old.clone()],
        "last second"
    );
    f.advance(1);
    assert_eq!(
        signing_now(&f, "acme"),
        [new.as_str()],
        "the overlap is over"
    );
    // A day later: a fresh session.
    let root = f.session("acme", "root@acme.test", "root");
    let read = body_json(&f.send(req(Method::GET, GET).token(&root.access)));
    assert_eq!(read["previous"], Value::Null);
    assert_eq!(read["fingerprint"], fingerprint_of(&new));

    // No overlap: the old secret stops at once.
    let now = f.send(
        req(Method::POST, ROTATE)
            .token(&root.access)
            .json(json!({"overlap_seconds": 0})),
    );
    assert_eq!(now.status(), 201, "{}", body_json(&now));
    let newest = shown_secret(&body_json(&now));
    assert_eq!(body_json(&now)["previous"], Value::Null);
    assert_eq!(signing_now(&f, "acme"), [newest.as_str()]);

    // Rotating again during an overlap ends the older secret's overlap.
    let week = f.send(
        req(Method::POST, ROTATE)
            .token(&root.access)
            .json(json!({"overlap_seconds": 604_800})),
    );
    let last = shown_secret(&body_json(&week));
    assert_eq!(
        body_json(&week)["previous"]["valid_until"],
        rfc3339(now_secs(&f) + 604_800)
    );
    let again = shown_secret(&body_json(
        &f.send(req(Method::POST, ROTATE).token(&root.access)),
    ));
    assert_eq!(
        signing_now(&f, "acme"),
        [again, last],
        "one previous secret at a time"
    );
}

#[test]
fn only_admins_rotate_and_always_their_own_tenants_secret() {
    let w = world();
    let f = &w.f;
    let acme_before = body_json(&f.send(req(Method::GET, GET).token(&w.root.access)));
    let globex_before = body_json(&f.send(req(Method::GET, GET).token(&w.other_admin.access)));
    assert_ne!(acme_before["fingerprint"], globex_before["fingerprint"]);

    let key = body_json(
        &f.send(
            req(Method::POST, "/v1/api-keys")
                .token(&w.root.access)
                .json(json!({"name": "scraper-2", "scopes": ["metrics:read"]})),
        ),
    )["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = [
        (
            req(Method::GET, GET),
            401,
            "unauthenticated",
            "anonymous reads",
        ),
        (
            req(Method::POST, ROTATE),
            401,
            "unauthenticated",
            "anonymous rotates",
        ),
        (
            req(Method::GET, GET).token(&w.user.access),
            403,
            "forbidden",
            "a user reads",
        ),
        (
            req(Method::POST, ROTATE).token(&w.user.access),
            403,
            "forbidden",
            "a user rotates",
        ),
        (
            req(Method::POST, ROTATE).token(&key),
            403,
            "forbidden",
            "an API key rotates",
        ),
        (
            req(Method::POST, ROTATE)
                .token(&w.other_admin.access)
                .tenant("acme"),
            403,
            "tenant_mismatch",
            "another tenant's admin names acme",
        ),
    ];
    for (request, status, code, why) in refused {
        let response = f.send(request);
        assert_eq!(response.status(), status, "{why}: {}", body_json(&response));
        assert_eq!(problem_code(&response), code, "{why}");
    }

    // Globex's admin rotates: globex's secret, whatever they send.
    let rotated = f.send(req(Method::POST, ROTATE).token(&w.other_admin.access));
    assert_eq!(rotated.status(), 201, "{}", body_json(&rotated));
    let rotated = body_json(&rotated);
    assert_eq!(
        rotated["previous"]["fingerprint"], globex_before["fingerprint"],
        "globex's secret was the one replaced"
    );
    assert_eq!(
        signing_now(f, "globex")[0],
        rotated["webhook_secret"].as_str().unwrap()
    );
    let acme_after = body_json(&f.send(req(Method::GET, GET).token(&w.root.access)));
    assert_eq!(acme_after, acme_before, "acme's secret is untouched");
    assert_eq!(signing_now(f, "acme").len(), 1);
}

#[test]
fn the_overlap_must_be_whole_seconds_within_a_week() {
    let w = world();
    let f = &w.f;
    let before = body_json(&f.send(req(Method::GET, GET).token(&w.root.access)));
    let invalid = [
        (
            json!({"overlap_seconds": -1}),
            "overlap_seconds",
            "out_of_range",
            "negative",
        ),
        (
            json!({"overlap_seconds": 604_801}),
            "overlap_seconds",
            "out_of_range",
            "over a week",
        ),
        (
            json!({"overlap_seconds": u64::MAX}),
            "overlap_seconds",
            "out_of_range",
            "beyond i64",
        ),
        (
            json!({"overlap_seconds": 1.5}),
            "overlap_seconds",
            "type",
            "fractional",
        ),
        (
            json!({"overlap_seconds": "60"}),
            "overlap_seconds",
            "type",
            "a string",
        ),
        (
            json!({"overlap_seconds": true}),
            "overlap_seconds",
            "type",
            "a boolean",
        ),
        (json!({"overlap": 60}), "overlap", "unknown_field", "a typo"),
        (json!([60]), "", "type", "not an object"),
    ];
    for (body, field, code, why) in invalid {
        let response = f.send(req(Method::POST, ROTATE).token(&w.root.access).json(body));
        assert_eq!(response.status(), 422, "{why}: {}", body_json(&response));
        let errors = &body_json(&response)["errors"];
        assert_eq!(errors[0]["field"], field, "{why}: {errors}");
        assert_eq!(errors[0]["code"], code, "{why}: {errors}");
    }
    let not_json = [
        (
            ("text/plain", b"60".as_slice()),
            415,
            "unsupported_media_type",
        ),
        (("application/json", b"{".as_slice()), 400, "malformed_json"),
    ];
    for ((content_type, bytes), status, code) in not_json {
        let response = f.send(
            req(Method::POST, ROTATE)
                .token(&w.root.access)
                .raw(content_type, bytes),
        );
        assert_eq!(response.status(), status, "{code}");
        assert_eq!(problem_code(&response), code);
    }
    let after = body_json(&f.send(req(Method::GET, GET).token(&w.root.access)));
    assert_eq!(after, before, "no refused request rotated anything");

    let valid = [
        (json!({}), 86_400, "the default"),
        (
            json!({"overlap_seconds": null}),
            86_400,
            "null is the default",
        ),
        (json!({"overlap_seconds": 604_800}), 604_800, "a week"),
        (json!({"overlap_seconds": 1}), 1, "a second"),
    ];
    for (body, overlap, why) in valid {
        let response = f.send(req(Method::POST, ROTATE).token(&w.root.access).json(body));
        assert_eq!(response.status(), 201, "{why}: {}", body_json(&response));
        assert_eq!(
            body_json(&response)["previous"]["valid_until"],
            rfc3339(now_secs(f) + overlap),
            "{why}"
        );
    }
}

#[test]
fn a_demoted_or_deleted_admin_cannot_rotate_with_an_old_token() {
    let w = world();
    let f = &w.f;
    let before = body_json(&f.send(req(Method::GET, GET).token(&w.root.access)));
    let sam_id = f.create_user(&w.root.access, "sam@acme.test", "sam", "admin");
    let sam = f.session("acme", "sam@acme.test", "sam");
    let demote = f.send(
        req(Method::PATCH, &format!("/v1/users/{sam_id}"))
            .token(&w.root.access)
            .json(json!({"role": "user"})),
    );
    assert_eq!(demote.status(), 200, "{}", body_json(&demote));
    let rotate = f.send(req(Method::POST, ROTATE).token(&sam.access));
    assert_eq!(
        rotate.status(),
        403,
        "the token still says admin: {}",
        body_json(&rotate)
    );
    assert_eq!(problem_code(&rotate), "forbidden");

    let tia_id = f.create_user(&w.root.access, "tia@acme.test", "tia", "admin");
    let tia = f.session("acme", "tia@acme.test", "tia");
    let delete = f.send(req(Method::DELETE, &format!("/v1/users/{tia_id}")).token(&w.root.access));
    assert_eq!(delete.status(), 204);
    let rotate = f.send(req(Method::POST, ROTATE).token(&tia.access));
    assert_eq!(rotate.status(), 401, "{}", body_json(&rotate));
    assert_eq!(problem_code(&rotate), "invalid_token");

    let after = body_json(&f.send(req(Method::GET, GET).token(&w.root.access)));
    assert_eq!(after, before, "nothing was rotated");
}

#[test]
fn without_the_platform_key_tenants_are_made_and_the_secret_routes_answer_503() {
    let f = Fixture::with_vars(&[
        (vars::JWT_SIGNING_KEYS, KEYS),
        (vars::BOOTSTRAP_TOKEN, BOOTSTRAP),
        (vars::MAX_BODY_BYTES, "65536"),
    ]);
    let bootstrapped = f.bootstrap();
    assert_eq!(
        bootstrapped["webhook_secret"],
        Value::Null,
        "no key, no secret to show"
    );
    assert!(salts(&f, "acme").is_some(), "the salt is kept all the same");
    let root = f.session("acme", "root@acme.test", "root");
    for request in [
        req(Method::GET, GET).token(&root.access),
        req(Method::POST, ROTATE).token(&root.access),
    ] {
        let response = f.send(request);
        assert_eq!(response.status(), 503, "{}", body_json(&response));
        assert_eq!(problem_code(&response), "webhook_signing_unavailable");
    }
}

#[test]
fn a_tenant_without_a_row_gets_one_by_rotating() {
    let w = world();
    let f = &w.f;
    block_on(f.db.execute(
        "DELETE FROM webhook_secrets WHERE tenant_id = 'globex'",
        &[],
    ))
    .unwrap();
    let read = f.send(req(Method::GET, GET).token(&w.other_admin.access));
    assert_eq!(problem_code(&read), "not_found");
    let rotated = f.send(req(Method::POST, ROTATE).token(&w.other_admin.access));
    assert_eq!(rotated.status(), 201, "{}", body_json(&rotated));
    let rotated = body_json(&rotated);
    assert_eq!(rotated["previous"], Value::Null);
    assert_eq!(
        signing_now(f, "globex"),
        [shown_secret(&rotated)],
        "deliveries sign with it"
    );
}
