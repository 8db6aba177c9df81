//! The auth endpoints: bootstrap, login/refresh/logout/me, users, API keys,
//! tenants and the tenant's webhook signing secret. Each takes the request and the ports it needs and answers a
//! response or an `ApiError`; authentication and the permission check have
//! already run (see `App::serve`).

mod api_keys;
mod session;
mod tenants;
mod users;
mod webhook_secret;

pub use api_keys::{create_api_key, delete_api_key, list_api_keys};
pub use session::{login, logout, me, refresh};
pub use tenants::{bootstrap, create_tenant};
pub use users::{create_user, delete_user, get_user, list_users, update_user};
pub use webhook_secret::{get_webhook_secret, rotate_webhook_secret};

use bytes::Bytes;
use http::Request;

use crate::api::context::TenantId;
use crate::api::error::ApiError;
#[allow(unused_imports)]
pub(crate) use crate::api::response::{
    DEFAULT_PAGE, Handled, MAX_PAGE, bearer, created, exec, json_response, list_body, no_content,
    page_of, query_pairs, rfc3339, storage,
};
use crate::api::validate::Invalid;
use crate::auth::keys::SigningKeys;
use crate::auth::{AuthConfig, Principal, Role};
use crate::ports::{Entropy, Sql};
use crate::secret::Secret;
use crate::time::Timestamp;

/// What an auth handler works with.
pub struct Call<'a> {
    pub req: &'a Request<Bytes>,
    pub params: &'a [(&'static str, String)],
    pub sql: &'a dyn Sql,
    pub entropy: &'a dyn Entropy,
    pub now: Timestamp,
    pub auth: &'a AuthConfig,
    /// `WEBHOOK_SIGNING_SECRET`: the key each tenant's webhook secret is
    /// derived with (`auth::webhook_secret`); `None` when not configured.
    pub webhook_key: Option<&'a Secret>,
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

/// `?limit=&cursor=` of list endpoints.
fn page(call: &Call<'_>) -> Result<(String, i64), ApiError> {
    page_of(call.req)
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

fn non_empty(raw: &str) -> Result<String, Invalid> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        Err(Invalid::new("required", "must not be empty"))
    } else {
        Ok(trimmed.to_owned())
    }
}
