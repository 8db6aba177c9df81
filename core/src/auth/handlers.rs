//! The auth endpoints: bootstrap, login/refresh/logout/me, users, API keys
//! and tenants. Each takes the request and the ports it needs and answers a
//! response or an `ApiError`; authentication and the permission check have
//! already run (see `App::serve`).

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::auth::keys::{ACCESS_TOKEN_SECONDS, AccessClaims, SigningKeys};
use crate::auth::store::{self, first, run};
use crate::auth::{Email, NewPassword, Principal, Role, Scope, password, secret, tenant_id};
use crate::config::AuthConfig;
use crate::context::TenantId;
use crate::error::ApiError;
use crate::ports::{Entropy, PortError, Sql, Statement};
use crate::time::Timestamp;
use crate::validate::{Fields, Invalid, json_object, parsed, string};

/// How long a refresh token (and so a session) lives without use.
pub const REFRESH_TOKEN_SECONDS: i64 = 30 * 24 * 60 * 60;
/// Page sizes of list endpoints.
pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 100;

type Handled = Result<Response<Bytes>, ApiError>;

/// What an auth handler works with.
pub struct Call<'a> {
    pub req: &'a Request<Bytes>,
    pub params: &'a [(&'static str, String)],
    pub sql: &'a dyn Sql,
    pub entropy: &'a dyn Entropy,
    pub now: Timestamp,
    pub auth: &'a AuthConfig,
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("path", &self.req.uri().path())
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Call<'_> {
    fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    fn keys(&self) -> Result<&SigningKeys, ApiError> {
        self.auth
            .signing_keys
            .as_ref()
            .ok_or(ApiError::AuthUnavailable)
    }

    fn secs(&self) -> i64 {
        self.now.as_unix_secs()
    }
}

/// Logs a storage failure and answers with a problem that reveals nothing.
pub fn storage(e: &PortError) -> ApiError {
    tracing::error!(target: "tepi::storage", error = %e, "auth storage failed");
    ApiError::StorageUnavailable
}

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Bytes> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Bytes::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn created(location: &str, body: &Value) -> Response<Bytes> {
    let mut response = json(StatusCode::CREATED, body);
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn no_content() -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

fn rfc3339(secs: i64) -> String {
    Timestamp::from_unix_micros(u64::try_from(secs).unwrap_or(0) * 1_000_000).to_rfc3339()
}

fn user_json(row: &store::Row<'_>, tenant: &TenantId) -> Result<Value, PortError> {
    Ok(json!({
        "id": row.text("id")?,
        "tenant": tenant.as_str(),
        "email": row.text("email")?,
        "role": row.text("role")?,
        "created_at": rfc3339(row.integer("created_at")?),
        "updated_at": rfc3339(row.integer("updated_at")?),
    }))
}

/// The bearer credential of `Authorization`, if any.
pub fn bearer(req: &Request<Bytes>) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
        .filter(|c| !c.is_empty())
}

// ---------------------------------------------------------------- sessions

/// Issues an access token and a refresh token in `family` (a new family
/// for a login).
async fn issue_session(
    call: &Call<'_>,
    tenant: &TenantId,
    user_id: &str,
    role: Role,
    family: Option<String>,
) -> Handled {
    let keys = call.keys()?;
    let refresh = secret::credential(call.entropy, secret::REFRESH_PREFIX);
    let family = family.unwrap_or_else(|| secret::id(call.entropy, "fam_"));
    run(
        call.sql,
        store::INSERT_REFRESH,
        vec![
            secret::id(call.entropy, "rt_").into(),
            tenant.as_str().into(),
            user_id.into(),
            family.into(),
            secret::digest(&refresh).into(),
            call.secs().into(),
            (call.secs() + REFRESH_TOKEN_SECONDS).into(),
        ],
    )
    .await
    .map_err(|e| storage(&e))?;
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
    Ok(json(
        StatusCode::OK,
        &json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "refresh_token": refresh,
            "refresh_expires_in": REFRESH_TOKEN_SECONDS,
        }),
    ))
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
    fields.finish()?;
    let (Some(tenant), Some(email), Some(password)) = (tenant, email, password) else {
        unreachable!("finish() fails when a required field is missing");
    };
    let email = email.trim().to_lowercase();
    let rows = run(
        call.sql,
        store::USER_FOR_LOGIN,
        vec![tenant.as_str().into(), email.into()],
    )
    .await
    .map_err(|e| storage(&e))?;
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
    issue_session(call, &tenant, &user_id, role, None).await
}

