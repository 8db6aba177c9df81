//! Sessions: login, refresh-token rotation, logout, and the caller.

use http::StatusCode;
use serde_json::json;

use super::{Call, Handled, exec, json_response, no_content, storage};
use crate::api::context::TenantId;
use crate::api::error::ApiError;
use crate::api::validate::{Fields, Invalid, json_object, parsed, string};
use crate::auth::keys::{ACCESS_TOKEN_SECONDS, AccessClaims};
use crate::auth::store::{self, first};
use crate::auth::{Principal, Role, password, tenant_id};
use crate::ports::PortError;
use crate::secret;

use super::users::user_json;

/// How long a refresh token (and so a session) lives without use.
pub const REFRESH_TOKEN_SECONDS: i64 = 30 * 24 * 60 * 60;

/// The cookie that carries a browser's refresh token (`"session":
/// "cookie"` at login): script cannot read it (`HttpOnly`), it goes only
/// over HTTPS (`Secure`; browsers treat loopback as secure), never with a
/// request started by another site (`SameSite=Strict`), and only to
/// `/v1/auth/…`, where refresh and logout read it.
pub const REFRESH_COOKIE: &str = "tepi_refresh";
const COOKIE_ATTRIBUTES: &str = "Path=/v1/auth; HttpOnly; Secure; SameSite=Strict";

/// Where a session's refresh token travels: in the JSON body (API clients)
/// or in [`REFRESH_COOKIE`] (browsers, so script never holds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carrier {
    Body,
    Cookie,
}

fn set_cookie(response: &mut http::Response<bytes::Bytes>, value: &str, max_age: i64) {
    let cookie = format!("{REFRESH_COOKIE}={value}; Max-Age={max_age}; {COOKIE_ATTRIBUTES}");
    if let Ok(value) = http::HeaderValue::from_str(&cookie) {
        response
            .headers_mut()
            .append(http::header::SET_COOKIE, value);
    }
}

/// The refresh token in the request's `Cookie` headers, if any: pairs are
/// `name=value` separated by `;` (RFC 6265 §4.2.1); the value must look
/// like a refresh credential, so nothing else is ever looked up.
fn cookie_token(req: &http::Request<bytes::Bytes>) -> Option<String> {
    req.headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == REFRESH_COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| {
            value.len() <= 256
                && value.starts_with(secret::REFRESH_PREFIX)
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        .map(str::to_owned)
}

/// Issues an access token and a refresh token in `family` (a new family
/// for a login), the refresh token in the body or in the cookie.
async fn issue_session(
    call: &Call<'_>,
    tenant: &TenantId,
    user_id: &str,
    role: Role,
    family: Option<String>,
    carrier: Carrier,
) -> Handled {
    let keys = call.keys()?;
    let refresh = secret::credential(call.entropy, secret::REFRESH_PREFIX);
    let rotating = family.is_some();
    let family = family.unwrap_or_else(|| secret::id(call.entropy, "fam_"));
    exec(
        call.sql,
        store::INSERT_REFRESH,
        vec![
            secret::id(call.entropy, "rt_").into(),
            tenant.as_str().into(),
            user_id.into(),
            family.clone().into(),
            secret::digest(&refresh).into(),
            call.secs().into(),
            (call.secs() + REFRESH_TOKEN_SECONDS).into(),
        ],
    )
    .await?;
    // A concurrent reuse may have revoked the family between our rotation
    // and this insert; its UPDATE did not see the new row. Look again, so
    // the successor dies with its family instead of outliving it.
    if rotating {
        let revoked = exec(
            call.sql,
            store::FAMILY_REVOKED,
            vec![tenant.as_str().into(), family.clone().into()],
        )
        .await?;
        if !revoked.rows.is_empty() {
            revoke_family(call, tenant.as_str(), &family).await?;
            return Err(ApiError::RefreshTokenReused);
        }
    }
    let access = keys.sign(
        AccessClaims {
            iss: call.auth.issuer.clone(),
            aud: call.auth.audience.clone(),
            sub: user_id.to_owned(),
            tenant: tenant.as_str().to_owned(),
            role: role.as_str().to_owned(),
            jti: secret::id(call.entropy, "jti_"),
        },
        call.now,
    );
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_SECONDS,
        "refresh_expires_in": REFRESH_TOKEN_SECONDS,
    });
    if carrier == Carrier::Body {
        body["refresh_token"] = refresh.into();
        return Ok(json_response(StatusCode::OK, &body));
    }
    let mut response = json_response(StatusCode::OK, &body);
    set_cookie(&mut response, &refresh, REFRESH_TOKEN_SECONDS);
    Ok(response)
}

