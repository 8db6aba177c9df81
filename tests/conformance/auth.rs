//! Auth, tenancy and RBAC over HTTP: login → me → refresh → logout, refused
//! tokens, tenant mismatch and samples of the permission matrix.

use std::env;
use std::sync::LazyLock;

use serde_json::{Value, json};

use crate::{Reply, assert_problem, get, send};

/// The operator tenant and its admin, bootstrapped once per build under test.
struct Operator {
    tenant: String,
    password: String,
    /// The webhook secret the bootstrap answer showed, when the suite
    /// bootstrapped the build itself.
    webhook_secret: Option<String>,
}

pub(crate) fn post_json(path: &str, token: Option<&str>, body: &Value) -> Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("authorization", b));
    }
    send("POST", path, &headers, body.to_string().as_bytes())
}

pub(crate) fn with_token(method: &str, path: &str, token: &str, extra: &[(&str, &str)]) -> Reply {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("authorization", bearer.as_str())];
    headers.extend_from_slice(extra);
    send(method, path, &headers, b"")
}

static OPERATOR: LazyLock<Operator> = LazyLock::new(|| {
    let token = env::var("TEPI_TEST_BOOTSTRAP_TOKEN")
        .expect("TEPI_TEST_BOOTSTRAP_TOKEN: the BOOTSTRAP_TOKEN the build was started with");
    // Derived from this run's random token: no password in the source.
    let password = format!("op-{}", &token[..24]);
    let reply = post_json(
        "/v1/bootstrap",
        Some(&token),
        &json!({"tenant": "conformance", "name": "Conformance", "email": "root@conformance.test", "password": password}),
    );
    assert!(
        reply.status == 201 || reply.json()["code"] == "already_bootstrapped",
        "bootstrap: {} {}",
        reply.status,
        reply.body
    );
    Operator {
        tenant: "conformance".into(),
        password,
        webhook_secret: (reply.status == 201)
            .then(|| reply.json()["webhook_secret"].as_str().map(str::to_owned))
            .flatten(),
    }
});

/// The operator tenant's webhook secret as its bootstrap answer showed it
/// (once): the suite's own bootstrap, or `scripts/conformance.sh`'s, which
/// passes it in `TEPI_TEST_BOOTSTRAP_WEBHOOK_SECRET`.
pub(crate) fn bootstrap_webhook_secret() -> Option<String> {
    OPERATOR
        .webhook_secret
        .clone()
        .or_else(|| env::var("TEPI_TEST_BOOTSTRAP_WEBHOOK_SECRET").ok())
        .filter(|s| !s.is_empty())
}

pub(crate) struct Session {
    pub(crate) access: String,
    pub(crate) refresh: String,
}

fn login(tenant: &str, email: &str, password: &str) -> Reply {
    post_json(
        "/v1/auth/login",
        None,
        &json!({"tenant": tenant, "email": email, "password": password}),
    )
}

/// The operator admin's login with `extra` fields in the body.
pub(crate) fn operator_login(extra: &Value) -> Reply {
    let op = &*OPERATOR;
    let mut body =
        json!({"tenant": op.tenant, "email": "root@conformance.test", "password": op.password});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    post_json("/v1/auth/login", None, &body)
}