fn refresh_token_field(call: &Call<'_>) -> Result<String, ApiError> {
    let body = json_object(call.req)?;
    let mut fields = Fields::new(&body);
    let token = fields.required("refresh_token", string(256));
    fields.finish()?;
    Ok(token.unwrap_or_default())
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
    let rows = run(
        call.sql,
        store::REFRESH_BY_HASH,
        vec![secret::digest(token).into()],
    )
    .await
    .map_err(|e| storage(&e))?;
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
    run(
        call.sql,
        store::REVOKE_FAMILY,
        vec![tenant.into(), family.into(), call.secs().into()],
    )
    .await
    .map(drop)
    .map_err(|e| storage(&e))
}

/// `POST /v1/auth/refresh`: rotates the refresh token. Presenting a token
/// that was already rotated revokes its whole family (RFC 9700 §4.14.2).
pub async fn refresh(call: &Call<'_>) -> Handled {
    call.keys()?;
    let token = refresh_token_field(call)?;
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
    let won = run(
        call.sql,
        store::ROTATE_REFRESH,
        vec![row.id.clone().into(), call.secs().into()],
    )
    .await
    .map_err(|e| storage(&e))?;
    if won.rows.is_empty() {
        // Another request rotated it first: the same token used twice.
        revoke_family(call, &row.tenant, &row.family).await?;
        return Err(ApiError::RefreshTokenReused);
    }
    let users = run(
        call.sql,
        store::USER_BY_ID,
        vec![row.tenant.clone().into(), row.user_id.clone().into()],
    )
    .await
    .map_err(|e| storage(&e))?;
    let Some(user) = first(&users) else {
        return Err(ApiError::InvalidRefreshToken);
    };
    let role = user
        .text("role")
        .ok()
        .and_then(|r| Role::parse(&r).ok())
        .ok_or_else(|| storage(&PortError("bad role".into())))?;
    let tenant = TenantId::parse(&row.tenant).ok_or(ApiError::InvalidRefreshToken)?;
    issue_session(call, &tenant, &row.user_id, role, Some(row.family)).await
}

/// `POST /v1/auth/logout`: ends the session (the refresh token's family).
/// Idempotent: an unknown or revoked token also answers 204. Access tokens
/// already issued stay valid until they expire (at most 15 minutes).
pub async fn logout(call: &Call<'_>) -> Handled {
    let token = refresh_token_field(call)?;
    if let Some(row) = find_refresh(call, &token).await? {
        revoke_family(call, &row.tenant, &row.family).await?;
    }
    Ok(no_content())
}

/// `GET /v1/auth/me`.
pub async fn me(call: &Call<'_>, principal: &Principal) -> Handled {
    let Principal::User {
        tenant, user_id, ..
    } = principal
    else {
        return Err(ApiError::Forbidden);
    };
    let rows = run(
        call.sql,
        store::USER_BY_ID,
        vec![tenant.as_str().into(), user_id.clone().into()],
    )
    .await
    .map_err(|e| storage(&e))?;
    let user = first(&rows).ok_or(ApiError::InvalidToken {
        reason: "the token's user no longer exists",
    })?;
    Ok(json(
        StatusCode::OK,
        &user_json(&user, tenant).map_err(|e| storage(&e))?,
    ))
}

// ------------------------------------------------------------------- users

/// `?limit=&cursor=` of list endpoints.
fn page(call: &Call<'_>) -> Result<(String, i64), ApiError> {
    let mut cursor = String::new();
    let mut limit = DEFAULT_PAGE;
    let mut errors = Vec::new();
    for (name, value) in query_pairs(call.req.uri().query().unwrap_or("")) {
        match name.as_str() {
            "cursor" => cursor = value,
            "limit" => match value.parse::<i64>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => limit = n,
                _ => errors.push(crate::validate::FieldError {
                    field: "limit".into(),
                    code: "out_of_range",
                    message: format!("must be a whole number from 1 to {MAX_PAGE}"),
                }),
            },
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok((cursor, limit))
    } else {
        Err(ApiError::Validation { errors })
    }
}

