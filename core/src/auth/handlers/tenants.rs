//! Tenants: the first one by bootstrapping, more by operator admins. Each
//! is created with its first admin and its webhook signing secret, which
//! the creating answer shows once.

use bytes::Bytes;
use http::Response;
use serde_json::{Map, Value, json};

use super::{Call, Handled, bearer, created, exec, non_empty, storage};
use crate::api::context::TenantId;
use crate::api::error::ApiError;
use crate::api::validate::{Fields, json_object, parsed};
use crate::auth::store::{self, first};
use crate::auth::webhook_secret::{derive, new_salt};
use crate::auth::{Email, NewPassword, Role, password, tenant_id};
use crate::ports::{PortError, Statement};
use crate::secret::{self, Secret};

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

/// What creating a tenant made: its first admin's id, and its webhook
/// signing secret (`None` without `WEBHOOK_SIGNING_SECRET`).
struct Inserted {
    admin_id: String,
    webhook_secret: Option<Secret>,
}

/// Inserts a tenant, its first admin and its webhook secret's salt in one
/// transaction.
async fn insert_tenant(
    call: &Call<'_>,
    new: &NewTenant,
    operator: bool,
) -> Result<Inserted, PortError> {
    let user_id = secret::id(call.entropy, "usr_");
    let hash = password::hash(new.password.as_str(), call.entropy);
    let salt = new_salt(call.entropy);
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
            // After the tenant: D1 enforces the foreign key.
            Statement::new(
                store::INSERT_WEBHOOK_SECRET,
                vec![new.id.as_str().into(), salt.clone().into(), now.into()],
            ),
        ],
    )
    .await?;
    Ok(Inserted {
        admin_id: user_id,
        webhook_secret: call
            .webhook_key
            .map(|key| derive(key, new.id.as_str(), &salt)),
    })
}

/// The answer shows the webhook secret, once: it is never shown again
/// (`null` without `WEBHOOK_SIGNING_SECRET`; the admins rotate once it is
/// set).
fn tenant_created(new: &NewTenant, inserted: &Inserted, operator: bool) -> Response<Bytes> {
    created(
        None,
        &json!({
            "id": new.id.as_str(),
            "name": new.name,
            "operator": operator,
            "admin": {"id": inserted.admin_id, "email": new.email.as_str(), "role": "admin"},
            "webhook_secret": inserted.webhook_secret.as_ref().map(Secret::expose),
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
        Ok(inserted) => Ok(tenant_created(&new, &inserted, true)),
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
        Ok(inserted) => Ok(tenant_created(&new, &inserted, false)),
        Err(e) if e.is_constraint_violation() => Err(ApiError::TenantExists),
        Err(e) => Err(storage(&e)),
    }
}