pub(crate) fn session(tenant: &str, email: &str, password: &str) -> Session {
    let reply = login(tenant, email, password);
    assert_eq!(reply.status, 200, "login {email}: {}", reply.body);
    let body = reply.json();
    Session {
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

pub(crate) fn root() -> Session {
    let op = &*OPERATOR;
    session(&op.tenant, "root@conformance.test", &op.password)
}

/// Creates (or finds) a user of the operator tenant with `role`.
pub(crate) fn member(email: &str, role: &str) -> (String, Session) {
    let root = root();
    let password = format!("{}-member", OPERATOR.password);
    let reply = post_json(
        "/v1/users",
        Some(&root.access),
        &json!({"email": email, "password": password, "role": role}),
    );
    assert!(
        reply.status == 201 || reply.json()["code"] == "email_taken",
        "{}",
        reply.body
    );
    let session = session(&OPERATOR.tenant, email, &password);
    let me = with_token("GET", "/v1/auth/me", &session.access, &[]).json();
    (me["id"].as_str().unwrap().to_owned(), session)
}

/// A second tenant with its own admin.
pub(crate) fn other_tenant_admin() -> Session {
    let password = format!("{}-other", OPERATOR.password);
    let reply = post_json(
        "/v1/tenants",
        Some(&root().access),
        &json!({"id": "other-co", "name": "Other Co", "admin_email": "boss@other.test", "admin_password": password}),
    );
    assert!(
        reply.status == 201 || reply.json()["code"] == "tenant_exists",
        "{}",
        reply.body
    );
    session("other-co", "boss@other.test", &password)
}

static METRICS_KEY: LazyLock<String> = LazyLock::new(|| {
    let reply = post_json(
        "/v1/api-keys",
        Some(&root().access),
        &json!({"name": "conformance scrape", "scopes": ["metrics:read"]}),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["key"].as_str().unwrap().to_owned()
});

/// An API key with `metrics:read`, created once per run.
pub fn metrics_key() -> &'static str {
    &METRICS_KEY
}

#[test]
fn login_me_refresh_logout() {
    let (id, ann) = member("ann@conformance.test", "user");
    let me = with_token("GET", "/v1/auth/me", &ann.access, &[]);
    assert_eq!(me.status, 200);
    let me = me.json();
    assert_eq!(me["id"], id.as_str());
    assert_eq!(me["tenant"], "conformance");
    assert_eq!(me["role"], "user");

    let refreshed = post_json(
        "/v1/auth/refresh",
        None,
        &json!({"refresh_token": ann.refresh}),
    );
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(refreshed.header("cache-control"), Some("no-store"));
    let next = refreshed.json();
    let next_refresh = next["refresh_token"].as_str().unwrap();
    assert_ne!(next_refresh, ann.refresh, "rotated");
    let again = with_token(
        "GET",
        "/v1/auth/me",
        next["access_token"].as_str().unwrap(),
        &[],
    );
    assert_eq!(again.status, 200);

    let logout = post_json(
        "/v1/auth/logout",
        None,
        &json!({"refresh_token": next_refresh}),
    );
    assert_eq!(logout.status, 204);
    let after = post_json(
        "/v1/auth/refresh",
        None,
        &json!({"refresh_token": next_refresh}),
    );
    assert_problem(&after, 401, "invalid_refresh_token", "refresh after logout");
}

#[test]
fn a_reused_refresh_token_revokes_its_family() {
    let (_, ann) = member("reuse@conformance.test", "user");
    let first = post_json(
        "/v1/auth/refresh",
        None,
        &json!({"refresh_token": ann.refresh}),
    );
    assert_eq!(first.status, 200);
    let successor = first.json()["refresh_token"].as_str().unwrap().to_owned();
    let replay = post_json(
        "/v1/auth/refresh",
        None,
        &json!({"refresh_token": ann.refresh}),
    );
    assert_problem(&replay, 401, "refresh_token_reused", "replayed token");
    let victim = post_json(
        "/v1/auth/refresh",
        None,
        &json!({"refresh_token": successor}),
    );
    assert_problem(&victim, 401, "invalid_refresh_token", "family revoked");
}

#[test]
fn login_failures_do_not_reveal_which_part_was_wrong() {
    let (_, _) = member("known@conformance.test", "user");
    let answers: Vec<Value> = [
        ("conformance", "known@conformance.test"),
        ("conformance", "unknown@conformance.test"),
        ("no-such-tenant", "known@conformance.test"),
    ]
    .iter()
    .map(|(tenant, email)| {
        let reply = login(tenant, email, "definitely-not-the-password");
        assert_problem(&reply, 401, "invalid_credentials", email);
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"tepi\"")
        );
        let mut body = reply.json();
        body.as_object_mut().unwrap().remove("request_id");
        body
    })
    .collect();
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:#?}");
}

