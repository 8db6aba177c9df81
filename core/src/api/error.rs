//! One error type for every refusal the API makes, rendered as RFC 9457
//! `application/problem+json` with a stable machine-readable `code`.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::api::router::method_list;
use crate::api::validate::FieldError;

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
    /// The body is not of the media type the route reads.
    UnsupportedMediaType { expected: &'static str },
    /// The body is not JSON.
    MalformedJson { detail: String },
    /// The body is JSON, but fields are missing or invalid.
    Validation { errors: Vec<FieldError> },
    /// The route needs credentials and none were sent.
    Unauthenticated,
    /// The bearer token was refused (signature, expiry, issuer, …).
    InvalidToken { reason: &'static str },
    /// The API key is unknown or revoked.
    InvalidApiKey,
    /// Login failed: unknown tenant, unknown user or wrong password alike.
    InvalidCredentials,
    /// The refresh token is unknown, expired or revoked.
    InvalidRefreshToken,
    /// A rotated refresh token was presented again; its family is revoked.
    RefreshTokenReused,
    /// Authenticated, but the role does not allow this.
    Forbidden,
    /// The API key lacks the scope this route needs.
    InsufficientScope { required: &'static str },
    /// `X-Tenant-ID` names another tenant than the credentials.
    TenantMismatch,
    /// `BOOTSTRAP_TOKEN` is not configured, so bootstrapping is off.
    BootstrapDisabled,
    /// A scope only the operator tenant may grant.
    ScopeNotGrantable { scope: String },
    /// Another user of the tenant has this email.
    EmailTaken,
    /// A tenant with this id exists.
    TenantExists,
    /// A tenant exists already; bootstrapping happens once.
    AlreadyBootstrapped,
    /// The change would leave the tenant without an admin.
    LastAdmin,
    /// Signing keys are missing or malformed; see `GET /readyz`.
    AuthUnavailable,
    /// `WEBHOOK_SIGNING_SECRET` is not configured, so no tenant's webhook
    /// secret can be derived.
    WebhookSigningUnavailable,
    /// Too many requests of this route class from this caller.
    RateLimited { retry_after_secs: u64 },
    /// The `Idempotency-Key` was used before with another request.
    IdempotencyKeyReused,
    /// A request with this `Idempotency-Key` is still being answered.
    IdempotencyInProgress,
    /// The upload's content does not match its declared SHA-256.
    ChecksumMismatch,
    /// The upload's content is not of its declared size.
    SizeMismatch { declared: u64, received: u64 },
    /// The upload's content is not of its declared media type.
    ContentTypeMismatch { declared: String },
    /// The upload has no content yet.
    UploadNotStored,
    /// The upload's content is stored already (and differs).
    UploadAlreadyStored,
    /// A webhook's signature is missing or wrong (or its tenant unknown).
    InvalidSignature,
    /// The subscription handshake named another verify token.
    VerifyTokenMismatch,
    /// A pushed body is not valid Prometheus text format 0.0.4.
    InvalidExposition { line: usize, message: String },
    /// A pushed family has another type than the one stored.
    MetricTypeConflict {
        family: String,
        stored: &'static str,
    },
    /// A pushed family's sample names would be another family's
    /// (`x_count` next to a histogram `x`).
    MetricNameConflict { family: String, other: String },
    /// The push path's grouping key is malformed.
    InvalidGroupingKey { message: String },
    /// The body's Content-Encoding is not one this resource reads.
    UnsupportedContentEncoding { encoding: String },
    /// A push is larger than a limit (`limit` names its variable).
    PushTooLarge {
        limit: &'static str,
        max: u64,
        detail: String,
    },
    /// A push breaks a shape limit (label lengths, label counts).
    PushLimitExceeded {
        limit: &'static str,
        max: u64,
        detail: String,
    },
    /// A push would take its group, its pusher or the aggregate beyond a
    /// series budget.
    PushQuotaExceeded {
        limit: &'static str,
        max: u64,
        detail: String,
    },
    /// A header the platform delivered that HTTP cannot carry (control
    /// characters in its value, say): refused rather than dropped.
    MalformedHeader { name: String },
}

/// The `WWW-Authenticate` challenge of 401 and scope-related 403 answers.
const REALM: &str = "Bearer realm=\"tepi\"";

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } | Self::PushTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::NotReady { .. }
            | Self::StorageUnavailable
            | Self::AuthUnavailable
            | Self::WebhookSigningUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::UnsupportedMediaType { .. } | Self::ContentTypeMismatch { .. } => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::MalformedJson { .. }
            | Self::InvalidExposition { .. }
            | Self::InvalidGroupingKey { .. }
            | Self::MalformedHeader { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedContentEncoding { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthenticated
            | Self::InvalidToken { .. }
            | Self::InvalidApiKey
            | Self::InvalidCredentials
            | Self::InvalidRefreshToken
            | Self::RefreshTokenReused
            | Self::InvalidSignature => StatusCode::UNAUTHORIZED,
            Self::CorsOriginRefused
            | Self::Forbidden
            | Self::InsufficientScope { .. }
            | Self::TenantMismatch
            | Self::BootstrapDisabled
            | Self::ScopeNotGrantable { .. }
            | Self::VerifyTokenMismatch => StatusCode::FORBIDDEN,
            Self::EmailTaken
            | Self::TenantExists
            | Self::AlreadyBootstrapped
            | Self::LastAdmin
            | Self::IdempotencyInProgress
            | Self::UploadNotStored
            | Self::UploadAlreadyStored
            | Self::MetricTypeConflict { .. }
            | Self::MetricNameConflict { .. } => StatusCode::CONFLICT,
            Self::RateLimited { .. } | Self::PushQuotaExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::Validation { .. }
            | Self::IdempotencyKeyReused
            | Self::ChecksumMismatch
            | Self::SizeMismatch { .. }
            | Self::PushLimitExceeded { .. } => StatusCode::UNPROCESSABLE_ENTITY,
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
            Self::UnsupportedMediaType { .. } => "unsupported_media_type",
            Self::MalformedJson { .. } => "malformed_json",
            Self::Validation { .. } => "validation_failed",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidToken { .. } => "invalid_token",
            Self::InvalidApiKey => "invalid_api_key", // pragma: allowlist secret
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidRefreshToken => "invalid_refresh_token",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::Forbidden => "forbidden",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::TenantMismatch => "tenant_mismatch",
            Self::BootstrapDisabled => "bootstrap_disabled",
            Self::ScopeNotGrantable { .. } => "scope_not_grantable",
            Self::EmailTaken => "email_taken",
            Self::TenantExists => "tenant_exists",
            Self::AlreadyBootstrapped => "already_bootstrapped",
            Self::LastAdmin => "last_admin",
            Self::AuthUnavailable => "auth_unavailable",
            Self::WebhookSigningUnavailable => "webhook_signing_unavailable",
            Self::RateLimited { .. } => "rate_limited",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::IdempotencyInProgress => "idempotency_in_progress",
            Self::ChecksumMismatch => "checksum_mismatch",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::ContentTypeMismatch { .. } => "content_type_mismatch",
            Self::UploadNotStored => "upload_not_stored",
            Self::UploadAlreadyStored => "upload_already_stored",
            Self::InvalidSignature => "invalid_signature",
            Self::VerifyTokenMismatch => "verify_token_mismatch",
            Self::InvalidExposition { .. } => "invalid_exposition",
            Self::MetricTypeConflict { .. } => "metric_type_conflict",
            Self::MetricNameConflict { .. } => "metric_name_conflict",
            Self::InvalidGroupingKey { .. } => "invalid_grouping_key",
            Self::UnsupportedContentEncoding { .. } => "unsupported_content_encoding",
            Self::MalformedHeader { .. } => "malformed_header",
            Self::PushTooLarge { .. } => "push_too_large",
            Self::PushLimitExceeded { .. } => "push_limit_exceeded",
            Self::PushQuotaExceeded { .. } => "push_quota_exceeded",
        }
    }

    #[allow(clippy::too_many_lines)] // one arm per variant
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
            Self::UnsupportedMediaType { expected } => {
                format!("This resource reads request bodies of type {expected}.")
            }
            Self::MalformedJson { detail } => format!("The body is not valid JSON: {detail}."),
            Self::Validation { .. } => {
                "The request body has invalid fields; see `errors`.".to_owned()
            }
            Self::Unauthenticated => {
                "This resource needs credentials: an access token or an API key.".to_owned()
            }
            Self::InvalidToken { reason } => format!("The access token was refused: {reason}."),
            Self::InvalidApiKey => "The API key is unknown or has been deleted.".to_owned(), // pragma: allowlist secret
            Self::InvalidCredentials => "The tenant, email or password is wrong.".to_owned(),
            Self::InvalidRefreshToken => {
                "The refresh token is unknown, expired or revoked; log in again.".to_owned()
            }
            Self::RefreshTokenReused => "This refresh token was already used; every session \
                 it belongs to has been revoked. Log in again."
                .to_owned(),
            Self::Forbidden => "Your role does not allow this.".to_owned(),
            Self::InsufficientScope { required } => {
                format!("The API key lacks the scope {required}.")
            }
            Self::TenantMismatch => {
                "X-Tenant-ID names another tenant than your credentials.".to_owned()
            }
            Self::BootstrapDisabled => {
                "Bootstrapping is off: BOOTSTRAP_TOKEN is not configured.".to_owned()
            }
            Self::ScopeNotGrantable { scope } => {
                format!("Only the operator tenant's admins may grant {scope}.")
            }
            Self::EmailTaken => "Another user of this tenant has this email.".to_owned(),
            Self::TenantExists => "A tenant with this id exists.".to_owned(),
            Self::AlreadyBootstrapped => {
                "A tenant exists already; bootstrapping happens once. Log in instead.".to_owned()
            }
            Self::LastAdmin => "This would leave the tenant without an admin.".to_owned(),
            Self::IdempotencyKeyReused => {
                "This Idempotency-Key was used with another request.".to_owned()
            }
            Self::IdempotencyInProgress => {
                "A request with this Idempotency-Key is still being answered; retry shortly."
                    .to_owned()
            }
            Self::ChecksumMismatch => "The content does not match the declared SHA-256.".to_owned(),
            Self::SizeMismatch { declared, received } => {
                format!("The content is {received} bytes; {declared} were declared.")
            }
            Self::ContentTypeMismatch { declared } => {
                format!("The content must be sent as {declared}, as declared.")
            }
            Self::UploadNotStored => "The upload has no content yet.".to_owned(),
            Self::InvalidSignature => {
                "X-Hub-Signature-256 is missing or does not sign this body.".to_owned()
            }
            Self::VerifyTokenMismatch => "hub.verify_token is not this tenant's token.".to_owned(),
            Self::InvalidExposition { line, message } => {
                format!(
                    "The body is not valid Prometheus text format 0.0.4: line {line}: {message}."
                )
            }
            Self::MetricTypeConflict { family, stored } => {
                format!(
                    "{family} is stored as a {stored}; push it with that type or under another name."
                )
            }
            Self::InvalidGroupingKey { message } => {
                format!("The grouping key is invalid: {message}.")
            }
            Self::MetricNameConflict { family, other } => format!(
                "{family} would expose sample names of the stored family {other}; push it under another name."
            ),
            Self::UnsupportedContentEncoding { encoding } => {
                format!("Content-Encoding {encoding} is not supported; send identity or gzip.")
            }
            Self::MalformedHeader { name } => {
                format!("The header {name} holds characters HTTP does not allow in a header.")
            }
            Self::PushTooLarge { limit, max, detail }
            | Self::PushLimitExceeded { limit, max, detail }
            | Self::PushQuotaExceeded { limit, max, detail } => {
                format!("{detail}: the limit {limit} is {max}.")
            }
            Self::UploadAlreadyStored => {
                "The upload's content is stored already; create a new upload.".to_owned()
            }
            Self::RateLimited { retry_after_secs } => format!(
                "Too many requests; retry after {retry_after_secs} seconds (see the RateLimit header)."
            ),
            Self::AuthUnavailable => {
                "Authentication is unavailable: the signing keys are not configured. \
                 GET /readyz names the problem."
                    .to_owned()
            }
            Self::WebhookSigningUnavailable => {
                "Webhook signing is unavailable: WEBHOOK_SIGNING_SECRET is not configured."
                    .to_owned()
            }
        }
    }

    fn extensions(&self, body: &mut Map<String, Value>) {
        match self {
            Self::NotReady { checks } => {
                let checks: Map<String, Value> = crate::sort::map(checks.iter().map(|c| {
                    let v = c.error.as_ref().map_or_else(|| json!("ok"), |e| json!(e));
                    (c.name.clone(), v)
                }));
                body.insert("checks".to_owned(), Value::Object(checks));
            }
            Self::PayloadTooLarge { limit } => {
                body.insert("limit_bytes".to_owned(), json!(limit));
            }
            Self::Validation { errors } => {
                let errors: Vec<Value> = errors
                    .iter()
                    .map(|e| json!({"field": e.field, "code": e.code, "message": e.message}))
                    .collect();
                body.insert("errors".to_owned(), Value::Array(errors));
            }
            Self::InsufficientScope { required } => {
                body.insert("required_scope".to_owned(), json!(required));
            }
            Self::RateLimited { retry_after_secs } => {
                body.insert("retry_after".to_owned(), json!(retry_after_secs));
            }
            Self::SizeMismatch { declared, received } => {
                body.insert("declared_size".to_owned(), json!(declared));
                body.insert("received_size".to_owned(), json!(received));
            }
            Self::ContentTypeMismatch { declared } => {
                body.insert("declared_content_type".to_owned(), json!(declared));
            }
            Self::InvalidExposition { line, .. } => {
                body.insert("line".to_owned(), json!(line));
            }
            Self::MetricTypeConflict { family, stored } => {
                body.insert("family".to_owned(), json!(family));
                body.insert("stored_type".to_owned(), json!(stored));
            }
            Self::MetricNameConflict { family, other } => {
                body.insert("family".to_owned(), json!(family));
                body.insert("conflicts_with".to_owned(), json!(other));
            }
            Self::NotFound
            | Self::MethodNotAllowed { .. }
            | Self::CorsOriginRefused
            | Self::StorageUnavailable
            | Self::UnsupportedMediaType { .. }
            | Self::MalformedJson { .. }
            | Self::Unauthenticated
            | Self::InvalidToken { .. }
            | Self::InvalidApiKey
            | Self::InvalidCredentials
            | Self::InvalidRefreshToken
            | Self::RefreshTokenReused
            | Self::Forbidden
            | Self::TenantMismatch
            | Self::BootstrapDisabled
            | Self::ScopeNotGrantable { .. }
            | Self::EmailTaken
            | Self::TenantExists
            | Self::AlreadyBootstrapped
            | Self::LastAdmin
            | Self::AuthUnavailable
            | Self::WebhookSigningUnavailable
            | Self::IdempotencyKeyReused
            | Self::IdempotencyInProgress
            | Self::ChecksumMismatch
            | Self::UploadNotStored
            | Self::UploadAlreadyStored
            | Self::InvalidSignature
            | Self::VerifyTokenMismatch
            | Self::InvalidGroupingKey { .. }
            | Self::UnsupportedContentEncoding { .. } => {}
            Self::MalformedHeader { name } => {
                body.insert("header".to_owned(), json!(name));
            }
            Self::PushTooLarge { limit, max, .. }
            | Self::PushLimitExceeded { limit, max, .. }
            | Self::PushQuotaExceeded { limit, max, .. } => {
                body.insert("limit".to_owned(), json!(limit));
                body.insert("max".to_owned(), json!(max));
            }
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750) this refusal carries.
    fn challenge(&self) -> Option<String> {
        match self {
            Self::Unauthenticated
            | Self::InvalidCredentials
            | Self::InvalidRefreshToken
            | Self::RefreshTokenReused => Some(REALM.to_owned()),
            Self::InvalidToken { reason } => Some(format!(
                "{REALM}, error=\"invalid_token\", error_description=\"{reason}\""
            )),
            Self::InvalidSignature => {
                Some("HMAC-SHA256 realm=\"tepi\", header=\"X-Hub-Signature-256\"".to_owned())
            }
            Self::InvalidApiKey => Some(format!(
                "{REALM}, error=\"invalid_token\", error_description=\"unknown API key\""
            )),
            Self::InsufficientScope { required } => Some(format!(
                "{REALM}, error=\"insufficient_scope\", scope=\"{required}\""
            )),
            _ => None,
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
        if let Self::RateLimited { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        if let Some(challenge) = self.challenge()
            && let Ok(value) = HeaderValue::from_str(&challenge)
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One of every variant, with its status and code.
    #[allow(clippy::too_many_lines)] // one row per variant
    pub(crate) fn every_error() -> Vec<(ApiError, u16, &'static str)> {
        vec![
            (ApiError::NotFound, 404, "not_found"),
            (
                ApiError::InvalidExposition {
                    line: 3,
                    message: "timestamps are not accepted".into(),
                },
                400,
                "invalid_exposition",
            ),
            (
                ApiError::MetricTypeConflict {
                    family: "jobs_total".into(),
                    stored: "counter",
                },
                409,
                "metric_type_conflict",
            ),
            (
                ApiError::MetricNameConflict {
                    family: "x_count".into(),
                    other: "x".into(),
                },
                409,
                "metric_name_conflict",
            ),
            (
                ApiError::InvalidGroupingKey {
                    message: "no job".into(),
                },
                400,
                "invalid_grouping_key",
            ),
            (
                ApiError::UnsupportedContentEncoding {
                    encoding: "br".into(),
                },
                415,
                "unsupported_content_encoding",
            ),
            (
                ApiError::MalformedHeader {
                    name: "idempotency-key".into(),
                },
                400,
                "malformed_header",
            ),
            (
                ApiError::PushTooLarge {
                    limit: "PUSH_MAX_SERIES",
                    max: 2000,
                    detail: "the push holds 2001 series".into(),
                },
                413,
                "push_too_large",
            ),
            (
                ApiError::PushLimitExceeded {
                    limit: "PUSH_MAX_LABEL_VALUE_LEN",
                    max: 256,
                    detail: "a value of zone is longer".into(),
                },
                422,
                "push_limit_exceeded",
            ),
            (
                ApiError::PushQuotaExceeded {
                    limit: "METRICS_MAX_SERIES",
                    max: 20000,
                    detail: "the aggregate would hold 20001 series".into(),
                },
                429,
                "push_quota_exceeded",
            ),
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
            (
                ApiError::UnsupportedMediaType {
                    expected: "application/json",
                },
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::MalformedJson { detail: "x".into() },
                400,
                "malformed_json",
            ),
            (
                ApiError::Validation { errors: vec![] },
                422,
                "validation_failed",
            ),
            (ApiError::Unauthenticated, 401, "unauthenticated"),
            (
                ApiError::InvalidToken { reason: "expired" },
                401,
                "invalid_token",
            ),
            (ApiError::InvalidApiKey, 401, "invalid_api_key"),
            (ApiError::InvalidCredentials, 401, "invalid_credentials"),
            (ApiError::InvalidRefreshToken, 401, "invalid_refresh_token"),
            (ApiError::RefreshTokenReused, 401, "refresh_token_reused"),
            (ApiError::Forbidden, 403, "forbidden"),
            (
                ApiError::InsufficientScope {
                    required: "metrics:read",
                },
                403,
                "insufficient_scope",
            ),
            (ApiError::TenantMismatch, 403, "tenant_mismatch"),
            (ApiError::BootstrapDisabled, 403, "bootstrap_disabled"),
            (
                ApiError::ScopeNotGrantable {
                    scope: "metrics:read".into(),
                },
                403,
                "scope_not_grantable",
            ),
            (ApiError::EmailTaken, 409, "email_taken"),
            (ApiError::TenantExists, 409, "tenant_exists"),
            (ApiError::AlreadyBootstrapped, 409, "already_bootstrapped"),
            (ApiError::LastAdmin, 409, "last_admin"),
            (ApiError::AuthUnavailable, 503, "auth_unavailable"),
            (
                ApiError::WebhookSigningUnavailable,
                503,
                "webhook_signing_unavailable",
            ),
            (
                ApiError::RateLimited {
                    retry_after_secs: 2,
                },
                429,
                "rate_limited",
            ),
            (
                ApiError::IdempotencyKeyReused,
                422,
                "idempotency_key_reused",
            ),
            (
                ApiError::IdempotencyInProgress,
                409,
                "idempotency_in_progress",
            ),
            (ApiError::ChecksumMismatch, 422, "checksum_mismatch"),
            (
                ApiError::SizeMismatch {
                    declared: 3,
                    received: 4,
                },
                422,
                "size_mismatch",
            ),
            (
                ApiError::ContentTypeMismatch {
                    declared: "text/plain".into(),
                },
                415,
                "content_type_mismatch",
            ),
            (ApiError::UploadNotStored, 409, "upload_not_stored"),
            (ApiError::UploadAlreadyStored, 409, "upload_already_stored"),
            (ApiError::InvalidSignature, 401, "invalid_signature"),
            (ApiError::VerifyTokenMismatch, 403, "verify_token_mismatch"),
        ]
    }

    #[test]
    fn every_error_renders_a_complete_problem_document() {
        let cases = every_error();
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
            assert_eq!(
                response.headers().contains_key(header::WWW_AUTHENTICATE),
                status == 401 || code == "insufficient_scope",
                "{code}: every 401 carries a challenge (RFC 9110 §15.5.2)"
            );
        }
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        let response = ApiError::InvalidToken {
            reason: "the token has expired",
        }
        .to_response("/v1/auth/me", "r");
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"tepi\", error=\"invalid_token\", error_description=\"the token has expired\""
        );
        let response = ApiError::InsufficientScope {
            required: "metrics:read",
        }
        .to_response("/metrics", "r");
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"tepi\", error=\"insufficient_scope\", scope=\"metrics:read\""
        );
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["required_scope"], "metrics:read");
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
