//! The alert inbox. Alertmanager posts its webhook payload (version 4) to
//! `POST /v1/ops/alerts` with an `alerts:write` key; each alert is kept by
//! fingerprint. Alertmanager repeats firing alerts every `repeat_interval`
//! and may resend a group after a failure, so a repeat of the same
//! occurrence (status and `startsAt`) only counts a receipt; an older
//! occurrence or a firing repeat of a resolved one (a late retry) changes
//! nothing. A new firing alert, a resolution and a new occurrence of a
//! resolved alert are transitions: each payload's transitions become one
//! inbox entry per admin of the caller's tenant (the operator's: only its
//! admins hold `alerts:write` keys) and one signed webhook per
//! `ALERT_WEBHOOK_URLS` entry, with ids derived from the transitions so a
//! retried payload notifies once. Operator admins list them with
//! `GET /v1/ops/alerts`.

use std::fmt::Write as _;

use bytes::Bytes;
use http::{Response, StatusCode, Uri};
use serde_json::{Map, Value, json};

use crate::api::error::ApiError;
use crate::api::response::{
    after_time_cursor, json_response, page_of, query_pairs, rfc3339, storage, time_page,
};
use crate::api::validate::{FieldError, json_object};
use crate::jobs::events::{self, Event, NotificationWebhookRequested};
use crate::module::{Call, exec};
use crate::notifications::{self, Entry};
use crate::ports::{PortError, SqlValue, Statement};
use crate::secret;
use crate::storage::rows::{Row, each};

type Handled = Result<Response<Bytes>, ApiError>;

/// Most alerts one payload may carry (Alertmanager's `max_alerts`).
pub const MAX_ALERTS: usize = 200;
/// Most alerts a tenant's inbox holds; resolved ones leave it
/// `ALERT_RETENTION_SECS` after they resolved.
pub const MAX_STORED: i64 = 10_000;
/// Bounds of one alert's labels and annotations.
pub const MAX_LABELS: usize = 64;
pub const MAX_ANNOTATIONS: usize = 32;
const MAX_NAME_LEN: usize = 128;
const MAX_LABEL_VALUE_LEN: usize = 1024;
const MAX_ANNOTATION_LEN: usize = 4096;
const MAX_URL_LEN: usize = 2048;
/// An inbox entry's body is cut here (the notifications module's limit).
const MAX_BODY_CHARS: usize = 4000;

/// A firing delivery with the `startsAt` of a stored resolution is a late
/// retry within this many seconds of the resolution, and a new firing of
/// the same occurrence after it (Alertmanager resolves an alert whose
/// resends stopped; when they come back, Prometheus keeps its `startsAt`).
pub const REFIRE_AFTER_SECS: i64 = 300;
/// How far ahead of the server's clock a `startsAt` may be.
pub const MAX_FUTURE_SECS: i64 = 3600;
/// Most problems one refused payload reports.
const MAX_PROBLEMS: usize = 100;
/// Fingerprints per lookup: D1 binds at most 100 parameters, one is the
/// tenant.
const LOOKUP_CHUNK: usize = 99;

/// Stores an alert; a change of status or start is a transition
/// (`changed_at`, `changes` + 1). What `transition` ignores, the `WHERE`
/// ignores too: an older occurrence, and a firing retry of an occurrence
/// resolved since `?12`.
const UPSERT: &str = "INSERT INTO alerts (tenant_id, fingerprint, alertname, severity, status, \
     labels, annotations, starts_at, ends_at, generator_url, received_at, changed_at, receipts, \
     changes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, 1, 1) \
     ON CONFLICT (tenant_id, fingerprint) DO UPDATE SET \
     changed_at = CASE WHEN alerts.status <> excluded.status OR alerts.starts_at <> excluded.starts_at \
       THEN excluded.changed_at ELSE alerts.changed_at END, \
     changes = CASE WHEN alerts.status <> excluded.status OR alerts.starts_at <> excluded.starts_at \
       THEN alerts.changes + 1 ELSE alerts.changes END, \
     alertname = excluded.alertname, severity = excluded.severity, status = excluded.status, \
     labels = excluded.labels, annotations = excluded.annotations, starts_at = excluded.starts_at, \
     ends_at = excluded.ends_at, generator_url = excluded.generator_url, \
     received_at = excluded.received_at, receipts = alerts.receipts + 1 \
     WHERE excluded.starts_at > alerts.starts_at OR (excluded.starts_at = alerts.starts_at \
       AND NOT (alerts.status = 'resolved' AND excluded.status = 'firing' AND alerts.changed_at > ?12))";
