//! Auth, tenancy and RBAC through `App::handle`, on real SQLite.

use std::cell::Cell;

use bytes::Bytes;
use http::{Method, Request, Response};
use serde_json::{Value, json};

use super::{KEYS, START, app_with, body_json, header_str};
use crate::app::App;
use crate::config::vars;
use crate::ports::Ports;
use crate::testing::{MemoryKv, SeededEntropy, SqliteSql, SteppingClock, block_on};
use crate::time::Timestamp;

/// Obviously fake; long enough for the configured minimum.
pub(super) const BOOTSTRAP: &str = "test-bootstrap-token-0123456789abcdef";
/// The platform's webhook derivation key (`WEBHOOK_SIGNING_SECRET`).
pub(super) const WEBHOOK_KEY: &str = "test-webhook-derivation-key-0123456789"; // pragma: allowlist secret

pub(super) fn password(who: &str) -> String {
    format!("{who}-long-enough-pass")
}

/// One database and one app; requests share entropy so ids stay distinct,
/// and time moves only when a test moves it.
pub(super) struct Fixture {
    pub(super) app: App,
    pub(super) db: SqliteSql,
    pub(super) kv: MemoryKv,
    pub(super) entropy: SeededEntropy,
    pub(super) now: Cell<Timestamp>,
    /// A fresh `App::stateless()` per request, as on Spin.
    per_request: Option<Vec<(String, String)>>,
    pub(super) limiter: Option<Box<dyn crate::ratelimit::Limiter>>,
    /// Stateless: also run `App::after_response` after each request.
    after_response: bool,
}

pub(super) struct Req<'a> {
    method: Method,
    path: &'a str,
    token: Option<&'a str>,
    tenant_header: Option<&'a str>,
    body: Option<Value>,
    headers: Vec<(&'a str, &'a str)>,
    peer: Option<std::net::IpAddr>,
    /// Headers the adapter could not carry (`UnreadableHeaders`).
    unreadable: Vec<String>,
    /// A non-JSON body with its media type.
    raw: Option<(&'a str, Vec<u8>)>,
}

pub(super) fn req(method: Method, path: &str) -> Req<'_> {
    Req {
        method,
        path,
        token: None,
        tenant_header: None,
        body: None,
        headers: Vec::new(),
        peer: None,
        unreadable: Vec::new(),
        raw: None,
    }
}

impl<'a> Req<'a> {
    pub(super) fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }
    /// As the Workers adapter marks a header it could not carry.
    pub(super) fn unreadable(mut self, name: &str) -> Self {
        self.unreadable.push(name.to_owned());
        self
    }
    pub(super) fn peer(mut self, ip: &str) -> Self {
        self.peer = Some(ip.parse().unwrap());
        self
    }
    pub(super) fn token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }
    pub(super) fn tenant(mut self, tenant: &'a str) -> Self {
        self.tenant_header = Some(tenant);
        self
    }
    pub(super) fn raw(mut self, content_type: &'a str, body: &[u8]) -> Self {
        self.raw = Some((content_type, body.to_vec()));
        self
    }
    pub(super) fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

/// Who is calling, for the matrix.
pub(super) struct Session {
    pub(super) access: String,
    pub(super) refresh: String,
}

impl Fixture {
    pub(super) fn new() -> Self {
        Self::with_vars(&[
            (vars::JWT_SIGNING_KEYS, KEYS),
            (vars::BOOTSTRAP_TOKEN, BOOTSTRAP),
            (vars::MAX_BODY_BYTES, "65536"),
            (vars::WEBHOOK_SIGNING_SECRET, WEBHOOK_KEY),
        ])
    }

    /// `vars`, plus rate limits that never bite unless a test sets its own.
    pub(super) fn with_vars(vars: &[(&str, &str)]) -> Self {
        let mut all: Vec<(&str, &str)> = vars.to_vec();
        for class in crate::ratelimit::RouteClass::ALL {
            if !vars.iter().any(|(k, _)| *k == class.var()) {
                all.push((class.var(), "1000000/1s"));
            }
        }
        Self {
            app: app_with(&all),
            db: SqliteSql::open_in_memory(),
            kv: MemoryKv::default(),
            entropy: SeededEntropy::new(42),
            now: Cell::new(START),
            per_request: None,
            limiter: None,
            after_response: false,
        }
    }

    /// As on Spin: every request gets a fresh `App::stateless()`.
    pub(super) fn stateless(mut self, vars: &[(&str, &str)]) -> Self {
        let mut all: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        all.push((vars::JWT_SIGNING_KEYS.into(), KEYS.into()));
        all.push((vars::BOOTSTRAP_TOKEN.into(), BOOTSTRAP.into()));
        all.push((vars::WEBHOOK_SIGNING_SECRET.into(), WEBHOOK_KEY.into()));
        for class in crate::ratelimit::RouteClass::ALL {
            if !vars.iter().any(|(k, _)| *k == class.var()) {
                all.push((class.var().into(), "1000000/1s".into()));
            }
        }
        self.per_request = Some(all);
        self
    }

    /// As the Spin adapter: `App::after_response` after each answer.
    pub(super) fn with_after_response(mut self) -> Self {
        self.after_response = true;
        self
    }

