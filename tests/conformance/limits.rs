//! Rate limiting and caching over HTTP. The build under test runs with
//! `RATE_LIMIT_API=1/10s;burst=100` (scripts/serve.sh): authenticated calls
//! of one subject get 100 at once, then one every 10 s. The refill is slow
//! on purpose: which calls are admitted then depends on how many were sent,
//! not on how fast the machine answers them.

use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::auth::{member, metrics_key, other_tenant_admin, root, with_token};
use crate::{assert_problem, get};

/// The gates' `api` policy (scripts/serve.sh).
const BURST: usize = 100;
const REFILL_SECS: u64 = 10;

fn cache_count(result: &str) -> u64 {
    let bearer = format!("Bearer {}", metrics_key());
    let text = get("/metrics", &[("authorization", &bearer)]).body;
    let series = format!("http_cache_requests_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.parse().expect("a counter"))
}

#[test]
fn a_burst_is_refused_with_429_and_recovers_after_retry_after() {
    // `member` spent one call of this subject already.
    let (_, burst) = member("burst@conformance.test", "user");
    let started = Instant::now();
    let mut replies = Vec::new();
    // However slow each answer, at most one call per 10 s refills: a 429
    // comes within the burst plus one call per 10 s that the loop has run.
    let refused = loop {
        let reply = with_token("GET", "/v1/auth/me", &burst.access, &[]);
        let status = reply.status;
        replies.push(reply);
        if status != 200 {
            break replies.last().expect("just pushed");
        }
        let refills = usize::try_from(started.elapsed().as_secs() / REFILL_SECS).unwrap_or(0);
        assert!(
            replies.len() <= BURST + refills + 1,
            "{} calls admitted in {:?}: more than a burst of {BURST} and one per {REFILL_SECS} s",
            replies.len(),
            started.elapsed()
        );
    };
    let admitted = replies.len() - 1;
    assert!(
        admitted + 1 >= BURST,
        "the whole burst passes before the first refusal: {admitted} admitted"
    );
    assert_problem(refused, 429, "rate_limited", "over the burst");
    assert_eq!(refused.header("ratelimit-policy"), Some("\"api\";q=1;w=10"));
    assert!(
        refused
            .header("ratelimit")
            .is_some_and(|r| r.starts_with("\"api\";r=0;t=")),
        "{:?}",
        refused.header("ratelimit")
    );
    let retry: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=REFILL_SECS).contains(&retry), "{retry}");
    assert!(
        replies[0].header("ratelimit").is_some(),
        "allowed answers carry RateLimit"
    );

    // Another tenant, and another subject of the same tenant, are not limited.
    assert_eq!(
        with_token("GET", "/v1/auth/me", &other_tenant_admin().access, &[]).status,
        200
    );
    assert_eq!(
        with_token("GET", "/v1/auth/me", &root().access, &[]).status,
        200
    );

    sleep(Duration::from_secs(retry));
    let again = with_token("GET", "/v1/auth/me", &burst.access, &[]);
    assert_eq!(again.status, 200, "admitted again after Retry-After");
}

#[test]
fn etags_revalidate_public_and_private_representations() {
    let jwks = get("/.well-known/jwks.json", &[]);
    let tag = jwks.header("etag").expect("ETag").to_owned();
    assert!(tag.starts_with('"'), "strong: {tag}");
    let not_modified = get("/.well-known/jwks.json", &[("if-none-match", &tag)]);
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());

    let (_, ann) = member("etag@conformance.test", "user");
    let mine = with_token("GET", "/v1/auth/me", &ann.access, &[]);
    assert_eq!(mine.header("cache-control"), Some("private, no-cache"));
    let tag = mine.header("etag").expect("ETag").to_owned();
    let same = with_token(
        "GET",
        "/v1/auth/me",
        &ann.access,
        &[("if-none-match", &tag)],
    );
    assert_eq!(same.status, 304);
    let someone_else = with_token(
        "GET",
        "/v1/auth/me",
        &root().access,
        &[("if-none-match", &tag)],
    );
    assert_eq!(
        someone_else.status, 200,
        "another user's data has another tag"
    );
}

#[test]
fn shared_responses_are_cached_and_private_ones_are_not() {
    let before = (cache_count("hit"), cache_count("miss"));
    for _ in 0..3 {
        assert_eq!(get("/.well-known/jwks.json", &[]).status, 200);
    }
    let after = (cache_count("hit"), cache_count("miss"));
    assert!(
        after.0 - before.0 >= 2,
        "later JWKS reads are shared-cache hits: {before:?} → {after:?}"
    );

    // Two users read /v1/auth/me in turn: each sees only themselves, and
    // the answers say no shared cache may keep them.
    let (_, a) = member("private-a@conformance.test", "user");
    let (_, b) = member("private-b@conformance.test", "user");
    for _ in 0..2 {
        for (session, email) in [
            (&a, "private-a@conformance.test"),
            (&b, "private-b@conformance.test"),
        ] {
            let reply = with_token("GET", "/v1/auth/me", &session.access, &[]);
            assert_eq!(reply.json()["email"], email);
            assert_eq!(reply.header("cache-control"), Some("private, no-cache"));
            let vary: Vec<&str> = reply
                .headers
                .get_all("vary")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            assert!(vary.iter().any(|v| v.contains("Authorization")), "{vary:?}");
        }
    }
    assert_eq!(
        cache_count("hit") - after.0,
        0,
        "private reads never touch the shared cache"
    );
}
