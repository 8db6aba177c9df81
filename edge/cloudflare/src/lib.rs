//! Tepi on Cloudflare Workers.
//!
//! Converts a `worker::Request` into the core's `http::Request<Bytes>` (one
//! buffered body, headers copied once), calls `App::handle`, and converts the
//! response back. Bindings become ports. Nothing here decides anything.

mod bindings;

use std::cell::OnceCell;
use std::rc::Rc;

use tepi_core::http::{self, HeaderName, HeaderValue};
use tepi_core::{App, BuildInfo, Bytes, Config, Ports, Timestamp};
use worker::{Context, Env, Request, Response, ResponseBuilder, event};

pub use bindings::MetricsAggregator;

thread_local! {
    /// One `App` per isolate: its metrics live as long as the isolate.
    static APP: OnceCell<Rc<App>> = const { OnceCell::new() };
}

fn app(env: &Env) -> Rc<App> {
    APP.with(|cell| {
        Rc::clone(cell.get_or_init(|| {
            let config = Config::load(|name| env.var(name).ok().map(|v| v.to_string()));
            Rc::new(App::new(
                config,
                BuildInfo::for_target("cloudflare-workers"),
            ))
        }))
    })
}

struct Entropy;

impl tepi_core::Entropy for Entropy {
    fn fill(&self, dest: &mut [u8]) {
        // crypto.getRandomValues cannot fail for buffers this small.
        getrandom::fill(dest).expect("crypto.getRandomValues");
    }
}

struct Clock;

impl tepi_core::Clock for Clock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_micros(worker::Date::now().as_millis() * 1000)
    }
}

fn console_line(line: &str) {
    worker::console_log!("{line}");
}

#[event(start)]
fn start() {
    tepi_core::log::JsonLines::install(console_line, tracing::Level::INFO);
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let now = tepi_core::Clock::now(&Clock);
    let app = app(&env);
    let request = into_http(req).await?;
    let probes = bindings::Probes::new(&env);
    let kv = bindings::WorkersKv::new(&env);
    let ports = Ports {
        entropy: &Entropy,
        clock: &Clock,
        probes: &probes.all(),
        sql: None,
        kv: kv.as_ref().map(|kv| kv as &dyn tepi_core::KeyValue),
    };
    from_http(app.handle(request, &ports, now).await)
}

async fn into_http(mut req: Request) -> worker::Result<http::Request<Bytes>> {
    let url = req.url()?;
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut builder = http::Request::builder()
        .method(req.method().as_ref())
        .uri(target);
    for (name, value) in req.headers() {
        // Header names and values that `http` cannot represent are dropped.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            builder = builder.header(name, value);
        }
    }
    let body = req.bytes().await?;
    builder
        .body(Bytes::from(body))
        .map_err(|e| worker::Error::RustError(e.to_string()))
}

fn from_http(response: http::Response<Bytes>) -> worker::Result<Response> {
    let (parts, body) = response.into_parts();
    let headers = worker::Headers::new();
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            headers.append(name.as_str(), value)?;
        }
    }
    let builder = ResponseBuilder::new()
        .with_status(parts.status.as_u16())
        .with_headers(headers);
    Ok(if body.is_empty() {
        builder.empty()
    } else {
        builder.fixed(body.to_vec())
    })
}
