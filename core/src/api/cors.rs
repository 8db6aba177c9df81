//! CORS from a configured origin allowlist. Origins outside the list get no
//! grant; preflights from them are refused with a problem document.

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

use crate::api::router::method_list;

/// Request headers a browser may send cross-origin.
pub const ALLOWED_HEADERS: [&str; 9] = [
    "authorization",
    "content-type",
    "idempotency-key",
    "if-match",
    "if-none-match",
    "traceparent",
    "tracestate",
    "x-request-id",
    "x-tenant-id",
];

/// Response headers a browser script may read.
pub const EXPOSED_HEADERS: &str = "X-Request-ID, traceparent, ETag, Retry-After, RateLimit, \
     RateLimit-Policy, WWW-Authenticate, Location, Idempotent-Replayed, Content-Disposition";

/// How long a browser may cache a preflight answer, in seconds.
pub const MAX_AGE_SECONDS: u32 = 600;

/// A preflight is an `OPTIONS` request with `Origin` and
/// `Access-Control-Request-Method`.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Headers granting a preflight from an allowed origin: the route's methods,
/// the requested headers that are on the allowlist, and `Max-Age`.
pub fn preflight_grant(origin: &HeaderValue, allow: &[Method], request: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    insert(
        &mut out,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        &method_list(allow),
    );
    let requested: Vec<String> = request
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| ALLOWED_HEADERS.contains(&h.as_str()))
        .collect();
    if !requested.is_empty() {
        insert(
            &mut out,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            &requested.join(", "),
        );
    }
    insert(
        &mut out,
        header::ACCESS_CONTROL_MAX_AGE,
        &MAX_AGE_SECONDS.to_string(),
    );
    out
}

/// Headers granting an actual (non-preflight) request from an allowed origin.
pub fn request_grant(origin: &HeaderValue) -> HeaderMap {
    let mut out = HeaderMap::new();
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    out.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
    out
}

/// The response depends on these request headers.
pub fn vary(preflight: bool) -> HeaderValue {
    HeaderValue::from_static(if preflight {
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    } else {
        "Origin"
    })
}

fn insert(map: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        map.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflight_needs_options_origin_and_requested_method() {
        let mut full = HeaderMap::new();
        full.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://a.example"),
        );
        full.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        let mut no_method = full.clone();
        no_method.remove(header::ACCESS_CONTROL_REQUEST_METHOD);
        let cases = [
            (Method::OPTIONS, &full, true, "a real preflight"),
            (Method::OPTIONS, &no_method, false, "plain OPTIONS"),
            (Method::GET, &full, false, "not OPTIONS"),
        ];
        for (method, headers, want, why) in cases {
            assert_eq!(is_preflight(&method, headers), want, "{why}");
        }
    }

    #[test]
    fn preflight_grants_only_allowlisted_headers() {
        let mut request = HeaderMap::new();
        request.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("Content-Type, X-Evil, traceparent"),
        );
        let origin = HeaderValue::from_static("https://a.example");
        let grant = preflight_grant(&origin, &[Method::GET, Method::POST], &request);
        assert_eq!(
            grant[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://a.example"
        );
        assert_eq!(grant[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
        assert_eq!(
            grant[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "content-type, traceparent"
        );
        assert_eq!(grant[header::ACCESS_CONTROL_MAX_AGE], "600");
    }

    #[test]
    fn request_grant_echoes_the_origin_and_exposes_tracing_headers() {
        let grant = request_grant(&HeaderValue::from_static("https://a.example"));
        assert_eq!(
            grant[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://a.example"
        );
        let exposed = grant[header::ACCESS_CONTROL_EXPOSE_HEADERS]
            .to_str()
            .unwrap();
        assert!(exposed.contains("X-Request-ID") && exposed.contains("traceparent"));
        assert!(
            exposed.contains("WWW-Authenticate") && exposed.contains("Location"),
            "scripts can read auth challenges and where a created resource lives"
        );
    }
}
