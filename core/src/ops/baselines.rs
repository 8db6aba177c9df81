//! Load-test baselines: the summary of a k6 run (per-route latency
//! quantiles and errors, the error rate, the achieved rate, job lag per
//! queue) kept per branch, scenario and build, so that a later run is
//! compared with its branch's baseline, or `main`'s
//! (`scripts/k6-compare.py`). `PUT` and `GET /v1/ops/baselines/{branch}`
//! and `GET /v1/ops/baselines` take a `baselines:write` key or an operator
//! admin. A summary is read member by member and stored re-serialised, so
//! what is stored is exactly what was checked.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::api::error::ApiError;
use crate::api::response::{json_response, query_pairs, rfc3339, storage};
use crate::api::validate::{FieldError, json_object};
use crate::module::{Call, exec};
use crate::storage::rows::{Row, each, first};

type Handled = Result<Response<Bytes>, ApiError>;

/// Most baselines (branch × scenario × build) a tenant keeps: recording
/// beyond it drops the least recently recorded.
pub const MAX_BASELINES: i64 = 500;
/// Most routes and queues one summary describes.
pub const MAX_ROUTES: usize = 100;
pub const MAX_QUEUES: usize = 16;
/// The largest body a baseline is read from.
pub const MAX_BODY: usize = 64 * 1024;
const MAX_BRANCH: usize = 200;
const MAX_ROUTE: usize = 128;

const UPSERT: &str = "INSERT INTO baselines \
     (tenant_id, branch, scenario, build, commit_sha, summary, recorded_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (tenant_id, branch, scenario, build) DO UPDATE SET \
     commit_sha = excluded.commit_sha, summary = excluded.summary, recorded_at = excluded.recorded_at";
/// Keeps the `MAX_BASELINES` most recently recorded (`?2` = that − 1).
const TRIM: &str = "DELETE FROM baselines WHERE tenant_id = ?1 AND recorded_at < \
     (SELECT recorded_at FROM baselines WHERE tenant_id = ?1 \
      ORDER BY recorded_at DESC LIMIT 1 OFFSET ?2)";
const ONE: &str = "SELECT branch, scenario, build, commit_sha, summary, recorded_at FROM baselines \
     WHERE tenant_id = ?1 AND branch = ?2 AND scenario = ?3 AND build = ?4";
const LIST: &str = "SELECT branch, scenario, build, commit_sha, recorded_at FROM baselines \
     WHERE tenant_id = ?1 ORDER BY branch, scenario, build LIMIT ?2";

/// The statements requests run, for the query-plan test.
pub const HOT_QUERIES: &[(&str, &str)] = &[
    ("baselines_trim", TRIM),
    ("baselines_one", ONE),
    ("baselines_list", LIST),
];

fn problem(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        code,
        message: message.into(),
    }
}

/// A branch as git names one, at most 200 characters of letters, digits,
/// `.`, `_`, `-` and `/`, no empty or `..` component.
fn branch(raw: &str) -> Result<&str, ApiError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_BRANCH
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && raw
            .split('/')
            .all(|part| !part.is_empty() && part != ".." && part != ".");
    ok.then_some(raw).ok_or_else(|| ApiError::Validation {
        errors: vec![problem(
            "branch",
            "invalid",
            "must be a branch name: 1-200 of A-Z a-z 0-9 . _ - /, no empty or dot-only part",
        )],
    })
}

