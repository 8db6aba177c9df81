//! API keys: scoped credentials for machine clients.

use http::StatusCode;
use serde_json::{Value, json};

use super::{
    Call, Handled, admin_tenant, created, exec, json_response, list_body, no_content, non_empty,
    page, rfc3339, storage,
};
use crate::api::error::ApiError;
use crate::api::validate::{Fields, Invalid, json_object, parsed};
use crate::auth::middleware::is_operator;
use crate::auth::store;
use crate::auth::{Principal, Scope};
use crate::ports::PortError;
use crate::secret;

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

/// `GET /v1/api-keys`: the tenant's keys, without their secrets.
pub async fn list_api_keys(call: &Call<'_>, principal: &Principal) -> Handled {
    let (tenant, _) = admin_tenant(principal)?;
    let (cursor, limit) = page(call)?;
    let rows = exec(
        call.sql,
        store::API_KEYS_PAGE,
        vec![tenant.as_str().into(), cursor.into(), limit.into()],
    )
    .await?;
    let mut items = Vec::new();
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
        items.push(read().map_err(|e| storage(&e))?);
    }
    Ok(json_response(StatusCode::OK, &list_body(&items, limit)))
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
    exec(
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
    .await?;
    let body = json!({
        "id": id,
        "name": name,
        "scopes": scopes_list(&text),
        "key": key,
        "created_by": user_id,
        "created_at": rfc3339(call.secs()),
    });
    // No route reads one key back (its secret is shown only here).
    Ok(created(None, &body))
}

/// `DELETE /v1/api-keys/{id}`: the key stops working at once.
pub async fn delete_api_key(call: &Call<'_>, principal: &Principal) -> Handled {
    let (tenant, _) = admin_tenant(principal)?;
    let deleted = exec(
        call.sql,
        store::DELETE_API_KEY,
        vec![tenant.as_str().into(), call.param("id").into()],
    )
    .await?;
    if deleted.rows.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(no_content())
}
