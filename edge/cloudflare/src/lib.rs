//! Tepi on Cloudflare Workers.
//!
//! Converts a `worker::Request` into the core's `http::Request<Bytes>` (one
//! buffered body, headers copied once), calls `App::handle`, and converts the
//! response back. Bindings become ports. Nothing here decides anything.
//! Queue batches go to the Cloudflare Queues adapter (`tepi-queue-consumer`)
//! through this Worker's one `queue` export (docs/adr/0007).
//!
//! The `http-feature-seam` cargo feature swaps that conversion for
//! workers-rs's own `http` feature. It exists only so `scripts/bench-seam.sh`
//! can compare the two (docs/adr/0003-workers-seam-manual-conversion.md).

mod bindings;
mod d1;
mod metrics_object;
mod probes;

use std::cell::OnceCell;
use std::rc::Rc;

#[cfg(not(feature = "http-feature-seam"))]
use futures::StreamExt;
use tepi_core::http;
#[cfg(not(feature = "http-feature-seam"))]
use tepi_core::http::{HeaderName, HeaderValue};
use tepi_core::metrics::aggregate::{apply_all, remote};
use tepi_core::ops::history;
use tepi_core::{App, BuildInfo, Bytes, Config, Ports, Timestamp};
#[cfg(not(feature = "http-feature-seam"))]
use tepi_core::{PeerAddr, UnreadableHeaders};
use wasm_bindgen::prelude::*;
use worker::{Context, Env, event};
#[cfg(not(feature = "http-feature-seam"))]
use worker::{Request, Response, ResponseBuilder};

pub use metrics_object::MetricsAggregator;

thread_local! {
    /// One `App` per isolate: its metrics live as long as the isolate.
    static APP: OnceCell<Rc<App>> = const { OnceCell::new() };
}

fn app(env: &Env) -> Rc<App> {
    APP.with(|cell| {
        Rc::clone(cell.get_or_init(|| {
            let config = Config::load(|name| env.var(name).ok().map(|v| v.to_string()));
            Rc::new(
                App::new(config, BuildInfo::for_target("cloudflare-workers"))
                    .with_aggregate_service(),
            )
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

/// One JSON line to `console.log` (not `console_log!`, which formats and
/// copies the line once more first).
fn console_line(line: &str) {
    worker::web_sys::console::log_1(&JsValue::from_str(line));
}

#[event(start)]
fn start() {
    tepi_core::log::JsonLines::install(console_line, tracing::Level::INFO);
}

/// The bindings of one invocation, as the core's ports.
struct Platform<'e> {
    probes: probes::Probes<'e>,
    kv: Option<bindings::WorkersKv>,
    sql: Option<d1::D1Sql>,
    limiter: bindings::RateLimiters<'e>,
    blobs: bindings::R2Blobs<'e>,
    jobs: bindings::QueueJobs<'e>,
    aggregator: metrics_object::MetricsStub<'e>,
}

impl<'e> Platform<'e> {
    fn new(env: &'e Env) -> Self {
        Self {
            probes: probes::Probes::new(env),
            kv: bindings::WorkersKv::new(env),
            sql: d1::D1Sql::new(env),
            limiter: bindings::RateLimiters(env),
            blobs: bindings::R2Blobs(env),
            jobs: bindings::QueueJobs(env),
            aggregator: metrics_object::MetricsStub(env),
        }
    }

    fn ports<'a>(&'a self, probes: &'a [&'a dyn tepi_core::Probe]) -> Ports<'a> {
        Ports {
            entropy: &Entropy,
            clock: &Clock,
            probes,
            sql: self.sql.as_ref().map(|sql| sql as &dyn tepi_core::Sql),
            kv: self.kv.as_ref().map(|kv| kv as &dyn tepi_core::KeyValue),
            limiter: Some(&self.limiter),
            cache: Some(&bindings::WorkersCache),
            blobs: Some(&self.blobs),
            jobs: Some(&self.jobs),
            http: Some(&bindings::Fetch),
            timer: Some(&bindings::Timer),
            aggregator: Some(&self.aggregator),
        }
    }
}

/// The core's answer to one request, with the platform's ports.
async fn handle(
    env: &Env,
    ctx: &Context,
    now: Timestamp,
    request: http::Request<Bytes>,
) -> http::Response<Bytes> {
    let app = app(env);
    let platform = Platform::new(env);
    let probes = platform.probes.all();
    let response = app.handle(request, &platform.ports(&probes), now).await;
    // This isolate's metric deltas, at most every few seconds, and on its
    // first request of a minute the console's history snapshot, sent to
    // the aggregate after the response (the client does not wait for it).
    let changes = app.due_changes(now);
    let history = app.history_due(now);
    if !changes.is_empty() || history {
        let env = env.clone();
        ctx.wait_until(async move {
            let aggregate = remote::Client(&metrics_object::MetricsStub(&env));
            apply_all(&aggregate, changes).await;
            if history && let Some(sql) = d1::D1Sql::new(&env) {
                history::record(&aggregate, &sql, now, false).await;
            }
        });
    }
    response
}

/// The Queues consumer (worker-build wires the export named `queue`):
/// the batch goes to `tepi-queue-consumer` with this isolate's `App` and
/// the bindings as ports. Exported by hand because workers-rs 0.8.7's
/// `#[event(queue)]` hides each message's `attempts`.
#[wasm_bindgen(
    js_name = queue,
    wasm_bindgen_futures = worker::wasm_bindgen_futures,
    js_sys = worker::js_sys
)]
pub async fn queue(batch: JsValue, env: Env, _ctx: JsValue) -> Result<JsValue, JsValue> {
    let app = app(&env);
    let platform = Platform::new(&env);
    let probes = platform.probes.all();
    tepi_queue_consumer::consume(&batch, &env, &app, &platform.ports(&probes)).await?;
    Ok(JsValue::UNDEFINED)
}

