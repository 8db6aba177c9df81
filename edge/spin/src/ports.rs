//! Spin's SQLite, key-value and outbound HTTP interfaces and the WASI
//! monotonic clock as the core's ports, and the stores' readiness probes.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::SinkExt;
use spin_executor::CancelOnDropToken;
use spin_sdk::http::{Headers, Method, OutgoingRequest, Scheme};
use spin_sdk::{key_value, sqlite};
use tepi_core::{Bytes, HttpClient, KeyValue, PortError, Probe, Rows, Sql, SqlValue, Timer, http};
use wasi::clocks::monotonic_clock;

/// The `default` SQLite database (`sqlite_databases` in spin.toml).
pub struct SpinSql(sqlite::Connection);

impl SpinSql {
    pub fn open() -> Result<Self, PortError> {
        sqlite::Connection::open_default()
            .map(Self)
            .map_err(|e| PortError(format!("sqlite default: {e}")))
    }
}

fn to_spin(value: &SqlValue) -> sqlite::Value {
    match value {
        SqlValue::Null => sqlite::Value::Null,
        SqlValue::Integer(i) => sqlite::Value::Integer(*i),
        SqlValue::Real(r) => sqlite::Value::Real(*r),
        SqlValue::Text(t) => sqlite::Value::Text(t.clone()),
        SqlValue::Blob(b) => sqlite::Value::Blob(b.clone()),
    }
}

fn from_spin(value: sqlite::Value) -> SqlValue {
    match value {
        sqlite::Value::Null => SqlValue::Null,
        sqlite::Value::Integer(i) => SqlValue::Integer(i),
        sqlite::Value::Real(r) => SqlValue::Real(r),
        sqlite::Value::Text(t) => SqlValue::Text(t),
        sqlite::Value::Blob(b) => SqlValue::Blob(b),
    }
}

#[async_trait(?Send)]
impl Sql for SpinSql {
    async fn execute(&self, statement: &str, params: &[SqlValue]) -> Result<Rows, PortError> {
        let params: Vec<sqlite::Value> = params.iter().map(to_spin).collect();
        let result = self
            .0
            .execute(statement, &params)
            .map_err(|e| PortError(format!("sqlite: {e}")))?;
        Ok(Rows {
            columns: result.columns,
            rows: result
                .rows
                .into_iter()
                .map(|row| row.values.into_iter().map(from_spin).collect())
                .collect(),
        })
    }
}

/// The `default` key-value store (`key_value_stores` in spin.toml), opened
/// on first use: most requests never touch it, and opening it costs the
/// host a database connection.
#[derive(Default)]
pub struct SpinKv(OnceCell<Result<key_value::Store, String>>);

impl SpinKv {
    fn store(&self) -> Result<&key_value::Store, PortError> {
        self.0
            .get_or_init(|| {
                key_value::Store::open_default().map_err(|e| format!("key-value default: {e}"))
            })
            .as_ref()
            .map_err(|e| PortError(e.clone()))
    }
}

fn kv_error(e: &key_value::Error) -> PortError {
    PortError(format!("key-value: {e}"))
}

#[async_trait(?Send)]
impl KeyValue for SpinKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        self.store()?.get(key).map_err(|e| kv_error(&e))
    }
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), PortError> {
        self.store()?.set(key, value).map_err(|e| kv_error(&e))
    }
    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.store()?.delete(key).map_err(|e| kv_error(&e))
    }
}

/// Readiness of a store: it opens, and answers a read.
pub struct StoreProbe<'a> {
    pub name: &'static str,
    pub sql: Option<&'a SpinSql>,
    pub kv: Option<&'a SpinKv>,
    pub open_error: Option<&'a PortError>,
}

