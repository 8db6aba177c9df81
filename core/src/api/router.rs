//! A small router: patterns with `{name}` parameters, exact segments
//! otherwise. It answers which route matched, or why none did.

use http::Method;

/// One route: a method, a pattern such as `/v1/uploads/{id}`, and a value.
#[derive(Debug)]
struct Route<T> {
    method: Method,
    pattern: &'static str,
    segments: Vec<Segment>,
    /// The last parameter takes the rest of the path, slashes included.
    rest: bool,
    value: T,
}

#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(&'static str),
    Param(&'static str),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Match<'r, T> {
    Found {
        pattern: &'static str,
        value: &'r T,
        params: Vec<(&'static str, String)>,
    },
    /// The path matches routes, but none for this method.
    MethodNotAllowed {
        pattern: &'static str,
        allow: Vec<Method>,
    },
    NotFound,
}

#[derive(Debug)]
pub struct Router<T> {
    routes: Vec<Route<T>>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self { routes: Vec::new() }
    }
}

impl<T> Router<T> {
    /// Adds a route. Panics on a malformed pattern: patterns are constants,
    /// so a bad one is a programming error caught by the first test.
    #[must_use]
    pub fn route(mut self, method: Method, pattern: &'static str, value: T) -> Self {
        assert!(
            pattern.starts_with('/'),
            "pattern {pattern:?} must start with '/'"
        );
        let segments = split(pattern)
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => {
                        assert!(!name.is_empty(), "empty parameter name in {pattern:?}");
                        Segment::Param(name)
                    }
                    None => Segment::Literal(s),
                },
            )
            .collect();
        self.routes.push(Route {
            method,
            pattern,
            segments,
            rest: false,
            value,
        });
        self
    }

    /// Like `route`, but the pattern's last parameter takes the rest of
    /// the path, slashes included (`/metrics/job/{grouping}` matches
    /// `/metrics/job/a/b/c` with `grouping` = `a/b/c`).
    #[must_use]
    pub fn route_rest(self, method: Method, pattern: &'static str, value: T) -> Self {
        let mut router = self.route(method, pattern, value);
        let added = router.routes.last_mut().expect("just added");
        assert!(
            matches!(added.segments.last(), Some(Segment::Param(_))),
            "{pattern:?} must end in a parameter"
        );
        added.rest = true;
        router
    }

    /// The pattern of the first route whose value is `value`.
    pub fn pattern_of(&self, value: &T) -> Option<&'static str>
    where
        T: PartialEq,
    {
        self.routes
            .iter()
            .find(|r| r.value == *value)
            .map(|r| r.pattern)
    }

    /// Every (method, pattern) pair, in registration order.
    pub fn routes(&self) -> impl Iterator<Item = (&Method, &'static str, &T)> {
        self.routes.iter().map(|r| (&r.method, r.pattern, &r.value))
    }

    /// Finds the route for `method` and `path`. `HEAD` is served by a `GET`
    /// route when no explicit `HEAD` route exists.
    pub fn find(&self, method: &Method, path: &str) -> Match<'_, T> {
        let mut allow: Vec<Method> = Vec::new();
        let mut head_fallback = None;
        let mut matched_pattern = None;
        for route in &self.routes {
            let Some(params) = match_segments(&route.segments, route.rest, path) else {
                continue;
            };
            matched_pattern.get_or_insert(route.pattern);
            if route.method == *method {
                return Match::Found {
                    pattern: route.pattern,
                    value: &route.value,
                    params,
                };
            }
            if *method == Method::HEAD && route.method == Method::GET && head_fallback.is_none() {
                head_fallback = Some((route, params));
            }
            push_unique(&mut allow, route.method.clone());
            if route.method == Method::GET {
                push_unique(&mut allow, Method::HEAD);
            }
        }
        if let Some((route, params)) = head_fallback {
            return Match::Found {
                pattern: route.pattern,
                value: &route.value,
                params,
            };
        }
        match matched_pattern {
            Some(pattern) => Match::MethodNotAllowed { pattern, allow },
            None => Match::NotFound,
        }
    }
}