/// A scenario or build name: 1-32 of `a-z`, `0-9`, `-`.
fn name(raw: &str) -> bool {
    (1..=32).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Reads one object's numeric members, each a finite number within
/// `0..=max` (`u64` counts must be whole), nothing else.
fn numbers(
    value: &Value,
    path: &str,
    members: &[(&str, f64, bool)],
    errors: &mut Vec<FieldError>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(object) = value.as_object() else {
        errors.push(problem(path, "type", "must be an object"));
        return out;
    };
    for key in object.keys() {
        if !members.iter().any(|(m, _, _)| m == key) {
            errors.push(problem(
                format!("{path}/{}", key.chars().take(MAX_ROUTE).collect::<String>()),
                "unknown_field",
                "is not a member of this object",
            ));
        }
    }
    for &(member, max, whole) in members {
        let at = format!("{path}/{member}");
        match object.get(member).and_then(Value::as_f64) {
            None => errors.push(problem(at, "required", "must be a number")),
            Some(n) if !(0.0..=max).contains(&n) || (whole && n.fract() != 0.0) => {
                errors.push(problem(
                    at,
                    "out_of_range",
                    format!(
                        "must be a {} from 0 to {max}",
                        if whole { "whole number" } else { "number" }
                    ),
                ));
            }
            Some(_) => {
                out.insert(member.to_owned(), object[member].clone());
            }
        }
    }
    out
}

/// Reads `{name: {numbers…}}`, at most `max` entries with names `ok`.
fn table(
    value: Option<&Value>,
    path: &str,
    max: usize,
    ok: fn(&str) -> bool,
    members: &[(&str, f64, bool)],
    errors: &mut Vec<FieldError>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(object) = value.and_then(Value::as_object) else {
        errors.push(problem(path, "type", "must be an object"));
        return out;
    };
    if object.len() > max {
        errors.push(problem(
            path,
            "out_of_range",
            format!("must have at most {max} entries"),
        ));
        return out;
    }
    for (key, entry) in object {
        let at = format!("{path}/{}", key.chars().take(MAX_ROUTE).collect::<String>());
        if ok(key) {
            out.insert(
                key.clone(),
                Value::Object(numbers(entry, &at, members, errors)),
            );
        } else {
            errors.push(problem(at, "invalid", "is not a valid name here"));
        }
    }
    out
}

const BIG: f64 = 1e12;
const ROUTE_MEMBERS: &[(&str, f64, bool)] = &[
    ("p50", BIG, false),
    ("p95", BIG, false),
    ("p99", BIG, false),
    ("count", BIG, true),
    ("error_rate", 1.0, false),
];
const QUEUE_MEMBERS: &[(&str, f64, bool)] = &[
    ("lag_p95_s", BIG, false),
    ("failed", BIG, true),
    ("processed", BIG, true),
];

/// A route as k6 tags it: `GET /v1/uploads/{id}`.
fn route_name(raw: &str) -> bool {
    (1..=MAX_ROUTE).contains(&raw.chars().count()) && !raw.chars().any(char::is_control)
}

/// The summary: `error_rate`, `rate`, `routes`, and optionally `jobs`.
fn summary(value: Option<&Value>, errors: &mut Vec<FieldError>) -> Value {
    let Some(object) = value.and_then(Value::as_object) else {
        errors.push(problem("summary", "required", "must be an object"));
        return Value::Null;
    };
    let known = ["error_rate", "rate", "routes", "jobs"];
    for key in object.keys().filter(|k| !known.contains(&k.as_str())) {
        errors.push(problem(
            format!(
                "summary/{}",
                key.chars().take(MAX_ROUTE).collect::<String>()
            ),
            "unknown_field",
            "is not a member of a summary",
        ));
    }
    let totals = numbers(
        &Value::Object(crate::sort::map(
            object
                .iter()
                .filter(|(k, _)| matches!(k.as_str(), "error_rate" | "rate"))
                .map(|(k, v)| (k.clone(), v.clone())),
        )),
        "summary",
        &[("error_rate", 1.0, false), ("rate", BIG, false)],
        errors,
    );
    let routes = table(
        object.get("routes"),
        "summary/routes",
        MAX_ROUTES,
        route_name,
        ROUTE_MEMBERS,
        errors,
    );
    let jobs = match object.get("jobs") {
        None | Some(Value::Null) => Map::new(),
        jobs => table(
            jobs,
            "summary/jobs",
            MAX_QUEUES,
            name,
            QUEUE_MEMBERS,
            errors,
        ),
    };
    let mut out = totals;
    out.insert("routes".into(), Value::Object(routes));
    out.insert("jobs".into(), Value::Object(jobs));
    Value::Object(out)
}

fn record(row: &Row<'_>, with_summary: bool) -> Result<Value, ApiError> {
    let e = |e| storage(&e);
    let mut out = json!({
        "branch": row.text("branch").map_err(e)?,
        "scenario": row.text("scenario").map_err(e)?,
        "build": row.text("build").map_err(e)?,
        "commit": row.text("commit_sha").ok(),
        "recorded_at": rfc3339(row.integer("recorded_at").map_err(e)?),
    });
    if with_summary {
        let text = row.text("summary").map_err(e)?;
        out["summary"] = serde_json::from_str(&text).unwrap_or(Value::Null);
    }
    Ok(out)
}

/// `PUT /v1/ops/baselines/{branch}` {scenario, build, commit?, summary}.
pub async fn put(call: &Call<'_>) -> Handled {
    if call.req.body().len() > MAX_BODY {
        return Err(ApiError::PayloadTooLarge { limit: MAX_BODY });
    }
    let branch = branch(call.param("branch"))?;
    let body = json_object(call.req)?;
    let mut errors = Vec::new();
    for key in body.keys() {
        if !["scenario", "build", "commit", "summary"].contains(&key.as_str()) {
            errors.push(problem(
                key.chars().take(MAX_ROUTE).collect::<String>(),
                "unknown_field",
                "is not a field of this request",
            ));
        }
    }
    let text = |field: &str, errors: &mut Vec<FieldError>| -> Option<String> {
        match body.get(field).and_then(Value::as_str) {
            Some(v) if name(v) => Some(v.to_owned()),
            _ => {
                errors.push(problem(field, "invalid", "must be 1-32 of a-z, 0-9 and -"));
                None
            }
        }
    };
    let scenario = text("scenario", &mut errors);
    let build = text("build", &mut errors);
    let commit = match body.get("commit") {
        None | Some(Value::Null) => None,
        Some(Value::String(c))
            if (4..=64).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Some(c.to_ascii_lowercase())
        }
        Some(_) => {
            errors.push(problem(
                "commit",
                "invalid",
                "must be 4-64 hexadecimal digits",
            ));
            None
        }
    };
    let summary = summary(body.get("summary"), &mut errors);
    let (Some(scenario), Some(build)) = (scenario, build) else {
        return Err(ApiError::Validation { errors });
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation { errors });
    }
    let tenant = call.tenant().as_str();
    let secs = call.now.as_unix_secs();
    exec(
        call.sql,
        UPSERT,
        vec![
            tenant.into(),
            branch.into(),
            scenario.as_str().into(),
            build.as_str().into(),
            commit
                .clone()
                .map_or(crate::ports::SqlValue::Null, Into::into),
            summary.to_string().into(),
            secs.into(),
        ],
    )
    .await?;
    exec(
        call.sql,
        TRIM,
        vec![tenant.into(), (MAX_BASELINES - 1).into()],
    )
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "branch": branch, "scenario": scenario, "build": build, "commit": commit,
            "recorded_at": rfc3339(secs), "summary": summary,
        }),
    ))
}