    pub(super) fn send(&self, r: Req<'_>) -> Response<Bytes> {
        let mut builder = Request::builder().method(r.method).uri(r.path);
        for (name, value) in &r.headers {
            builder = builder.header(*name, *value);
        }
        if let Some(ip) = r.peer {
            builder = builder.extension(crate::ratelimit::PeerAddr(ip));
        }
        if !r.unreadable.is_empty() {
            builder = builder.extension(crate::UnreadableHeaders(r.unreadable));
        }
        if let Some(token) = r.token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        if let Some(tenant) = r.tenant_header {
            builder = builder.header("x-tenant-id", tenant);
        }
        let body = match (r.body, r.raw) {
            (Some(body), _) => {
                builder = builder.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(&body).unwrap())
            }
            (None, Some((content_type, bytes))) => {
                builder = builder.header("content-type", content_type);
                Bytes::from(bytes)
            }
            (None, None) => Bytes::new(),
        };
        let clock = SteppingClock::new(self.now.get(), 1_000);
        // A stateful app (as on Workers) gets a blob store from its
        // platform; a stateless one keeps blobs in key-value itself.
        let blobs = crate::jobs::outbox::KvBlobs(&self.kv);
        let ports = Ports {
            entropy: &self.entropy,
            clock: &clock,
            probes: &[],
            sql: Some(&self.db),
            kv: Some(&self.kv),
            limiter: self.limiter.as_deref(),
            cache: None,
            blobs: self
                .per_request
                .is_none()
                .then_some(&blobs as &dyn crate::ports::Blobs),
            jobs: None,
            http: None,
            timer: None,
            aggregator: None,
        };
        let request = builder.body(body).unwrap();
        match &self.per_request {
            Some(vars) => {
                let pairs: Vec<(&str, &str)> =
                    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let app = app_with(&pairs).stateless();
                let response = block_on(app.handle(request, &ports, self.now.get()));
                if self.after_response {
                    // What the Spin adapter runs once the answer is sent.
                    block_on(app.after_response(&ports));
                }
                response
            }
            None => block_on(self.app.handle(request, &ports, self.now.get())),
        }
    }

    pub(super) fn advance(&self, secs: u64) {
        let micros = self.now.get().as_unix_micros() + secs * 1_000_000;
        self.now.set(Timestamp::from_unix_micros(micros));
    }

    /// Bootstraps `acme`; answers the 201's body.
    pub(super) fn bootstrap(&self) -> Value {
        let response = self.send(
            req(Method::POST, "/v1/bootstrap")
                .token(BOOTSTRAP)
                .json(json!({"tenant": "acme", "name": "Acme", "email": "root@acme.test", "password": password("root")})),
        );
        assert_eq!(response.status(), 201, "{}", body_json(&response));
        body_json(&response)
    }

    pub(super) fn login(&self, tenant: &str, email: &str, password: &str) -> Response<Bytes> {
        self.send(
            req(Method::POST, "/v1/auth/login")
                .json(json!({"tenant": tenant, "email": email, "password": password})),
        )
    }

    pub(super) fn session(&self, tenant: &str, email: &str, who: &str) -> Session {
        let response = self.login(tenant, email, &password(who));
        assert_eq!(response.status(), 200, "{}", body_json(&response));
        let body = body_json(&response);
        Session {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    pub(super) fn create_user(&self, admin: &str, email: &str, who: &str, role: &str) -> String {
        let response = self.send(
            req(Method::POST, "/v1/users")
                .token(admin)
                .json(json!({"email": email, "password": password(who), "role": role})),
        );
        assert_eq!(response.status(), 201, "{}", body_json(&response));
        body_json(&response)["id"].as_str().unwrap().to_owned()
    }
}

/// Two tenants: `acme` (the operator, bootstrapped) with an admin and a
/// user, and `globex` with its own admin.
pub(super) struct World {
    pub(super) f: Fixture,
    pub(super) root: Session,
    pub(super) user: Session,
    pub(super) user_id: String,
    pub(super) other_admin: Session,
    /// An API key of `acme` (`metrics:read`).
    pub(super) key_id: String,
    /// Uploads of acme's admin: one with its content, one still pending.
    pub(super) stored_upload: String,
    pub(super) pending_upload: String,
    /// A workflow of acme and one of its runs.
    pub(super) workflow: String,
    pub(super) run: String,
    /// A notification in the acme user's inbox.
    pub(super) notification: String,
}

/// The content of the world's uploads.
pub(super) const CONTENT: &[u8] = b"hello, tepi";

pub(super) fn content_sha256() -> String {
    crate::secret::digest(std::str::from_utf8(CONTENT).unwrap())
}

pub(super) fn world() -> World {
    world_in(Fixture::new())
}

pub(super) fn world_in(f: Fixture) -> World {
    f.bootstrap();
    let root = f.session("acme", "root@acme.test", "root");
    let user_id = f.create_user(&root.access, "ann@acme.test", "ann", "user");
    let user = f.session("acme", "ann@acme.test", "ann");
    let created = f.send(
        req(Method::POST, "/v1/tenants")
            .token(&root.access)
            .json(json!({
                "id": "globex", "name": "Globex",
                "admin_email": "boss@globex.test", "admin_password": password("boss"),
            })),
    );
    assert_eq!(created.status(), 201, "{}", body_json(&created));
    let other_admin = f.session("globex", "boss@globex.test", "boss");
    let key = f.send(
        req(Method::POST, "/v1/api-keys")
            .token(&root.access)
            .json(json!({"name": "scraper", "scopes": ["metrics:read"]})),
    );
    assert_eq!(key.status(), 201, "{}", body_json(&key));
    let key_id = body_json(&key)["id"].as_str().unwrap().to_owned();
    World {
        f,
        root,
        user,
        user_id,
        other_admin,
        key_id,
        stored_upload: String::new(),
        pending_upload: String::new(),
        workflow: String::new(),
        run: String::new(),
        notification: String::new(),
    }
}

/// A workflow definition every test can use.
pub(super) fn workflow_definition() -> Value {
    json!({
        "name": "Greet",
        "trigger": {"type": "manual"},
        "steps": [{"type": "notify", "role": "admin", "message": "hello"}, {"type": "wait", "seconds": 5}]
    })
}

/// The world plus two uploads of acme's admin: one stored, one pending.
pub(super) fn world_with_uploads() -> World {
    let mut w = world();
    let declare = || {
        let created =
            w.f.send(
                req(Method::POST, "/v1/uploads")
                    .token(&w.root.access)
                    .json(json!({
                        "filename": "hello.txt", "content_type": "text/plain",
                        "size": CONTENT.len(), "sha256": content_sha256(),
                    })),
            );
        assert_eq!(created.status(), 201, "{}", body_json(&created));
        body_json(&created)["id"].as_str().unwrap().to_owned()
    };
    let stored = declare();
    let pending = declare();
    let put = w.f.send(
        req(Method::PUT, &format!("/v1/uploads/{stored}/content"))
            .token(&w.root.access)
            .raw("text/plain", CONTENT),
    );
    assert_eq!(put.status(), 200, "{}", body_json(&put));
    w.stored_upload = stored;
    w.pending_upload = pending;
    let workflow = w.f.send(
        req(Method::POST, "/v1/workflows")
            .token(&w.root.access)
            .json(workflow_definition()),
    );
    assert_eq!(workflow.status(), 201, "{}", body_json(&workflow));
    w.workflow = body_json(&workflow)["id"].as_str().unwrap().to_owned();
    let run = w.f.send(
        req(Method::POST, &format!("/v1/workflows/{}/runs", w.workflow)).token(&w.root.access),
    );
    assert_eq!(run.status(), 201, "{}", body_json(&run));
    w.run = body_json(&run)["id"].as_str().unwrap().to_owned();
    let sent = w.f.send(
        req(Method::POST, "/v1/notifications")
            .token(&w.root.access)
            .json(json!({"to": {"user_id": w.user_id}, "subject": "Hello", "body": "Welcome"})),
    );
    assert_eq!(sent.status(), 201, "{}", body_json(&sent));
    w.notification = body_json(&sent)["ids"][0].as_str().unwrap().to_owned();
    w
}

pub(super) fn problem_code(response: &Response<Bytes>) -> String {
    assert_eq!(
        header_str(response, "content-type"),
        Some("application/problem+json")
    );
    body_json(response)["code"].as_str().unwrap().to_owned()
}

#[test]
fn login_me_refresh_logout() {
    let w = world();
    let f = &w.f;

    let me = f.send(req(Method::GET, "/v1/auth/me").token(&w.user.access));
    assert_eq!(me.status(), 200);
    let body = body_json(&me);
    assert_eq!(body["email"], "ann@acme.test");
    assert_eq!(
        (body["tenant"].as_str(), body["role"].as_str()),
        (Some("acme"), Some("user"))
    );
    assert_eq!(body["id"], w.user_id.as_str());
    assert!(body.get("password_hash").is_none());

    let login = body_json(&f.login("acme", "ANN@acme.test ", &password("ann")));
    assert_eq!(
        login["token_type"], "Bearer",
        "emails match case-insensitively"
    );
    assert_eq!(login["expires_in"], 900);
    assert!(login["refresh_token"].as_str().unwrap().starts_with("tpr_"));

    f.advance(60);
    let refreshed = f
        .send(req(Method::POST, "/v1/auth/refresh").json(json!({"refresh_token": w.user.refresh})));
    assert_eq!(refreshed.status(), 200);
    assert_eq!(header_str(&refreshed, "cache-control"), Some("no-store"));
    let rotated = body_json(&refreshed);
    let new_refresh = rotated["refresh_token"].as_str().unwrap();
    assert_ne!(new_refresh, w.user.refresh, "rotated on use");
    let new_access = rotated["access_token"].as_str().unwrap();
    assert_eq!(
        f.send(req(Method::GET, "/v1/auth/me").token(new_access))
            .status(),
        200
    );

    let logout =
        f.send(req(Method::POST, "/v1/auth/logout").json(json!({"refresh_token": new_refresh})));
    assert_eq!(logout.status(), 204);
    let after =
        f.send(req(Method::POST, "/v1/auth/refresh").json(json!({"refresh_token": new_refresh})));
    assert_eq!(after.status(), 401);
    assert_eq!(problem_code(&after), "invalid_refresh_token");
    assert!(header_str(&after, "www-authenticate").is_some());
}

/// The `tepi_refresh` cookie a response sets (its whole `Set-Cookie`).
fn refresh_cookie(response: &Response<Bytes>) -> String {
    let set = header_str(response, "set-cookie").expect("a Set-Cookie header");
    assert!(set.starts_with("tepi_refresh="), "{set}");
    set.to_owned()
}

fn cookie_pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap()
}

