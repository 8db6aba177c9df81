//! Outbound HTTP as Spin allows it: a component's `allowed_outbound_hosts`
//! decides which origins it may reach; requests to them are sent with
//! wasmtime-wasi-http's default client, any other request fails with
//! `HTTP-request-denied`.
//!
//! The entry syntax and matching follow Spin's own parser
//! (`spin-outbound-networking-config`): `<scheme>://<host>[:<port>]`, where
//! the scheme is `*` or a name, the host is `*`, `*.<domain>` (any subdomain,
//! not the domain itself) or a name, and the port is `*`, a number or a range
//! `<start>..<end>` (end excluded); without a port, the scheme's well-known
//! port. Spin's `self` requests, service chaining and CIDR hosts are refused
//! at load (see docs/adr/0004-spin-test-host.md).

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// A component's parsed `allowed_outbound_hosts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(Vec<AllowedHost>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    /// `None`: any scheme (`*`).
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.example.com`, kept as `.example.com`.
    Subdomain(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    Port(u16),
    Range(Range<u16>),
}

fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        _ => None,
    }
}

impl AllowedHosts {
    /// Parses the entries as written in the manifest (templates already
    /// expanded).
    pub fn parse(entries: &[String]) -> Result<Self> {
        if let [only] = entries
            && only == "insecure:allow-all"
        {
            bail!("'insecure:allow-all' is not allowed: use '*://*:*' to allow everything");
        }
        entries
            .iter()
            .map(|entry| {
                AllowedHost::parse(entry)
                    .with_context(|| format!("allowed outbound host {entry:?}"))
            })
            .collect::<Result<_>>()
            .map(Self)
    }

    /// Whether a request to `scheme://host[:port]` may be sent. `host` is
    /// compared as given; callers lower-case it as URL parsing does.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        self.0
            .iter()
            .any(|allowed| allowed.allows(scheme, host, port))
    }

    /// Whether the request's URI may be sent. Requests without a host (or
    /// to `self.alt`) are Spin's self requests, which this host does not
    /// serve.
    pub fn allows_uri(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        !host.is_empty() && host != "self.alt" && self.allows(scheme, &host, uri.port_u16())
    }
}

impl AllowedHost {
    fn parse(entry: &str) -> Result<Self> {
        let entry = entry.trim();
        let Some((scheme, rest)) = entry.split_once("://") else {
            bail!("no scheme: write <scheme>://<host>[:<port>], e.g. 'https://*:*'");
        };
        let (host, rest) = rest.rsplit_once(':').unwrap_or((rest, ""));
        let port = match rest.split_once('/') {
            Some((port, path)) => {
                ensure!(path.is_empty(), "a path is not allowed");
                port
            }
            None => rest,
        };
        let scheme = match scheme {
            "*" => None,
            s if !s.is_empty() && s.chars().all(char::is_alphabetic) => Some(s.to_owned()),
            s => bail!("scheme {s:?} must be '*' or letters only"),
        };
        Ok(Self {
            port: PortPattern::parse(port, scheme.as_deref())?,
            scheme,
            host: HostPattern::parse(host)?,
        })
    }

    fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        self.scheme.as_ref().is_none_or(|s| s == scheme)
            && self.host.allows(host)
            && self.port.allows(port.or_else(|| well_known_port(scheme)))
    }
}

impl HostPattern {
    fn parse(host: &str) -> Result<Self> {
        let host = host.trim();
        if host == "*" {
            return Ok(Self::Any);
        }
        if host == "self" || host == "self.alt" || host.ends_with(".spin.internal") {
            bail!(
                "self requests and service chaining are not supported by spin-test-host; use `spin up` for them"
            );
        }
        let host = host.strip_suffix('/').unwrap_or(host);
        ensure!(
            !host.contains('/'),
            "hosts must not contain paths (CIDR ranges are not supported by spin-test-host)"
        );
        ensure!(!host.is_empty(), "no host");
        if let Some(domain) = host.strip_prefix("*.") {
            ensure!(
                !domain.is_empty() && !domain.contains('*'),
                "wildcards are allowed only as a whole host or a '*.' prefix"
            );
            return Ok(Self::Subdomain(format!(".{domain}")));
        }
        ensure!(
            !host.contains('*'),
            "wildcards are allowed only as a whole host or a '*.' prefix"
        );
        Ok(Self::Exact(host.to_owned()))
    }

