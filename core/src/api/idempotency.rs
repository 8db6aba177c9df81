//! `Idempotency-Key` for creating POSTs: the same key with the same request
//! replays the first answer; with another request it is refused; while the
//! first is still being answered, a second gets 409.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};

use crate::api::context::TenantId;
use crate::api::error::ApiError;
use crate::api::validate::FieldError;
use crate::ports::{Sql, SqlValue};
use crate::secret;
use crate::time::Timestamp;

pub const HEADER: &str = "idempotency-key";
/// Sent on replayed answers.
pub const REPLAYED: &str = "idempotent-replayed";

/// Claims a key that is new, or whose holder gave up (in flight for longer
/// than `ABANDONED_SECS`), or whose answer is older than `RETAINED_SECS`.
const CLAIM: &str = "INSERT INTO idempotency_keys \
     (tenant_id, route, key, request_hash, status, body, created_at) \
     VALUES (?1, ?2, ?3, ?4, 0, NULL, ?5) \
     ON CONFLICT (tenant_id, route, key) DO UPDATE SET \
     request_hash = excluded.request_hash, status = 0, body = NULL, created_at = excluded.created_at \
     WHERE (idempotency_keys.status = 0 AND idempotency_keys.created_at < ?6) \
     OR idempotency_keys.created_at < ?7 \
     RETURNING key";

/// A request still "in flight" after this long is taken to have died.
pub const ABANDONED_SECS: i64 = 60;
/// How long an answer is replayed for its key.
pub const RETAINED_SECS: i64 = 24 * 60 * 60;
const READ: &str = "SELECT request_hash, status, body FROM idempotency_keys \
     WHERE tenant_id = ?1 AND route = ?2 AND key = ?3";
/// Only the claim's own holder records or releases it: a request slower
/// than `ABANDONED_SECS` finds its key taken over and changes nothing.
const FINISH: &str = "UPDATE idempotency_keys SET status = ?6, body = ?7 \
     WHERE tenant_id = ?1 AND route = ?2 AND key = ?3 \
     AND status = 0 AND created_at = ?4 AND request_hash = ?5";
const RELEASE: &str = "DELETE FROM idempotency_keys \
     WHERE tenant_id = ?1 AND route = ?2 AND key = ?3 \
     AND status = 0 AND created_at = ?4 AND request_hash = ?5";
/// Answers past their retention are dropped now and then.
const SWEEP: &str = "DELETE FROM idempotency_keys WHERE created_at < ?1";

/// The statements requests run, for the query-plan test.
pub const HOT_QUERIES: &[(&str, &str)] = &[
    ("idempotency_read", READ),
    ("idempotency_finish", FINISH),
    ("idempotency_sweep", SWEEP),
    ("idempotency_release", RELEASE),
];

/// The claimed key of one request.
#[derive(Debug, Clone)]
pub struct Claim {
    tenant: String,
    route: String,
    key: String,
    claimed_at: i64,
    request_hash: String,
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Begin {
    /// First time: run it, then `finish` or `release`.
    Proceed(Claim),
    /// Seen and answered: send this again.
    Replay(Response<Bytes>),
}

fn invalid_key() -> ApiError {
    ApiError::Validation {
        errors: vec![FieldError {
            field: "Idempotency-Key".to_owned(),
            code: "invalid",
            message: "must be 1-255 visible ASCII characters".to_owned(),
        }],
    }
}

/// The request's key, if it sent one.
pub fn key_of(req: &Request<Bytes>) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| invalid_key())?.trim();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid_key());
    }
    Ok(Some(key.to_owned()))
}

fn storage(e: &crate::ports::PortError) -> ApiError {
    tracing::error!(target: "tepi::storage", error = %e, "idempotency storage failed");
    ApiError::StorageUnavailable
}

