//! The HTTP front: routes each request to its component and runs it in a
//! fresh instance, as Spin does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use tokio::net::TcpListener;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::manifest::{self, App};
use crate::outbound::OutboundHttp;
use crate::spin::{self, SpinState, StateDir};

/// Everything one request's instance may touch.
struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundHttp,
    spin: SpinState,
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.spin.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.spin.table,
            hooks: &mut self.hooks,
        }
    }
}

struct Loaded {
    config: Arc<manifest::Component>,
    pre: ProxyPre<RequestState>,
}

struct Server {
    app: App,
    components: BTreeMap<String, Loaded>,
    state_dir: StateDir,
    engine: Engine,
}

pub async fn serve(app: App, state_dir: StateDir, listen: SocketAddr) -> Result<()> {
    let engine = Engine::new(&Config::new())?;
    let mut linker: Linker<RequestState> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    spin::add_to_linker(&mut linker, |state| &mut state.spin)?;

    let mut components = BTreeMap::new();
    for (id, config) in &app.components {
        let component = Component::from_file(&engine, &config.source)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("loading component `{id}` from {}", config.source.display())
            })?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("component `{id}` imports something this host does not provide")
            })?;
        let pre = ProxyPre::new(pre)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("component `{id}` is not a wasi:http component"))?;
        components.insert(
            id.clone(),
            Loaded {
                config: Arc::new(config.clone()),
                pre,
            },
        );
    }
    let server = Arc::new(Server {
        app,
        components,
        state_dir,
        engine,
    });

    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!(
        "spin-test-host: serving `{}` on http://{listen}",
        server.app.name
    );
    for route in &server.app.routes {
        eprintln!("  {} -> {}", route.raw, route.component);
    }
    loop {
        let (stream, client) = listener.accept().await?;
        let server = Arc::clone(&server);
        tokio::task::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let server = Arc::clone(&server);
                async move { server.handle(req, client).await }
            });
            if let Err(e) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("spin-test-host: connection from {client}: {e}");
            }
        });
    }
}

type Reply = hyper::Response<HyperOutgoingBody>;

fn plain(status: StatusCode, text: &str) -> Reply {
    let body = Full::new(bytes::Bytes::from(text.to_owned()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut reply = hyper::Response::new(body);
    *reply.status_mut() = status;
    reply
}

impl Server {
    async fn handle(
        &self,
        mut req: hyper::Request<hyper::body::Incoming>,
        client: SocketAddr,
    ) -> Result<Reply> {
        let path = req.uri().path().to_owned();
        let Some((route, path_info)) = self.app.route_for(&path) else {
            return Ok(plain(StatusCode::NOT_FOUND, "Not Found"));
        };
        let loaded = self
            .components
            .get(&route.component)
            .ok_or_else(|| anyhow!("no component `{}`", route.component))?;
        add_spin_headers(&mut req, &route.raw, path_info, client);

        let mut wasi = WasiCtx::builder();
        wasi.inherit_stdout().inherit_stderr();
        for (key, value) in &loaded.config.environment {
            wasi.env(key, value);
        }
        let state = RequestState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: OutboundHttp::new(Arc::clone(&loaded.config.allowed_outbound_hosts)),
            spin: SpinState {
                component: Arc::clone(&loaded.config),
                state_dir: self.state_dir.clone(),
                table: ResourceTable::new(),
            },
        };
        let mut store = Store::new(&self.engine, state);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = loaded.pre.clone();
        let task = tokio::task::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(store, incoming, out)
                .await
        });
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                let reason = match task.await {
                    Ok(Ok(())) => anyhow!("component never set a response"),
                    Ok(Err(e)) => anyhow::Error::from(e),
                    Err(e) => e.into(),
                };
                eprintln!("spin-test-host: {path}: {reason:#}");
                Ok(plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error",
                ))
            }
        }
    }
}

/// The request headers Spin adds for HTTP components.
fn add_spin_headers(
    req: &mut hyper::Request<hyper::body::Incoming>,
    route: &str,
    path_info: &str,
    client: SocketAddr,
) {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let full_url = format!(
        "http://{host}{}",
        req.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    let matched = route.to_owned();
    let component_route = route.strip_suffix("/...").unwrap_or(route).to_owned();
    let pairs = [
        ("spin-full-url", full_url),
        ("spin-path-info", path_info.to_owned()),
        ("spin-matched-route", matched.clone()),
        ("spin-raw-component-route", matched),
        ("spin-component-route", component_route),
        ("spin-base-path", "/".to_owned()),
        ("spin-client-addr", client.to_string()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            req.headers_mut().insert(name, value);
        }
    }
}