/// What is stored of a payload's fingerprints: `KNOWN_IN`, then `?2, ?3, …`, `)`.
const KNOWN_IN: &str = "SELECT fingerprint, status, starts_at, changed_at, changes FROM alerts \
     WHERE tenant_id = ?1 AND fingerprint IN (";
/// The lookup for three fingerprints, as the query-plan test runs it.
const KNOWN: &str = "SELECT fingerprint, status, starts_at, changed_at, changes FROM alerts \
     WHERE tenant_id = ?1 AND fingerprint IN (?2, ?3, ?4)";
const COUNT: &str = "SELECT COUNT(*) AS n FROM alerts WHERE tenant_id = ?1";
/// Resolved alerts, and firing ones nobody repeated (Alertmanager resends
/// firing alerts every `repeat_interval`), leave after the retention.
const EXPIRE_RESOLVED: &str = "DELETE FROM alerts \
     WHERE tenant_id = ?1 AND status = 'resolved' AND changed_at < ?2";
const EXPIRE_UNREPEATED: &str = "DELETE FROM alerts WHERE tenant_id = ?1 AND received_at < ?2";
/// The columns a listed alert is read from.
macro_rules! columns {
    () => {
        "SELECT fingerprint, alertname, severity, status, labels, annotations, starts_at, \
         ends_at, generator_url, received_at, changed_at, receipts FROM alerts "
    };
}
const LIST: &str = concat!(
    columns!(),
    "WHERE tenant_id = ?1 AND (changed_at < ?2 OR (changed_at = ?2 AND fingerprint < ?3)) \
     ORDER BY changed_at DESC, fingerprint DESC LIMIT ?4"
);
const LIST_IN_STATE: &str = concat!(
    columns!(),
    "WHERE tenant_id = ?1 AND status = ?5 \
     AND (changed_at < ?2 OR (changed_at = ?2 AND fingerprint < ?3)) \
     ORDER BY changed_at DESC, fingerprint DESC LIMIT ?4"
);

/// The statements requests run, for the query-plan test.
pub const HOT_QUERIES: &[(&str, &str)] = &[
    ("alerts_known", KNOWN),
    ("alerts_count", COUNT),
    ("alerts_expire_resolved", EXPIRE_RESOLVED),
    ("alerts_expire_unrepeated", EXPIRE_UNREPEATED),
    ("alerts_list", LIST),
    ("alerts_list_in_state", LIST_IN_STATE),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Firing,
    Resolved,
}

impl Status {
    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "firing" => Some(Self::Firing),
            "resolved" => Some(Self::Resolved),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// One alert of a payload, read and bounded.
#[derive(Debug)]
struct Alert {
    fingerprint: String,
    status: Status,
    /// String values only (checked), as stored.
    labels: Map<String, Value>,
    annotations: Map<String, Value>,
    starts_at: i64,
    /// `None` for Go's zero time, which Alertmanager sends while firing.
    ends_at: Option<i64>,
    generator_url: Option<String>,
}

impl Alert {
    fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    fn severity(&self) -> Option<&str> {
        self.labels.get("severity").and_then(Value::as_str)
    }
}

/// Collects the problems of a payload, each with its JSON path
/// (`alerts/2/labels/alertname`); the first `MAX_PROBLEMS` are reported.
#[derive(Default)]
struct Problems {
    reported: Vec<FieldError>,
    count: usize,
}

impl Problems {
    fn add(&mut self, field: impl Into<String>, code: &'static str, message: impl Into<String>) {
        self.count += 1;
        if self.reported.len() < MAX_PROBLEMS {
            self.reported.push(FieldError {
                field: field.into(),
                code,
                message: message.into(),
            });
        }
    }
}

fn text<'v>(
    object: &'v Map<String, Value>,
    name: &str,
    path: &str,
    max: usize,
    problems: &mut Problems,
) -> Option<&'v str> {
    let at = join(path, name);
    match object.get(name) {
        None | Some(Value::Null) => {
            problems.add(at, "required", format!("{name} is required"));
            None
        }
        Some(Value::String(s)) if s.chars().count() > max => {
            problems.add(at, "too_long", format!("must be at most {max} characters"));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            problems.add(at, "type", "must be a string");
            None
        }
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}/{name}")
    }
}