/// `a=1&b=x%20y` → pairs, percent-decoded; a malformed escape leaves the
/// value as sent.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(raw: &str) -> String {
        let bytes = raw.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => match raw
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => return raw.to_owned(),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap_or_else(|_| raw.to_owned())
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn admin_tenant(principal: &Principal) -> Result<(&TenantId, &str), ApiError> {
    match principal {
        Principal::User {
            tenant,
            user_id,
            role: Role::Admin,
        } => Ok((tenant, user_id)),
        _ => Err(ApiError::Forbidden),
    }
}

fn list_body(items: &[Value], limit: i64, last_id: Option<String>) -> Value {
    let full = i64::try_from(items.len()).unwrap_or(i64::MAX) >= limit;
    json!({
        "items": items,
        "next_cursor": if full { last_id } else { None },
    })
}

/// `GET /v1/users?limit=&cursor=`: the admin's tenant's users by id.
pub async fn list_users(call: &Call<'_>, principal: &Principal) -> Handled {
    let (tenant, _) = admin_tenant(principal)?;
    let (cursor, limit) = page(call)?;
    let rows = run(
        call.sql,
        store::USERS_PAGE,
        vec![tenant.as_str().into(), cursor.into(), limit.into()],
    )
    .await
    .map_err(|e| storage(&e))?;
    let mut items = Vec::new();
    let mut last = None;
    for row in store::each(&rows) {
        last = Some(row.text("id").map_err(|e| storage(&e))?);
        items.push(user_json(&row, tenant).map_err(|e| storage(&e))?);
    }
    Ok(json(StatusCode::OK, &list_body(&items, limit, last)))
}

/// `POST /v1/users` {email, password, role}.
pub async fn create_user(call: &Call<'_>, principal: &Principal) -> Handled {
    let (tenant, _) = admin_tenant(principal)?;
    let body = json_object(call.req)?;
    let mut fields = Fields::new(&body);
    let email = fields.required("email", parsed(254, Email::parse));
    let password = fields.required("password", parsed(1024, NewPassword::parse));
    let role = fields.required("role", parsed(16, Role::parse));
    fields.finish()?;
    let (Some(email), Some(password), Some(role)) = (email, password, role) else {
        unreachable!("finish() fails when a required field is missing");
    };
    let id = secret::id(call.entropy, "usr_");
    let hash = password::hash(password.as_str(), call.entropy);
    let inserted = run(
        call.sql,
        store::INSERT_USER,
        vec![
            id.clone().into(),
            tenant.as_str().into(),
            email.as_str().into(),
            hash.into(),
            role.as_str().into(),
            call.secs().into(),
        ],
    )
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if e.is_constraint_violation() => return Err(ApiError::EmailTaken),
        Err(e) => return Err(storage(&e)),
    }
    let body = json!({
        "id": id,
        "tenant": tenant.as_str(),
        "email": email.as_str(),
        "role": role.as_str(),
        "created_at": rfc3339(call.secs()),
        "updated_at": rfc3339(call.secs()),
    });
    Ok(created(&format!("/v1/users/{id}"), &body))
}

/// `GET /v1/users/{id}`: 404 for ids of other tenants, as for unknown ones.
pub async fn get_user(call: &Call<'_>, principal: &Principal) -> Handled {
    let (tenant, _) = admin_tenant(principal)?;
    let rows = run(
        call.sql,
        store::USER_BY_ID,
        vec![tenant.as_str().into(), call.param("id").into()],
    )
    .await
    .map_err(|e| storage(&e))?;
    let user = first(&rows).ok_or(ApiError::NotFound)?;
    Ok(json(
        StatusCode::OK,
        &user_json(&user, tenant).map_err(|e| storage(&e))?,
    ))
}

