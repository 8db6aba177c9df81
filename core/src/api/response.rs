//! Building answers and reading requests: JSON bodies, pages of lists,
//! query strings, the bearer credential. Shared by every handler.

use base64ct::{Base64UrlUnpadded, Encoding};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::validate::FieldError;
use crate::ports::{PortError, Rows, Sql, SqlValue};
use crate::time::Timestamp;

/// What a handler answers.
pub type Handled = Result<Response<Bytes>, ApiError>;

/// Page sizes of list endpoints.
pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 100;

/// Logs a storage failure and answers with a problem that reveals nothing.
pub fn storage(e: &PortError) -> ApiError {
    tracing::error!(target: "tepi::storage", error = %e, "storage failed");
    ApiError::StorageUnavailable
}

pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Bytes> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Bytes::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// 201 with the resource; `Location` where a route serves it.
pub fn created(location: Option<&str>, body: &Value) -> Response<Bytes> {
    let mut response = json_response(StatusCode::CREATED, body);
    if let Some(value) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

pub fn no_content() -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

pub fn rfc3339(secs: i64) -> String {
    Timestamp::from_unix_micros(u64::try_from(secs).unwrap_or(0) * 1_000_000).to_rfc3339()
}

/// The bearer credential of `Authorization`, if any.
pub fn bearer(req: &Request<Bytes>) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
        .filter(|c| !c.is_empty())
}

/// `?limit=&cursor=` of any list endpoint: the cursor (the last id of the
/// previous page) and a page size of 1 to `MAX_PAGE`.
pub fn page_of(req: &Request<Bytes>) -> Result<(String, i64), ApiError> {
    let mut cursor = String::new();
    let mut limit = DEFAULT_PAGE;
    let mut errors = Vec::new();
    for (name, value) in query_pairs(req.uri().query().unwrap_or("")) {
        match name.as_str() {
            "cursor" => cursor = value,
            "limit" => match value.parse::<i64>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => limit = n,
                _ => errors.push(FieldError {
                    field: "limit".into(),
                    code: "out_of_range",
                    message: format!("must be a whole number from 1 to {MAX_PAGE}"),
                }),
            },
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok((cursor, limit))
    } else {
        Err(ApiError::Validation { errors })
    }
}

/// `a=1&b=x%20y` → pairs, percent-decoded; a malformed escape leaves the
/// value as sent.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(raw: &str) -> String {
        let bytes = raw.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => match raw
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => return raw.to_owned(),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap_or_else(|_| raw.to_owned())
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A page of a list ordered by `id`: a full page's last id is the cursor
/// of the next one.
pub fn list_body(items: &[Value], limit: i64) -> Value {
    let full = i64::try_from(items.len()).unwrap_or(i64::MAX) >= limit;
    let next = items
        .last()
        .filter(|_| full)
        .and_then(|item| item["id"].as_str());
    json!({
        "items": items,
        "next_cursor": next,
    })
}

/// The next-page cursor of a list ordered by a time and then an id, newest
/// first: `<time>.<id>` of the page's last item, base64url.
pub fn time_cursor(at: i64, id: &str) -> String {
    Base64UrlUnpadded::encode_string(format!("{at}.{id}").as_bytes())
}

/// Where a page of such a list starts: after the cursor's item, or at the
/// newest (`i64::MAX`, empty id) without one; a cursor this list did not
/// give is `422` on `cursor`.
pub fn after_time_cursor(raw: &str) -> Result<(i64, String), ApiError> {
    if raw.is_empty() {
        return Ok((i64::MAX, String::new()));
    }
    let read = || {
        let text = String::from_utf8(Base64UrlUnpadded::decode_vec(raw).ok()?).ok()?;
        let (at, id) = text.split_once('.')?;
        Some((at.parse().ok()?, id.to_owned()))
    };
    read().ok_or_else(|| ApiError::Validation {
        errors: vec![FieldError {
            field: "cursor".into(),
            code: "invalid",
            message: "must be a next_cursor of this list".into(),
        }],
    })
}

/// A page of a list ordered by time and id: `last` is the page's last
/// item's (time, id), the next cursor when the page is full.
pub fn time_page(items: &[Value], last: Option<(i64, String)>, limit: i64) -> Value {
    let full = i64::try_from(items.len()).unwrap_or(i64::MAX) >= limit;
    let next = last.filter(|_| full).map(|(at, id)| time_cursor(at, &id));
    json!({"items": items, "next_cursor": next})
}

/// Runs one statement; a storage failure is logged and becomes a 503 that
/// reveals nothing.
pub async fn exec(
    sql: &dyn Sql,
    statement: &'static str,
    params: Vec<SqlValue>,
) -> Result<Rows, ApiError> {
    sql.execute(statement, &params)
        .await
        .map_err(|e| storage(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_cursors_round_trip_and_refuse_garbage() {
        let c = time_cursor(1_795_582_978, "ntf_abc");
        assert_eq!(
            after_time_cursor(&c).unwrap(),
            (1_795_582_978, "ntf_abc".to_owned())
        );
        assert_eq!(after_time_cursor("").unwrap(), (i64::MAX, String::new()));
        for garbage in ["not a cursor", "bm8tZG90", "eC55"] {
            assert!(after_time_cursor(garbage).is_err(), "{garbage}");
        }
    }
}