/// A label or annotation name: Prometheus 3 and Alertmanager allow any
/// UTF-8 (`service.name`); at most 128 characters, no control characters.
fn label_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= MAX_NAME_LEN && !name.chars().any(char::is_control)
}

/// A name as it appears in a field path: bounded, whatever was sent.
fn shown(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_LEN)
        .collect()
}

/// An object of string values, bounded.
fn string_map(
    value: Option<&Value>,
    path: &str,
    (max_entries, max_value): (usize, usize),
    problems: &mut Problems,
) -> Option<Map<String, Value>> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        problems.add(path, "required", "is required");
        return None;
    };
    let Some(object) = value.as_object() else {
        problems.add(path, "type", "must be an object of strings");
        return None;
    };
    if object.len() > max_entries {
        problems.add(
            path,
            "out_of_range",
            format!("must have at most {max_entries} entries"),
        );
        return None;
    }
    let before = problems.count;
    for (name, value) in object {
        let at = join(path, &shown(name));
        if !label_name(name) {
            problems.add(
                at,
                "invalid",
                "must be a name of 1 to 128 characters without control characters",
            );
            continue;
        }
        match value.as_str() {
            Some(v) if v.chars().count() > max_value => {
                problems.add(
                    at,
                    "too_long",
                    format!("must be at most {max_value} characters"),
                );
            }
            Some(_) => {}
            None => problems.add(at, "type", "must be a string"),
        }
    }
    (problems.count == before).then(|| object.clone())
}

/// How Go writes its zero time, Alertmanager's `endsAt` while firing.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Unix seconds of an RFC 3339 time. Go's zero time (`endsAt` while an
/// alert fires) is `None` where `zero_means_unset`, a problem elsewhere;
/// every other problem is recorded and answers `None` too.
fn time_field(
    object: &Map<String, Value>,
    name: &str,
    path: &str,
    zero_means_unset: bool,
    problems: &mut Problems,
) -> Option<i64> {
    let raw = text(object, name, path, 64, problems)?;
    if raw == GO_ZERO_TIME {
        if !zero_means_unset {
            problems.add(join(path, name), "invalid", "must be a time after 1970");
        }
        return None;
    }
    let parsed =
        crate::time::Timestamp::parse_rfc3339(raw).map(crate::time::Timestamp::as_unix_secs);
    if parsed.is_none() {
        problems.add(
            join(path, name),
            "invalid",
            "must be an RFC 3339 time from 1970 to 9999",
        );
    }
    parsed
}

/// An absolute `http(s)://` URL, or `None`: links shown to operators
/// never carry another scheme (`javascript:`).
fn web_link(raw: &str) -> Option<String> {
    if raw.len() > MAX_URL_LEN || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let uri: Uri = raw.parse().ok()?;
    let scheme = uri.scheme_str()?;
    (matches!(scheme, "http" | "https") && uri.host().is_some_and(|h| !h.is_empty()))
        .then(|| raw.to_owned())
}

