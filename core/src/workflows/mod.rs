//! Workflows: a trigger (started by hand, or by events whose type matches a
//! pattern such as `meta.message.received` or `meta.*`) and ordered steps —
//! send a notification, call a webhook, wait. Starting one records a run and
//! publishes `workflow.run.requested`; the workflows consumer executes the
//! steps and records their results.
//!
//! Users of the tenant read workflows and start runs; admins define them.

pub mod job;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::api::error::ApiError;
use crate::api::response::{json_response, list_body, page_of, rfc3339, storage};
use crate::api::validate::{FieldError, Fields, Invalid, json_object, parsed};
use crate::auth::Role;
use crate::config::JobsConfig;
use crate::jobs::events::{self, Event, WorkflowRunRequested};
use crate::module::{Call, exec};
use crate::ports::{PortError, Rows};
use crate::secret;
use crate::storage::rows::{Row, each, first};

type Handled = Result<Response<Bytes>, ApiError>;

/// Most steps a workflow may have.
pub const MAX_STEPS: usize = 20;
/// Longest wait step, in seconds (a day).
pub const MAX_WAIT_SECS: u64 = 86_400;

const INSERT: &str = "INSERT INTO workflows \
     (id, tenant_id, name, trigger, steps, created_by, created_at, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)";
const BY_ID: &str = "SELECT id, name, trigger, steps, created_by, created_at, updated_at \
     FROM workflows WHERE tenant_id = ?1 AND id = ?2";
const PAGE: &str = "SELECT id, name, trigger, steps, created_by, created_at, updated_at \
     FROM workflows WHERE tenant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3";
const UPDATE: &str = "UPDATE workflows SET name = COALESCE(?3, name), \
     trigger = COALESCE(?4, trigger), steps = COALESCE(?5, steps), updated_at = ?6 \
     WHERE tenant_id = ?1 AND id = ?2 \
     RETURNING id, name, trigger, steps, created_by, created_at, updated_at";
const DELETE: &str = "DELETE FROM workflows WHERE tenant_id = ?1 AND id = ?2 RETURNING id";
pub(crate) const EVENT_TRIGGERED: &str = "SELECT id, trigger, steps FROM workflows \
     WHERE tenant_id = ?1 AND trigger <> 'manual'";
const INSERT_RUN: &str = "INSERT INTO workflow_runs \
     (id, tenant_id, workflow_id, status, cause, input, step_results, requested_by, created_at, updated_at) \
     VALUES (?1, ?2, ?3, 'requested', ?4, ?5, ?6, ?7, ?8, ?8)";
const RUN_BY_ID: &str = "SELECT id, workflow_id, status, cause, input, step_results, requested_by, \
     created_at, updated_at FROM workflow_runs WHERE tenant_id = ?1 AND workflow_id = ?2 AND id = ?3";
const RUNS_PAGE: &str = "SELECT id, workflow_id, status, cause, input, step_results, requested_by, \
     created_at, updated_at FROM workflow_runs \
     WHERE tenant_id = ?1 AND workflow_id = ?2 AND id > ?3 ORDER BY id LIMIT ?4";

/// The statements requests run, for the query-plan test.
pub const HOT_QUERIES: &[(&str, &str)] = &[
    ("workflow_by_id", BY_ID),
    ("workflows_page", PAGE),
    ("workflow_update", UPDATE),
    ("workflow_delete", DELETE),
    ("workflows_event_triggered", EVENT_TRIGGERED),
    ("run_by_id", RUN_BY_ID),
    ("runs_page", RUNS_PAGE),
    ("run_for_job", job::FOR_JOB),
];

/// Whether an event type matches a trigger pattern: equal, or a prefix of
/// whole segments followed by `*` (`meta.*` matches `meta.message.received`).
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => prefix.ends_with('.') && event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