#[async_trait(?Send)]
impl Probe for StoreProbe<'_> {
    fn name(&self) -> &str {
        self.name
    }
    async fn check(&self) -> Result<(), String> {
        if let Some(e) = self.open_error {
            return Err(e.to_string());
        }
        if let Some(sql) = self.sql {
            sql.execute("SELECT 1", &[])
                .await
                .map_err(|e| e.to_string())?;
        }
        if let Some(kv) = self.kv {
            kv.get("readyz").await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Outbound HTTP through `wasi:http/outgoing-handler`; spin.toml's
/// `allowed_outbound_hosts` decides where it may go (any other origin fails
/// with `HTTP-request-denied`).
///
/// Not `spin_sdk::http::send` with the `http` types on both sides: it writes
/// the body before looking at the answer, so a denied or refused request
/// reports only `StreamError::Closed`, and an answer sent before the whole
/// body was read is lost; its conversion to `http::Response` panics when the
/// response body breaks off.
pub struct SpinHttp;

fn http_error(e: impl std::fmt::Display) -> PortError {
    PortError(format!("outbound http: {e}"))
}

#[async_trait(?Send)]
impl HttpClient for SpinHttp {
    /// `Err` unless an answer arrived: a denied, refused or failed request,
    /// and also a response body cut off midway.
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, PortError> {
        let (mut parts, body) = request.into_parts();
        // A fixed length rather than chunked encoding, which some webhook
        // receivers refuse.
        let has_content = !body.is_empty()
            || matches!(
                parts.method,
                http::Method::POST | http::Method::PUT | http::Method::PATCH
            );
        if has_content && !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
            parts
                .headers
                .insert(http::header::CONTENT_LENGTH, body.len().into());
        }
        let outgoing = outgoing_request(&parts)?;
        // The body is written while the answer is awaited; without content
        // the request has no body stream at all.
        let sink = (!body.is_empty()).then(|| outgoing.take_body());
        let write = async move {
            let Some(sink) = sink else { return Ok(()) };
            futures::pin_mut!(sink);
            sink.send(body.to_vec()).await
        };
        let answer = spin_sdk::http::send::<_, spin_sdk::http::IncomingResponse>(outgoing);
        let (answer, written) = futures::join!(answer, write);
        // When both failed, the answer's error (a denial, a refusal) says why.
        let response = answer.map_err(http_error)?;
        if let Err(e) = written {
            tracing::warn!(error = %e, "outbound http: body not fully sent, but answered");
        }
        let mut builder = http::Response::builder().status(response.status());
        for (name, value) in response.headers().entries() {
            builder = builder.header(name, value);
        }
        let content = response.into_body().await.map_err(http_error)?;
        builder.body(Bytes::from(content)).map_err(http_error)
    }
}

/// The request's head as WASI HTTP takes it. Built here rather than by
/// spin-sdk's conversion from `http::Request`, whose `anyhow` errors would
/// bring `anyhow`'s error reports (and std's backtraces) into the build.
fn outgoing_request(parts: &http::request::Parts) -> Result<OutgoingRequest, PortError> {
    let refused = |what: &str| PortError(format!("outbound http: the {what} was refused"));
    let headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let request = OutgoingRequest::new(Headers::from_list(&headers).map_err(http_error)?);
    request
        .set_method(&Method::from(parts.method.clone()))
        .map_err(|()| refused("method"))?;
    request
        .set_path_with_query(
            parts
                .uri
                .path_and_query()
                .map(http::uri::PathAndQuery::as_str),
        )
        .map_err(|()| refused("path"))?;
    let scheme = parts.uri.scheme().map(|s| match s.as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_owned()),
    });
    request
        .set_scheme(scheme.as_ref())
        .map_err(|()| refused("scheme"))?;
    request
        .set_authority(parts.uri.authority().map(http::uri::Authority::as_str))
        .map_err(|()| refused("authority"))?;
    Ok(request)
}

/// Sleeps on a `wasi:clocks/monotonic-clock` pollable, which spin-sdk's
/// executor (the one `#[http_component]` runs the handler on) waits for
/// together with the pending HTTP and stream pollables.
pub struct SpinTimer;

#[async_trait(?Send)]
impl Timer for SpinTimer {
    async fn sleep(&self, millis: u32) {
        let deadline = monotonic_clock::now().saturating_add(u64::from(millis) * 1_000_000);
        Sleep {
            deadline,
            registration: None,
        }
        .await;
    }
}

struct Sleep {
    deadline: monotonic_clock::Instant,
    /// The pollable registered with the executor; replacing or dropping it
    /// withdraws it, so an abandoned sleep leaves nothing behind.
    registration: Option<CancelOnDropToken>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // The executor polls the whole handler whenever any pollable is
        // ready, so the clock decides, not the wake-up.
        if monotonic_clock::now() >= self.deadline {
            self.registration = None;
            return Poll::Ready(());
        }
        let pollable = monotonic_clock::subscribe_instant(self.deadline);
        self.registration =
            Some(spin_executor::push_waker_and_get_token(pollable, cx.waker().clone()).into());
        Poll::Pending
    }
}