fn alert(value: &Value, path: &str, now: i64, problems: &mut Problems) -> Option<Alert> {
    let Some(object) = value.as_object() else {
        problems.add(path, "type", "must be an object");
        return None;
    };
    let before = problems.count;
    let fingerprint = text(object, "fingerprint", path, 64, problems);
    if let Some(f) = fingerprint
        && (f.is_empty() || !f.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        problems.add(
            join(path, "fingerprint"),
            "invalid",
            "must be 1-64 hexadecimal digits",
        );
    }
    let status = text(object, "status", path, 16, problems);
    if let Some(s) = status
        && Status::parse(s).is_none()
    {
        problems.add(
            join(path, "status"),
            "invalid",
            "must be \"firing\" or \"resolved\"",
        );
    }
    let labels_path = join(path, "labels");
    let labels = string_map(
        object.get("labels"),
        &labels_path,
        (MAX_LABELS, MAX_LABEL_VALUE_LEN),
        problems,
    );
    if let Some(labels) = &labels
        && labels
            .get("alertname")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        problems.add(
            join(&labels_path, "alertname"),
            "required",
            "every alert has an alertname label",
        );
    }
    let annotations = string_map(
        object.get("annotations"),
        &join(path, "annotations"),
        (MAX_ANNOTATIONS, MAX_ANNOTATION_LEN),
        problems,
    );
    let starts_at = time_field(object, "startsAt", path, false, problems);
    // A start far ahead would make every real occurrence look older.
    if starts_at.is_some_and(|t| t > now.saturating_add(MAX_FUTURE_SECS)) {
        problems.add(
            join(path, "startsAt"),
            "out_of_range",
            "must not be more than an hour ahead of the server's clock",
        );
    }
    let ends_at = match object.get("endsAt") {
        None | Some(Value::Null) => None,
        Some(_) => time_field(object, "endsAt", path, true, problems),
    };
    let generator_url = match object.get("generatorURL") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() > MAX_URL_LEN => {
            problems.add(
                join(path, "generatorURL"),
                "too_long",
                format!("must be at most {MAX_URL_LEN} characters"),
            );
            None
        }
        Some(Value::String(s)) => web_link(s),
        Some(_) => {
            problems.add(join(path, "generatorURL"), "type", "must be a string");
            None
        }
    };
    if problems.count > before {
        return None;
    }
    Some(Alert {
        fingerprint: fingerprint?.to_ascii_lowercase(),
        status: Status::parse(status?)?,
        labels: labels?,
        annotations: annotations?,
        starts_at: starts_at?,
        ends_at,
        generator_url,
    })
}

/// Reads a webhook payload; every problem at once, each with its path.
/// Members this version does not use (`groupLabels`, `externalURL`,
/// `truncatedAlerts`, …) are not read at all, so newer Alertmanagers keep
/// working.
fn payload(body: &Map<String, Value>, now: i64) -> Result<Vec<Alert>, ApiError> {
    let mut problems = Problems::default();
    if let Some(version) = text(body, "version", "", 16, &mut problems)
        && version != "4"
    {
        problems.add(
            "version",
            "invalid",
            "only version \"4\" of the webhook payload is read",
        );
    }
    if let Some(s) = text(body, "status", "", 16, &mut problems)
        && Status::parse(s).is_none()
    {
        problems.add("status", "invalid", "must be \"firing\" or \"resolved\"");
    }
    // Read for their type only: a groupKey holds every grouping label.
    for name in ["receiver", "groupKey"] {
        text(body, name, "", usize::MAX, &mut problems);
    }
    let mut alerts = Vec::new();
    match body.get("alerts") {
        None | Some(Value::Null) => problems.add("alerts", "required", "alerts is required"),
        Some(Value::Array(list)) if list.is_empty() => {
            problems.add("alerts", "out_of_range", "must hold at least one alert");
        }
        Some(Value::Array(list)) if list.len() > MAX_ALERTS => problems.add(
            "alerts",
            "out_of_range",
            format!(
                "at most {MAX_ALERTS} alerts per payload (set max_alerts in the webhook config)"
            ),
        ),
        Some(Value::Array(list)) => {
            for (i, value) in list.iter().enumerate() {
                if let Some(a) = alert(value, &format!("alerts/{i}"), now, &mut problems) {
                    alerts.push(a);
                }
            }
        }
        Some(_) => problems.add("alerts", "type", "must be an array"),
    }
    if problems.count == 0 {
        Ok(alerts)
    } else {
        Err(ApiError::Validation {
            errors: problems.reported,
        })
    }
}

/// What is stored of one fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stored {
    status: Status,
    starts_at: i64,
    changed_at: i64,
    /// Transitions so far: the next one's number goes into its
    /// notification ids.
    changes: i64,
}

