//! One error type for every refusal the API makes, rendered as RFC 9457
//! `application/problem+json` with a stable machine-readable `code`.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::router::method_list;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// A readiness check and its outcome, reported by `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// No route has this path.
    NotFound,
    /// The path exists, the method does not.
    MethodNotAllowed { allow: Vec<Method> },
    /// The body is larger than the configured limit.
    PayloadTooLarge { limit: usize },
    /// A CORS preflight from an origin outside the allowlist.
    CorsOriginRefused,
    /// Configuration or a binding is missing.
    NotReady { checks: Vec<Check> },
    /// A storage port failed; the cause is logged, never returned.
    StorageUnavailable,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::CorsOriginRefused => StatusCode::FORBIDDEN,
            Self::NotReady { .. } | Self::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable code clients match on. Never change one; add new ones.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::CorsOriginRefused => "cors_origin_refused",
            Self::NotReady { .. } => "not_ready",
            Self::StorageUnavailable => "storage_unavailable",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::NotFound => "No resource exists at this path.".to_owned(),
            Self::MethodNotAllowed { allow } => {
                format!("This resource supports {}.", method_list(allow))
            }
            Self::PayloadTooLarge { limit } => {
                format!("The request body is larger than the limit of {limit} bytes.")
            }
            Self::CorsOriginRefused => {
                "This origin is not allowed to make cross-origin requests.".to_owned()
            }
            Self::NotReady { .. } => "The service is not ready to take traffic.".to_owned(),
            Self::StorageUnavailable => {
                "Storage is unavailable; retry later and quote the request id if it persists."
                    .to_owned()
            }
        }
    }

    fn extensions(&self, body: &mut Map<String, Value>) {
        match self {
            Self::NotReady { checks } => {
                let checks: Map<String, Value> = checks
                    .iter()
                    .map(|c| {
                        let v = c.error.as_ref().map_or_else(|| json!("ok"), |e| json!(e));
                        (c.name.clone(), v)
                    })
                    .collect();
                body.insert("checks".to_owned(), Value::Object(checks));
            }
            Self::PayloadTooLarge { limit } => {
                body.insert("limit_bytes".to_owned(), json!(limit));
            }
            Self::NotFound
            | Self::MethodNotAllowed { .. }
            | Self::CorsOriginRefused
            | Self::StorageUnavailable => {}
        }
    }

    /// The problem document. `instance` is the request path; `request_id`
    /// lets a client quote the failing request to an operator.
    pub fn to_response(&self, instance: &str, request_id: &str) -> Response<Bytes> {
        let status = self.status();
        let mut body = Map::new();
        body.insert("type".to_owned(), json!("about:blank"));
        body.insert(
            "title".to_owned(),
            json!(status.canonical_reason().unwrap_or("Error")),
        );
        body.insert("status".to_owned(), json!(status.as_u16()));
        body.insert("detail".to_owned(), json!(self.detail()));
        body.insert("instance".to_owned(), json!(instance));
        body.insert("code".to_owned(), json!(self.code()));
        body.insert("request_id".to_owned(), json!(request_id));
        self.extensions(&mut body);
        let bytes = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
        let mut response = Response::new(Bytes::from(bytes));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Self::MethodNotAllowed { allow } = self
            && let Ok(value) = HeaderValue::from_str(&method_list(allow))
        {
            response.headers_mut().insert(header::ALLOW, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_renders_a_complete_problem_document() {
        let cases = [
            (ApiError::NotFound, 404, "not_found"),
            (
                ApiError::MethodNotAllowed {
                    allow: vec![Method::GET, Method::HEAD],
                },
                405,
                "method_not_allowed",
            ),
            (
                ApiError::PayloadTooLarge { limit: 10 },
                413,
                "payload_too_large",
            ),
            (ApiError::CorsOriginRefused, 403, "cors_origin_refused"),
            (ApiError::NotReady { checks: vec![] }, 503, "not_ready"),
            (ApiError::StorageUnavailable, 503, "storage_unavailable"),
        ];
        for (error, status, code) in cases {
            let response = error.to_response("/x", "req-1");
            assert_eq!(response.status().as_u16(), status, "{code}");
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                PROBLEM_JSON,
                "{code}"
            );
            let body: Value = serde_json::from_slice(response.body()).unwrap();
            assert_eq!(body["code"], code);
            assert_eq!(body["status"], status);
            assert_eq!(body["instance"], "/x");
            assert_eq!(body["request_id"], "req-1");
            assert!(
                body["title"].as_str().is_some_and(|t| !t.is_empty()),
                "{code}: title"
            );
            assert!(
                body["detail"].as_str().is_some_and(|t| !t.is_empty()),
                "{code}: detail"
            );
        }
    }

    #[test]
    fn method_not_allowed_lists_the_allowed_methods() {
        let response = ApiError::MethodNotAllowed {
            allow: vec![Method::GET, Method::HEAD],
        }
        .to_response("/healthz", "r");
        assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn not_ready_names_each_failing_check() {
        let checks = vec![
            Check {
                name: "config".into(),
                error: None,
            },
            Check {
                name: "DB".into(),
                error: Some("binding DB is missing".into()),
            },
        ];
        let response = ApiError::NotReady { checks }.to_response("/readyz", "r");
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["checks"]["config"], "ok");
        assert_eq!(body["checks"]["DB"], "binding DB is missing");
    }
}