fn session_field(value: &serde_json::Value) -> Result<Carrier, Invalid> {
    match value.as_str() {
        Some("body") => Ok(Carrier::Body),
        Some("cookie") => Ok(Carrier::Cookie),
        _ => Err(Invalid::new("invalid", "must be \"body\" or \"cookie\"")),
    }
}

/// `POST /v1/auth/login`. Unknown tenant, unknown user and wrong password
/// answer alike, after the same Argon2id work.
pub async fn login(call: &Call<'_>) -> Handled {
    call.keys()?;
    let body = json_object(call.req)?;
    let mut fields = Fields::new(&body);
    let tenant = fields.required("tenant", parsed(63, tenant_id));
    let email = fields.required("email", string(254));
    // Any length is checked, never rejected by shape: a rule here would
    // tell an attacker something about accounts.
    let password = fields.required("password", string(1024));
    let carrier = fields.optional("session", session_field);
    fields.finish()?;
    let (Some(tenant), Some(email), Some(password)) = (tenant, email, password) else {
        unreachable!("finish() fails when a required field is missing");
    };
    let email = email.trim().to_lowercase();
    let rows = exec(
        call.sql,
        store::USER_FOR_LOGIN,
        vec![tenant.as_str().into(), email.into()],
    )
    .await?;
    let found = match first(&rows) {
        Some(row) => Some((
            row.text("id").map_err(|e| storage(&e))?,
            row.text("password_hash").map_err(|e| storage(&e))?,
            row.text("role").map_err(|e| storage(&e))?,
        )),
        None => None,
    };
    let stored = found.as_ref().map(|(_, hash, _)| hash.as_str());
    if !password::verify(stored, &password) {
        return Err(ApiError::InvalidCredentials);
    }
    let Some((user_id, _, role)) = found else {
        return Err(ApiError::InvalidCredentials);
    };
    let role = Role::parse(&role).map_err(|_| storage(&PortError("bad role".into())))?;
    let carrier = carrier.unwrap_or(Carrier::Body);
    issue_session(call, &tenant, &user_id, role, None, carrier).await
}

/// The refresh token of a refresh or logout: `refresh_token` in the body,
/// else the cookie (a body with neither is 422, as the field is missing).
fn refresh_token_field(call: &Call<'_>) -> Result<(String, Carrier), ApiError> {
    let body = json_object(call.req)?;
    let mut fields = Fields::new(&body);
    let cookie = cookie_token(call.req);
    let token = if cookie.is_some() {
        fields.optional("refresh_token", string(256))
    } else {
        fields.required("refresh_token", string(256))
    };
    fields.finish()?;
    Ok(match (token, cookie) {
        (Some(token), _) => (token, Carrier::Body),
        (None, Some(cookie)) => (cookie, Carrier::Cookie),
        (None, None) => unreachable!("finish() fails when a required field is missing"),
    })
}

struct RefreshRow {
    id: String,
    tenant: String,
    user_id: String,
    family: String,
    expires_at: i64,
    rotated: bool,
    revoked: bool,
}

