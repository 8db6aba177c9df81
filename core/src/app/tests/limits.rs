//! Rate limiting and caching through `App::handle`.

use http::Method;

use super::auth::{Fixture, password, problem_code, req, world, world_in};
use super::{body_json, header_str};
use crate::ports::PortError;
use crate::ratelimit::{Limiter, RouteClass};

/// 10 per second for authenticated calls, bursts of 3.
const API: (&str, &str) = ("RATE_LIMIT_API", "10/1s;burst=3");

fn me(f: &Fixture, token: &str) -> http::Response<bytes::Bytes> {
    f.send(req(Method::GET, "/v1/auth/me").token(token))
}

#[test]
fn a_burst_gets_429_with_headers_and_recovers_after_retry_after() {
    let f = Fixture::with_vars(&[
        (crate::config::vars::JWT_SIGNING_KEYS, super::KEYS),
        (
            crate::config::vars::BOOTSTRAP_TOKEN,
            "test-bootstrap-token-0123456789abcdef",
        ),
        API,
    ]);
    let w = world_in(f);
    let f = &w.f;
    let remaining: Vec<Option<String>> = (0..3)
        .map(|_| {
            let response = me(f, &w.user.access);
            assert_eq!(response.status(), 200);
            assert_eq!(
                header_str(&response, "ratelimit-policy"),
                Some("\"api\";q=10;w=1")
            );
            header_str(&response, "ratelimit").map(str::to_owned)
        })
        .collect();
    assert_eq!(
        remaining
            .iter()
            .map(|r| r.as_deref().unwrap())
            .collect::<Vec<_>>(),
        ["\"api\";r=2;t=1", "\"api\";r=1;t=1", "\"api\";r=0;t=1"],
        "allowed responses carry RateLimit too"
    );
    let refused = me(f, &w.user.access);
    assert_eq!(refused.status(), 429);
    assert_eq!(problem_code(&refused), "rate_limited");
    assert_eq!(header_str(&refused, "retry-after"), Some("1"));
    assert_eq!(header_str(&refused, "ratelimit"), Some("\"api\";r=0;t=1"));
    assert_eq!(body_json(&refused)["retry_after"], 1);

    f.advance(1);
    assert_eq!(
        me(f, &w.user.access).status(),
        200,
        "recovered after Retry-After"
    );
    let text = super::scrape(&f.app, None);
    assert!(
        text.contains("http_rate_limited_total{route_class=\"api\"} 1\n"),
        "{text}"
    );
}

#[test]
fn every_route_class_has_its_refusals_counted_and_exposed() {
    let mut metrics = crate::metrics::HttpMetrics::default();
    for class in RouteClass::ALL {
        metrics.record_rate_limited(class.as_str());
    }
    let text = metrics.encode();
    for class in RouteClass::ALL {
        let series = format!(
            "http_rate_limited_total{{route_class=\"{}\"}} 1\n",
            class.as_str()
        );
        assert!(text.contains(&series), "{class:?} missing from\n{text}");
    }
}

#[test]
fn one_tenants_burst_does_not_limit_another() {
    let f = Fixture::with_vars(&[
        (crate::config::vars::JWT_SIGNING_KEYS, super::KEYS),
        (
            crate::config::vars::BOOTSTRAP_TOKEN,
            "test-bootstrap-token-0123456789abcdef",
        ),
        API,
    ]);
    let w = world_in(f);
    while me(&w.f, &w.user.access).status() == 200 {}
    assert_eq!(me(&w.f, &w.user.access).status(), 429);
    assert_eq!(
        me(&w.f, &w.other_admin.access).status(),
        200,
        "globex is not acme"
    );
    assert_eq!(
        me(&w.f, &w.root.access).status(),
        200,
        "nor another acme user"
    );
}

