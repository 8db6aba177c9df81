//! What the operator console needs from each build: its files with their
//! security headers, the browser session in an `HttpOnly` cookie, and the
//! dashboard's minute history (written after a request on Workers, inside
//! it on Spin).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::auth::{operator_login, root, with_token};
use crate::{get, send};

#[test]
fn the_console_is_served_with_a_strict_content_security_policy() {
    let page = get("/console/", &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.header("content-type")
            .unwrap_or("")
            .starts_with("text/html"),
        "{:?}",
        page.header("content-type")
    );
    assert!(page.body.contains("/console/app.js"), "{}", page.body);
    let csp = page.header("content-security-policy").unwrap_or("");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));

    let script = get("/console/app.js", &[]);
    assert_eq!(script.status, 200);
    assert!(
        script
            .header("content-type")
            .unwrap_or("")
            .contains("javascript"),
        "{:?}",
        script.header("content-type")
    );
    assert!(script.header("content-security-policy").is_some());
    // The API's own paths are still the API's.
    assert_eq!(get("/healthz", &[]).status, 200);
}

/// The `tepi_refresh=…` pair of a response's `Set-Cookie`.
fn cookie(set_cookie: Option<&str>) -> String {
    let set = set_cookie.expect("a Set-Cookie header");
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/v1/auth"] {
        assert!(set.contains(attribute), "{attribute} missing: {set}");
    }
    set.split(';').next().unwrap().to_owned()
}

#[test]
fn a_browser_session_lives_in_an_http_only_cookie() {
    let login = operator_login(&json!({"session": "cookie"}));
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(login.json().get("refresh_token").is_none());
    let first = cookie(login.header("set-cookie"));

    let json = [
        ("content-type", "application/json"),
        ("cookie", first.as_str()),
    ];
    let refreshed = send("POST", "/v1/auth/refresh", &json, b"{}");
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    let second = cookie(refreshed.header("set-cookie"));
    assert_ne!(second, first, "rotated");
    let access = refreshed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(with_token("GET", "/v1/auth/me", &access, &[]).status, 200);

    let json = [
        ("content-type", "application/json"),
        ("cookie", second.as_str()),
    ];
    let logout = send("POST", "/v1/auth/logout", &json, b"{}");
    assert_eq!(logout.status, 204);
    assert!(
        logout
            .header("set-cookie")
            .unwrap_or("")
            .contains("Max-Age=0")
    );
    let after = send("POST", "/v1/auth/refresh", &json, b"{}");
    assert_eq!(after.status, 401, "{}", after.body);
}

#[test]
fn the_dashboard_history_keeps_minute_snapshots() {
    let admin = root();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        // Traffic in this minute: its first request takes the snapshot.
        assert_eq!(get("/healthz", &[]).status, 200);
        let reply = with_token(
            "GET",
            "/v1/ops/metrics/history?minutes=5",
            &admin.access,
            &[],
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let body = reply.json();
        let points = body["points"].as_array().unwrap();
        let live = points.last().unwrap();
        assert_eq!(live["live"], true);
        assert!(live["requests"]["total"].as_f64().unwrap() >= 1.0, "{body}");
        assert!(live["queues"]["workflows"]["depth"].is_number(), "{body}");
        if points.len() >= 2 {
            assert!(points[0].get("live").is_none());
            assert!(points[0]["t"].as_i64() <= live["t"].as_i64());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no minute snapshot was kept within 90 s: {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let refused = with_token(
        "GET",
        "/v1/ops/metrics/history?minutes=0",
        &admin.access,
        &[],
    );
    assert_eq!(refused.status, 422, "{}", refused.body);
}