/// What one alert of a payload does to the stored one, at `now`.
fn transition(alert: &Alert, stored: Option<&Stored>, now: i64) -> Option<Status> {
    use Status::{Firing, Resolved};
    let Some(stored) = stored else {
        // Nobody was told it fired: a resolved stranger is only stored.
        return (alert.status == Firing).then_some(Firing);
    };
    if alert.starts_at < stored.starts_at {
        return None; // an older occurrence
    }
    let newer = alert.starts_at > stored.starts_at;
    match (stored.status, alert.status) {
        // It fires again: a new occurrence, or the same one after
        // Alertmanager resolved it (a retry of the firing delivery comes
        // within REFIRE_AFTER_SECS of the resolution).
        (Resolved, Firing) if newer || stored.changed_at <= now - REFIRE_AFTER_SECS => Some(Firing),
        // It resolves: this occurrence, or a later one that fired and
        // resolved between two deliveries.
        (Firing, Resolved) => Some(Resolved),
        // A newer occurrence while one fires: fired again in between.
        (Firing, Firing) if newer => Some(Firing),
        _ => None,
    }
}

/// `POST /v1/ops/alerts`: an Alertmanager webhook payload.
pub async fn receive(call: &Call<'_>) -> Handled {
    let body = json_object(call.req)?;
    let secs = call.now.as_unix_secs();
    let alerts = payload(&body, secs)?;
    // The last of two alerts with one fingerprint in a payload wins; the
    // rest are taken in fingerprint order (ids and messages do not depend
    // on the payload's order).
    let mut latest: Vec<&Alert> = Vec::with_capacity(alerts.len());
    for a in alerts.iter().rev() {
        if !latest.iter().any(|b| b.fingerprint == a.fingerprint) {
            latest.push(a);
        }
    }
    crate::sort::sort_by(&mut latest, |a, b| a.fingerprint.cmp(&b.fingerprint));
    let tenant = call.tenant().as_str();
    let before = secs.saturating_sub(call.config.ops.alert_retention_secs);
    for statement in [EXPIRE_RESOLVED, EXPIRE_UNREPEATED] {
        exec(call.sql, statement, vec![tenant.into(), before.into()]).await?;
    }
    let stored = known(call, tenant, &latest).await?;
    let stored_of = |a: &Alert| {
        stored
            .iter()
            .find(|(f, _)| *f == a.fingerprint)
            .map(|(_, s)| *s)
    };
    // New fingerprints beyond the inbox's room are not stored (Alertmanager
    // resends firing alerts every repeat_interval: they come back).
    let new = latest.iter().filter(|a| stored_of(a).is_none()).count();
    let mut room = if new > 0 {
        room(call, tenant).await?
    } else {
        0
    };
    let mut refused = 0;
    let mut changes: Vec<(&Alert, Status, i64)> = Vec::new();
    let mut writes: Vec<Statement> = Vec::with_capacity(latest.len());
    for a in &latest {
        let was = stored_of(a);
        if was.is_none() {
            if room == 0 {
                refused += 1;
                continue;
            }
            room -= 1;
        }
        if let Some(to) = transition(a, was.as_ref(), secs) {
            changes.push((a, to, was.map_or(1, |w| w.changes + 1)));
        }
        writes.push(upsert(tenant, a, secs));
    }
    if refused > 0 {
        tracing::warn!(target: "tepi::ops", tenant, refused, "the alert inbox is full: new alerts not stored");
    }
    let (notified, webhooks) = if changes.is_empty() {
        (0, 0)
    } else {
        announce(call, tenant, &changes, &mut writes).await?
    };
    if !writes.is_empty() {
        call.sql.batch(&writes).await.map_err(|e| storage(&e))?;
    }
    let told: Vec<Value> = changes
        .iter()
        .map(|(a, to, _)| json!({"fingerprint": a.fingerprint, "alertname": a.name(), "status": to.as_str()}))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "received": alerts.len(),
            "changed": told,
            "refused": refused,
            "notified": notified,
            "webhooks": webhooks,
        }),
    ))
}