fn valid_pattern(raw: &str) -> bool {
    let body = raw.strip_suffix(".*").unwrap_or(raw);
    !body.is_empty()
        && raw.len() <= 100
        && body.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// `{"type":"manual"}` or `{"type":"event","event_type":"meta.*"}` → the
/// stored form (`manual` or the pattern).
fn parse_trigger(value: &Value) -> Result<String, Invalid> {
    let object = value
        .as_object()
        .ok_or_else(|| Invalid::new("type", "must be an object with a type"))?;
    match object.get("type").and_then(Value::as_str) {
        Some("manual") if object.len() == 1 => Ok("manual".to_owned()),
        Some("event") if object.len() == 2 => {
            let pattern = object
                .get("event_type")
                .and_then(Value::as_str)
                .ok_or_else(|| Invalid::new("required", "an event trigger needs event_type"))?;
            // "manual" is how manual triggers are stored.
            if valid_pattern(pattern) && pattern != "manual" {
                Ok(pattern.to_owned())
            } else {
                Err(Invalid::new(
                    "invalid",
                    "event_type must be dot-separated a-z0-9_ segments, optionally ending in .*",
                ))
            }
        }
        _ => Err(Invalid::new(
            "invalid",
            "must be {\"type\":\"manual\"} or {\"type\":\"event\",\"event_type\":…}",
        )),
    }
}

fn trigger_json(stored: &str) -> Value {
    if stored == "manual" {
        json!({"type": "manual"})
    } else {
        json!({"type": "event", "event_type": stored})
    }
}

/// Checks every step, reporting each problem with its path (`steps/1/url`).
fn parse_steps(
    value: &Value,
    jobs: &JobsConfig,
    errors: &mut Vec<FieldError>,
) -> Option<Vec<Value>> {
    let before = errors.len();
    let mut fail = |field: String, code: &'static str, message: &str| {
        errors.push(FieldError {
            field,
            code,
            message: message.to_owned(),
        });
    };
    let Some(items) = value.as_array() else {
        fail("steps".into(), "type", "must be an array of steps");
        return None;
    };
    if items.is_empty() || items.len() > MAX_STEPS {
        fail(
            "steps".into(),
            "out_of_range",
            &format!("must have 1 to {MAX_STEPS} steps"),
        );
        return None;
    }
    let mut steps = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |name: &str| format!("steps/{i}/{name}");
        let Some(step) = item.as_object() else {
            fail(format!("steps/{i}"), "type", "must be an object");
            continue;
        };
        let known: &[&str] = match step.get("type").and_then(Value::as_str) {
            Some("notify") => {
                let message = step.get("message").and_then(Value::as_str);
                if !message.is_some_and(|m| !m.trim().is_empty() && m.chars().count() <= 1000) {
                    fail(
                        at("message"),
                        "invalid",
                        "a notification needs a message of 1-1000 characters",
                    );
                }
                let to_user = step.get("user_id").and_then(Value::as_str);
                let to_role = step.get("role").and_then(Value::as_str);
                match (to_user, to_role) {
                    (Some(u), None) if !u.is_empty() && u.len() <= 64 => {}
                    (None, Some(r)) if Role::parse(r).is_ok() => {}
                    (Some(_), None) => fail(at("user_id"), "invalid", "must be 1-64 characters"),
                    _ => fail(
                        at("role"),
                        "invalid",
                        "name exactly one of user_id or role (admin, user)",
                    ),
                }
                &["type", "message", "user_id", "role"]
            }
            Some("webhook") => {
                let url = step.get("url").and_then(Value::as_str).unwrap_or("");
                if let Err(refused) = crate::jobs::targets::check(jobs, url) {
                    fail(at("url"), "invalid", refused.message());
                }
                &["type", "url"]
            }
            Some("wait") => {
                let seconds = step.get("seconds").and_then(Value::as_u64);
                if !seconds.is_some_and(|s| (1..=MAX_WAIT_SECS).contains(&s)) {
                    fail(
                        at("seconds"),
                        "out_of_range",
                        &format!("must be 1 to {MAX_WAIT_SECS}"),
                    );
                }
                &["type", "seconds"]
            }
            _ => {
                fail(at("type"), "invalid", "must be notify, webhook or wait");
                continue;
            }
        };
        for key in step.keys().filter(|k| !known.contains(&k.as_str())) {
            fail(at(key), "unknown_field", "is not a field of this step");
        }
        steps.push(item.clone());
    }
    let failed = errors.len() > before;
    (!failed).then_some(steps)
}