#[test]
fn a_cookie_session_keeps_the_refresh_token_out_of_the_body() {
    let w = world();
    let f = &w.f;
    let login = f.send(req(Method::POST, "/v1/auth/login").json(json!({
        "tenant": "acme", "email": "ann@acme.test", "password": password("ann"), "session": "cookie",
    })));
    assert_eq!(login.status(), 200, "{}", body_json(&login));
    assert!(
        body_json(&login).get("refresh_token").is_none(),
        "script never sees it"
    );
    let set = refresh_cookie(&login);
    for attribute in [
        "; HttpOnly",
        "; Secure",
        "; SameSite=Strict",
        "; Path=/v1/auth",
        "; Max-Age=2592000",
    ] {
        assert!(set.contains(attribute), "{attribute} missing from {set}");
    }
    let first = cookie_pair(&set).to_owned();
    assert!(first.starts_with("tepi_refresh=tpr_"));

    // Refresh with `{}` and the cookie (among others): rotated, in the cookie.
    f.advance(60);
    let cookies = format!("theme=dark; {first}; other=1");
    let refreshed = f.send(
        req(Method::POST, "/v1/auth/refresh")
            .header("cookie", &cookies)
            .json(json!({})),
    );
    assert_eq!(refreshed.status(), 200, "{}", body_json(&refreshed));
    assert!(body_json(&refreshed).get("refresh_token").is_none());
    let second = cookie_pair(&refresh_cookie(&refreshed)).to_owned();
    assert_ne!(second, first, "rotated on use");
    let access = body_json(&refreshed)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        f.send(req(Method::GET, "/v1/auth/me").token(&access))
            .status(),
        200
    );

    // The rotated cookie presented again revokes the family, as in the body.
    let reused = f.send(
        req(Method::POST, "/v1/auth/refresh")
            .header("cookie", &first)
            .json(json!({})),
    );
    assert_eq!(reused.status(), 401);
    assert_eq!(problem_code(&reused), "refresh_token_reused");
    let dead = f.send(
        req(Method::POST, "/v1/auth/refresh")
            .header("cookie", &second)
            .json(json!({})),
    );
    assert_eq!(dead.status(), 401, "the successor died with its family");

    // Logout with the cookie ends the session and clears the cookie.
    let login = f.send(req(Method::POST, "/v1/auth/login").json(json!({
        "tenant": "acme", "email": "ann@acme.test", "password": password("ann"), "session": "cookie",
    })));
    let third = cookie_pair(&refresh_cookie(&login)).to_owned();
    let logout = f.send(
        req(Method::POST, "/v1/auth/logout")
            .header("cookie", &third)
            .json(json!({})),
    );
    assert_eq!(logout.status(), 204);
    let cleared = refresh_cookie(&logout);
    assert!(
        cleared.starts_with("tepi_refresh=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let after = f.send(
        req(Method::POST, "/v1/auth/refresh")
            .header("cookie", &third)
            .json(json!({})),
    );
    assert_eq!(after.status(), 401);
}

#[test]
fn without_a_token_or_a_well_formed_cookie_refresh_is_422() {
    let w = world();
    let f = &w.f;
    for cookie in [None, Some("tepi_refresh=not-a-token"), Some("tepi_refresh")] {
        let mut r = req(Method::POST, "/v1/auth/refresh").json(json!({}));
        if let Some(cookie) = cookie {
            r = r.header("cookie", cookie);
        }
        let answer = f.send(r);
        super::assert_field_error(&answer, "refresh_token", "required");
    }
    let body_login = f.send(req(Method::POST, "/v1/auth/login").json(json!({
        "tenant": "acme", "email": "ann@acme.test", "password": password("ann"), "session": "jar",
    })));
    super::assert_field_error(&body_login, "session", "invalid");
}

#[test]
fn reusing_a_rotated_refresh_token_revokes_the_family() {
    let w = world();
    let f = &w.f;
    let first = body_json(&f.send(
        req(Method::POST, "/v1/auth/refresh").json(json!({"refresh_token": w.user.refresh})),
    ));
    let successor = first["refresh_token"].as_str().unwrap().to_owned();

    let replay = f
        .send(req(Method::POST, "/v1/auth/refresh").json(json!({"refresh_token": w.user.refresh})));
    assert_eq!(replay.status(), 401);
    assert_eq!(problem_code(&replay), "refresh_token_reused");

    let victim =
        f.send(req(Method::POST, "/v1/auth/refresh").json(json!({"refresh_token": successor})));
    assert_eq!(victim.status(), 401, "the successor died with its family");
    assert_eq!(problem_code(&victim), "invalid_refresh_token");

    // Other sessions of the same user are other families and live on.
    let other = f.session("acme", "ann@acme.test", "ann");
    let ok =
        f.send(req(Method::POST, "/v1/auth/refresh").json(json!({"refresh_token": other.refresh})));
    assert_eq!(ok.status(), 200);
}