/// Locally (`wrangler dev`) a client can send `CF-Connecting-IP` itself;
/// with `TRUST_PLATFORM_PEER=false` a new address buys no new budget.
#[test]
fn an_untrusted_platform_peer_buys_no_budget() {
    let version = |f: &Fixture, peer: &str| {
        f.send(req(Method::GET, "/version").peer(peer))
            .status()
            .as_u16()
    };
    let vars = |trust: &'static str| {
        Fixture::with_vars(&[
            (crate::config::vars::JWT_SIGNING_KEYS, super::KEYS),
            ("RATE_LIMIT_PUBLIC", "1/1m;burst=2"),
            (crate::config::vars::TRUST_PLATFORM_PEER, trust),
        ])
    };
    let local = vars("false");
    let statuses: Vec<u16> = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        .iter()
        .map(|peer| version(&local, peer))
        .collect();
    assert_eq!(
        statuses,
        [200, 200, 429],
        "one budget, whatever the header says"
    );
    let deployed = vars("true");
    let statuses: Vec<u16> = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        .iter()
        .map(|peer| version(&deployed, peer))
        .collect();
    assert_eq!(
        statuses,
        [200, 200, 200],
        "the platform's address is the client's"
    );
}

#[test]
fn anonymous_callers_are_limited_by_client_address() {
    let f = Fixture::with_vars(&[
        (crate::config::vars::JWT_SIGNING_KEYS, super::KEYS),
        ("RATE_LIMIT_PUBLIC", "1/1m;burst=2"),
        (crate::config::vars::TRUSTED_PROXIES, "10.0.0.2"),
    ]);
    let version = |peer: &str, xff: Option<&str>| {
        let mut r = req(Method::GET, "/version").peer(peer);
        if let Some(x) = xff {
            r = r.header("x-forwarded-for", x);
        }
        f.send(r).status().as_u16()
    };
    assert_eq!(
        [version("198.51.100.1", None), version("198.51.100.1", None)],
        [200, 200]
    );
    assert_eq!(version("198.51.100.1", None), 429);
    assert_eq!(
        version("198.51.100.1", Some("203.0.113.9")),
        429,
        "a direct client cannot pick its address with X-Forwarded-For"
    );
    assert_eq!(version("198.51.100.2", None), 200, "another address");
    assert_eq!(
        version("10.0.0.2", Some("203.0.113.9")),
        200,
        "behind the trusted proxy: the forwarded client"
    );
    assert_eq!(
        f.send(req(Method::GET, "/healthz").peer("198.51.100.1"))
            .status(),
        200,
        "probes are never limited"
    );
}

#[test]
fn fresh_instances_share_limits_through_sql() {
    let f = Fixture::new().stateless(&[API]);
    let w = world_in(f);
    let statuses: Vec<u16> = (0..4)
        .map(|_| me(&w.f, &w.user.access).status().as_u16())
        .collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 429],
        "every request a new App, one budget"
    );
    w.f.advance(1);
    assert_eq!(me(&w.f, &w.user.access).status(), 200);
}

struct Deny;

#[async_trait::async_trait(?Send)]
impl Limiter for Deny {
    async fn allow(&self, class: &str, key: &str) -> Result<bool, PortError> {
        Ok(!(class == RouteClass::Api.as_str() && key.starts_with("api:t:acme:")))
    }
}

#[test]
fn the_cross_instance_limiter_has_the_last_word() {
    let mut f = Fixture::new();
    f.limiter = Some(Box::new(Deny));
    let w = world_in(f);
    let refused = me(&w.f, &w.user.access);
    assert_eq!(
        refused.status(),
        429,
        "the local table admitted, the binding did not"
    );
    assert_eq!(
        header_str(&refused, "ratelimit").map(|r| r.contains(";r=0;")),
        Some(true)
    );
    assert_eq!(me(&w.f, &w.other_admin.access).status(), 200);
}