/// Tells of a payload's changes: queues one signed webhook per on-call URL
/// and adds one inbox entry per admin of the tenant to `writes`. Answers
/// how many admins and webhooks.
async fn announce(
    call: &Call<'_>,
    tenant: &str,
    changes: &[(&Alert, Status, i64)],
    writes: &mut Vec<Statement>,
) -> Result<(usize, usize), ApiError> {
    let (subject, text) = message(changes);
    let key = change_key(tenant, changes);
    // Webhooks before the writes: if the writes fail, Alertmanager's retry
    // sees the same transitions and enqueues them again with the same
    // notification ids (at least once, never lost).
    let urls = &call.config.ops.alert_webhook_urls;
    for url in urls {
        let event = NotificationWebhookRequested {
            notification_id: derived_id(&key, url),
            url: url.clone(),
            subject: subject.clone(),
            body: text.clone(),
        };
        let envelope = events::envelope(&event, call.tenant(), call.cx, call.entropy, call.now);
        call.jobs
            .enqueue(NotificationWebhookRequested::QUEUE, &envelope.to_string())
            .await
            .map_err(|e| storage(&e))?;
    }
    let admins = notifications::role_members(call.sql, tenant, "admin")
        .await
        .map_err(|e| storage(&e))?;
    let secs = call.now.as_unix_secs();
    for admin in &admins {
        let id = derived_id(&key, admin);
        writes.push(notifications::inbox_entry_once(&Entry {
            id: &id,
            tenant,
            user: admin,
            subject: &subject,
            body: &text,
            sent_by: None,
            secs,
        }));
    }
    Ok((admins.len(), urls.len()))
}

/// How many more alerts the tenant's inbox holds.
async fn room(call: &Call<'_>, tenant: &str) -> Result<i64, ApiError> {
    let rows = exec(call.sql, COUNT, vec![tenant.into()]).await?;
    let held = each(&rows)
        .next()
        .and_then(|r| r.integer("n").ok())
        .ok_or_else(|| storage(&PortError("the alert count is unreadable".into())))?;
    Ok((MAX_STORED - held).max(0))
}

/// What is stored of each fingerprint of the payload.
async fn known(
    call: &Call<'_>,
    tenant: &str,
    alerts: &[&Alert],
) -> Result<Vec<(String, Stored)>, ApiError> {
    let mut stored = Vec::new();
    for chunk in alerts.chunks(LOOKUP_CHUNK) {
        let mut statement = KNOWN_IN.to_owned();
        let mut params: Vec<SqlValue> = vec![tenant.into()];
        for (i, a) in chunk.iter().enumerate() {
            let _ = write!(statement, "{}?{}", if i == 0 { "" } else { ", " }, i + 2);
            params.push(a.fingerprint.as_str().into());
        }
        statement.push(')');
        let rows = call
            .sql
            .execute(&statement, &params)
            .await
            .map_err(|e| storage(&e))?;
        for row in each(&rows) {
            let read = || -> Result<(String, Stored), PortError> {
                let status = row.text("status")?;
                Ok((
                    row.text("fingerprint")?,
                    Stored {
                        status: Status::parse(&status)
                            .ok_or_else(|| PortError(format!("alert status {status:?}")))?,
                        starts_at: row.integer("starts_at")?,
                        changed_at: row.integer("changed_at")?,
                        changes: row.integer("changes")?,
                    },
                ))
            };
            stored.push(read().map_err(|e| storage(&e))?);
        }
    }
    Ok(stored)
}

fn upsert(tenant: &str, a: &Alert, secs: i64) -> Statement {
    let text = |map: &Map<String, Value>| Value::Object(map.clone()).to_string();
    Statement::new(
        UPSERT,
        vec![
            tenant.into(),
            a.fingerprint.as_str().into(),
            a.name().into(),
            a.severity().map_or(SqlValue::Null, SqlValue::from),
            a.status.as_str().into(),
            text(&a.labels).into(),
            text(&a.annotations).into(),
            a.starts_at.into(),
            a.ends_at.map_or(SqlValue::Null, SqlValue::from),
            a.generator_url
                .as_deref()
                .map_or(SqlValue::Null, SqlValue::from),
            secs.into(),
            (secs - REFIRE_AFTER_SECS).into(),
        ],
    )
}