#[test]
fn refresh_tokens_expire_and_are_stored_only_as_digests() {
    let w = world();
    let f = &w.f;
    let stored = block_on(crate::ports::Sql::execute(
        &f.db,
        "SELECT token_hash FROM refresh_tokens",
        &[],
    ))
    .unwrap();
    let hashes: Vec<String> = crate::auth::store::each(&stored)
        .map(|r| r.text("token_hash").unwrap())
        .collect();
    assert!(!hashes.is_empty());
    assert!(
        !hashes.iter().any(|h| h == &w.user.refresh),
        "no plaintext token"
    );
    assert!(hashes.contains(&crate::secret::digest(&w.user.refresh)));

    f.advance(30 * 24 * 3600 + 1);
    let late = f
        .send(req(Method::POST, "/v1/auth/refresh").json(json!({"refresh_token": w.user.refresh})));
    assert_eq!(problem_code(&late), "invalid_refresh_token");
}

#[test]
fn unknown_user_unknown_tenant_and_wrong_password_answer_alike() {
    let w = world();
    let f = &w.f;
    let cases = [
        ("acme", "ann@acme.test", "wrong-password-here"),
        ("acme", "nobody@acme.test", "wrong-password-here"),
        ("initech", "ann@acme.test", "wrong-password-here"),
        ("globex", "ann@acme.test", "ann-long-enough-pass"),
    ];
    let mut seen = Vec::new();
    for (tenant, email, pw) in cases {
        let response = f.login(tenant, email, pw);
        assert_eq!(response.status(), 401, "{tenant}/{email}");
        let mut body = body_json(&response);
        body.as_object_mut().unwrap().remove("request_id");
        seen.push((
            body,
            header_str(&response, "www-authenticate").map(str::to_owned),
        ));
    }
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "identical answers: {seen:#?}"
    );
    assert_eq!(seen[0].0["code"], "invalid_credentials");
}

