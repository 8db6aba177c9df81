//! Meta platform webhooks (WhatsApp, Messenger, Instagram).
//!
//! A tenant stores its verify token and app secret (`PUT /v1/meta/config`)
//! and points Meta's callback at `/v1/meta/webhook?tenant=<id>`. The
//! handshake echoes `hub.challenge` when the verify token matches; a
//! delivery must carry `X-Hub-Signature-256`, the HMAC-SHA256 of the raw
//! body with the app secret, compared in constant time. Each item is
//! normalised to a `meta.*` event, deduplicated by its platform id,
//! published on the meta-events queue, and starts the tenant's workflows
//! whose trigger matches — then Meta gets its 200.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderValue, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::api::context::TenantId;
use crate::api::error::ApiError;
use crate::api::response::{json_response, query_pairs, rfc3339, storage};
use crate::api::validate::{Fields, Invalid, json_object, parsed};
use crate::auth::store::first;
use crate::jobs::events::{
    MetaEvent, MetaItem, MetaMessageRead, MetaMessageReceived, MetaMessageStatus,
    MetaPostbackReceived,
};
use crate::module::{Call, exec};
use crate::ports::{Queue, Sql};
use crate::secret;

type Handled = Result<Response<Bytes>, ApiError>;

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

const CONFIG: &str =
    "SELECT verify_token, app_secret, updated_at FROM meta_config WHERE tenant_id = ?1";
const PUT_CONFIG: &str = "INSERT INTO meta_config (tenant_id, verify_token, app_secret, updated_at) \
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tenant_id) DO UPDATE SET \
     verify_token = excluded.verify_token, app_secret = excluded.app_secret, updated_at = excluded.updated_at";
const SEEN: &str = "INSERT INTO meta_seen (tenant_id, platform, item_id, seen_at) \
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING RETURNING item_id";
const UNSEE: &str = "DELETE FROM meta_seen WHERE tenant_id = ?1 AND platform = ?2 AND item_id = ?3";
/// Item ids older than this are forgotten (Meta retries for about 36 h).
pub const SEEN_RETENTION_SECS: i64 = 7 * 24 * 60 * 60;
const SWEEP: &str = "DELETE FROM meta_seen WHERE seen_at < ?1";

/// The statements requests run, for the query-plan test.
pub const HOT_QUERIES: &[(&str, &str)] = &[
    ("meta_config", CONFIG),
    ("meta_unsee", UNSEE),
    ("meta_sweep", SWEEP),
];

/// The tenant named by `?tenant=` (Meta cannot send headers of ours).
pub fn tenant_of(req: &Request<Bytes>) -> Option<TenantId> {
    query_pairs(req.uri().query().unwrap_or(""))
        .into_iter()
        .find(|(k, _)| k == "tenant")
        .and_then(|(_, v)| TenantId::parse(&v))
}

async fn config(
    sql: &dyn Sql,
    tenant: &TenantId,
) -> Result<Option<(String, String, i64)>, ApiError> {
    let rows = exec(sql, CONFIG, vec![tenant.as_str().into()]).await?;
    let Some(row) = first(&rows) else {
        return Ok(None);
    };
    let read = || -> Result<(String, String, i64), crate::ports::PortError> {
        Ok((
            row.text("verify_token")?,
            row.text("app_secret")?,
            row.integer("updated_at")?,
        ))
    };
    read().map(Some).map_err(|e| storage(&e))
}

fn token_rule(raw: &str) -> Result<String, Invalid> {
    let n = raw.chars().count();
    if !(16..=256).contains(&n) || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Invalid::new(
            "invalid",
            "must be 16-256 visible ASCII characters",
        ));
    }
    Ok(raw.to_owned())
}