/// What identifies a payload's transitions: the same transitions (a
/// retried payload) give the same notification ids; each transition of a
/// fingerprint has its own number, so a second firing of one occurrence
/// is a new notification.
fn change_key(tenant: &str, changes: &[(&Alert, Status, i64)]) -> String {
    let mut key = format!("alerts\n{tenant}");
    for (a, to, number) in changes {
        let _ = write!(
            key,
            "\n{} {} {} {number}",
            a.fingerprint,
            to.as_str(),
            a.starts_at
        );
    }
    key
}

fn derived_id(key: &str, recipient: &str) -> String {
    let digest = secret::digest(&format!("{key}\n{recipient}"));
    format!("ntf_{}", &digest[..32])
}

/// The subject and body of a payload's notification, Alertmanager's
/// default title style: `[FIRING:2] TepiErrorRateHigh`.
fn message(changes: &[(&Alert, Status, i64)]) -> (String, String) {
    let count = |s: Status| changes.iter().filter(|(_, to, _)| *to == s).count();
    let mut counts = Vec::new();
    for s in [Status::Firing, Status::Resolved] {
        let n = count(s);
        if n > 0 {
            counts.push(format!("{}:{n}", s.as_str().to_ascii_uppercase()));
        }
    }
    let mut names: Vec<&str> = changes.iter().map(|(a, _, _)| a.name()).collect();
    crate::sort::sort(&mut names);
    names.dedup();
    let what = if names.len() == 1 {
        names[0].to_owned()
    } else {
        format!("{} alerts", changes.len())
    };
    let subject = format!("[{}] {what}", counts.join(", "));
    let mut body = String::new();
    for (a, to, _) in changes {
        let _ = write!(
            body,
            "{} {}{}",
            to.as_str().to_ascii_uppercase(),
            a.name(),
            a.severity().map(|s| format!(" ({s})")).unwrap_or_default(),
        );
        if let Some(summary) = a.annotations.get("summary").and_then(Value::as_str) {
            let _ = write!(body, ": {summary}");
        }
        body.push('\n');
        if let Some(description) = a.annotations.get("description").and_then(Value::as_str) {
            let _ = writeln!(body, "{description}");
        }
        let _ = writeln!(body, "since {}", rfc3339(a.starts_at));
        if let Some(link) = a
            .annotations
            .get("runbook_url")
            .and_then(Value::as_str)
            .and_then(web_link)
        {
            let _ = writeln!(body, "runbook: {link}");
        }
        body.push('\n');
    }
    let body: String = body.trim_end().chars().take(MAX_BODY_CHARS).collect();
    (subject.chars().take(200).collect(), body)
}

fn stored_map(row: &Row<'_>, column: &str) -> Map<String, Value> {
    row.text(column)
        .ok()
        .and_then(|t| serde_json::from_str::<Map<String, Value>>(&t).ok())
        .unwrap_or_default()
}