/// Methods as an `Allow` / `Access-Control-Allow-Methods` value: `GET, HEAD`.
pub fn method_list(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn push_unique(list: &mut Vec<Method>, method: Method) {
    if !list.contains(&method) {
        list.push(method);
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    // "/" has no segments; "/a/b" has two. An empty segment ("//", trailing
    // "/") is kept so that it can only match an explicit empty literal.
    path.strip_prefix('/').unwrap_or(path).split('/').filter({
        let root = path == "/";
        move |_| !root
    })
}

fn match_segments(
    segments: &[Segment],
    rest: bool,
    path: &str,
) -> Option<Vec<(&'static str, String)>> {
    if !path.starts_with('/') {
        return None;
    }
    let mut params = Vec::new();
    let mut parts = split(path);
    for (i, segment) in segments.iter().enumerate() {
        let part = parts.next()?;
        if rest && i + 1 == segments.len() {
            let Segment::Param(name) = segment else {
                return None;
            };
            if part.is_empty() {
                return None;
            }
            let tail: Vec<&str> = std::iter::once(part).chain(parts.by_ref()).collect();
            params.push((*name, tail.join("/")));
            return Some(params);
        }
        match segment {
            Segment::Literal(lit) if *lit == part => {}
            Segment::Literal(_) => return None,
            Segment::Param(_) if part.is_empty() => return None,
            Segment::Param(name) => params.push((*name, part.to_owned())),
        }
    }
    parts.next().is_none().then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<&'static str> {
        Router::default()
            .route(Method::GET, "/", "root")
            .route(Method::GET, "/healthz", "health")
            .route(Method::GET, "/v1/uploads/{id}", "get-upload")
            .route(Method::DELETE, "/v1/uploads/{id}", "delete-upload")
            .route(Method::PUT, "/v1/uploads/{id}/content", "put-content")
            .route(Method::GET, "/v1/workflows/{id}/runs/{run_id}", "get-run")
    }

    #[test]
    fn a_rest_parameter_takes_the_remaining_segments() {
        let r = Router::default()
            .route(Method::GET, "/metrics", "metrics")
            .route_rest(Method::PUT, "/metrics/job/{grouping}", "push");
        let found = |path: &str| match r.find(&Method::PUT, path) {
            Match::Found { params, .. } => Some(params[0].1.clone()),
            _ => None,
        };
        assert_eq!(found("/metrics/job/batch").as_deref(), Some("batch"));
        assert_eq!(
            found("/metrics/job/batch/instance/a/zone/eu").as_deref(),
            Some("batch/instance/a/zone/eu")
        );
        assert_eq!(found("/metrics/job/"), None, "the job is required");
        assert_eq!(found("/metrics/job"), None);
        assert!(matches!(
            r.find(&Method::GET, "/metrics"),
            Match::Found { .. }
        ));
    }

    #[test]
    fn matches_literals_and_parameters() {
        let r = router();
        let cases = [
            (Method::GET, "/", "root", vec![], "root path"),
            (Method::GET, "/healthz", "health", vec![], "literal"),
            (
                Method::GET,
                "/v1/uploads/u1",
                "get-upload",
                vec![("id", "u1")],
                "one parameter",
            ),
            (
                Method::DELETE,
                "/v1/uploads/u1",
                "delete-upload",
                vec![("id", "u1")],
                "same pattern, other method",
            ),
            (
                Method::PUT,
                "/v1/uploads/u1/content",
                "put-content",
                vec![("id", "u1")],
                "parameter mid-path",
            ),
            (
                Method::GET,
                "/v1/workflows/w/runs/r",
                "get-run",
                vec![("id", "w"), ("run_id", "r")],
                "two parameters",
            ),
            (
                Method::HEAD,
                "/healthz",
                "health",
                vec![],
                "HEAD falls back to GET",
            ),
        ];
        for (method, path, want, want_params, why) in cases {
            match r.find(&method, path) {
                Match::Found { value, params, .. } => {
                    assert_eq!(*value, want, "{why}");
                    let params: Vec<(&str, &str)> =
                        params.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    assert_eq!(params, want_params, "{why}");
                }
                other => panic!("{why}: {method} {path} gave {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_paths_are_not_found() {
        let r = router();
        let cases = [
            ("/nope", "unknown literal"),
            ("/healthz/", "trailing slash"),
            ("/healthz/extra", "extra segment"),
            ("/v1/uploads", "missing parameter"),
            ("/v1/uploads/", "empty parameter"),
            ("/v1//u1", "empty segment"),
            ("healthz", "no leading slash"),
        ];
        for (path, why) in cases {
            assert_eq!(r.find(&Method::GET, path), Match::NotFound, "{why}: {path}");
        }
    }

    #[test]
    fn wrong_method_reports_the_allowed_ones() {
        let r = router();
        let cases = [
            (
                "/healthz",
                Method::POST,
                vec![Method::GET, Method::HEAD],
                "/healthz",
            ),
            (
                "/v1/uploads/u1",
                Method::POST,
                vec![Method::GET, Method::HEAD, Method::DELETE],
                "/v1/uploads/{id}",
            ),
            (
                "/v1/uploads/u1/content",
                Method::GET,
                vec![Method::PUT],
                "/v1/uploads/{id}/content",
            ),
        ];
        for (path, method, allow, pattern) in cases {
            assert_eq!(
                r.find(&method, path),
                Match::MethodNotAllowed { pattern, allow },
                "{method} {path}"
            );
        }
    }
}