async fn find_refresh(call: &Call<'_>, token: &str) -> Result<Option<RefreshRow>, ApiError> {
    let rows = exec(
        call.sql,
        store::REFRESH_BY_HASH,
        vec![secret::digest(token).into()],
    )
    .await?;
    let Some(row) = first(&rows) else {
        return Ok(None);
    };
    let read = || -> Result<RefreshRow, PortError> {
        Ok(RefreshRow {
            id: row.text("id")?,
            tenant: row.text("tenant_id")?,
            user_id: row.text("user_id")?,
            family: row.text("family_id")?,
            expires_at: row.integer("expires_at")?,
            rotated: row.optional_integer("rotated_at")?.is_some(),
            revoked: row.optional_integer("revoked_at")?.is_some(),
        })
    };
    read().map(Some).map_err(|e| storage(&e))
}

async fn revoke_family(call: &Call<'_>, tenant: &str, family: &str) -> Result<(), ApiError> {
    exec(
        call.sql,
        store::REVOKE_FAMILY,
        vec![tenant.into(), family.into(), call.secs().into()],
    )
    .await
    .map(drop)
}

/// `POST /v1/auth/refresh`: rotates the refresh token. Presenting a token
/// that was already rotated revokes its whole family (RFC 9700 §4.14.2).
pub async fn refresh(call: &Call<'_>) -> Handled {
    call.keys()?;
    let (token, carrier) = refresh_token_field(call)?;
    let Some(row) = find_refresh(call, &token).await? else {
        return Err(ApiError::InvalidRefreshToken);
    };
    if row.revoked {
        return Err(ApiError::InvalidRefreshToken);
    }
    if row.rotated {
        tracing::warn!(target: "tepi::auth", family = %row.family, tenant = %row.tenant,
            "rotated refresh token reused; revoking its family");
        revoke_family(call, &row.tenant, &row.family).await?;
        return Err(ApiError::RefreshTokenReused);
    }
    if row.expires_at <= call.secs() {
        return Err(ApiError::InvalidRefreshToken);
    }
    let won = exec(
        call.sql,
        store::ROTATE_REFRESH,
        vec![row.id.clone().into(), call.secs().into()],
    )
    .await?;
    if won.rows.is_empty() {
        // Another request rotated it first: the same token used twice.
        revoke_family(call, &row.tenant, &row.family).await?;
        return Err(ApiError::RefreshTokenReused);
    }
    let users = exec(
        call.sql,
        store::USER_BY_ID,
        vec![row.tenant.clone().into(), row.user_id.clone().into()],
    )
    .await?;
    let Some(user) = first(&users) else {
        return Err(ApiError::InvalidRefreshToken);
    };
    let role = user
        .text("role")
        .ok()
        .and_then(|r| Role::parse(&r).ok())
        .ok_or_else(|| storage(&PortError("bad role".into())))?;
    let tenant = TenantId::parse(&row.tenant).ok_or(ApiError::InvalidRefreshToken)?;
    issue_session(call, &tenant, &row.user_id, role, Some(row.family), carrier).await
}

/// `POST /v1/auth/logout`: ends the session (the refresh token's family).
/// Idempotent: an unknown or revoked token also answers 204. Access tokens
/// already issued stay valid until they expire (at most 15 minutes).
pub async fn logout(call: &Call<'_>) -> Handled {
    let (token, carrier) = refresh_token_field(call)?;
    if let Some(row) = find_refresh(call, &token).await? {
        revoke_family(call, &row.tenant, &row.family).await?;
    }
    let mut response = no_content();
    if carrier == Carrier::Cookie {
        set_cookie(&mut response, "", 0);
    }
    Ok(response)
}

/// `GET /v1/auth/me`.
pub async fn me(call: &Call<'_>, principal: &Principal) -> Handled {
    let Principal::User {
        tenant, user_id, ..
    } = principal
    else {
        return Err(ApiError::Forbidden);
    };
    let rows = exec(
        call.sql,
        store::USER_BY_ID,
        vec![tenant.as_str().into(), user_id.clone().into()],
    )
    .await?;
    let user = first(&rows).ok_or(ApiError::InvalidToken {
        reason: "the token's user no longer exists",
    })?;
    Ok(json_response(
        StatusCode::OK,
        &user_json(&user, tenant).map_err(|e| storage(&e))?,
    ))
}
