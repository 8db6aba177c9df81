//! Uploads: a client declares a file (name, media type, size, SHA-256),
//! then sends its content, which is verified against the declaration before
//! it is kept (R2 on Workers, key-value on Spin) and `upload.received` is
//! published. Every upload belongs to a tenant; any user of the tenant may
//! read it, its uploader or an admin may send its content or delete it.

pub mod job;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::context::TenantId;
use crate::api::error::ApiError;
use crate::api::response::{json_response, storage};
use crate::api::validate::{Fields, Invalid, json_object, parsed};
use crate::auth::Role;
use crate::jobs::events::{self, Event, UploadReceived};
use crate::module::{Call, exec};
use crate::ports::{PortError, SqlValue};
use crate::secret;
use crate::storage::rows::{Row, first};
use crate::time::Timestamp;

type Handled = Result<Response<Bytes>, ApiError>;

const INSERT: &str = "INSERT INTO uploads \
     (id, tenant_id, filename, content_type, size, sha256, status, created_by, created_at, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?8)";
const BY_ID: &str = "SELECT u.id, u.filename, u.content_type, u.size, u.sha256, u.status, \
     c.result AS checked, u.created_by, u.created_at, u.updated_at FROM uploads u \
     LEFT JOIN upload_checks c ON c.upload_id = u.id AND c.tenant_id = u.tenant_id \
     WHERE u.tenant_id = ?1 AND u.id = ?2";
const MARK_STORED: &str = "UPDATE uploads SET status = 'stored', updated_at = ?3 \
     WHERE tenant_id = ?1 AND id = ?2";
const DELETE: &str = "DELETE FROM uploads WHERE tenant_id = ?1 AND id = ?2";

/// The statements requests run, for the query-plan test.
pub const HOT_QUERIES: &[(&str, &str)] = &[
    ("upload_by_id", BY_ID),
    ("upload_mark_stored", MARK_STORED),
    ("upload_delete", DELETE),
    ("upload_for_job", job::FOR_JOB),
];

struct Upload {
    id: String,
    filename: String,
    content_type: String,
    size: u64,
    sha256: String,
    stored: bool,
    /// The uploads consumer's verdict on the stored object: `ready` or
    /// `invalid` (none yet: still `stored`).
    checked: Option<String>,
    created_by: String,
    created_at: i64,
    updated_at: i64,
}

impl Upload {
    fn read(row: &Row<'_>) -> Result<Self, PortError> {
        Ok(Self {
            id: row.text("id")?,
            filename: row.text("filename")?,
            content_type: row.text("content_type")?,
            size: u64::try_from(row.integer("size")?).unwrap_or(0),
            sha256: row.text("sha256")?,
            stored: row.text("status")? == "stored",
            checked: row.text("checked").ok(),
            created_by: row.text("created_by")?,
            created_at: row.integer("created_at")?,
            updated_at: row.integer("updated_at")?,
        })
    }

    fn json(&self) -> Value {
        let at = |secs: i64| {
            Timestamp::from_unix_micros(u64::try_from(secs).unwrap_or(0) * 1_000_000).to_rfc3339()
        };
        json!({
            "id": self.id,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
            "status": match (&self.checked, self.stored) {
                (_, false) => "pending",
                (Some(verdict), true) => verdict.as_str(),
                (None, true) => "stored",
            },
            "created_by": self.created_by,
            "created_at": at(self.created_at),
            "updated_at": at(self.updated_at),
            "content_url": format!("/v1/uploads/{}/content", self.id),
        })
    }
}

pub(crate) fn blob_key(tenant: &TenantId, id: &str) -> String {
    format!("uploads/{}/{id}", tenant.as_str())
}

async fn find(call: &Call<'_>) -> Result<Upload, ApiError> {
    let rows = call.by_id(BY_ID).await?;
    let row = first(&rows).ok_or(ApiError::NotFound)?;
    Upload::read(&row).map_err(|e| storage(&e))
}