fn workflow_json(row: &Row<'_>) -> Result<Value, PortError> {
    let steps: Value = serde_json::from_str(&row.text("steps")?).unwrap_or(Value::Null);
    Ok(json!({
        "id": row.text("id")?,
        "name": row.text("name")?,
        "trigger": trigger_json(&row.text("trigger")?),
        "steps": steps,
        "created_by": row.text("created_by")?,
        "created_at": rfc3339(row.integer("created_at")?),
        "updated_at": rfc3339(row.integer("updated_at")?),
    }))
}

fn run_json(row: &Row<'_>) -> Result<Value, PortError> {
    let parse = |column: &str| -> Result<Value, PortError> {
        Ok(serde_json::from_str(&row.text(column)?).unwrap_or(Value::Null))
    };
    let requested_by = match row.text("requested_by") {
        Ok(user) => Value::String(user),
        Err(_) => Value::Null,
    };
    Ok(json!({
        "id": row.text("id")?,
        "workflow_id": row.text("workflow_id")?,
        "status": row.text("status")?,
        "cause": parse("cause")?,
        "input": parse("input")?,
        "steps": parse("step_results")?,
        "requested_by": requested_by,
        "created_at": rfc3339(row.integer("created_at")?),
        "updated_at": rfc3339(row.integer("updated_at")?),
    }))
}

/// The workflow named by the path, as a row (404 when the tenant has none).
async fn find(call: &Call<'_>) -> Result<Rows, ApiError> {
    let rows = call.by_id(BY_ID).await?;
    if rows.rows.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(rows)
}