#[test]
fn refused_tokens_answer_401_with_a_challenge() {
    let w = world();
    let f = &w.f;
    let (_, rest) = w.user.access.split_once('.').unwrap();
    let none = format!(
        "{}.{}.",
        <base64ct::Base64UrlUnpadded as base64ct::Encoding>::encode_string(
            br#"{"alg":"none","kid":"k1"}"#
        ),
        rest.split_once('.').unwrap().0
    );
    let other_keys =
        crate::auth::keys::SigningKeys::parse("k1:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI")
            .unwrap();
    let forged = other_keys.sign(
        crate::auth::keys::AccessClaims {
            iss: "tepi".into(),
            aud: "tepi-api".into(),
            sub: w.user_id.clone(),
            tenant: "acme".into(),
            role: "admin".into(),
            jti: "x".into(),
        },
        START,
    );
    let cases = [
        (none.as_str(), "algorithm"),
        (forged.as_str(), "signature"),
        ("garbage", "malformed"),
    ];
    for (token, why) in cases {
        let response = f.send(req(Method::GET, "/v1/auth/me").token(token));
        assert_eq!(response.status(), 401, "{why}");
        assert_eq!(problem_code(&response), "invalid_token", "{why}");
        let challenge = header_str(&response, "www-authenticate").unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"tepi\", error=\"invalid_token\""),
            "{challenge}"
        );
        assert!(challenge.contains(why), "{why}: {challenge}");
    }
    let anonymous = f.send(req(Method::GET, "/v1/auth/me"));
    assert_eq!(problem_code(&anonymous), "unauthenticated");
    assert_eq!(
        header_str(&anonymous, "www-authenticate"),
        Some("Bearer realm=\"tepi\"")
    );

    f.advance(15 * 60 + 31);
    let expired = f.send(req(Method::GET, "/v1/auth/me").token(&w.user.access));
    assert_eq!(problem_code(&expired), "invalid_token");
    assert!(
        body_json(&expired)["detail"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[test]
fn tokens_for_another_issuer_or_audience_are_refused() {
    let w = world();
    let strict = Fixture::with_vars(&[
        (vars::JWT_SIGNING_KEYS, KEYS),
        (vars::JWT_AUDIENCE, "another-api"),
    ]);
    // Same keys, same database contents are irrelevant: the audience differs.
    let response = strict.send(req(Method::GET, "/v1/auth/me").token(&w.user.access));
    assert_eq!(response.status(), 401);
    assert!(
        body_json(&response)["detail"]
            .as_str()
            .unwrap()
            .contains("audience")
    );
}

#[test]
fn a_tenant_header_that_disagrees_with_the_token_is_refused() {
    let w = world();
    let f = &w.f;
    let cases = [
        (Some("acme"), 200, "matches"),
        (None, 200, "absent"),
        (Some("globex"), 403, "another tenant"),
        (Some("ACME"), 403, "malformed is not the same tenant"),
    ];
    for (header, status, why) in cases {
        let mut r = req(Method::GET, "/v1/auth/me").token(&w.user.access);
        if let Some(h) = header {
            r = r.tenant(h);
        }
        let response = f.send(r);
        assert_eq!(response.status(), status, "{why}");
        if status == 403 {
            assert_eq!(problem_code(&response), "tenant_mismatch");
        }
    }
}

#[test]
fn one_tenant_cannot_read_or_change_anything_of_another() {
    let w = world();
    let f = &w.f;
    let key = body_json(
        &f.send(
            req(Method::POST, "/v1/api-keys")
                .token(&w.root.access)
                .json(json!({"name": "prometheus", "scopes": ["metrics:read"]})),
        ),
    );
    let key_id = key["id"].as_str().unwrap();
    let user_path = format!("/v1/users/{}", w.user_id);
    let key_path = format!("/v1/api-keys/{key_id}");
    let attacker = w.other_admin.access.as_str();
    let attempts = [
        req(Method::GET, &user_path).token(attacker),
        req(Method::PATCH, &user_path)
            .token(attacker)
            .json(json!({"role": "admin"})),
        req(Method::PATCH, &user_path)
            .token(attacker)
            .json(json!({"password": "taken-over-password"})), // pragma: allowlist secret
        req(Method::DELETE, &user_path).token(attacker),
        req(Method::DELETE, &key_path).token(attacker),
    ];
    for attempt in attempts {
        let what = format!("{} {}", attempt.method, attempt.path);
        let response = f.send(attempt);
        assert_eq!(
            response.status(),
            404,
            "{what}: other tenants' ids do not exist"
        );
    }
    let users = body_json(&f.send(req(Method::GET, "/v1/users").token(attacker)));
    let emails: Vec<&str> = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        ["boss@globex.test"],
        "lists show the caller's tenant only"
    );
    let keys = body_json(&f.send(req(Method::GET, "/v1/api-keys").token(attacker)));
    assert_eq!(keys["items"], json!([]));
    let cross_header = f.send(req(Method::GET, "/v1/users").token(attacker).tenant("acme"));
    assert_eq!(problem_code(&cross_header), "tenant_mismatch");

    // Nothing of acme changed: the user logs in with the old password, keeps
    // the role, and the key still reads metrics.
    let me = body_json(&f.send(
        req(Method::GET, "/v1/auth/me").token(&f.session("acme", "ann@acme.test", "ann").access),
    ));
    assert_eq!(me["role"], "user");
    let scrape = f.send(req(Method::GET, "/metrics").token(key["key"].as_str().unwrap()));
    assert_eq!(scrape.status(), 200);
}

/// What a route needs in order to succeed for an allowed caller.
fn template(method: &Method, pattern: &str, w: &World) -> (String, Option<Value>) {
    let id = match (method.as_str(), pattern) {
        (_, p) if p.starts_with("/v1/workflows") => &w.workflow,
        (_, p) if p.starts_with("/v1/notifications") => &w.notification,
        (_, p) if p.starts_with("/v1/api-keys") => &w.key_id,
        ("PUT", "/v1/uploads/{id}/content") => &w.pending_upload,
        (_, p) if p.starts_with("/v1/uploads") => &w.stored_upload,
        _ => &w.user_id,
    };
    let path = match pattern {
        // Unsigned, and a handshake with a token nobody configured: Meta's
        // routes refuse everyone who cannot prove to be Meta.
        "/v1/meta/webhook" if method == Method::GET => {
            "/v1/meta/webhook?tenant=acme&hub.mode=subscribe&hub.verify_token=guess-guess-guess&hub.challenge=1".to_owned()
        }
        "/v1/meta/webhook" => "/v1/meta/webhook?tenant=acme".to_owned(),
        "/metrics/{grouping}" => "/metrics/job/matrix/instance/a".to_owned(),
        "/v1/ops/baselines/{branch}" if method == Method::GET => {
            "/v1/ops/baselines/feature/x?scenario=smoke&build=workers".to_owned()
        }
        "/v1/ops/baselines/{branch}" => "/v1/ops/baselines/feature/x".to_owned(),
        _ => pattern.replace("{id}", id).replace("{run_id}", &w.run),
    };
    let body = match (method.as_str(), pattern) {
        ("POST", "/v1/bootstrap") => Some(
            json!({"tenant": "late", "name": "Late", "email": "a@late.test", "password": password("late")}),
        ),
        ("POST", "/v1/auth/login") => {
            Some(json!({"tenant": "acme", "email": "ann@acme.test", "password": password("ann")}))
        }
        ("POST", "/api/rum") => Some(json!({"name": "LCP", "value": 1234})),
        ("POST", "/v1/auth/refresh" | "/v1/auth/logout") => {
            Some(json!({"refresh_token": "tpr_unknown"}))
        }
        ("POST", "/v1/users") => {
            Some(json!({"email": "new@x.test", "password": password("new"), "role": "user"}))
        }
        ("PATCH", "/v1/users/{id}") => Some(json!({"role": "user"})),
        ("POST", "/v1/api-keys") => Some(json!({"name": "k", "scopes": ["metrics:read"]})),
        ("POST", "/v1/tenants") => Some(
            json!({"id": "initech", "name": "Initech", "admin_email": "a@initech.test", "admin_password": password("ini")}),
        ),
        ("POST", "/v1/workflows") => Some(workflow_definition()),
        ("PATCH", "/v1/workflows/{id}") => Some(json!({"name": "Renamed"})),
        ("PUT", "/v1/meta/config") => Some(
            json!({"verify_token": "verify-token-0000", "app_secret": "app-secret-000000"}), // pragma: allowlist secret
        ),
        ("POST", "/v1/meta/webhook") => Some(json!({"object": "page", "entry": []})),
        ("POST", "/v1/notifications") => {
            Some(json!({"to": {"role": "admin"}, "subject": "s", "body": "b"}))
        }
        ("POST", "/v1/uploads") => Some(
            json!({"filename": "a.txt", "content_type": "text/plain", "size": CONTENT.len(), "sha256": content_sha256()}),
        ),
        ("PUT", "/v1/ops/baselines/{branch}") => Some(super::baselines::record("smoke", "workers")),
        ("POST", "/v1/ops/alerts") => Some(super::alerts::payload(
            "firing",
            &[("00000000000000a1", "firing", "TepiErrorRateHigh")],
        )),
        _ => None,
    };
    (path, body)
}

#[test]
fn rbac_matrix_holds_for_every_route_and_caller() {
    // Expected status per route for: anonymous, user, admin (operator
    // tenant), admin of another tenant. The `{id}` is acme's user or API
    // key, so the other tenant's admin gets 404: for them it does not exist.
    let expected: &[(&str, [u16; 4])] = &[
        ("GET /healthz", [200, 200, 200, 200]),
        ("GET /readyz", [200, 200, 200, 200]),
        ("GET /version", [200, 200, 200, 200]),
        ("GET /.well-known/jwks.json", [200, 200, 200, 200]),
        ("GET /metrics", [401, 403, 200, 403]),
        ("GET /metrics/workers", [401, 403, 200, 403]),
        ("PUT /metrics/{grouping}", [401, 403, 200, 403]),
        ("POST /metrics/{grouping}", [401, 403, 200, 403]),
        ("DELETE /metrics/{grouping}", [401, 403, 202, 403]),
        ("POST /api/rum", [204, 204, 204, 204]),
        ("GET /api/metrics/prometheus", [401, 403, 200, 403]),
        ("GET /v1/ops/metrics/history", [401, 403, 200, 403]),
        ("POST /v1/bootstrap", [401, 401, 401, 401]),
        ("POST /v1/auth/login", [200, 200, 200, 200]),
        ("POST /v1/auth/refresh", [401, 401, 401, 401]),
        ("POST /v1/auth/logout", [204, 204, 204, 204]),
        ("GET /v1/auth/me", [401, 200, 200, 200]),
        ("GET /v1/users", [401, 403, 200, 200]),
        ("POST /v1/users", [401, 403, 201, 201]),
        ("GET /v1/users/{id}", [401, 403, 200, 404]),
        ("PATCH /v1/users/{id}", [401, 403, 200, 404]),
        ("DELETE /v1/users/{id}", [401, 403, 204, 404]),
        ("GET /v1/api-keys", [401, 403, 200, 200]),
        ("POST /v1/api-keys", [401, 403, 201, 403]),
        ("DELETE /v1/api-keys/{id}", [401, 403, 204, 404]),
        ("POST /v1/tenants", [401, 403, 201, 403]),
        ("GET /v1/webhook-secret", [401, 403, 200, 200]),
        ("POST /v1/webhook-secret/rotate", [401, 403, 201, 201]),
        ("POST /v1/uploads", [401, 201, 201, 201]),
        ("GET /v1/uploads/{id}", [401, 200, 200, 404]),
        ("DELETE /v1/uploads/{id}", [401, 403, 204, 404]),
        ("PUT /v1/uploads/{id}/content", [401, 403, 200, 404]),
        ("GET /v1/uploads/{id}/content", [401, 200, 200, 404]),
        ("GET /v1/workflows", [401, 200, 200, 200]),
        ("POST /v1/workflows", [401, 403, 201, 201]),
        ("GET /v1/workflows/{id}", [401, 200, 200, 404]),
        ("PATCH /v1/workflows/{id}", [401, 403, 200, 404]),
        ("DELETE /v1/workflows/{id}", [401, 403, 204, 404]),
        ("POST /v1/workflows/{id}/runs", [401, 201, 201, 404]),
        ("GET /v1/workflows/{id}/runs", [401, 200, 200, 404]),
        ("GET /v1/workflows/{id}/runs/{run_id}", [401, 200, 200, 404]),
        ("GET /v1/meta/webhook", [403, 403, 403, 403]),
        ("POST /v1/meta/webhook", [401, 401, 401, 401]),
        ("GET /v1/meta/config", [401, 403, 200, 200]),
        ("PUT /v1/meta/config", [401, 403, 204, 204]),
        ("GET /v1/notifications", [401, 200, 200, 200]),
        ("POST /v1/notifications", [401, 403, 201, 201]),
        ("POST /v1/notifications/{id}/read", [401, 200, 404, 404]),
        ("GET /v1/jobs/dead-letters", [401, 403, 200, 200]),
        ("POST /v1/jobs/drain", [401, 403, 200, 403]),
        ("POST /v1/ops/alerts", [401, 403, 200, 403]),
        ("GET /v1/ops/alerts", [401, 403, 200, 403]),
        ("GET /v1/ops/baselines", [401, 403, 200, 403]),
        ("PUT /v1/ops/baselines/{branch}", [401, 403, 200, 403]),
        ("GET /v1/ops/baselines/{branch}", [401, 403, 404, 403]),
    ];
    let app = Fixture::new().app;
    let routes: Vec<String> = app.routes().map(|(m, p)| format!("{m} {p}")).collect();
    let listed: Vec<&str> = expected.iter().map(|(r, _)| *r).collect();
    assert_eq!(
        routes, listed,
        "every route has a row here, and only routes do"
    );
    for (route, statuses) in expected {
        // A fresh world per route. The admin who may write goes last, so
        // an allowed DELETE or POST cannot change the others' cases.
        let w = world_with_uploads();
        for i in [0, 1, 3, 2] {
            let caller = ["anonymous", "user", "admin", "other-tenant admin"][i];
            let token = match i {
                0 => None,
                1 => Some(w.user.access.as_str()),
                2 => Some(w.root.access.as_str()),
                _ => Some(w.other_admin.access.as_str()),
            };
            let (method, pattern) = route.split_once(' ').unwrap();
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let (path, body) = template(&method, pattern, &w);
            let put = method == Method::PUT && pattern.starts_with("/v1/uploads");
            let mut r = req(method, &path);
            r.token = token;
            r.body = body;
            if put {
                r = r.raw("text/plain", CONTENT);
            }
            let response = w.f.send(r);
            assert_eq!(
                response.status().as_u16(),
                statuses[i],
                "{route} as {caller}: {}",
                String::from_utf8_lossy(response.body())
            );
        }
    }
}

#[test]
fn without_signing_keys_protected_routes_answer_503_and_readyz_says_why() {
    let f = Fixture::with_vars(&[(vars::BOOTSTRAP_TOKEN, BOOTSTRAP)]);
    let ready = f.send(req(Method::GET, "/readyz"));
    assert_eq!(ready.status(), 503);
    let reason = body_json(&ready)["checks"]["config"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("JWT_SIGNING_KEYS: not set"), "{reason}");
    let cases = [
        req(Method::GET, "/v1/auth/me").token("whatever"),
        req(Method::GET, "/v1/users"),
        req(Method::GET, "/metrics").token("tpk_whatever"),
        req(Method::GET, "/.well-known/jwks.json"),
        req(Method::POST, "/v1/auth/login")
            .json(json!({"tenant": "acme", "email": "a@b.c", "password": "x"})),
        req(Method::POST, "/v1/auth/refresh").json(json!({"refresh_token": "tpr_x"})),
    ];
    for case in cases {
        let what = format!("{} {}", case.method, case.path);
        let response = f.send(case);
        assert_eq!(response.status(), 503, "{what}");
        assert_eq!(problem_code(&response), "auth_unavailable", "{what}");
    }
    assert_eq!(f.send(req(Method::GET, "/healthz")).status(), 200);

    let malformed = Fixture::with_vars(&[(vars::JWT_SIGNING_KEYS, "k1:not-a-seed")]);
    let reason = body_json(&malformed.send(req(Method::GET, "/readyz")))["checks"]["config"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("JWT_SIGNING_KEYS: key \"k1\""), "{reason}");
}

#[test]
fn bootstrap_happens_once_and_only_with_the_token() {
    let body = json!({"tenant": "acme", "name": "Acme", "email": "root@acme.test", "password": password("root")});
    let disabled = Fixture::with_vars(&[(vars::JWT_SIGNING_KEYS, KEYS)]);
    let off = disabled.send(
        req(Method::POST, "/v1/bootstrap")
            .token(BOOTSTRAP)
            .json(body.clone()),
    );
    assert_eq!(
        (off.status().as_u16(), problem_code(&off).as_str()),
        (403, "bootstrap_disabled")
    );

    let f = Fixture::new();
    let cases = [
        (None, 401, "unauthenticated"),
        (
            Some("wrong-token-wrong-token-wrong-token"),
            401,
            "invalid_token",
        ),
    ];
    for (token, status, code) in cases {
        let mut r = req(Method::POST, "/v1/bootstrap").json(body.clone());
        r.token = token;
        let response = f.send(r);
        assert_eq!(
            (response.status().as_u16(), problem_code(&response)),
            (status, code.to_owned())
        );
    }
    let weak = f.send(
        req(Method::POST, "/v1/bootstrap")
            .token(BOOTSTRAP)
            .json(json!({"tenant": "Acme!", "name": "", "email": "root", "password": "short"})), // pragma: allowlist secret
    );
    assert_eq!(weak.status(), 422);
    let fields: Vec<String> = body_json(&weak)["errors"]
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
            "tenant:invalid",
            "name:required",
            "email:invalid",
            "password:too_short"
        ]
    );

    let created = f.send(
        req(Method::POST, "/v1/bootstrap")
            .token(BOOTSTRAP)
            .json(body.clone()),
    );
    assert_eq!(created.status(), 201);
    let created = body_json(&created);
    assert_eq!(
        (created["id"].as_str(), created["operator"].as_bool()),
        (Some("acme"), Some(true))
    );
    assert_eq!(created["admin"]["role"], "admin");
    let again = f.send(req(Method::POST, "/v1/bootstrap").token(BOOTSTRAP).json(
        json!({"tenant": "other", "name": "Other", "email": "x@other.test", "password": password("x")}),
    ));
    assert_eq!(
        (again.status().as_u16(), problem_code(&again).as_str()),
        (409, "already_bootstrapped")
    );
    assert_eq!(
        f.login("acme", "root@acme.test", &password("root"))
            .status(),
        200
    );
}

