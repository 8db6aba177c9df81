//! Notifications: every user has an inbox (`GET /v1/notifications`, newest
//! first, cursor pagination) and marks entries read. Admins send to a user,
//! to every user with a role, or to a webhook endpoint — the last as a job
//! on the notifications queue, delivered signed (`Tepi-Signature`, an
//! HMAC-SHA256 over a timestamp and the body) with the envelope's
//! `traceparent`.

pub mod job;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::response::{
    after_time_cursor, json_response, page_of, rfc3339, storage, time_page,
};
use crate::api::validate::{Fields, Invalid, json_object, parsed};
use crate::auth::Role;
use crate::config::JobsConfig;
use crate::jobs::events::{self, Event, NotificationWebhookRequested};
use crate::module::{Call, exec};
use crate::ports::{PortError, Sql, SqlValue, Statement};
use crate::secret;
use crate::storage::rows::{Row, each, first};

type Handled = Result<Response<Bytes>, ApiError>;

/// Most recipients one role-wide notification may have.
pub const MAX_ROLE_RECIPIENTS: usize = 500;

const INSERT: &str = "INSERT INTO notifications \
     (id, tenant_id, user_id, subject, body, sent_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
/// For entries whose id is derived (a retried workflow step writes each
/// once).
const INSERT_ONCE: &str = "INSERT OR IGNORE INTO notifications \
     (id, tenant_id, user_id, subject, body, sent_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const INBOX: &str = "SELECT id, subject, body, sent_by, created_at, read_at FROM notifications \
     WHERE tenant_id = ?1 AND user_id = ?2 AND (created_at < ?3 OR (created_at = ?3 AND id < ?4)) \
     ORDER BY created_at DESC, id DESC LIMIT ?5";
const MARK_READ: &str = "UPDATE notifications SET read_at = COALESCE(read_at, ?4) \
     WHERE tenant_id = ?1 AND user_id = ?2 AND id = ?3 \
     RETURNING id, subject, body, sent_by, created_at, read_at";
const USER_EXISTS: &str = "SELECT id FROM users WHERE tenant_id = ?1 AND id = ?2";
const USERS_WITH_ROLE: &str =
    "SELECT id FROM users WHERE tenant_id = ?1 AND role = ?2 ORDER BY id LIMIT ?3";

/// The statements requests run, for the query-plan test.
pub const HOT_QUERIES: &[(&str, &str)] = &[
    ("inbox", INBOX),
    ("notification_read", MARK_READ),
    ("users_with_role", USERS_WITH_ROLE),
];

/// One inbox entry to write.
#[derive(Debug)]
pub struct Entry<'a> {
    pub id: &'a str,
    pub tenant: &'a str,
    pub user: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    /// The sending user; `None` for entries a workflow wrote.
    pub sent_by: Option<&'a str>,
    pub secs: i64,
}

/// The statement that writes `entry`.
pub fn inbox_entry(entry: &Entry<'_>) -> Statement {
    entry_statement(INSERT, entry)
}

/// The statement that writes `entry` unless an entry with its id exists:
/// for ids derived from what caused it, so a retry writes it once.
pub fn inbox_entry_once(entry: &Entry<'_>) -> Statement {
    entry_statement(INSERT_ONCE, entry)
}

fn entry_statement(statement: &'static str, entry: &Entry<'_>) -> Statement {
    Statement::new(
        statement,
        vec![
            entry.id.into(),
            entry.tenant.into(),
            entry.user.into(),
            entry.subject.into(),
            entry.body.into(),
            entry.sent_by.map_or(SqlValue::Null, SqlValue::from),
            entry.secs.into(),
        ],
    )
}

/// The ids of the tenant's users with `role`, at most
/// `MAX_ROLE_RECIPIENTS`.
pub async fn role_members(
    sql: &dyn Sql,
    tenant: &str,
    role: &str,
) -> Result<Vec<String>, PortError> {
    let limit = i64::try_from(MAX_ROLE_RECIPIENTS).unwrap_or(i64::MAX);
    let rows = sql
        .execute(USERS_WITH_ROLE, &[tenant.into(), role.into(), limit.into()])
        .await?;
    Ok(each(&rows).filter_map(|r| r.text("id").ok()).collect())
}

fn entry_json(row: &Row<'_>) -> Result<Value, PortError> {
    Ok(json!({
        "id": row.text("id")?,
        "subject": row.text("subject")?,
        "body": row.text("body")?,
        "sent_by": row.text("sent_by").ok(),
        "created_at": rfc3339(row.integer("created_at")?),
        "read_at": row.optional_integer("read_at")?.map(rfc3339),
    }))
}

/// `GET /v1/notifications`: the caller's inbox, newest first.
pub async fn inbox(call: &Call<'_>) -> Handled {
    let (cursor, limit) = page_of(call.req)?;
    let (before_at, before_id) = after_time_cursor(&cursor)?;
    let rows = exec(
        call.sql,
        INBOX,
        vec![
            call.tenant().as_str().into(),
            call.caller.user_id.into(),
            before_at.into(),
            // With no cursor every id is "smaller" than the maximal time.
            before_id.into(),
            limit.into(),
        ],
    )
    .await?;
    let mut items = Vec::new();
    let mut last = None;
    for row in each(&rows) {
        last = Some((
            row.integer("created_at").map_err(|e| storage(&e))?,
            row.text("id").map_err(|e| storage(&e))?,
        ));
        items.push(entry_json(&row).map_err(|e| storage(&e))?);
    }
    Ok(json_response(
        StatusCode::OK,
        &time_page(&items, last, limit),
    ))
}