    fn allows(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Subdomain(suffix) => host.ends_with(suffix.as_str()),
            Self::Exact(exact) => exact == host,
        }
    }
}

impl PortPattern {
    fn parse(port: &str, scheme: Option<&str>) -> Result<Self> {
        if port.is_empty() {
            return scheme
                .and_then(well_known_port)
                .map(Self::Port)
                .with_context(|| format!("no port, and scheme {scheme:?} has no well-known port"));
        }
        if port == "*" {
            return Ok(Self::Any);
        }
        if let Some((start, end)) = port.split_once("..") {
            let number = |s: &str| {
                s.parse::<u16>()
                    .with_context(|| format!("port range {port:?} contains a non-number"))
            };
            return Ok(Self::Range(number(start)?..number(end)?));
        }
        port.parse()
            .map(Self::Port)
            .with_context(|| format!("port {port:?} is not a number"))
    }

    fn allows(&self, port: Option<u16>) -> bool {
        match (self, port) {
            (Self::Any, _) => true,
            (Self::Port(allowed), Some(port)) => *allowed == port,
            (Self::Range(range), Some(port)) => range.contains(&port),
            (_, None) => false,
        }
    }
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

/// The `wasi:http/outgoing-handler` hooks of one request's instance.
#[derive(Debug, Clone)]
pub struct OutboundHttp {
    allowed: Arc<AllowedHosts>,
}

impl OutboundHttp {
    pub fn new(allowed: Arc<AllowedHosts>) -> Self {
        Self { allowed }
    }
}

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        if !self.allowed.allows_uri(request.uri()) {
            eprintln!(
                "spin-test-host: outbound request to {} denied (not in allowed_outbound_hosts)",
                request.uri()
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        // What wasmtime-wasi-http's default hook does.
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::{Full, combinators::UnsyncBoxBody};
    use hyper::server::conn::http1;
    use tokio::net::TcpListener;
    use wasmtime_wasi_http::io::TokioIo;

    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        let entries: Vec<String> = entries.iter().map(|&e| e.to_owned()).collect();
        AllowedHosts::parse(&entries).unwrap()
    }

    /// `allowed_outbound_hosts` (space-separated) | request URL | sent? | why
    const MATCHES: &str = "
        https://*:*                  | https://hooks.example.net:8443/x | yes | any https origin
        https://*:*                  | https://hooks.example.net/x      | yes | any https origin, default port
        https://*:*                  | http://hooks.example.net/x       | no  | https only
        http://127.0.0.1:*           | http://127.0.0.1:9/x             | yes | loopback, any port
        http://127.0.0.1:*           | http://localhost:9/x             | no  | names are not resolved
        https://api.example.com:443  | https://api.example.com/v1       | yes | default port matches 443
        https://api.example.com:443  | https://api.example.com:444/v1   | no  | other port
        https://api.example.com      | https://api.example.com:443/     | yes | omitted port is the scheme's
        https://api.example.com      | https://API.example.com/         | yes | hosts compare lower-cased
        https://api.example.com      | https://api.example.org/         | no  | other host
        http://localhost:8080        | http://localhost:8080/hook       | yes | exact origin
        http://localhost:8080        | http://localhost/hook            | no  | omitted port is 80
        http://localhost:8080        | https://localhost:8080/hook      | no  | other scheme
        https://*.example.com        | https://a.b.example.com/         | yes | any subdomain depth
        https://*.example.com        | https://example.com/             | no  | not the domain itself
        https://*.example.com        | https://badexample.com/          | no  | suffix on a label boundary
        *://*:*                      | http://10.0.0.1:1/               | yes | everything
        http://*:8000..8002          | http://h:8001/                   | yes | in range
        http://*:8000..8002          | http://h:8002/                   | no  | range end excluded
                                     | https://example.com/             | no  | empty list
        https://*:* http://[::1]:*   | http://[::1]:8080/               | yes | second entry, IPv6
    ";

    #[test]
    fn matches_like_spin() {
        for line in MATCHES.lines().filter(|l| !l.trim().is_empty()) {
            let [entries, url, sent, why] = line.split('|').map(str::trim).collect::<Vec<_>>()[..]
            else {
                panic!("bad case {line:?}");
            };
            let entries: Vec<&str> = entries.split_whitespace().collect();
            let uri: http::Uri = url.parse().unwrap();
            assert_eq!(
                hosts(&entries).allows_uri(&uri),
                sent == "yes",
                "{why}: {entries:?} {url}"
            );
        }
    }

    #[test]
    fn self_requests_are_not_sent() {
        for url in ["/relative", "http://self.alt/x"] {
            let uri: http::Uri = url.parse().unwrap();
            assert!(!hosts(&["*://*:*"]).allows_uri(&uri), "{url}");
        }
    }

    #[test]
    fn refuses_malformed_entries() {
        let cases = [
            ("example.com", "no scheme"),
            ("*", "no scheme"),
            ("https://example.com/path", "path"),
            ("https://exa*mple.com", "wildcards"),
            ("https://*.ex*.com", "wildcards"),
            ("*://example.com", "no port"),
            ("ftp://example.com", "no port"),
            ("https://example.com:http", "not a number"),
            ("https://example.com:1..x", "non-number"),
            ("h2c+x://example.com:1", "letters only"),
            ("http://self", "self requests"),
            ("http://tepi.spin.internal", "service chaining"),
            ("http://10.0.0.0/8:*", "CIDR"),
            ("insecure:allow-all", "'*://*:*'"),
        ];
        for (entry, needle) in cases {
            let err = AllowedHosts::parse(&[entry.to_owned()]).unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains(needle), "{entry:?}: {text}");
        }
    }

