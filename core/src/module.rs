//! What a product module's handler works with: the request, the verified
//! caller, and the ports. Built once per request by `App` for the routes of
//! uploads, workflows and the modules that follow.

use bytes::Bytes;
use http::Request;

use crate::api::context::{RequestContext, TenantId};
use crate::api::error::ApiError;
use crate::auth::Role;
use crate::config::Config;
use crate::ports::{Blobs, Entropy, Jobs, Rows, Sql};
use crate::time::Timestamp;

/// A verified user of a tenant.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub tenant: &'a TenantId,
    pub user_id: &'a str,
    pub role: Role,
}

pub struct Call<'a> {
    pub req: &'a Request<Bytes>,
    pub params: &'a [(&'static str, String)],
    pub caller: Caller<'a>,
    pub sql: &'a dyn Sql,
    pub jobs: &'a dyn Jobs,
    pub blobs: Option<&'a dyn Blobs>,
    pub entropy: &'a dyn Entropy,
    pub now: Timestamp,
    pub cx: &'a RequestContext,
    pub config: &'a Config,
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("module::Call")
            .field("path", &self.req.uri().path())
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

impl<'a> Call<'a> {
    /// A path parameter (empty when absent).
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    pub fn tenant(&self) -> &'a TenantId {
        self.caller.tenant
    }

    pub fn blobs(&self) -> Result<&'a dyn Blobs, ApiError> {
        self.blobs.ok_or(ApiError::StorageUnavailable)
    }

    /// Runs `statement` with the caller's tenant and the path's `{id}`
    /// as its two parameters.
    pub async fn by_id(&self, statement: &'static str) -> Result<Rows, ApiError> {
        exec(
            self.sql,
            statement,
            vec![self.tenant().as_str().into(), self.param("id").into()],
        )
        .await
    }
}

pub use crate::api::response::exec;