/// `PATCH /v1/users/{id}` {email?, password?, role?}. A new password ends
/// the user's sessions.
pub async fn update_user(call: &Call<'_>, principal: &Principal) -> Handled {
    let (tenant, _) = admin_tenant(principal)?;
    let body = json_object(call.req)?;
    let mut fields = Fields::new(&body);
    let email = fields.optional("email", parsed(254, Email::parse));
    let password = fields.optional("password", parsed(1024, NewPassword::parse));
    let role = fields.optional("role", parsed(16, Role::parse));
    if body.values().all(Value::is_null) {
        fields.reject(
            "",
            Invalid::new("required", "give at least one of email, password, role"),
        );
    }
    fields.finish()?;
    let id = call.param("id");
    let new_password = password.is_some();
    let hash = password.map(|p| password::hash(p.as_str(), call.entropy));
    let updated = run(
        call.sql,
        store::UPDATE_USER,
        vec![
            tenant.as_str().into(),
            id.into(),
            email.as_ref().map(Email::as_str).into(),
            hash.into(),
            role.map(Role::as_str).into(),
            call.secs().into(),
        ],
    )
    .await;
    let rows = match updated {
        Ok(rows) => rows,
        Err(e) if e.is_constraint_violation() => return Err(ApiError::EmailTaken),
        Err(e) => return Err(storage(&e)),
    };
    let Some(user) = first(&rows) else {
        return Err(missing_or_last_admin(call, tenant, id).await?);
    };
    if new_password {
        revoke_sessions(call, tenant, id).await?;
    }
    Ok(json(
        StatusCode::OK,
        &user_json(&user, tenant).map_err(|e| storage(&e))?,
    ))
}

/// Why a guarded write changed nothing: the user is not there, or is the
/// tenant's last admin.
async fn missing_or_last_admin(
    call: &Call<'_>,
    tenant: &TenantId,
    id: &str,
) -> Result<ApiError, ApiError> {
    let rows = run(
        call.sql,
        store::USER_BY_ID,
        vec![tenant.as_str().into(), id.into()],
    )
    .await
    .map_err(|e| storage(&e))?;
    Ok(if rows.rows.is_empty() {
        ApiError::NotFound
    } else {
        ApiError::LastAdmin
    })
}

async fn revoke_sessions(
    call: &Call<'_>,
    tenant: &TenantId,
    user_id: &str,
) -> Result<(), ApiError> {
    run(
        call.sql,
        store::REVOKE_USER_SESSIONS,
        vec![tenant.as_str().into(), user_id.into(), call.secs().into()],
    )
    .await
    .map(drop)
    .map_err(|e| storage(&e))
}

/// `DELETE /v1/users/{id}`: removes the user and ends their sessions.
pub async fn delete_user(call: &Call<'_>, principal: &Principal) -> Handled {
    let (tenant, _) = admin_tenant(principal)?;
    let id = call.param("id");
    let deleted = run(
        call.sql,
        store::DELETE_USER,
        vec![tenant.as_str().into(), id.into()],
    )
    .await
    .map_err(|e| storage(&e))?;
    if deleted.rows.is_empty() {
        return Err(missing_or_last_admin(call, tenant, id).await?);
    }
    revoke_sessions(call, tenant, id).await?;
    Ok(no_content())
}

// ---------------------------------------------------------------- API keys