    /// A loopback HTTP server answering every request with `pong <path>`;
    /// returns its port and a counter of accepted connections.
    async fn pong_server() -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        |req: hyper::Request<hyper::body::Incoming>| async move {
                            let text = format!("pong {}", req.uri().path());
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(text))))
                        },
                    );
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (port, accepted)
    }

    fn request(url: &str) -> http::Request<WasiBody> {
        let body: WasiBody = UnsyncBoxBody::new(Full::new(Bytes::new()).map_err(|e| match e {}));
        let uri: http::Uri = url.parse().unwrap();
        let host = uri.authority().unwrap().to_string();
        http::Request::builder()
            .uri(uri)
            .header(http::header::HOST, host)
            .body(body)
            .unwrap()
    }

    async fn send(entries: &[&str], url: &str) -> Result<(u16, String), HttpError> {
        let mut hooks = OutboundHttp::new(Arc::new(hosts(entries)));
        let future = hooks.send_request(request(url), None, Box::new(async { Ok(()) }));
        let (response, _io) = Box::into_pin(future).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8(body.to_vec()).unwrap()))
    }

    #[tokio::test]
    async fn allowed_requests_reach_the_server_and_others_are_denied() {
        let (port, accepted) = pong_server().await;
        let url = format!("http://127.0.0.1:{port}/hook");

        let answer = send(&["https://*:*", "http://127.0.0.1:*"], &url).await;
        assert_eq!(
            answer.unwrap(),
            (200, "pong /hook".to_owned()),
            "an allowed origin is really sent"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        let denied = [
            (&["https://*:*"][..], "https only"),
            (&["http://127.0.0.1:1"], "other port"),
            (&["http://localhost:*"], "other host"),
            (&[], "nothing allowed"),
        ];
        for (entries, why) in denied {
            let result = send(entries, &url).await;
            assert!(
                matches!(result, Err(HttpError::HttpRequestDenied)),
                "{why}: {result:?}"
            );
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "a denied request never connects"
        );
    }
}