#[test]
fn api_keys_are_shown_once_scoped_and_revocable() {
    let w = world();
    let f = &w.f;
    let created = f.send(
        req(Method::POST, "/v1/api-keys")
            .token(&w.root.access)
            .json(json!({"name": "prometheus", "scopes": ["metrics:read", "metrics:read"]})),
    );
    assert_eq!(created.status(), 201);
    let created = body_json(&created);
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("tpk_"));
    assert_eq!(
        created["scopes"],
        json!(["metrics:read"]),
        "duplicates folded"
    );

    let listed = body_json(&f.send(req(Method::GET, "/v1/api-keys").token(&w.root.access)));
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == created["id"]),
        "{listed}"
    );
    assert!(
        !listed.to_string().contains(&key),
        "the key is never shown again"
    );

    let scrape = f.send(req(Method::GET, "/metrics").token(&key));
    assert_eq!(scrape.status(), 200);
    assert!(
        std::str::from_utf8(scrape.body())
            .unwrap()
            .contains("http_requests_total")
    );
    assert_eq!(
        f.send(req(Method::GET, "/v1/users").token(&key)).status(),
        403,
        "keys act only within their scopes"
    );

    let push_only = body_json(
        &f.send(
            req(Method::POST, "/v1/api-keys")
                .token(&w.root.access)
                .json(json!({"name": "pusher", "scopes": ["metrics:push"]})),
        ),
    );
    let refused = f.send(req(Method::GET, "/metrics").token(push_only["key"].as_str().unwrap()));
    assert_eq!(refused.status(), 403);
    assert_eq!(problem_code(&refused), "insufficient_scope");
    assert!(
        header_str(&refused, "www-authenticate")
            .unwrap()
            .contains("scope=\"metrics:read\"")
    );

    let not_operator = f.send(
        req(Method::POST, "/v1/api-keys")
            .token(&w.other_admin.access)
            .json(json!({"name": "k", "scopes": ["metrics:read"]})),
    );
    assert_eq!(problem_code(&not_operator), "scope_not_grantable");
    let bad = f.send(
        req(Method::POST, "/v1/api-keys")
            .token(&w.root.access)
            .json(json!({"name": " ", "scopes": ["metrics:*"]})),
    );
    assert_eq!(bad.status(), 422);

    let path = format!("/v1/api-keys/{}", created["id"].as_str().unwrap());
    assert_eq!(
        f.send(req(Method::DELETE, &path).token(&w.root.access))
            .status(),
        204
    );
    let revoked = f.send(req(Method::GET, "/metrics").token(&key));
    assert_eq!(
        (revoked.status().as_u16(), problem_code(&revoked).as_str()),
        (401, "invalid_api_key")
    );
}