/// `GET /v1/ops/baselines/{branch}?scenario=…&build=…`.
pub async fn get(call: &Call<'_>) -> Handled {
    let branch = branch(call.param("branch"))?;
    let pairs = query_pairs(call.req.uri().query().unwrap_or(""));
    let arg = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let mut errors = Vec::new();
    for key in ["scenario", "build"] {
        if !arg(key).is_some_and(name) {
            errors.push(problem(key, "invalid", "must be 1-32 of a-z, 0-9 and -"));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation { errors });
    }
    let rows = exec(
        call.sql,
        ONE,
        vec![
            call.tenant().as_str().into(),
            branch.into(),
            arg("scenario").unwrap_or("").into(),
            arg("build").unwrap_or("").into(),
        ],
    )
    .await?;
    let row = first(&rows).ok_or(ApiError::NotFound)?;
    Ok(json_response(StatusCode::OK, &record(&row, true)?))
}

/// `GET /v1/ops/baselines`: what is stored, by branch, without summaries.
pub async fn list(call: &Call<'_>) -> Handled {
    let rows = exec(
        call.sql,
        LIST,
        vec![call.tenant().as_str().into(), MAX_BASELINES.into()],
    )
    .await?;
    let items = each(&rows)
        .map(|row| record(&row, false))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json_response(StatusCode::OK, &json!({"items": items})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_are_names_git_would_give() {
        for ok in ["main", "feature/k6-smoke", "release/1.2.x", "a_b"] {
            assert!(branch(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/main",
            "main/",
            "a//b",
            "../etc",
            "a/./b",
            "a b",
            "a%2Fb",
            &"x".repeat(201),
        ] {
            assert!(branch(bad).is_err(), "{bad}");
        }
    }
}