fn scopes_field(value: &Value) -> Result<Vec<Scope>, Invalid> {
    let items = value
        .as_array()
        .ok_or_else(|| Invalid::new("type", "must be an array of scopes"))?;
    if items.is_empty() {
        return Err(Invalid::new("required", "give at least one scope"));
    }
    let mut scopes = Vec::new();
    for item in items {
        let scope = item
            .as_str()
            .ok_or_else(|| Invalid::new("type", "scopes are strings"))
            .and_then(Scope::parse)?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    Ok(scopes)
}

fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn scopes_list(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

/// Whether `tenant` is the operator tenant.
pub async fn is_operator(sql: &dyn Sql, tenant: &TenantId) -> Result<bool, ApiError> {
    let rows = run(sql, store::TENANT_OPERATOR, vec![tenant.as_str().into()])
        .await
        .map_err(|e| storage(&e))?;
    Ok(first(&rows).is_some_and(|r| r.integer("operator").is_ok_and(|o| o == 1)))
}

/// `GET /v1/api-keys`: the tenant's keys, without their secrets.
pub async fn list_api_keys(call: &Call<'_>, principal: &Principal) -> Handled {
    let (tenant, _) = admin_tenant(principal)?;
    let (cursor, limit) = page(call)?;
    let rows = run(
        call.sql,
        store::API_KEYS_PAGE,
        vec![tenant.as_str().into(), cursor.into(), limit.into()],
    )
    .await
    .map_err(|e| storage(&e))?;
    let mut items = Vec::new();
    let mut last = None;
    for row in store::each(&rows) {
        let read = || -> Result<Value, PortError> {
            Ok(json!({
                "id": row.text("id")?,
                "name": row.text("name")?,
                "scopes": scopes_list(&row.text("scopes")?),
                "created_by": row.text("created_by")?,
                "created_at": rfc3339(row.integer("created_at")?),
            }))
        };
        let item = read().map_err(|e| storage(&e))?;
        last = item["id"].as_str().map(str::to_owned);
        items.push(item);
    }
    Ok(json(StatusCode::OK, &list_body(&items, limit, last)))
}

/// `POST /v1/api-keys` {name, scopes}: the key is in this answer only.
pub async fn create_api_key(call: &Call<'_>, principal: &Principal) -> Handled {
    let (tenant, user_id) = admin_tenant(principal)?;
    let body = json_object(call.req)?;
    let mut fields = Fields::new(&body);
    let name = fields.required("name", parsed(100, non_empty));
    let scopes = fields.required("scopes", scopes_field);
    fields.finish()?;
    let (Some(name), Some(scopes)) = (name, scopes) else {
        unreachable!("finish() fails when a required field is missing");
    };
    // Every scope is a platform scope today.
    if let Some(scope) = scopes.first()
        && !is_operator(call.sql, tenant).await?
    {
        return Err(ApiError::ScopeNotGrantable {
            scope: scope.as_str().to_owned(),
        });
    }
    let id = secret::id(call.entropy, "key_");
    let key = secret::credential(call.entropy, secret::API_KEY_PREFIX);
    let text = scopes_text(&scopes);
    run(
        call.sql,
        store::INSERT_API_KEY,
        vec![
            id.clone().into(),
            tenant.as_str().into(),
            name.clone().into(),
            text.clone().into(),
            secret::digest(&key).into(),
            user_id.into(),
            call.secs().into(),
        ],
    )
    .await
    .map_err(|e| storage(&e))?;
    let body = json!({
        "id": id,
        "name": name,
        "scopes": scopes_list(&text),
        "key": key,
        "created_by": user_id,
        "created_at": rfc3339(call.secs()),
    });
    Ok(created(&format!("/v1/api-keys/{id}"), &body))
}

/// `DELETE /v1/api-keys/{id}`: the key stops working at once.
pub async fn delete_api_key(call: &Call<'_>, principal: &Principal) -> Handled {
    let (tenant, _) = admin_tenant(principal)?;
    let deleted = run(
        call.sql,
        store::DELETE_API_KEY,
        vec![tenant.as_str().into(), call.param("id").into()],
    )
    .await
    .map_err(|e| storage(&e))?;
    if deleted.rows.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(no_content())
}

/// The principal an API key stands for; `InvalidApiKey` when unknown.
pub async fn authenticate_api_key(sql: &dyn Sql, key: &str) -> Result<Principal, ApiError> {
    let rows = run(
        sql,
        store::API_KEY_BY_HASH,
        vec![secret::digest(key).into()],
    )
    .await
    .map_err(|e| storage(&e))?;
    let row = first(&rows).ok_or(ApiError::InvalidApiKey)?;
    let read = || -> Result<(String, String, String), PortError> {
        Ok((row.text("id")?, row.text("tenant_id")?, row.text("scopes")?))
    };
    let (key_id, tenant, scopes) = read().map_err(|e| storage(&e))?;
    Ok(Principal::ApiKey {
        tenant: TenantId::parse(&tenant).ok_or(ApiError::InvalidApiKey)?,
        key_id,
        scopes: scopes_list(&scopes)
            .into_iter()
            .filter_map(|s| Scope::parse(s).ok())
            .collect(),
    })
}

fn non_empty(raw: &str) -> Result<String, Invalid> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        Err(Invalid::new("required", "must not be empty"))
    } else {
        Ok(trimmed.to_owned())
    }
}