#[test]
fn etags_answer_304_for_public_and_private_json() {
    let w = world();
    let f = &w.f;
    let jwks = f.send(req(Method::GET, "/.well-known/jwks.json"));
    assert_eq!(
        header_str(&jwks, "cache-control"),
        Some("public, max-age=3600")
    );
    let tag = header_str(&jwks, "etag").unwrap().to_owned();
    let again = f.send(req(Method::GET, "/.well-known/jwks.json").header("if-none-match", &tag));
    assert_eq!(again.status(), 304);
    assert!(again.body().is_empty());
    assert_eq!(header_str(&again, "etag"), Some(tag.as_str()));

    let mine = me(f, &w.user.access);
    assert_eq!(
        header_str(&mine, "cache-control"),
        Some("private, no-cache")
    );
    let vary: Vec<&str> = mine
        .headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        vary,
        ["Origin, Authorization"],
        "one line: spin-sdk 5.2 keeps one value per name"
    );
    let tag = header_str(&mine, "etag").unwrap().to_owned();
    let unchanged = f.send(
        req(Method::GET, "/v1/auth/me")
            .token(&w.user.access)
            .header("if-none-match", &tag),
    );
    assert_eq!(unchanged.status(), 304);
    let other = f.send(
        req(Method::GET, "/v1/auth/me")
            .token(&w.root.access)
            .header("if-none-match", &tag),
    );
    assert_eq!(other.status(), 200, "another user's representation differs");
    let stale = f.send(
        req(Method::GET, "/v1/auth/me")
            .token(&w.user.access)
            .header("if-none-match", "\"old\""),
    );
    assert_eq!(stale.status(), 200);

    let login = f.login("acme", "ann@acme.test", &password("ann"));
    assert_eq!(
        header_str(&login, "cache-control"),
        Some("no-store"),
        "tokens are never cached"
    );
    assert!(header_str(&login, "etag").is_none());
    let text = super::scrape(&f.app, None);
    assert!(
        text.contains("http_cache_requests_total{result=\"revalidated\"} 2\n"),
        "{text}"
    );
}

#[test]
fn shared_responses_come_from_the_shared_cache_and_private_ones_never_do() {
    let f = Fixture::new().stateless(&[]);
    let w = world_in(f);
    let f = &w.f;
    let first = f.send(req(Method::GET, "/.well-known/jwks.json"));
    let second = f.send(req(Method::GET, "/.well-known/jwks.json"));
    assert_eq!(first.body(), second.body());
    assert_eq!(me(f, &w.user.access).status(), 200);
    let users = f.send(req(Method::GET, "/v1/users").token(&w.root.access));
    assert_eq!(users.status(), 200);

    let stored: Vec<String> =
        f.kv.keys()
            .into_iter()
            .filter(|k| k.starts_with("cache:"))
            .collect();
    assert_eq!(stored.len(), 1, "only the JWKS: {stored:?}");
    assert!(stored[0].ends_with(":/.well-known/jwks.json"), "{stored:?}");
    let with_query = f.send(req(Method::GET, "/.well-known/jwks.json?bust=1"));
    assert_eq!(with_query.status(), 200);
    let count =
        f.kv.keys()
            .iter()
            .filter(|k| k.starts_with("cache:"))
            .count();
    assert_eq!(count, 1, "a query string cannot mint new entries");
    for key in &stored {
        let value = String::from_utf8(f.kv.get_raw(key).unwrap()).unwrap();
        assert!(
            !value.contains("ann@acme.test") && !value.contains("usr_"),
            "no tenant data: {value}"
        );
    }
    let scraped = f.send(req(Method::GET, "/metrics").token(&w.root.access));
    let text = String::from_utf8(scraped.body().to_vec()).unwrap();
    assert!(
        text.contains("http_cache_requests_total{result=\"miss\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("http_cache_requests_total{result=\"hit\"} 2\n"),
        "{text}"
    );
}

#[test]
fn refused_callers_are_limited_as_themselves_not_by_address() {
    let f = Fixture::with_vars(&[
        (crate::config::vars::JWT_SIGNING_KEYS, super::KEYS),
        (
            crate::config::vars::BOOTSTRAP_TOKEN,
            "test-bootstrap-token-0123456789abcdef",
        ),
        ("RATE_LIMIT_API", "1/1m;burst=2"),
    ]);
    let w = world_in(f);
    let users = |token: &str| {
        w.f.send(
            req(Method::GET, "/metrics")
                .token(token)
                .peer("198.51.100.1"),
        )
        .status()
        .as_u16()
    };
    assert_eq!([users(&w.user.access), users(&w.user.access)], [403, 403]);
    assert_eq!(
        users(&w.user.access),
        429,
        "403s spend the user's own budget"
    );
    assert_eq!(
        users(&w.root.access),
        200,
        "the admin at the same address is unaffected"
    );
}