#[test]
fn admins_manage_users_within_the_rules() {
    let w = world();
    let f = &w.f;
    let admin = w.root.access.as_str();
    let dup = f.send(
        req(Method::POST, "/v1/users")
            .token(admin)
            .json(json!({"email": "Ann@acme.test", "password": password("dup"), "role": "user"})),
    );
    assert_eq!(
        (dup.status().as_u16(), problem_code(&dup).as_str()),
        (409, "email_taken")
    );
    let invalid = f.send(
        req(Method::POST, "/v1/users")
            .token(admin)
            .json(json!({"email": "nope", "password": "short", "role": "owner", "extra": 1})), // pragma: allowlist secret
    );
    assert_eq!(invalid.status(), 422);
    let invalid = body_json(&invalid);
    let fields: Vec<&str> = invalid["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password", "role", "extra"]);
    let created = f.send(
        req(Method::POST, "/v1/users")
            .token(admin)
            .json(json!({"email": "bob@acme.test", "password": password("bob"), "role": "user"})),
    );
    let location = header_str(&created, "location").unwrap().to_owned();
    assert_eq!(
        f.send(req(Method::GET, &location).token(admin)).status(),
        200
    );

    // A new password ends the user's sessions.
    let bob = f.session("acme", "bob@acme.test", "bob");
    let changed = f.send(
        req(Method::PATCH, &location)
            .token(admin)
            .json(json!({"password": password("bob2")})),
    );
    assert_eq!(changed.status(), 200);
    let refresh =
        f.send(req(Method::POST, "/v1/auth/refresh").json(json!({"refresh_token": bob.refresh})));
    assert_eq!(refresh.status(), 401);
    assert_eq!(
        f.login("acme", "bob@acme.test", &password("bob2")).status(),
        200
    );
    let empty = f.send(req(Method::PATCH, &location).token(admin).json(json!({})));
    assert_eq!(empty.status(), 422);

    // The last admin can be neither demoted nor deleted.
    let root_id = body_json(&f.send(req(Method::GET, "/v1/auth/me").token(admin)))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let root_path = format!("/v1/users/{root_id}");
    let demote = f.send(
        req(Method::PATCH, &root_path)
            .token(admin)
            .json(json!({"role": "user"})),
    );
    assert_eq!(
        (demote.status().as_u16(), problem_code(&demote).as_str()),
        (409, "last_admin")
    );
    let delete = f.send(req(Method::DELETE, &root_path).token(admin));
    assert_eq!(problem_code(&delete), "last_admin");
    // With a second admin, the first may go.
    let promote = f.send(
        req(Method::PATCH, &location)
            .token(admin)
            .json(json!({"role": "admin"})),
    );
    assert_eq!(body_json(&promote)["role"], "admin");
    assert_eq!(
        f.send(req(Method::DELETE, &root_path).token(admin))
            .status(),
        204
    );
    assert_eq!(
        f.login("acme", "root@acme.test", &password("root"))
            .status(),
        401
    );
    let gone = f.send(req(Method::GET, "/v1/auth/me").token(admin));
    assert_eq!(
        problem_code(&gone),
        "invalid_token",
        "a deleted user's token no longer reads /me"
    );
}