// ----------------------------------------------------------------- tenants

struct NewTenant {
    id: TenantId,
    name: String,
    email: Email,
    password: NewPassword,
}

fn new_tenant(
    body: &Map<String, Value>,
    id: &'static str,
    email: &'static str,
    password: &'static str,
) -> Result<NewTenant, ApiError> {
    let mut fields = Fields::new(body);
    let tenant = fields.required(id, parsed(63, tenant_id));
    let name = fields.required("name", parsed(100, non_empty));
    let email = fields.required(email, parsed(254, Email::parse));
    let password = fields.required(password, parsed(1024, NewPassword::parse));
    fields.finish()?;
    match (tenant, name, email, password) {
        (Some(id), Some(name), Some(email), Some(password)) => Ok(NewTenant {
            id,
            name,
            email,
            password,
        }),
        _ => unreachable!("finish() fails when a required field is missing"),
    }
}

/// Inserts a tenant and its first admin in one transaction.
async fn insert_tenant(
    call: &Call<'_>,
    new: &NewTenant,
    operator: bool,
) -> Result<String, PortError> {
    let user_id = secret::id(call.entropy, "usr_");
    let hash = password::hash(new.password.as_str(), call.entropy);
    let now = call.secs();
    store::atomically(
        call.sql,
        vec![
            Statement::new(
                store::INSERT_TENANT,
                vec![
                    new.id.as_str().into(),
                    new.name.clone().into(),
                    operator.into(),
                    now.into(),
                ],
            ),
            Statement::new(
                store::INSERT_USER,
                vec![
                    user_id.clone().into(),
                    new.id.as_str().into(),
                    new.email.as_str().into(),
                    hash.into(),
                    Role::Admin.as_str().into(),
                    now.into(),
                ],
            ),
        ],
    )
    .await?;
    Ok(user_id)
}

fn tenant_created(new: &NewTenant, admin_id: &str, operator: bool) -> Response<Bytes> {
    created(
        &format!("/v1/tenants/{}", new.id.as_str()),
        &json!({
            "id": new.id.as_str(),
            "name": new.name,
            "operator": operator,
            "admin": {"id": admin_id, "email": new.email.as_str(), "role": "admin"},
        }),
    )
}

/// `POST /v1/bootstrap` with `Authorization: Bearer <BOOTSTRAP_TOKEN>`:
/// creates the operator tenant and its first admin, once.
pub async fn bootstrap(call: &Call<'_>) -> Handled {
    let expected = call
        .auth
        .bootstrap_token
        .as_ref()
        .ok_or(ApiError::BootstrapDisabled)?;
    let presented = bearer(call.req).ok_or(ApiError::Unauthenticated)?;
    if !expected.matches(presented) {
        return Err(ApiError::InvalidToken {
            reason: "the bootstrap token is wrong",
        });
    }
    let body = json_object(call.req)?;
    let new = new_tenant(&body, "tenant", "email", "password")?;
    let count = run(call.sql, store::TENANT_COUNT, vec![])
        .await
        .map_err(|e| storage(&e))?;
    if first(&count).is_some_and(|r| r.integer("n").is_ok_and(|n| n > 0)) {
        return Err(ApiError::AlreadyBootstrapped);
    }
    match insert_tenant(call, &new, true).await {
        Ok(admin) => Ok(tenant_created(&new, &admin, true)),
        // Another bootstrap won the race (one operator tenant, by index).
        Err(e) if e.is_constraint_violation() => Err(ApiError::AlreadyBootstrapped),
        Err(e) => Err(storage(&e)),
    }
}

/// `POST /v1/tenants` {`id`, `name`, `admin_email`, `admin_password`}: an operator
/// admin creates a tenant and its first admin.
pub async fn create_tenant(call: &Call<'_>) -> Handled {
    let body = json_object(call.req)?;
    let new = new_tenant(&body, "id", "admin_email", "admin_password")?;
    match insert_tenant(call, &new, false).await {
        Ok(admin) => Ok(tenant_created(&new, &admin, false)),
        Err(e) if e.is_constraint_violation() => Err(ApiError::TenantExists),
        Err(e) => Err(storage(&e)),
    }
}