fn alert_json(row: &Row<'_>) -> Result<Value, ApiError> {
    let e = |e| storage(&e);
    let annotations = stored_map(row, "annotations");
    let note = |name: &str| {
        annotations
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(json!({
        "fingerprint": row.text("fingerprint").map_err(e)?,
        "alertname": row.text("alertname").map_err(e)?,
        "status": row.text("status").map_err(e)?,
        "severity": row.text("severity").ok(),
        "summary": note("summary"),
        "description": note("description"),
        "runbook_url": note("runbook_url").as_deref().and_then(web_link),
        "labels": stored_map(row, "labels"),
        "annotations": annotations,
        "starts_at": rfc3339(row.integer("starts_at").map_err(e)?),
        "ends_at": row.optional_integer("ends_at").map_err(e)?.map(rfc3339),
        "generator_url": row.text("generator_url").ok(),
        "received_at": rfc3339(row.integer("received_at").map_err(e)?),
        "changed_at": rfc3339(row.integer("changed_at").map_err(e)?),
        "receipts": row.integer("receipts").map_err(e)?,
    }))
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::Validation {
        errors: vec![FieldError {
            field: field.into(),
            code: "invalid",
            message: message.into(),
        }],
    }
}

/// `GET /v1/ops/alerts[?state=firing|resolved]`: the inbox, the latest
/// change first.
pub async fn list(call: &Call<'_>) -> Handled {
    let (cursor, limit) = page_of(call.req)?;
    let mut state = None;
    for (name, value) in query_pairs(call.req.uri().query().unwrap_or("")) {
        if name == "state" {
            state = Some(
                Status::parse(&value)
                    .ok_or_else(|| invalid("state", "must be \"firing\" or \"resolved\""))?,
            );
        }
    }
    let (before_at, before) = after_time_cursor(&cursor)?;
    let mut params: Vec<SqlValue> = vec![
        call.tenant().as_str().into(),
        before_at.into(),
        before.into(),
        limit.into(),
    ];
    let statement = match state {
        Some(s) => {
            params.push(s.as_str().into());
            LIST_IN_STATE
        }
        None => LIST,
    };
    let rows = exec(call.sql, statement, params).await?;
    let mut items = Vec::new();
    let mut last = None;
    for row in each(&rows) {
        last = Some((
            row.integer("changed_at").map_err(|e| storage(&e))?,
            row.text("fingerprint").map_err(|e| storage(&e))?,
        ));
        items.push(alert_json(&row)?);
    }
    Ok(json_response(
        StatusCode::OK,
        &time_page(&items, last, limit),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(status: Status, starts_at: i64) -> Alert {
        Alert {
            fingerprint: "a1b2".into(),
            status,
            labels: Map::from_iter([("alertname".into(), json!("TepiErrorRateHigh"))]),
            annotations: Map::new(),
            starts_at,
            ends_at: None,
            generator_url: None,
        }
    }

    /// Stored as `status` since `starts_at`, last changed at 1000.
    fn stored(status: Status, starts_at: i64) -> Stored {
        Stored {
            status,
            starts_at,
            changed_at: 1000,
            changes: 1,
        }
    }

    #[test]
    fn transitions_follow_occurrences_not_deliveries() {
        use Status::{Firing, Resolved};
        let soon = 1000 + REFIRE_AFTER_SECS - 1;
        let later = 1000 + REFIRE_AFTER_SECS;
        #[rustfmt::skip]
        let cases = [
            (alert(Firing, 10), None, soon, Some(Firing), "a new alert fires"),
            (alert(Resolved, 10), None, soon, None, "a resolved stranger is only stored"),
            (alert(Firing, 10), Some(stored(Firing, 10)), soon, None, "a repeat is a receipt"),
            (alert(Resolved, 10), Some(stored(Firing, 10)), soon, Some(Resolved), "it resolves"),
            (alert(Resolved, 10), Some(stored(Resolved, 10)), soon, None, "a resolved repeat"),
            (alert(Firing, 10), Some(stored(Resolved, 10)), soon, None, "a late firing retry"),
            (alert(Firing, 10), Some(stored(Resolved, 10)), later, Some(Firing), "the same occurrence fires again"),
            (alert(Firing, 20), Some(stored(Resolved, 10)), soon, Some(Firing), "a new occurrence fires"),
            (alert(Resolved, 20), Some(stored(Firing, 10)), soon, Some(Resolved), "flapped between deliveries: resolved"),
            (alert(Firing, 20), Some(stored(Firing, 10)), soon, Some(Firing), "flapped between deliveries: fires anew"),
            (alert(Resolved, 20), Some(stored(Resolved, 10)), soon, None, "an unseen occurrence, resolved"),
            (alert(Firing, 5), Some(stored(Resolved, 10)), later, None, "an older occurrence"),
            (alert(Resolved, 5), Some(stored(Firing, 10)), soon, None, "an older resolution"),
        ];
        for (a, stored, now, want, why) in cases {
            assert_eq!(transition(&a, stored.as_ref(), now), want, "{why}");
        }
    }

    #[test]
    fn links_are_web_links_only() {
        for (raw, ok) in [
            (
                "https://git.example.com/tepi/blob/main/docs/ops.md#runbooks",
                true,
            ),
            ("http://127.0.0.1:9090/graph?g0.expr=up", true),
            ("javascript:alert(1)", false),
            ("data:text/html,hi", false),
            ("/relative/path", false),
            ("https://", false),
            ("https://a.example.com/ x", false),
        ] {
            assert_eq!(web_link(raw).is_some(), ok, "{raw}");
        }
    }
}