#[test]
fn user_lists_are_paginated_with_a_cursor() {
    let w = world();
    let f = &w.f;
    let admin = w.root.access.as_str();
    let mut seen = Vec::new();
    let mut path = "/v1/users?limit=1".to_owned();
    loop {
        let page = body_json(&f.send(req(Method::GET, &path).token(admin)));
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 1);
        seen.extend(
            items
                .iter()
                .map(|u| u["email"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/users?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    crate::sort::sort(&mut seen);
    assert_eq!(seen, ["ann@acme.test", "root@acme.test"]);
    for bad in [
        "/v1/users?limit=0",
        "/v1/users?limit=101",
        "/v1/users?limit=x",
    ] {
        let response = f.send(req(Method::GET, bad).token(admin));
        assert_eq!(response.status(), 422, "{bad}");
        assert_eq!(body_json(&response)["errors"][0]["field"], "limit");
    }
}

#[test]
fn jwks_is_public_cacheable_and_matches_the_signing_key() {
    let w = world();
    let response = w.f.send(req(Method::GET, "/.well-known/jwks.json"));
    assert_eq!(response.status(), 200);
    assert_eq!(
        header_str(&response, "cache-control"),
        Some("public, max-age=3600")
    );
    let jwks = body_json(&response);
    assert_eq!(jwks["keys"][0]["kid"], "k1");
    let header = jwt_compact::UntrustedToken::new(&w.user.access).unwrap();
    assert_eq!(header.header().key_id.as_deref(), Some("k1"));
}

#[test]
fn access_logs_name_the_verified_tenant() {
    let w = world();
    let ((), lines) = crate::log::capture::lines(|| {
        w.f.send(req(Method::GET, "/v1/auth/me").token(&w.other_admin.access));
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["tenant"], "globex", "from the token, not a header");
    assert_eq!(line["route"], "/v1/auth/me");
}

/// Stands in for a second request racing a refresh: right after the
/// rotation wins, the family is revoked (as the loser of a concurrent reuse
/// does), before the successor token is stored.
struct RevokeAfterRotation<'a>(&'a SqliteSql);

#[async_trait::async_trait(?Send)]
impl crate::ports::Sql for RevokeAfterRotation<'_> {
    async fn execute(
        &self,
        statement: &str,
        params: &[crate::ports::SqlValue],
    ) -> Result<crate::ports::Rows, crate::ports::PortError> {
        let rows = self.0.execute(statement, params).await?;
        if statement == crate::auth::store::ROTATE_REFRESH && !rows.rows.is_empty() {
            self.0
                .execute(
                    "UPDATE refresh_tokens SET revoked_at = 1 WHERE family_id = \
                     (SELECT family_id FROM refresh_tokens WHERE id = ?1)",
                    &params[..1],
                )
                .await?;
        }
        Ok(rows)
    }
}

#[test]
fn a_successor_stored_after_its_family_was_revoked_does_not_survive() {
    let w = world();
    let racing = RevokeAfterRotation(&w.f.db);
    let clock = SteppingClock::new(w.f.now.get(), 1_000);
    let ports = Ports {
        sql: Some(&racing),
        ..crate::testing::bare_ports(&w.f.entropy, &clock)
    };
    let request = Request::post("/v1/auth/refresh")
        .header("content-type", "application/json")
        .body(Bytes::from(
            json!({"refresh_token": w.user.refresh}).to_string(),
        ))
        .unwrap();
    let response = block_on(w.f.app.handle(request, &ports, w.f.now.get()));
    assert_eq!(response.status(), 401);
    assert_eq!(problem_code(&response), "refresh_token_reused");
    let alive = block_on(crate::ports::Sql::execute(
        &w.f.db,
        "SELECT COUNT(*) AS n FROM refresh_tokens r JOIN users u ON u.id = r.user_id \
         WHERE u.email = 'ann@acme.test' AND r.revoked_at IS NULL",
        &[],
    ))
    .unwrap();
    assert_eq!(
        crate::auth::store::first(&alive)
            .unwrap()
            .integer("n")
            .unwrap(),
        0,
        "no live token is left in the raced family"
    );
}

/// A demoted or deleted admin's access token stays valid for reads until it
/// expires, but changes nothing: authority to change is read live, and a
/// demotion or deletion ends the account's sessions.
#[test]
fn a_demoted_or_deleted_admin_changes_nothing_with_an_old_token() {
    let w = world_with_uploads();
    let f = &w.f;
    let second_id = f.create_user(&w.root.access, "sam@acme.test", "sam", "admin");
    let sam = f.session("acme", "sam@acme.test", "sam");
    let demote = f.send(
        req(Method::PATCH, &format!("/v1/users/{second_id}"))
            .token(&w.root.access)
            .json(json!({"role": "user"})),
    );
    assert_eq!(demote.status(), 200, "{}", body_json(&demote));

    // The old token still says admin.
    let promote_self = f.send(
        req(Method::PATCH, &format!("/v1/users/{second_id}"))
            .token(&sam.access)
            .json(json!({"role": "admin"})),
    );
    assert_eq!(
        promote_self.status(),
        403,
        "re-promoting itself: {}",
        body_json(&promote_self)
    );
    let create = f.send(req(Method::POST, "/v1/users").token(&sam.access).json(
        json!({"email": "mallory@acme.test", "password": password("mallory"), "role": "admin"}),
    ));
    assert_eq!(create.status(), 403, "{}", body_json(&create));
    let read = f.send(req(Method::GET, "/v1/users").token(&sam.access));
    assert_eq!(read.status(), 200, "reads trust the token until it expires");
    // Nor on a user route whose handler grants admins more (deleting
    // someone else's upload).
    let upload = f
        .send(req(Method::DELETE, &format!("/v1/uploads/{}", w.pending_upload)).token(&sam.access));
    assert_eq!(
        upload.status(),
        403,
        "another's upload: {}",
        body_json(&upload)
    );
    let refresh =
        f.send(req(Method::POST, "/v1/auth/refresh").json(json!({"refresh_token": sam.refresh})));
    assert_eq!(
        refresh.status(),
        401,
        "the demotion ended the sessions: {}",
        body_json(&refresh)
    );

    // Deleted: its token cannot create anything either.
    let third_id = f.create_user(&w.root.access, "tia@acme.test", "tia", "admin");
    let tia = f.session("acme", "tia@acme.test", "tia");
    let delete =
        f.send(req(Method::DELETE, &format!("/v1/users/{third_id}")).token(&w.root.access));
    assert_eq!(delete.status(), 204);
    let create = f.send(
        req(Method::POST, "/v1/users")
            .token(&tia.access)
            .json(json!({"email": "eve@acme.test", "password": password("eve"), "role": "admin"})),
    );
    assert_eq!(create.status(), 401, "{}", body_json(&create));
    assert_eq!(body_json(&create)["code"], "invalid_token");
    // A deleted account's token writes nothing anywhere.
    let run = f.send(
        req(Method::POST, &format!("/v1/workflows/{}/runs", w.workflow))
            .token(&tia.access)
            .json(json!({"input": {}})),
    );
    assert_eq!(run.status(), 401, "{}", body_json(&run));
}

/// A header the adapter could not carry is refused with its name, before
/// anything runs: an `Idempotency-Key` lost that way must not let a
/// retried create run twice.
#[test]
fn a_header_the_platform_could_not_carry_is_refused_not_dropped() {
    let w = world();
    let create = || {
        w.f.send(
            req(Method::POST, "/v1/workflows")
                .token(&w.root.access)
                .unreadable("idempotency-key")
                .json(json!({"name": "once", "trigger": {"type": "manual"}, "steps": [{"type": "wait", "seconds": 1}]})),
        )
    };
    for _ in 0..2 {
        let response = create();
        assert_eq!(response.status(), 400);
        let body = body_json(&response);
        assert_eq!(body["code"], "malformed_header");
        assert_eq!(body["header"], "idempotency-key");
    }
    let listed =
        w.f.send(req(Method::GET, "/v1/workflows").token(&w.root.access));
    let listed = body_json(&listed);
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert!(!names.contains(&"once"), "nothing was created: {names:?}");
    let probe =
        w.f.send(req(Method::GET, "/healthz").unreadable("x-custom"));
    assert_eq!(probe.status(), 400, "on every route");
}
