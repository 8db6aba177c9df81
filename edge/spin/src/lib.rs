//! Tepi on Fermyon Spin (`wasm32-wasip2`, spin-sdk 5.2).
//!
//! Spin hands the component an `http::Request`; the adapter buffers nothing
//! more, wires ports (Spin SQLite, key-value, variables, outbound HTTP, the
//! monotonic clock as a timer) and calls
//! `App::handle`. Spin instantiates the component for every request, so the
//! `App` is per request too and keeps its metrics and rate-limit state in
//! SQLite and its shared cache in key-value (`App::stateless`).

mod ports;

use std::time::{SystemTime, UNIX_EPOCH};

use spin_sdk::http_component;
use tepi_core::{App, BuildInfo, Bytes, Config, PeerAddr, Ports, Probe, Timestamp, http};

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
    use super::{Bytes, handle, http, http_component};

    #[http_component]
    async fn incoming(request: http::Request<Bytes>) -> http::Response<Bytes> {
        handle(request).await
    }
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

async fn handle(request: http::Request<Bytes>) -> http::Response<Bytes> {
    let now = tepi_core::Clock::now(&Clock);
    tepi_core::log::JsonLines::install(stderr_line, tracing::Level::INFO);
    let app = App::new(config(), BuildInfo::for_target("spin")).stateless();
    let sql = SpinSql::open();
    let kv = SpinKv::open();
    let sql_probe = StoreProbe {
        name: "sqlite:default",
        sql: sql.as_ref().ok(),
        kv: None,
        open_error: sql.as_ref().err(),
    };
    let kv_probe = StoreProbe {
        name: "key_value:default",
        sql: None,
        kv: kv.as_ref().ok(),
        open_error: kv.as_ref().err(),
    };
    let probes: [&dyn Probe; 2] = [&sql_probe, &kv_probe];
    let ports = Ports {
        entropy: &Entropy,
        clock: &Clock,
        probes: &probes,
        sql: sql.as_ref().ok().map(|s| s as &dyn tepi_core::Sql),
        kv: kv.as_ref().ok().map(|k| k as &dyn tepi_core::KeyValue),
        limiter: None,
        cache: None,
        blobs: None,
        jobs: None,
        http: Some(&SpinHttp),
        timer: Some(&SpinTimer),
        aggregator: None,
    };
    app.handle(with_peer(request), &ports, now).await
}
