//! The caller's tenant's webhook signing secret: its metadata, and
//! rotation with an overlap during which the previous secret still signs.
//! The secret itself is shown only when it is made (tenant creation,
//! rotation); see `auth::webhook_secret` for how it is derived.

use bytes::Bytes;
use http::{Request, StatusCode};
use serde_json::{Value, json};

use super::{Call, Handled, admin_tenant, created, exec, json_response, rfc3339, storage};
use crate::api::context::TenantId;
use crate::api::error::ApiError;
use crate::api::validate::{Fields, Invalid, json_object};
use crate::auth::Principal;
use crate::auth::store::{self, first};
use crate::auth::webhook_secret::{
    DEFAULT_OVERLAP_SECS, MAX_OVERLAP_SECS, Salts, derive, fingerprint, new_salt,
};
use crate::ports::PortError;
use crate::secret::Secret;

/// Where the metadata is read; the rotation's `Location`.
const PATH: &str = "/v1/webhook-secret";

/// What may be said about the secrets without showing them.
fn metadata(key: &Secret, tenant: &TenantId, salts: &Salts, now: i64) -> Value {
    let tenant = tenant.as_str();
    json!({
        "fingerprint": fingerprint(&derive(key, tenant, &salts.salt)),
        "created_at": rfc3339(salts.created_at),
        "previous": salts.previous_at(now).map(|previous| json!({
            "fingerprint": fingerprint(&derive(key, tenant, &previous.salt)),
            "valid_until": rfc3339(previous.until),
        })),
    })
}

fn signing_key<'a>(call: &Call<'a>) -> Result<&'a Secret, ApiError> {
    call.webhook_key.ok_or(ApiError::WebhookSigningUnavailable)
}

/// `GET /v1/webhook-secret`: fingerprints and times, never a secret.
pub async fn get_webhook_secret(call: &Call<'_>, principal: &Principal) -> Handled {
    let (tenant, _) = admin_tenant(principal)?;
    let key = signing_key(call)?;
    let rows = exec(
        call.sql,
        store::WEBHOOK_SECRET_BY_TENANT,
        vec![tenant.as_str().into()],
    )
    .await?;
    // No row: a tenant an older build created during a rolling deploy;
    // rotating gives it one.
    let row = first(&rows).ok_or(ApiError::NotFound)?;
    let salts = Salts::read(&row).map_err(|e| storage(&e))?;
    Ok(json_response(
        StatusCode::OK,
        &metadata(key, tenant, &salts, call.secs()),
    ))
}

/// `POST /v1/webhook-secret/rotate` {`overlap_seconds`?}: a new secret,
/// shown in this answer only; the one it replaces still signs for the
/// overlap.
pub async fn rotate_webhook_secret(call: &Call<'_>, principal: &Principal) -> Handled {
    let (tenant, _) = admin_tenant(principal)?;
    let key = signing_key(call)?;
    let overlap = overlap_secs(call.req)?;
    let now = call.secs();
    let rows = exec(
        call.sql,
        store::ROTATE_WEBHOOK_SECRET,
        vec![
            tenant.as_str().into(),
            new_salt(call.entropy).into(),
            (now + overlap).into(),
            now.into(),
        ],
    )
    .await?;
    let salts = first(&rows)
        .ok_or_else(|| PortError("the rotation returned no row".into()))
        .and_then(|row| Salts::read(&row))
        .map_err(|e| storage(&e))?;
    let mut body = metadata(key, tenant, &salts, now);
    body["webhook_secret"] = json!(derive(key, tenant.as_str(), &salts.salt).expose());
    Ok(created(Some(PATH), &body))
}

/// The optional body's `overlap_seconds`: no body at all, `{}` and `null`
/// mean the default.
fn overlap_secs(req: &Request<Bytes>) -> Result<i64, ApiError> {
    if req.body().is_empty() {
        return Ok(DEFAULT_OVERLAP_SECS);
    }
    let body = json_object(req)?;
    let mut fields = Fields::new(&body);
    let overlap = fields.optional("overlap_seconds", overlap_field);
    fields.finish()?;
    Ok(overlap.unwrap_or(DEFAULT_OVERLAP_SECS))
}

fn overlap_field(value: &Value) -> Result<i64, Invalid> {
    match value.as_i64() {
        Some(n) if (0..=MAX_OVERLAP_SECS).contains(&n) => Ok(n),
        Some(_) => Err(out_of_range()),
        None if value.is_u64() => Err(out_of_range()),
        None => Err(Invalid::new(
            "type",
            "must be a whole number of seconds (0 to 604800)",
        )),
    }
}

fn out_of_range() -> Invalid {
    Invalid::new(
        "out_of_range",
        format!("must be from 0 to {MAX_OVERLAP_SECS} seconds (seven days)"),
    )
}