/// `PUT /v1/meta/config` {`verify_token`, `app_secret`} (admin).
pub async fn put_config(call: &Call<'_>) -> Handled {
    let body = json_object(call.req)?;
    let mut fields = Fields::new(&body);
    let verify = fields.required("verify_token", parsed(256, token_rule));
    let app_secret = fields.required("app_secret", parsed(256, token_rule));
    fields.finish()?;
    let (Some(verify), Some(app_secret)) = (verify, app_secret) else {
        unreachable!("finish() fails when a required field is missing");
    };
    exec(
        call.sql,
        PUT_CONFIG,
        vec![
            call.tenant().as_str().into(),
            verify.into(),
            app_secret.into(),
            call.now.as_unix_secs().into(),
        ],
    )
    .await?;
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// `GET /v1/meta/config` (admin): whether it is configured — never the
/// secrets themselves.
pub async fn get_config(call: &Call<'_>) -> Handled {
    let body = match config(call.sql, call.tenant()).await? {
        Some((_, _, updated_at)) => json!({
            "configured": true,
            "callback_url": format!("/v1/meta/webhook?tenant={}", call.tenant().as_str()),
            "updated_at": rfc3339(updated_at),
        }),
        None => json!({
            "configured": false,
            "callback_url": format!("/v1/meta/webhook?tenant={}", call.tenant().as_str()),
            "updated_at": null,
        }),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /v1/meta/webhook?tenant=…&hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`.
pub async fn handshake(call: &Call<'_>) -> Handled {
    let query = query_pairs(call.req.uri().query().unwrap_or(""));
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut fields = Vec::new();
    if get("hub.mode") != Some("subscribe") {
        fields.push(("hub.mode", "must be subscribe"));
    }
    let challenge = get("hub.challenge")
        .filter(|c| !c.is_empty() && c.len() <= 256 && c.bytes().all(|b| b.is_ascii_graphic()));
    if challenge.is_none() {
        fields.push(("hub.challenge", "must be 1-256 visible ASCII characters"));
    }
    if !fields.is_empty() {
        return Err(ApiError::Validation {
            errors: fields
                .into_iter()
                .map(|(field, message)| crate::api::validate::FieldError {
                    field: field.to_owned(),
                    code: "invalid",
                    message: message.to_owned(),
                })
                .collect(),
        });
    }
    let presented = get("hub.verify_token").unwrap_or("");
    let expected = config(call.sql, call.tenant())
        .await?
        .map(|(token, _, _)| token);
    let matches =
        expected.is_some_and(|t| secret::constant_time_eq(t.as_bytes(), presented.as_bytes()));
    if !matches {
        return Err(ApiError::VerifyTokenMismatch);
    }
    let mut response = Response::new(Bytes::from(challenge.unwrap_or_default().to_owned()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

/// HMAC-SHA256 of `body` with `secret`, lowercase hex.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            use std::fmt::Write;
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn signed_by(req: &Request<Bytes>, app_secret: &str) -> bool {
    let Some(sent) = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
    else {
        return false;
    };
    let expected = signature(app_secret.as_bytes(), req.body());
    secret::constant_time_eq(
        expected.as_bytes(),
        sent.trim().to_ascii_lowercase().as_bytes(),
    )
}

/// `POST /v1/meta/webhook?tenant=…`: verifies, normalises, deduplicates,
/// publishes and triggers; answers `{received, new}`.
pub async fn receive(call: &Call<'_>) -> Handled {
    // Unknown tenant, unconfigured tenant and bad signature look the same.
    let Some((_, app_secret, _)) = config(call.sql, call.tenant()).await? else {
        return Err(ApiError::InvalidSignature);
    };
    if !signed_by(call.req, &app_secret) {
        return Err(ApiError::InvalidSignature);
    }
    let body = json_object(call.req)?;
    let items = normalize(&Value::Object(body)).map_err(|invalid| ApiError::Validation {
        errors: vec![crate::api::validate::FieldError {
            field: "entry".to_owned(),
            code: invalid.code,
            message: invalid.message,
        }],
    })?;
    let mut fresh = 0;
    for item in &items {
        let key = vec![
            call.tenant().as_str().into(),
            item.item().platform.into(),
            item.item().item_id.clone().into(),
        ];
        let mut claim = key.clone();
        claim.push(call.now.as_unix_secs().into());
        if exec(call.sql, SEEN, claim).await?.rows.is_empty() {
            continue; // delivered before
        }
        if let Err(e) = publish(call, item).await {
            // Forget it again, so Meta's retry processes it: never lost
            // (at least once; the event's subject deduplicates downstream).
            if let Err(release) = exec(call.sql, UNSEE, key).await {
                tracing::error!(target: "tepi::meta", error = release.code(), item = %item.item().item_id,
                    "could not release a failed item; Meta's retry will skip it");
            }
            return Err(e);
        }
        fresh += 1;
    }
    let mut byte = [0u8];
    call.entropy.fill(&mut byte);
    if byte[0] == 0 {
        // About one delivery in 256 also forgets old item ids.
        let cutoff = call.now.as_unix_secs() - SEEN_RETENTION_SECS;
        if let Err(e) = call.sql.execute(SWEEP, &[cutoff.into()]).await {
            tracing::warn!(target: "tepi::meta", error = %e, "sweeping old item ids failed");
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"received": items.len(), "new": fresh}),
    ))
}

/// Publishes the item's event; the meta-events consumer starts the
/// workflows it triggers (`consumer`), so Meta gets its answer at once.
async fn publish(call: &Call<'_>, item: &MetaEvent) -> Result<(), ApiError> {
    let envelope = item.envelope(call.tenant(), call.cx, call.entropy, call.now);
    call.jobs
        .enqueue(Queue::MetaEvents, &envelope.to_string())
        .await
        .map_err(|e| storage(&e))
}

fn platform_of(object: &str) -> Option<&'static str> {
    match object {
        "whatsapp_business_account" => Some("whatsapp"),
        "page" => Some("messenger"),
        "instagram" => Some("instagram"),
        _ => None,
    }
}

fn text(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Meta's payload → one event per message, status, read receipt or
/// postback. Unknown kinds of items are skipped; a payload that is not a
/// Meta webhook at all is refused.
pub fn normalize(payload: &Value) -> Result<Vec<MetaEvent>, Invalid> {
    let platform = payload
        .get("object")
        .and_then(Value::as_str)
        .and_then(platform_of)
        .ok_or_else(|| {
            Invalid::new(
                "invalid",
                "object must be whatsapp_business_account, page or instagram",
            )
        })?;
    let entries = payload
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| Invalid::new("required", "entry must be an array"))?;
    let mut events = Vec::new();
    for entry in entries {
        changes(entry, platform, &mut events);
        messaging(entry, platform, &mut events);
    }
    Ok(events)
}

fn blank(platform: &'static str, item_id: String) -> MetaItem {
    MetaItem {
        platform,
        item_id,
        from: None,
        timestamp: None,
        text: None,
        status: None,
    }
}

/// Unix seconds, sent as a string (WhatsApp) or a number.
fn seconds(value: Option<&Value>) -> Option<i64> {
    value.and_then(|t| {
        t.as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| t.as_i64())
    })
}

fn items<'v>(value: &'v Value, key: &str) -> impl Iterator<Item = &'v Value> {
    value
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// WhatsApp: `entry[].changes[].value.{messages,statuses}[]`.
fn changes(entry: &Value, platform: &'static str, events: &mut Vec<MetaEvent>) {
    for change in items(entry, "changes") {
        let value = &change["value"];
        for m in items(value, "messages") {
            let Some(id) = text(m, "/id") else { continue };
            events.push(MetaEvent::MessageReceived(MetaMessageReceived(MetaItem {
                from: text(m, "/from"),
                timestamp: seconds(m.get("timestamp")),
                text: text(m, "/text/body"),
                ..blank(platform, id)
            })));
        }
        for s in items(value, "statuses") {
            let (Some(id), Some(status)) = (text(s, "/id"), text(s, "/status")) else {
                continue;
            };
            events.push(MetaEvent::MessageStatus(MetaMessageStatus(MetaItem {
                from: text(s, "/recipient_id"),
                timestamp: seconds(s.get("timestamp")),
                item_id: format!("{id}:{status}"),
                status: Some(status),
                ..blank(platform, String::new())
            })));
        }
    }
}

/// Messenger and Instagram: `entry[].messaging[]`.
fn messaging(entry: &Value, platform: &'static str, events: &mut Vec<MetaEvent>) {
    for m in items(entry, "messaging") {
        let from = text(m, "/sender/id");
        // Messenger and Instagram report milliseconds; events carry seconds.
        let timestamp = m
            .get("timestamp")
            .and_then(Value::as_i64)
            .map(|t| if t > 100_000_000_000 { t / 1000 } else { t });
        if m.pointer("/message/is_echo").and_then(Value::as_bool) == Some(true) {
            continue; // the page's own outgoing message, not one received
        }
        if let Some(mid) = text(m, "/message/mid") {
            events.push(MetaEvent::MessageReceived(MetaMessageReceived(MetaItem {
                from,
                timestamp,
                text: text(m, "/message/text"),
                ..blank(platform, mid)
            })));
        } else if m.get("read").is_some() {
            let watermark = m
                .pointer("/read/watermark")
                .and_then(Value::as_i64)
                .unwrap_or_default();
            let id = format!("read:{}:{watermark}", from.clone().unwrap_or_default());
            events.push(MetaEvent::MessageRead(MetaMessageRead(MetaItem {
                from,
                timestamp,
                ..blank(platform, id)
            })));
        } else if let Some(postback) = m.get("postback") {
            let id = text(postback, "/mid").unwrap_or_else(|| {
                format!(
                    "postback:{}:{}",
                    from.clone().unwrap_or_default(),
                    timestamp.unwrap_or_default()
                )
            });
            events.push(MetaEvent::PostbackReceived(MetaPostbackReceived(
                MetaItem {
                    from,
                    timestamp,
                    text: text(postback, "/payload"),
                    ..blank(platform, id)
                },
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whatsapp_messages_and_statuses_are_normalised() {
        let payload = json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
                "messages": [{"id": "wamid.1", "from": "15550001111", "timestamp": "1795582978", "type": "text", "text": {"body": "hi"}}],
                "statuses": [{"id": "wamid.0", "status": "delivered", "recipient_id": "15550002222", "timestamp": "1795582979"}]
            }}]}]
        });
        let events = normalize(&payload).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event_type(), "meta.message.received");
        let first = events[0].item();
        assert_eq!(
            (first.item_id.as_str(), first.text.as_deref()),
            ("wamid.1", Some("hi"))
        );
        assert_eq!(first.timestamp, Some(1_795_582_978));
        assert_eq!(events[1].event_type(), "meta.message.status");
        assert_eq!(events[1].item().item_id, "wamid.0:delivered");
    }

    #[test]
    fn messenger_and_instagram_messaging_items_are_normalised() {
        for (object, platform) in [("page", "messenger"), ("instagram", "instagram")] {
            let payload = json!({"object": object, "entry": [{"id": "1", "time": 1, "messaging": [
                {"sender": {"id": "u1"}, "recipient": {"id": "p"}, "timestamp": 5, "message": {"mid": "m.1", "text": "yo"}},
                {"sender": {"id": "u1"}, "recipient": {"id": "p"}, "timestamp": 6, "read": {"watermark": 6}},
                {"sender": {"id": "u1"}, "recipient": {"id": "p"}, "timestamp": 7, "postback": {"mid": "m.2", "payload": "BUY"}},
                {"sender": {"id": "u1"}, "recipient": {"id": "p"}, "timestamp": 8, "reaction": {}},
                {"sender": {"id": "p"}, "recipient": {"id": "u1"}, "timestamp": 9, "message": {"mid": "m.3", "is_echo": true}}
            ]}]});
            let events = normalize(&payload).unwrap();
            let kinds: Vec<&str> = events.iter().map(MetaEvent::event_type).collect();
            assert_eq!(
                kinds,
                [
                    "meta.message.received",
                    "meta.message.read",
                    "meta.postback.received"
                ],
                "{object}"
            );
            assert!(events.iter().all(|e| e.item().platform == platform));
        }
    }

    #[test]
    fn payloads_that_are_not_meta_webhooks_are_refused() {
        assert!(normalize(&json!({"object": "user", "entry": []})).is_err());
        assert!(normalize(&json!({"object": "page"})).is_err());
        assert_eq!(
            normalize(&json!({"object": "page", "entry": []})).unwrap(),
            vec![]
        );
    }

    #[test]
    fn signatures_are_hmac_sha256_of_the_raw_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" // pragma: allowlist secret
        );
    }
}
