//! Tenants: the first one by bootstrapping, more by operator admins.

use bytes::Bytes;
use http::Response;
use serde_json::{Map, Value, json};

use super::{Call, Handled, bearer, created, exec, non_empty, storage};
use crate::api::context::TenantId;
use crate::api::error::ApiError;
use crate::api::validate::{Fields, json_object, parsed};
use crate::auth::store::{self, first};
use crate::auth::{Email, NewPassword, Role, password, tenant_id};
use crate::ports::{PortError, Statement};
use crate::secret;

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
        None,
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
    let count = exec(call.sql, store::TENANT_COUNT, vec![]).await?;
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