/// The uploader and the tenant's admins may change an upload.
fn may_change(call: &Call<'_>, upload: &Upload) -> Result<(), ApiError> {
    if call.caller.role == Role::Admin || upload.created_by == call.caller.user_id {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

fn filename(raw: &str) -> Result<String, Invalid> {
    let name = raw.trim();
    if name.is_empty() || name == "." || name == ".." {
        return Err(Invalid::new("invalid", "must name a file"));
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '/' | '\\' | '"'))
    {
        return Err(Invalid::new(
            "invalid",
            "must not contain path separators, quotes or control characters",
        ));
    }
    Ok(name.to_owned())
}

fn sha256_hex(raw: &str) -> Result<String, Invalid> {
    let hex = raw.trim().to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(Invalid::new("invalid", "must be 64 hexadecimal digits"))
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The largest upload: `UPLOAD_MAX_BYTES`, but never more than a request
/// body may carry (`MAX_BODY_BYTES`).
fn max_bytes(call: &Call<'_>) -> u64 {
    call.config
        .uploads
        .max_bytes
        .min(u64::try_from(call.config.max_body_bytes).unwrap_or(u64::MAX))
}

/// `POST /v1/uploads` {`filename`, `content_type`, `size`, `sha256`}.
pub async fn create(call: &Call<'_>) -> Handled {
    let body = json_object(call.req)?;
    let mut fields = Fields::new(&body);
    let name = fields.required("filename", parsed(255, filename));
    let allowed = &call.config.uploads.content_types;
    let content_type = fields.required(
        "content_type",
        parsed(127, |raw| {
            let t = raw.trim().to_ascii_lowercase();
            if allowed.contains(&t) {
                Ok(t)
            } else {
                Err(Invalid::new(
                    "not_allowed",
                    format!("must be one of {}", allowed.join(", ")),
                ))
            }
        }),
    );
    let max = max_bytes(call);
    let size = fields.required("size", |value| {
        let n = value
            .as_u64()
            .ok_or_else(|| Invalid::new("type", "must be a whole number of bytes"))?;
        match n {
            0 => Err(Invalid::new("too_small", "must be at least 1 byte")),
            n if n > max => Err(Invalid::new(
                "too_large",
                format!("must be at most {max} bytes"),
            )),
            n => Ok(n),
        }
    });
    let sha256 = fields.required("sha256", parsed(64, sha256_hex));
    fields.finish()?;
    let (Some(name), Some(content_type), Some(size), Some(sha256)) =
        (name, content_type, size, sha256)
    else {
        unreachable!("finish() fails when a required field is missing");
    };
    let id = secret::id(call.entropy, "upl_");
    let secs = call.now.as_unix_secs();
    exec(
        call.sql,
        INSERT,
        vec![
            id.clone().into(),
            call.tenant().as_str().into(),
            name.clone().into(),
            content_type.clone().into(),
            SqlValue::Integer(i64::try_from(size).unwrap_or(i64::MAX)),
            sha256.clone().into(),
            call.caller.user_id.into(),
            secs.into(),
        ],
    )
    .await?;
    let upload = Upload {
        id: id.clone(),
        filename: name,
        content_type,
        size,
        sha256,
        stored: false,
        checked: None,
        created_by: call.caller.user_id.to_owned(),
        created_at: secs,
        updated_at: secs,
    };
    let mut response = json_response(StatusCode::CREATED, &upload.json());
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/uploads/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `PUT /v1/uploads/{id}/content`: the bytes, as the declared media type.
/// Verified (type, size, SHA-256) before anything is kept; sending the same
/// content again is harmless.
pub async fn put_content(call: &Call<'_>) -> Handled {
    let upload = find(call).await?;
    may_change(call, &upload)?;
    let sent_type = call
        .req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if sent_type.as_deref() != Some(upload.content_type.as_str()) {
        return Err(ApiError::ContentTypeMismatch {
            declared: upload.content_type,
        });
    }
    let body = call.req.body();
    let received = body.len() as u64;
    if received > max_bytes(call) {
        return Err(ApiError::PayloadTooLarge {
            limit: usize::try_from(max_bytes(call)).unwrap_or(usize::MAX),
        });
    }
    if received != upload.size {
        return Err(ApiError::SizeMismatch {
            declared: upload.size,
            received,
        });
    }
    let digest = hex(&Sha256::digest(body));
    if !secret::constant_time_eq(digest.as_bytes(), upload.sha256.as_bytes()) {
        return Err(ApiError::ChecksumMismatch);
    }
    if upload.stored {
        // Same declaration, same bytes (checked above): nothing to do.
        return Ok(json_response(StatusCode::OK, &upload.json()));
    }
    call.blobs()?
        .put(
            &blob_key(call.tenant(), &upload.id),
            body,
            &upload.content_type,
        )
        .await
        .map_err(|e| storage(&e))?;
    let event = UploadReceived {
        upload_id: upload.id.clone(),
        filename: upload.filename.clone(),
        content_type: upload.content_type.clone(),
        size: upload.size,
        sha256: upload.sha256.clone(),
        uploaded_by: call.caller.user_id.to_owned(),
    };
    let envelope = events::envelope(&event, call.tenant(), call.cx, call.entropy, call.now);
    // Published before the upload is marked stored: a failure here leaves it
    // pending, and sending the content again publishes again (at least once).
    call.jobs
        .enqueue(UploadReceived::QUEUE, &envelope.to_string())
        .await
        .map_err(|e| storage(&e))?;
    let secs = call.now.as_unix_secs();
    exec(
        call.sql,
        MARK_STORED,
        vec![
            call.tenant().as_str().into(),
            upload.id.clone().into(),
            secs.into(),
        ],
    )
    .await?;
    let stored = Upload {
        stored: true,
        updated_at: secs,
        ..upload
    };
    Ok(json_response(StatusCode::OK, &stored.json()))
}

/// `GET /v1/uploads/{id}`: the declaration and status.
pub async fn get(call: &Call<'_>) -> Handled {
    let upload = find(call).await?;
    Ok(json_response(StatusCode::OK, &upload.json()))
}

/// `GET /v1/uploads/{id}/content`: the stored bytes, as an attachment.
pub async fn content(call: &Call<'_>) -> Handled {
    let upload = find(call).await?;
    if !upload.stored {
        return Err(ApiError::UploadNotStored);
    }
    let blob = call
        .blobs()?
        .get(&blob_key(call.tenant(), &upload.id))
        .await
        .map_err(|e| storage(&e))?
        .ok_or_else(|| storage(&PortError(format!("blob of {} is missing", upload.id))))?;
    let mut response = Response::new(Bytes::from(blob.body));
    let headers = response.headers_mut();
    if let Ok(t) = HeaderValue::from_str(&upload.content_type) {
        headers.insert(header::CONTENT_TYPE, t);
    }
    if let Ok(d) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", upload.filename)) {
        headers.insert(header::CONTENT_DISPOSITION, d);
    }
    Ok(response)
}

/// `DELETE /v1/uploads/{id}`: the record, then the content.
pub async fn delete(call: &Call<'_>) -> Handled {
    let upload = find(call).await?;
    may_change(call, &upload)?;
    let blobs = call.blobs()?;
    // The record first: a failure after it leaves an orphaned blob, never
    // a record whose content is gone.
    exec(
        call.sql,
        DELETE,
        vec![call.tenant().as_str().into(), upload.id.clone().into()],
    )
    .await?;
    if let Err(e) = blobs.delete(&blob_key(call.tenant(), &upload.id)).await {
        tracing::warn!(target: "tepi::uploads", error = %e, upload = %upload.id, "content left behind");
    }
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}
