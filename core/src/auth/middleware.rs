//! The authentication middleware: who is calling (an API key or an access
//! token), and whether they may call the route (`X-Tenant-ID` and the
//! route's requirement, `rbac::decide`). Runs before every handler that
//! needs credentials.

use bytes::Bytes;
use http::{Method, Request};

use crate::api::context::{TENANT_ID, TenantId};
use crate::api::error::ApiError;
use crate::api::response::{bearer, exec, storage};
use crate::auth::rbac::{self, Requirement};
use crate::auth::store::{self, first};
use crate::auth::token_cache::TokenCache;
use crate::auth::{AuthConfig, Principal, Role, Scope};
use crate::ports::{PortError, Sql};
use crate::secret;
use crate::time::Timestamp;

/// Authenticates the caller: an API key or an access token.
pub async fn authenticate(
    auth: &AuthConfig,
    tokens: &TokenCache,
    req: &Request<Bytes>,
    sql: Option<&dyn Sql>,
    now: Timestamp,
) -> Result<Principal, ApiError> {
    let keys = auth
        .signing_keys
        .as_ref()
        .ok_or(ApiError::AuthUnavailable)?;
    let credential = bearer(req).ok_or(ApiError::Unauthenticated)?;
    let principal = if credential.starts_with(secret::API_KEY_PREFIX) {
        let sql = sql.ok_or(ApiError::StorageUnavailable)?;
        authenticate_api_key(sql, credential).await?
    } else {
        let claims = tokens
            .verify(keys, credential, now, &auth.issuer, &auth.audience)
            .map_err(|e| ApiError::InvalidToken {
                reason: e.description(),
            })?;
        let tenant = TenantId::parse(&claims.tenant).ok_or(ApiError::InvalidToken {
            reason: "the token's tenant is malformed",
        })?;
        let role = Role::parse(&claims.role).map_err(|_| ApiError::InvalidToken {
            reason: "the token's role is unknown",
        })?;
        Principal::User {
            tenant,
            user_id: claims.sub,
            role,
        }
    };
    Ok(principal)
}

/// Checks that `X-Tenant-ID`, when sent, names the caller's tenant, and
/// applies the permission matrix. Answers the principal the handler acts
/// as: for a user's request that changes something, the user as stored
/// now (a demoted admin acts as a user, a deleted user not at all), so no
/// handler's own role check trusts a stale token either.
pub async fn permit(
    req: &Request<Bytes>,
    requirement: Requirement,
    principal: Principal,
    sql: Option<&dyn Sql>,
) -> Result<Principal, ApiError> {
    // Any X-Tenant-ID that is not exactly the caller's tenant, malformed
    // ones included, is refused.
    for value in req.headers().get_all(TENANT_ID) {
        if value.as_bytes() != principal.tenant().as_str().as_bytes() {
            return Err(ApiError::TenantMismatch);
        }
    }
    // Authority to change things is read live: a token carries its role for
    // up to ACCESS_TOKEN_SECONDS, so every write by a user reads the user's
    // row (one indexed read). Reads trust the token until it expires.
    let principal = match principal {
        Principal::User {
            tenant, user_id, ..
        } if changes_state(req.method()) => {
            let sql = sql.ok_or(ApiError::StorageUnavailable)?;
            live_user(sql, &tenant, &user_id).await?
        }
        other => other,
    };
    let operator =
        if requirement.needs_operator_flag() && matches!(principal, Principal::User { .. }) {
            let sql = sql.ok_or(ApiError::StorageUnavailable)?;
            is_operator(sql, principal.tenant()).await?
        } else {
            false
        };
    rbac::decide(requirement, &principal, operator)?;
    Ok(principal)
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The user as the database has them now; `InvalidToken` when deleted.
async fn live_user(sql: &dyn Sql, tenant: &TenantId, user_id: &str) -> Result<Principal, ApiError> {
    let rows = exec(
        sql,
        store::USER_BY_ID,
        vec![tenant.as_str().into(), user_id.into()],
    )
    .await?;
    let row = first(&rows).ok_or(ApiError::InvalidToken {
        reason: "the token's user no longer exists",
    })?;
    let role = row.text("role").map_err(|e| storage(&e))?;
    Ok(Principal::User {
        tenant: tenant.clone(),
        user_id: user_id.to_owned(),
        role: Role::parse(&role).map_err(|_| ApiError::InvalidToken {
            reason: "the token's role is unknown",
        })?,
    })
}

/// Whether `tenant` is the operator tenant.
pub async fn is_operator(sql: &dyn Sql, tenant: &TenantId) -> Result<bool, ApiError> {
    let rows = exec(sql, store::TENANT_OPERATOR, vec![tenant.as_str().into()]).await?;
    Ok(first(&rows).is_some_and(|r| r.integer("operator").is_ok_and(|o| o == 1)))
}

/// The principal an API key stands for; `InvalidApiKey` when unknown.
pub async fn authenticate_api_key(sql: &dyn Sql, key: &str) -> Result<Principal, ApiError> {
    let rows = exec(
        sql,
        store::API_KEY_BY_HASH,
        vec![secret::digest(key).into()],
    )
    .await?;
    let row = first(&rows).ok_or(ApiError::InvalidApiKey)?;
    let read = || -> Result<(String, String, String), PortError> {
        Ok((row.text("id")?, row.text("tenant_id")?, row.text("scopes")?))
    };
    let (key_id, tenant, scopes) = read().map_err(|e| storage(&e))?;
    Ok(Principal::ApiKey {
        tenant: TenantId::parse(&tenant).ok_or(ApiError::InvalidApiKey)?,
        key_id,
        scopes: scopes
            .split_whitespace()
            .filter_map(|s| Scope::parse(s).ok())
            .collect(),
    })
}