#[cfg(not(feature = "http-feature-seam"))]
#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let now = tepi_core::Clock::now(&Clock);
    let limit = app(&env).config().max_body_bytes;
    let request = into_http(req, limit).await?;
    from_http(handle(&env, &ctx, now, request).await)
}

#[cfg(not(feature = "http-feature-seam"))]
/// The request as the core takes it. A declared `Content-Length` over
/// `limit` reads nothing (the core refuses it by that header); otherwise at
/// most `limit + 1` bytes are read from the body stream, enough for the
/// core to see it is over, so a large body never fills the isolate.
async fn into_http(mut req: Request, limit: usize) -> worker::Result<http::Request<Bytes>> {
    // The runtime gives an absolute URL; the core wants the origin form.
    // Slicing the string keeps the `url` crate (and its IDNA tables) out of
    // the Worker (ADR 0003).
    let url = req.inner().url();
    let mut builder = http::Request::builder()
        .method(req.method().as_ref())
        .uri(origin_form(&url));
    // A header `http` cannot represent is named for the core, which
    // refuses the request (400 malformed_header); it is never dropped.
    let mut unreadable = Vec::new();
    for (name, value) in req.headers() {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            (Ok(name), Ok(value)) => builder = builder.header(name, value),
            _ => unreadable.push(name),
        }
    }
    if !unreadable.is_empty() {
        builder = builder.extension(UnreadableHeaders(unreadable));
    }
    // Cloudflare sets CF-Connecting-IP to the client it saw; clients
    // cannot set it themselves at the edge.
    if let Some(ip) = req
        .headers()
        .get("cf-connecting-ip")?
        .and_then(|v| v.parse().ok())
    {
        builder = builder.extension(PeerAddr(ip));
    }
    let declared = req
        .headers()
        .get("content-length")?
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut body = Vec::new();
    if declared.is_none_or(|n| n <= u64::try_from(limit).unwrap_or(u64::MAX)) {
        // No body at all (a GET) is an error here, and an empty body.
        if let Ok(mut stream) = req.stream() {
            while let Some(chunk) = stream.next().await {
                body.extend_from_slice(&chunk?);
                if body.len() > limit {
                    break;
                }
            }
        }
    }
    builder
        .body(Bytes::from(body))
        .map_err(|e| worker::Error::RustError(e.to_string()))
}

/// `https://host:port/p/a?q#f` → `/p/a?q`.
pub(crate) fn origin_form(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let target = url[after_scheme..]
        .find('/')
        .map_or("/", |i| &url[after_scheme + i..]);
    target.split('#').next().unwrap_or("/")
}

#[cfg(not(feature = "http-feature-seam"))]
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

/// workers-rs's `http` feature: the request arrives as `http::Request<worker::Body>`
/// and any `http::Response<B: http_body::Body>` may be returned.
#[cfg(feature = "http-feature-seam")]
#[event(fetch)]
async fn fetch(
    req: worker::HttpRequest,
    env: Env,
    ctx: Context,
) -> worker::Result<http::Response<FixedBody>> {
    use http_body::Body as _;

    let now = tepi_core::Clock::now(&Clock);
    let (mut parts, mut body) = req.into_parts();
    // workers-rs hands over the absolute URL; the core sees the origin form,
    // as with the manual conversion.
    if let Some(target) = parts.uri.path_and_query().cloned() {
        parts.uri = target.into();
    }
    // The same bound as the manual conversion: at most one byte over the
    // core's limit is read.
    let limit = app(&env).config().max_body_bytes;
    let mut buffered = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        if let Ok(data) = frame?.into_data() {
            buffered.extend_from_slice(&data);
            if buffered.len() > limit {
                break;
            }
        }
    }
    let request = http::Request::from_parts(parts, Bytes::from(buffered));
    Ok(handle(&env, &ctx, now, request).await.map(FixedBody::new))
}

/// The core's buffered body as one `http_body` data frame (none when empty).
#[cfg(feature = "http-feature-seam")]
struct FixedBody(Option<Bytes>);

#[cfg(feature = "http-feature-seam")]
impl FixedBody {
    fn new(body: Bytes) -> Self {
        Self((!body.is_empty()).then_some(body))
    }
}

#[cfg(feature = "http-feature-seam")]
impl http_body::Body for FixedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(
            self.get_mut()
                .0
                .take()
                .map(|b| Ok(http_body::Frame::data(b))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

#[cfg(all(test, not(feature = "http-feature-seam")))]
mod tests {
    use super::origin_form;

    #[test]
    fn absolute_urls_become_origin_form() {
        let cases = [
            (
                "https://api.example.com/v1/uploads/u1?x=1",
                "/v1/uploads/u1?x=1",
                "path and query",
            ),
            (
                "http://127.0.0.1:8787/healthz",
                "/healthz",
                "host with port",
            ),
            ("https://api.example.com/", "/", "root"),
            ("https://api.example.com/a#frag", "/a", "fragment dropped"),
            ("https://api.example.com", "/", "no path"),
        ];
        for (url, want, why) in cases {
            assert_eq!(origin_form(url), want, "{why}");
        }
    }
}
