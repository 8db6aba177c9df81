//! A tenant's users, managed by its admins.

use http::StatusCode;
use serde_json::{Value, json};

use super::{
    Call, Handled, admin_tenant, created, exec, json_response, list_body, no_content, page,
    rfc3339, storage,
};
use crate::api::context::TenantId;
use crate::api::error::ApiError;
use crate::api::validate::{Fields, Invalid, json_object, parsed};
use crate::auth::store::{self, first, run};
use crate::auth::{Email, NewPassword, Principal, Role, password};
use crate::ports::PortError;
use crate::secret;

pub(super) fn user_json(row: &store::Row<'_>, tenant: &TenantId) -> Result<Value, PortError> {
    Ok(json!({
        "id": row.text("id")?,
        "tenant": tenant.as_str(),
        "email": row.text("email")?,
        "role": row.text("role")?,
        "created_at": rfc3339(row.integer("created_at")?),
        "updated_at": rfc3339(row.integer("updated_at")?),
    }))
}

/// `GET /v1/users?limit=&cursor=`: the admin's tenant's users by id.
pub async fn list_users(call: &Call<'_>, principal: &Principal) -> Handled {
    let (tenant, _) = admin_tenant(principal)?;
    let (cursor, limit) = page(call)?;
    let rows = exec(
        call.sql,
        store::USERS_PAGE,
        vec![tenant.as_str().into(), cursor.into(), limit.into()],
    )
    .await?;
    let mut items = Vec::new();
    for row in store::each(&rows) {
        items.push(user_json(&row, tenant).map_err(|e| storage(&e))?);
    }
    Ok(json_response(StatusCode::OK, &list_body(&items, limit)))
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
    Ok(created(Some(&format!("/v1/users/{id}")), &body))
}

/// `GET /v1/users/{id}`: 404 for ids of other tenants, as for unknown ones.
pub async fn get_user(call: &Call<'_>, principal: &Principal) -> Handled {
    let (tenant, _) = admin_tenant(principal)?;
    let rows = exec(
        call.sql,
        store::USER_BY_ID,
        vec![tenant.as_str().into(), call.param("id").into()],
    )
    .await?;
    let user = first(&rows).ok_or(ApiError::NotFound)?;
    Ok(json_response(
        StatusCode::OK,
        &user_json(&user, tenant).map_err(|e| storage(&e))?,
    ))
}

/// `PATCH /v1/users/{id}` {email?, password?, role?}. A new password or a
/// demotion ends the user's sessions.
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
    // A new password, or a demotion, ends the user's sessions.
    let end_sessions = password.is_some() || role == Some(Role::User);
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
    if end_sessions {
        revoke_sessions(call, tenant, id).await?;
    }
    Ok(json_response(
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
    let rows = exec(
        call.sql,
        store::USER_BY_ID,
        vec![tenant.as_str().into(), id.into()],
    )
    .await?;
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
    exec(
        call.sql,
        store::REVOKE_USER_SESSIONS,
        vec![tenant.as_str().into(), user_id.into(), call.secs().into()],
    )
    .await
    .map(drop)
}

/// `DELETE /v1/users/{id}`: removes the user and ends their sessions.
pub async fn delete_user(call: &Call<'_>, principal: &Principal) -> Handled {
    let (tenant, _) = admin_tenant(principal)?;
    let id = call.param("id");
    let deleted = exec(
        call.sql,
        store::DELETE_USER,
        vec![tenant.as_str().into(), id.into()],
    )
    .await?;
    if deleted.rows.is_empty() {
        return Err(missing_or_last_admin(call, tenant, id).await?);
    }
    revoke_sessions(call, tenant, id).await?;
    Ok(no_content())
}