#[test]
fn refused_tokens_get_401_with_a_bearer_challenge() {
    let root = root();
    let (_, payload_and_sig) = root.access.split_once('.').unwrap();
    let payload = payload_and_sig.split_once('.').unwrap().0;
    // {"alg":"none","kid":"x"} in base64url.
    let alg_none = format!("eyJhbGciOiJub25lIiwia2lkIjoieCJ9.{payload}.");
    let mut tampered = root.access.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let cases = [
        (alg_none.as_str(), "alg none"),
        (tampered.as_str(), "tampered signature"),
        ("not.a.jwt", "malformed"),
    ];
    for (token, why) in cases {
        let reply = with_token("GET", "/v1/auth/me", token, &[]);
        assert_problem(&reply, 401, "invalid_token", why);
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm=\"tepi\", error=\"invalid_token\""),
            "{why}: {challenge}"
        );
    }
    let anonymous = get("/v1/auth/me", &[]);
    assert_problem(&anonymous, 401, "unauthenticated", "no credentials");
    assert_eq!(
        anonymous.header("www-authenticate"),
        Some("Bearer realm=\"tepi\"")
    );
}

#[test]
fn a_disagreeing_tenant_header_is_refused() {
    let root = root();
    let matching = with_token(
        "GET",
        "/v1/auth/me",
        &root.access,
        &[("x-tenant-id", "conformance")],
    );
    assert_eq!(matching.status, 200);
    let other = with_token(
        "GET",
        "/v1/auth/me",
        &root.access,
        &[("x-tenant-id", "other-co")],
    );
    assert_problem(
        &other,
        403,
        "tenant_mismatch",
        "another tenant in the header",
    );
}

#[test]
fn rbac_samples() {
    let (ann_id, ann) = member("rbac@conformance.test", "user");
    let root = root();
    let boss = other_tenant_admin();
    let ann_path = format!("/v1/users/{ann_id}");
    let cases = [
        ("GET", "/v1/users", None, 401, "anonymous"),
        (
            "GET",
            "/v1/users",
            Some(ann.access.as_str()),
            403,
            "user on an admin route",
        ),
        ("GET", "/v1/users", Some(root.access.as_str()), 200, "admin"),
        (
            "GET",
            ann_path.as_str(),
            Some(root.access.as_str()),
            200,
            "admin reads a member",
        ),
        (
            "GET",
            ann_path.as_str(),
            Some(boss.access.as_str()),
            404,
            "other tenant's admin",
        ),
        (
            "DELETE",
            ann_path.as_str(),
            Some(boss.access.as_str()),
            404,
            "other tenant's admin",
        ),
        ("GET", "/metrics", None, 401, "anonymous scrape"),
        (
            "GET",
            "/metrics",
            Some(ann.access.as_str()),
            403,
            "user scrape",
        ),
        (
            "GET",
            "/metrics",
            Some(boss.access.as_str()),
            403,
            "non-operator admin scrape",
        ),
        (
            "GET",
            "/metrics",
            Some(metrics_key()),
            200,
            "metrics:read key",
        ),
        (
            "GET",
            "/v1/users",
            Some(metrics_key()),
            403,
            "keys are not users",
        ),
    ];
    for (method, path, token, status, why) in cases {
        let reply = match token {
            Some(t) => with_token(method, path, t, &[]),
            None => send(method, path, &[], b""),
        };
        assert_eq!(
            reply.status, status,
            "{method} {path} as {why}: {}",
            reply.body
        );
    }
    // Nothing of the operator tenant changed through the other tenant.
    assert_eq!(with_token("GET", &ann_path, &root.access, &[]).status, 200);
}

#[test]
fn jwks_publishes_the_signing_key() {
    let reply = get("/.well-known/jwks.json", &[]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("cache-control"), Some("public, max-age=3600"));
    let jwks = reply.json();
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    assert!(key.get("d").is_none(), "no private part");
    // The access token names a published key.
    let header = root().access.split('.').next().unwrap().to_owned();
    let kid = key["kid"].as_str().unwrap();
    let decoded = decode_b64url(&header);
    assert!(decoded.contains(&format!("\"kid\":\"{kid}\"")), "{decoded}");
}

fn decode_b64url(s: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"; // pragma: allowlist secret
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = u32::try_from(ALPHABET.iter().position(|a| *a == c).expect("base64url")).unwrap();
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push(u8::try_from((bits >> n) & 0xff).unwrap());
        }
    }
    String::from_utf8(out).expect("utf-8")
}