/// Claims `key` for this request, or says how it was answered before.
pub async fn begin(
    sql: &dyn Sql,
    tenant: &TenantId,
    route: &str,
    key: String,
    req: &Request<Bytes>,
    now: Timestamp,
) -> Result<Begin, ApiError> {
    let hash = secret::digest(&format!(
        "{} {}\n{}",
        req.method(),
        req.uri(),
        String::from_utf8_lossy(req.body())
    ));
    let scope = [
        tenant.as_str().into(),
        route.into(),
        SqlValue::Text(key.clone()),
    ];
    let mut params = scope.to_vec();
    let secs = now.as_unix_secs();
    params.extend([
        SqlValue::Text(hash.clone()),
        SqlValue::Integer(secs),
        SqlValue::Integer(secs - ABANDONED_SECS),
        SqlValue::Integer(secs - RETAINED_SECS),
    ]);
    let claimed = sql.execute(CLAIM, &params).await.map_err(|e| storage(&e))?;
    if !claimed.rows.is_empty() {
        if hash.as_bytes()[0] == b'0' && hash.as_bytes()[1] == b'0' {
            // About one claim in 256 also sweeps expired answers.
            if let Err(e) = sql
                .execute(SWEEP, &[SqlValue::Integer(secs - RETAINED_SECS)])
                .await
            {
                tracing::warn!(target: "tepi::storage", error = %e, "idempotency sweep failed");
            }
        }
        return Ok(Begin::Proceed(Claim {
            tenant: tenant.as_str().to_owned(),
            route: route.to_owned(),
            key,
            claimed_at: secs,
            request_hash: hash,
        }));
    }
    let rows = sql.execute(READ, &scope).await.map_err(|e| storage(&e))?;
    let row = rows.rows.first().ok_or(ApiError::IdempotencyInProgress)?;
    if row.first().and_then(SqlValue::as_text) != Some(hash.as_str()) {
        return Err(ApiError::IdempotencyKeyReused);
    }
    let status = row.get(1).and_then(SqlValue::as_integer).unwrap_or(0);
    let Some(status) = u16::try_from(status)
        .ok()
        .filter(|s| *s != 0)
        .and_then(|s| StatusCode::from_u16(s).ok())
    else {
        return Err(ApiError::IdempotencyInProgress);
    };
    let body = match row.get(2) {
        Some(SqlValue::Blob(b)) => b.clone(),
        Some(SqlValue::Text(t)) => t.clone().into_bytes(),
        _ => Vec::new(),
    };
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    Ok(Begin::Replay(response))
}

/// Records the answer of a claimed request (successful answers only; after
/// a failure the claim is released so the client may retry).
pub async fn finish(sql: &dyn Sql, claim: Claim, response: &Response<Bytes>) {
    let scope = vec![
        SqlValue::Text(claim.tenant),
        SqlValue::Text(claim.route),
        SqlValue::Text(claim.key),
        SqlValue::Integer(claim.claimed_at),
        SqlValue::Text(claim.request_hash),
    ];
    let result = if response.status().is_success() {
        let mut params = scope;
        params.extend([
            SqlValue::Integer(i64::from(response.status().as_u16())),
            SqlValue::Blob(response.body().to_vec()),
        ]);
        sql.execute(FINISH, &params).await
    } else {
        sql.execute(RELEASE, &scope).await
    };
    if let Err(e) = result {
        tracing::warn!(target: "tepi::storage", error = %e, "idempotency record failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::migrate;
    use crate::testing::{SqliteSql, block_on};

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_unix_micros(secs * 1_000_000)
    }

    #[test]
    fn abandoned_and_expired_keys_can_be_claimed_again() {
        let db = SqliteSql::open_in_memory();
        block_on(migrate(&db)).unwrap();
        let tenant = TenantId::parse("acme").unwrap();
        let req = Request::post("/v1/uploads")
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        let begin_at = |secs| block_on(begin(&db, &tenant, "r#u", "k".into(), &req, at(secs)));
        let t0 = 1_000_000;
        let Ok(Begin::Proceed(stale)) = begin_at(t0) else {
            panic!("first claim")
        };
        assert!(matches!(
            begin_at(t0 + 1),
            Err(ApiError::IdempotencyInProgress)
        ));
        let Ok(Begin::Proceed(fresh)) = begin_at(t0 + 61) else {
            panic!("abandoned after a minute: claimed again")
        };
        let mut done = Response::new(Bytes::from_static(b"{\"id\":1}"));
        *done.status_mut() = StatusCode::CREATED;
        block_on(finish(&db, stale, &done));
        assert!(
            matches!(begin_at(t0 + 62), Err(ApiError::IdempotencyInProgress)),
            "the slow first request cannot record over the new claim"
        );
        block_on(finish(&db, fresh, &done));
        assert!(
            matches!(begin_at(t0 + 62), Ok(Begin::Replay(_))),
            "answered by its holder: replayed"
        );
        assert!(
            matches!(begin_at(t0 + 61 + 86_401), Ok(Begin::Proceed(_))),
            "a day later the key is free"
        );
    }
}