fn admin(call: &Call<'_>) -> Result<(), ApiError> {
    if call.caller.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

struct Definition {
    name: Option<String>,
    trigger: Option<String>,
    steps: Option<Vec<Value>>,
}

/// Reads a definition; `complete` requires every field (create).
fn definition(call: &Call<'_>, complete: bool) -> Result<Definition, ApiError> {
    let body = json_object(call.req)?;
    let mut fields = Fields::new(&body);
    let name_rule = parsed(100, |raw| {
        let name = raw.trim();
        if name.is_empty() {
            Err(Invalid::new("required", "must not be empty"))
        } else {
            Ok(name.to_owned())
        }
    });
    let (name, trigger, raw_steps) = if complete {
        (
            fields.required("name", name_rule),
            fields.required("trigger", parse_trigger),
            fields.required("steps", |v| Ok(v.clone())),
        )
    } else {
        (
            fields.optional("name", name_rule),
            fields.optional("trigger", parse_trigger),
            fields.optional("steps", |v| Ok(v.clone())),
        )
    };
    if !complete && body.values().all(Value::is_null) {
        fields.reject(
            "",
            Invalid::new("required", "give at least one of name, trigger, steps"),
        );
    }
    let mut step_errors = Vec::new();
    let steps = raw_steps.and_then(|v| parse_steps(&v, &call.config.jobs, &mut step_errors));
    for e in step_errors {
        fields.reject(&e.field, Invalid::new(e.code, e.message));
    }
    fields.finish()?;
    Ok(Definition {
        name,
        trigger,
        steps,
    })
}

/// `GET /v1/workflows`.
pub async fn list(call: &Call<'_>) -> Handled {
    let (cursor, limit) = page_of(call.req)?;
    let rows = exec(
        call.sql,
        PAGE,
        vec![call.tenant().as_str().into(), cursor.into(), limit.into()],
    )
    .await?;
    let mut items = Vec::new();
    for row in each(&rows) {
        items.push(workflow_json(&row).map_err(|e| storage(&e))?);
    }
    Ok(json_response(StatusCode::OK, &list_body(&items, limit)))
}

/// `POST /v1/workflows` {name, trigger, steps} (admin).
pub async fn create(call: &Call<'_>) -> Handled {
    admin(call)?;
    let Definition {
        name: Some(name),
        trigger: Some(trigger),
        steps: Some(steps),
    } = definition(call, true)?
    else {
        unreachable!("a complete definition has every field");
    };
    let id = secret::id(call.entropy, "wf_");
    let steps_text = Value::Array(steps).to_string();
    exec(
        call.sql,
        INSERT,
        vec![
            id.clone().into(),
            call.tenant().as_str().into(),
            name.into(),
            trigger.into(),
            steps_text.into(),
            call.caller.user_id.into(),
            call.now.as_unix_secs().into(),
        ],
    )
    .await?;
    let rows = exec(
        call.sql,
        BY_ID,
        vec![call.tenant().as_str().into(), id.clone().into()],
    )
    .await?;
    let row = first(&rows).ok_or(ApiError::StorageUnavailable)?;
    let mut response = json_response(
        StatusCode::CREATED,
        &workflow_json(&row).map_err(|e| storage(&e))?,
    );
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/workflows/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /v1/workflows/{id}`.
pub async fn get(call: &Call<'_>) -> Handled {
    let rows = find(call).await?;
    let row = first(&rows).ok_or(ApiError::NotFound)?;
    Ok(json_response(
        StatusCode::OK,
        &workflow_json(&row).map_err(|e| storage(&e))?,
    ))
}

/// `PATCH /v1/workflows/{id}` {name?, trigger?, steps?} (admin).
pub async fn update(call: &Call<'_>) -> Handled {
    admin(call)?;
    let change = definition(call, false)?;
    let rows = exec(
        call.sql,
        UPDATE,
        vec![
            call.tenant().as_str().into(),
            call.param("id").into(),
            change.name.into(),
            change.trigger.into(),
            change.steps.map(|s| Value::Array(s).to_string()).into(),
            call.now.as_unix_secs().into(),
        ],
    )
    .await?;
    let row = first(&rows).ok_or(ApiError::NotFound)?;
    Ok(json_response(
        StatusCode::OK,
        &workflow_json(&row).map_err(|e| storage(&e))?,
    ))
}

/// `DELETE /v1/workflows/{id}` (admin). Its runs stay readable by id.
pub async fn delete(call: &Call<'_>) -> Handled {
    admin(call)?;
    let rows = call.by_id(DELETE).await?;
    if rows.rows.is_empty() {
        return Err(ApiError::NotFound);
    }
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// Records a run of `workflow_id` and publishes `workflow.run.requested`.
/// The run is stored first, so the consumer always finds it.
pub async fn start_run(
    call: &Call<'_>,
    workflow_id: &str,
    step_count: usize,
    cause: Value,
    input: Value,
    requested_by: Option<&str>,
) -> Result<Value, ApiError> {
    let run_id = secret::id(call.entropy, "run_");
    let pending: Vec<Value> = (0..step_count)
        .map(|_| json!({"status": "pending", "result": null}))
        .collect();
    let secs = call.now.as_unix_secs();
    exec(
        call.sql,
        INSERT_RUN,
        vec![
            run_id.clone().into(),
            call.tenant().as_str().into(),
            workflow_id.into(),
            cause.to_string().into(),
            input.to_string().into(),
            Value::Array(pending.clone()).to_string().into(),
            requested_by.into(),
            secs.into(),
        ],
    )
    .await?;
    let event = WorkflowRunRequested {
        workflow_id: workflow_id.to_owned(),
        run_id: run_id.clone(),
        cause: cause.clone(),
        input: input.clone(),
    };
    let envelope = events::envelope(&event, call.tenant(), call.cx, call.entropy, call.now);
    call.jobs
        .enqueue(WorkflowRunRequested::QUEUE, &envelope.to_string())
        .await
        .map_err(|e| storage(&e))?;
    Ok(json!({
        "id": run_id,
        "workflow_id": workflow_id,
        "status": "requested",
        "cause": cause,
        "input": input,
        "steps": pending,
        "requested_by": requested_by,
        "created_at": rfc3339(secs),
        "updated_at": rfc3339(secs),
    }))
}

/// `POST /v1/workflows/{id}/runs` {input?}: starts a run by hand (honours
/// `Idempotency-Key`: the same key answers the same run).
pub async fn run(call: &Call<'_>) -> Handled {
    let input = if call.req.body().is_empty() {
        Value::Object(Map::new())
    } else {
        let body = json_object(call.req)?;
        let mut fields = Fields::new(&body);
        let input = fields.optional("input", |v| {
            v.as_object()
                .map(|o| Value::Object(o.clone()))
                .ok_or_else(|| Invalid::new("type", "must be an object"))
        });
        fields.finish()?;
        input.unwrap_or_else(|| Value::Object(Map::new()))
    };
    let rows = find(call).await?;
    let row = first(&rows).ok_or(ApiError::NotFound)?;
    let workflow = workflow_json(&row).map_err(|e| storage(&e))?;
    let steps = workflow["steps"].as_array().map_or(0, Vec::len);
    let run = start_run(
        call,
        call.param("id"),
        steps,
        json!({"type": "manual"}),
        input,
        Some(call.caller.user_id),
    )
    .await?;
    let id = run["id"].as_str().unwrap_or_default().to_owned();
    let mut response = json_response(StatusCode::CREATED, &run);
    if let Ok(location) =
        HeaderValue::from_str(&format!("/v1/workflows/{}/runs/{id}", call.param("id")))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /v1/workflows/{id}/runs`.
pub async fn runs(call: &Call<'_>) -> Handled {
    let (cursor, limit) = page_of(call.req)?;
    find(call).await?;
    let rows = exec(
        call.sql,
        RUNS_PAGE,
        vec![
            call.tenant().as_str().into(),
            call.param("id").into(),
            cursor.into(),
            limit.into(),
        ],
    )
    .await?;
    let mut items = Vec::new();
    for row in each(&rows) {
        items.push(run_json(&row).map_err(|e| storage(&e))?);
    }
    Ok(json_response(StatusCode::OK, &list_body(&items, limit)))
}

/// `GET /v1/workflows/{id}/runs/{run_id}`: status and step results.
pub async fn get_run(call: &Call<'_>) -> Handled {
    let rows = exec(
        call.sql,
        RUN_BY_ID,
        vec![
            call.tenant().as_str().into(),
            call.param("id").into(),
            call.param("run_id").into(),
        ],
    )
    .await?;
    let row = first(&rows).ok_or(ApiError::NotFound)?;
    Ok(json_response(
        StatusCode::OK,
        &run_json(&row).map_err(|e| storage(&e))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_patterns_match_whole_segments() {
        let cases = [
            ("meta.message.received", "meta.message.received", true),
            ("meta.*", "meta.message.received", true),
            ("meta.message.*", "meta.message.received", true),
            ("meta.*", "metal.thing", false),
            ("meta.message.received", "meta.message.read", false),
            ("meta.message", "meta.message.received", false),
        ];
        for (pattern, event, want) in cases {
            assert_eq!(pattern_matches(pattern, event), want, "{pattern} ~ {event}");
        }
        for (pattern, valid) in [
            ("meta.*", true),
            ("a.b_c.d1", true),
            ("*", false),
            ("Meta.x", false),
            ("a..b", false),
            ("a.*.b", false),
        ] {
            assert_eq!(valid_pattern(pattern), valid, "{pattern}");
        }
    }

    #[test]
    fn step_problems_carry_their_path() {
        let steps = json!([
            {"type": "notify", "role": "admin", "message": "hi"},
            {"type": "webhook", "url": "http://insecure.example"},
            {"type": "wait", "seconds": 0},
            {"type": "dance"},
            {"type": "notify", "role": "owner", "message": "x", "extra": 1}
        ]);
        let mut errors = Vec::new();
        assert!(parse_steps(&steps, &JobsConfig::default(), &mut errors).is_none());
        let got: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            got,
            [
                ("steps/1/url", "invalid"),
                ("steps/2/seconds", "out_of_range"),
                ("steps/3/type", "invalid"),
                ("steps/4/role", "invalid"),
                ("steps/4/extra", "unknown_field"),
            ]
        );
        let mut none = Vec::new();
        let ok = json!([{"type": "wait", "seconds": 5}, {"type": "notify", "user_id": "usr_1", "message": "done"}]);
        assert_eq!(
            parse_steps(&ok, &JobsConfig::default(), &mut none).map(|s| s.len()),
            Some(2)
        );
        assert!(none.is_empty());
    }
}
