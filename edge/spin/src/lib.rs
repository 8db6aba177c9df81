//! Tepi on Fermyon Spin (`wasm32-wasip2`, spin-sdk 5.2).
//!
//! Spin hands the component its request as a stream: the adapter converts
//! it into the core's `http::Request` — reading at most the core's body
//! limit (and nothing when the declared length is over it), naming headers
//! it cannot carry — wires ports (Spin SQLite, key-value, variables,
//! outbound HTTP, the monotonic clock as a timer), calls `App::handle` and
//! writes the answer back. Spin instantiates the component for every request, so the
//! `App` is per request too and keeps its metrics and rate-limit state in
//! SQLite and its shared cache in key-value (`App::stateless`).

mod ports;

use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use spin_sdk::http::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};
use spin_sdk::http_component;
use tepi_core::{
    App, BuildInfo, Bytes, Config, PeerAddr, Ports, Probe, Timestamp, UnreadableHeaders, http,
};

use crate::ports::{SpinHttp, SpinKv, SpinSql, SpinTimer, StoreProbe};

struct Entropy;

impl tepi_core::Entropy for Entropy {
    fn fill(&self, dest: &mut [u8]) {
        // wasi:random cannot fail.
        getrandom::fill(dest).expect("wasi:random");
    }
}

struct Clock;

impl tepi_core::Clock for Clock {
    fn now(&self) -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_unix_micros(u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX))
    }
}

fn stderr_line(line: &str) {
    eprintln!("{line}");
}

/// Configuration comes from Spin variables: the core's `ALLOWED_ORIGINS` is
/// the component variable `allowed_origins` (Spin names are lowercase).
/// Undefined variables leave the core's default.
fn config() -> tepi_core::LoadedConfig {
    Config::load(|name| spin_sdk::variables::get(&name.to_ascii_lowercase()).ok())
}

/// The component's export. `#[http_component]` generates the `unsafe` C-ABI
/// glue (and wit-bindgen code that trips `same_length_and_capacity`), so this
/// module alone allows it (see `Cargo.toml`).
#[allow(unsafe_code, clippy::same_length_and_capacity)]
mod export {
    use spin_sdk::http::{IncomingRequest, ResponseOutparam};

    use super::{http_component, serve};

    #[http_component]
    async fn incoming(request: IncomingRequest, response_out: ResponseOutparam) {
        serve(request, response_out).await;
    }
}

/// One request: converted with the core's body limit, answered, written;
/// then whatever the core runs after the answer (jobs this request put in
/// the outbox), while the client already has its response.
async fn serve(request: IncomingRequest, response_out: ResponseOutparam) {
    let app = App::new(config(), BuildInfo::for_target("spin")).stateless();
    let limit = app.config().max_body_bytes;
    // A body that broke off mid-stream: the client is gone, nothing runs.
    let Some(request) = into_http(request, limit).await else {
        return;
    };
    let now = tepi_core::Clock::now(&Clock);
    tepi_core::log::JsonLines::install(stderr_line, tracing::Level::INFO);
    let sql = SpinSql::open();
    let kv = SpinKv::default();
    let sql_probe = StoreProbe {
        name: "sqlite:default",
        sql: sql.as_ref().ok(),
        kv: None,
        open_error: sql.as_ref().err(),
    };
    let kv_probe = StoreProbe {
        name: "key_value:default",
        sql: None,
        kv: Some(&kv),
        open_error: None,
    };
    let probes: [&dyn Probe; 2] = [&sql_probe, &kv_probe];
    let ports = Ports {
        entropy: &Entropy,
        clock: &Clock,
        probes: &probes,
        sql: sql.as_ref().ok().map(|s| s as &dyn tepi_core::Sql),
        kv: Some(&kv),
        limiter: None,
        cache: None,
        blobs: None,
        jobs: None,
        http: Some(&SpinHttp),
        timer: Some(&SpinTimer),
        aggregator: None,
    };
    let response = app.handle(with_peer(request), &ports, now).await;
    let (head, body) = response.into_parts();
    // The core sets only headers WASI HTTP carries; should one ever be
    // refused, the others still go out.
    let fields = Fields::new();
    for (name, value) in &head.headers {
        let _ = fields.append(name.as_str(), value.as_bytes());
    }
    let outgoing = OutgoingResponse::new(fields);
    // Every `http::StatusCode` is one WASI HTTP accepts.
    let _ = outgoing.set_status_code(head.status.as_u16());
    // A failed write means the client went away: nothing left to tell.
    let _ = response_out.set_with_body(outgoing, body.to_vec()).await;
    // The body is finished: the host has the whole response and sends it
    // while the component goes on.
    app.after_response(&ports).await;
}

/// The request as the core takes it. A declared `Content-Length` over
/// `limit` reads nothing (the core refuses it by that header); otherwise at
/// most `limit + 1` bytes are read, enough for the core to see it is over.
/// `None` when the body broke off mid-stream (the client went away).
async fn into_http(request: IncomingRequest, limit: usize) -> Option<http::Request<Bytes>> {
    let mut unreadable = Vec::new();
    let method =
        http::Method::from_bytes(request.method().to_string().as_bytes()).unwrap_or_else(|_| {
            unreadable.push(":method".to_owned());
            http::Method::GET
        });
    let mut builder = http::Request::builder()
        .method(method)
        .uri(request.path_with_query().unwrap_or_else(|| "/".to_owned()));
    let mut declared = None;
    for (name, value) in request.headers().entries() {
        match (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(&value),
        ) {
            (Ok(name), Ok(value)) => {
                if name == http::header::CONTENT_LENGTH {
                    declared = value.to_str().ok().and_then(|v| v.parse::<u64>().ok());
                }
                builder = builder.header(name, value);
            }
            _ => unreadable.push(name),
        }
    }
    if !unreadable.is_empty() {
        builder = builder.extension(UnreadableHeaders(unreadable));
    }
    let over = declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX));
    let mut body = Vec::new();
    if !over {
        let mut stream = request.into_body_stream();
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.ok()?);
            if body.len() > limit {
                break;
            }
        }
    }
    builder.body(Bytes::from(body)).ok()
}

/// Spin passes the socket peer as `spin-client-addr` (`ip:port`); the core
/// gets it as a typed extension.
fn with_peer(mut request: http::Request<Bytes>) -> http::Request<Bytes> {
    let peer = request
        .headers()
        .get("spin-client-addr")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<std::net::SocketAddr>().ok());
    if let Some(addr) = peer {
        request.extensions_mut().insert(PeerAddr(addr.ip()));
    }
    request
}