/// `POST /v1/notifications/{id}/read`: marks one of the caller's entries
/// read (again is harmless).
pub async fn mark_read(call: &Call<'_>) -> Handled {
    let rows = exec(
        call.sql,
        MARK_READ,
        vec![
            call.tenant().as_str().into(),
            call.caller.user_id.into(),
            call.param("id").into(),
            call.now.as_unix_secs().into(),
        ],
    )
    .await?;
    let row = first(&rows).ok_or(ApiError::NotFound)?;
    Ok(json_response(
        StatusCode::OK,
        &entry_json(&row).map_err(|e| storage(&e))?,
    ))
}

enum Recipient {
    User(String),
    Role(Role),
    Webhook(String),
}

fn recipient(value: &Value, jobs: &JobsConfig) -> Result<Recipient, Invalid> {
    let object = value.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
        Invalid::new(
            "invalid",
            "must name exactly one of user_id, role, webhook_url",
        )
    })?;
    if let Some(user) = object.get("user_id").and_then(Value::as_str) {
        return if (1..=64).contains(&user.len()) {
            Ok(Recipient::User(user.to_owned()))
        } else {
            Err(Invalid::new("invalid", "user_id must be 1-64 characters"))
        };
    }
    if let Some(role) = object.get("role").and_then(Value::as_str) {
        return Role::parse(role).map(Recipient::Role);
    }
    if let Some(url) = object.get("webhook_url").and_then(Value::as_str) {
        return match crate::jobs::targets::check(jobs, url) {
            Ok(()) => Ok(Recipient::Webhook(url.to_owned())),
            Err(refused) => Err(Invalid::new("invalid", refused.message())),
        };
    }
    Err(Invalid::new(
        "invalid",
        "must name exactly one of user_id, role, webhook_url",
    ))
}

fn text_rule(max: usize) -> impl FnOnce(&str) -> Result<String, Invalid> {
    move |raw| {
        let t = raw.trim();
        if t.is_empty() {
            Err(Invalid::new("required", "must not be empty"))
        } else {
            Ok(t.chars().take(max).collect())
        }
    }
}

/// `POST /v1/notifications` {to, subject, body} (admin): into inboxes
/// (201 with the recipients) or to a webhook (202: queued).
pub async fn send(call: &Call<'_>) -> Handled {
    if call.caller.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    let body = json_object(call.req)?;
    let mut fields = Fields::new(&body);
    let to = fields.required("to", |v| recipient(v, &call.config.jobs));
    let subject = fields.required("subject", parsed(200, text_rule(200)));
    let text = fields.required("body", parsed(4000, text_rule(4000)));
    fields.finish()?;
    let (Some(to), Some(subject), Some(text)) = (to, subject, text) else {
        unreachable!("finish() fails when a required field is missing");
    };
    let tenant = call.tenant().as_str();
    let recipients: Vec<String> = match to {
        Recipient::Webhook(url) => {
            let event = NotificationWebhookRequested {
                notification_id: secret::id(call.entropy, "ntf_"),
                url,
                subject,
                body: text,
            };
            let envelope = events::envelope(&event, call.tenant(), call.cx, call.entropy, call.now);
            call.jobs
                .enqueue(NotificationWebhookRequested::QUEUE, &envelope.to_string())
                .await
                .map_err(|e| storage(&e))?;
            return Ok(json_response(
                StatusCode::ACCEPTED,
                &json!({"id": event.notification_id, "delivery": "webhook", "status": "queued"}),
            ));
        }
        Recipient::User(user) => {
            let found = exec(
                call.sql,
                USER_EXISTS,
                vec![tenant.into(), user.clone().into()],
            )
            .await?;
            if found.rows.is_empty() {
                return Err(ApiError::Validation {
                    errors: vec![crate::api::validate::FieldError {
                        field: "to/user_id".into(),
                        code: "not_found",
                        message: "no such user in this tenant".into(),
                    }],
                });
            }
            vec![user]
        }
        Recipient::Role(role) => role_members(call.sql, tenant, role.as_str())
            .await
            .map_err(|e| storage(&e))?,
    };
    let secs = call.now.as_unix_secs();
    let mut ids = Vec::with_capacity(recipients.len());
    let statements: Vec<Statement> = recipients
        .iter()
        .map(|user| {
            let id = secret::id(call.entropy, "ntf_");
            ids.push(id.clone());
            inbox_entry(&Entry {
                id: &id,
                tenant,
                user,
                subject: &subject,
                body: &text,
                sent_by: Some(call.caller.user_id),
                secs,
            })
        })
        .collect();
    if !statements.is_empty() {
        call.sql.batch(&statements).await.map_err(|e| storage(&e))?;
    }
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"delivery": "inbox", "recipients": recipients.len(), "ids": ids}),
    ))
}
