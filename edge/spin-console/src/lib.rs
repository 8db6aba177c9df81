//! Tepi's operator console on Fermyon Spin (`wasm32-wasip2`, spin-sdk 5.2):
//! a component of its own, routed `/console/...` in `spin.toml`, so the API
//! component's Wasm does not carry the console's files.
//!
//! The files of `console/dist/console/` are embedded at compile time
//! (`build.rs`) and looked up by exact path, so nothing outside that table
//! can be named. Every response carries the headers of
//! `console/headers.json` (Content-Security-Policy and the rest) and
//! `Cache-Control` (`no-cache` unless `headers.json` says otherwise: caches
//! revalidate with the `ETag`), 404s and redirects included.
//!
//! - `GET`/`HEAD /console` → 308 to `/console/` (query kept);
//! - `/console/` → `index.html`; `/console/<file>` → that file, with its
//!   content type and a strong `ETag` (`If-None-Match` → 304), gzipped
//!   when the client accepts it and the file has a gzip copy
//!   (`Vary: Accept-Encoding`);
//! - unknown files → 404; other methods → 405 with `Allow: GET, HEAD`.
//!
//! Query strings play no part in the lookup.

use std::borrow::Cow;

use spin_sdk::http::{Fields, IncomingRequest, Method, OutgoingResponse, ResponseOutparam};
use spin_sdk::http_component;

/// Where the console is mounted (the route in `spin.toml` is
/// `/console/...`, which Spin also matches for `/console` itself).
const MOUNT: &str = "/console";

/// One stored representation of a file.
#[derive(Debug)]
struct Body {
    etag: &'static str,
    bytes: &'static [u8],
}

/// One file of the console, as `build.rs` embedded it.
#[derive(Debug)]
struct File {
    /// Below `/console/`, e.g. `app.js`.
    path: &'static str,
    content_type: &'static str,
    identity: Body,
    /// A gzip copy, present when it is worth serving.
    gzip: Option<Body>,
}

mod assets {
    use super::{Body, File};

    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
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

async fn serve(request: IncomingRequest, response_out: ResponseOutparam) {
    let method = match request.method() {
        Method::Get => Some(Request::Get),
        Method::Head => Some(Request::Head),
        _ => None,
    };
    let headers = request.headers();
    let header = |name: &str| {
        let values = headers.get(name);
        let values: Vec<&str> = values
            .iter()
            .filter_map(|v| std::str::from_utf8(v).ok())
            .collect();
        values.join(",")
    };
    let reply = answer(
        method,
        &request.path_with_query().unwrap_or_default(),
        &header("accept-encoding"),
        &header("if-none-match"),
    );
    let fields = Fields::new();
    for (name, value) in &reply.headers {
        // Every value is visible ASCII (checked by build.rs, or taken from
        // the request's own URI): none is refused.
        let _ = fields.append(name, value.as_bytes());
    }
    let outgoing = OutgoingResponse::new(fields);
    let _ = outgoing.set_status_code(reply.status);
    // A failed write means the client went away: nothing left to tell.
    let _ = response_out
        .set_with_body(outgoing, reply.body.to_vec())
        .await;
}

/// The methods served; any other is answered 405.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Get,
    Head,
}

/// An answer: status, headers, body (empty for `HEAD`, 304 and 308).
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, Cow<'static, str>)>,
    body: &'static [u8],
}

impl Reply {
    fn new(status: u16) -> Self {
        let mut headers: Vec<_> = assets::HEADERS
            .iter()
            .map(|&(name, value)| (name, Cow::Borrowed(value)))
            .collect();
        headers.push(("cache-control", Cow::Borrowed(assets::CACHE_CONTROL)));
        Reply {
            status,
            headers,
            body: b"",
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The body, with its length, unless the request was `HEAD`.
    fn body(mut self, method: Request, body: &'static [u8]) -> Self {
        if method == Request::Get {
            self.body = body;
            self = self.header("content-length", body.len().to_string());
        }
        self
    }

    fn text(status: u16, method: Request, text: &'static str) -> Self {
        Reply::new(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(method, text.as_bytes())
    }
}

/// The whole decision, from the parts of the request it depends on
/// (`accept_encoding` and `if_none_match` are the headers' values, several
/// lines joined with `,`; empty when absent).
fn answer(
    method: Option<Request>,
    path_with_query: &str,
    accept_encoding: &str,
    if_none_match: &str,
) -> Reply {
    let Some(method) = method else {
        return Reply::text(405, Request::Get, "Method Not Allowed\n").header("allow", "GET, HEAD");
    };
    let (path, query) = path_with_query
        .split_once('?')
        .unwrap_or((path_with_query, ""));
    if path == MOUNT {
        let location = if query.is_empty() {
            Cow::Borrowed("/console/")
        } else {
            Cow::Owned(format!("/console/?{query}"))
        };
        return Reply::new(308).header("location", location);
    }
    let file = path
        .strip_prefix(MOUNT)
        .and_then(|rest| rest.strip_prefix('/'))
        .map(|name| if name.is_empty() { "index.html" } else { name })
        .and_then(|name| assets::FILES.iter().find(|f| f.path == name));
    let Some(file) = file else {
        return Reply::text(404, method, "Not Found\n");
    };
    let gzip = file.gzip.as_ref().filter(|_| accepts_gzip(accept_encoding));
    let body = gzip.unwrap_or(&file.identity);
    let mut reply = if matches_etag(if_none_match, body.etag) {
        Reply::new(304)
    } else {
        Reply::new(200)
            .header("content-type", file.content_type)
            .body(method, body.bytes)
    };
    reply = reply.header("etag", body.etag);
    if file.gzip.is_some() {
        reply = reply.header("vary", "Accept-Encoding");
    }
    if gzip.is_some() {
        reply = reply.header("content-encoding", "gzip");
    }
    reply
}

/// Whether `Accept-Encoding` allows gzip: `gzip` (or `x-gzip`), else `*`,
/// listed with a q-value above zero (RFC 9110, 12.5.3).
fn accepts_gzip(accept_encoding: &str) -> bool {
    let mut gzip = None;
    let mut any = None;
    for item in accept_encoding.split(',') {
        let mut params = item.split(';');
        let coding = params.next().unwrap_or_default().trim();
        // A q-value is 0 to 1 with up to three decimals: above zero iff a
        // digit other than 0 appears.
        let allowed = params
            .find_map(|p| {
                let (name, value) = p.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| value.trim().bytes().any(|b| matches!(b, b'1'..=b'9')))
            })
            .unwrap_or(true);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(allowed);
        } else if coding == "*" {
            any = Some(allowed);
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// Whether `If-None-Match` names `etag` or is `*` (weak comparison, as
/// RFC 9110, 13.1.2, asks for).
fn matches_etag(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    fn get(path: &str) -> Reply {
        answer(Some(Request::Get), path, "", "")
    }

    fn index() -> &'static File {
        assets::FILES
            .iter()
            .find(|f| f.path == "index.html")
            .expect("build.rs requires index.html")
    }

    fn assert_console_headers(reply: &Reply) {
        for (name, value) in assets::HEADERS {
            assert_eq!(
                header(reply, name),
                Some(*value),
                "{name} on {}",
                reply.status
            );
        }
        let cache_control: Vec<_> = reply
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cache-control"))
            .collect();
        assert_eq!(
            cache_control.len(),
            1,
            "one Cache-Control on {}",
            reply.status
        );
        assert_eq!(cache_control[0].1, assets::CACHE_CONTROL);
    }

    #[test]
    fn the_bare_mount_redirects_to_the_folder() {
        for method in [Request::Get, Request::Head] {
            let reply = answer(Some(method), "/console", "", "");
            assert_eq!(reply.status, 308);
            assert_eq!(header(&reply, "location"), Some("/console/"));
            assert!(reply.body.is_empty());
            assert_console_headers(&reply);
        }
        let reply = get("/console?tenant=acme");
        assert_eq!(header(&reply, "location"), Some("/console/?tenant=acme"));
    }

    #[test]
    fn the_folder_is_the_index_page() {
        let reply = get("/console/?x=1");
        assert_eq!(reply.status, 200);
        assert_eq!(
            header(&reply, "content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(reply.body, index().identity.bytes);
        assert_eq!(header(&reply, "etag"), Some(index().identity.etag));
        assert_console_headers(&reply);
    }

    #[test]
    fn every_file_is_served_with_its_type_and_etag() {
        for file in assets::FILES {
            let reply = get(&format!("/console/{}?v=2", file.path));
            assert_eq!(reply.status, 200, "{}", file.path);
            assert_eq!(header(&reply, "content-type"), Some(file.content_type));
            assert_eq!(reply.body, file.identity.bytes);
            assert_eq!(
                header(&reply, "content-length"),
                Some(file.identity.bytes.len().to_string().as_str())
            );
            assert_eq!(header(&reply, "content-encoding"), None);
            assert_console_headers(&reply);
            let etag = file.identity.etag;
            assert!(etag.len() == 34 && etag.starts_with('"') && etag.ends_with('"'));
        }
    }

    #[test]
    fn gzip_goes_to_clients_that_accept_it() {
        for file in assets::FILES {
            let path = format!("/console/{}", file.path);
            let reply = answer(Some(Request::Get), &path, "br, gzip;q=0.5", "");
            if let Some(gzip) = &file.gzip {
                assert_eq!(header(&reply, "content-encoding"), Some("gzip"));
                assert_eq!(reply.body, gzip.bytes);
                assert_eq!(header(&reply, "etag"), Some(gzip.etag));
                assert_ne!(gzip.etag, file.identity.etag);
                assert_eq!(header(&reply, "vary"), Some("Accept-Encoding"));
                let refused = answer(Some(Request::Get), &path, "gzip;q=0, br", "");
                assert_eq!(refused.body, file.identity.bytes);
                assert_eq!(header(&refused, "vary"), Some("Accept-Encoding"));
            } else {
                assert_eq!(header(&reply, "content-encoding"), None);
                assert_eq!(reply.body, file.identity.bytes);
                assert_eq!(header(&reply, "vary"), None);
            }
        }
    }

    #[test]
    fn gzip_copies_hold_the_same_bytes() {
        for file in assets::FILES {
            let Some(gzip) = &file.gzip else { continue };
            let bytes = gzip.bytes;
            assert_eq!(bytes[..4], [0x1f, 0x8b, 8, 0], "{}: gzip header", file.path);
            let (deflated, trailer) = bytes[10..].split_at(bytes.len() - 18);
            let inflated = miniz_oxide::inflate::decompress_to_vec(deflated).unwrap();
            assert_eq!(inflated, file.identity.bytes, "{}", file.path);
            let size = u32::from_le_bytes(trailer[4..].try_into().unwrap());
            assert_eq!(size as usize, inflated.len(), "{}: ISIZE", file.path);
            assert!(
                bytes.len() + 1024 <= inflated.len(),
                "{}: worth it",
                file.path
            );
        }
    }

    #[test]
    fn a_matching_etag_is_not_modified() {
        let etag = index().identity.etag;
        for if_none_match in [
            etag.to_owned(),
            format!("\"other\", W/{etag}"),
            "*".to_owned(),
        ] {
            let reply = answer(Some(Request::Get), "/console/", "", &if_none_match);
            assert_eq!(reply.status, 304, "{if_none_match}");
            assert!(reply.body.is_empty());
            assert_eq!(header(&reply, "etag"), Some(etag));
            assert_eq!(header(&reply, "content-length"), None);
            assert_console_headers(&reply);
        }
        let reply = answer(Some(Request::Get), "/console/", "", "\"other\"");
        assert_eq!(reply.status, 200);
    }

    #[test]
    fn head_has_the_headers_without_the_body() {
        let reply = answer(Some(Request::Head), "/console/", "", "");
        assert_eq!(reply.status, 200);
        assert!(reply.body.is_empty());
        assert_eq!(
            header(&reply, "content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(header(&reply, "content-length"), None);
    }

    #[test]
    fn only_listed_files_exist() {
        for path in [
            "/console/nope.js",
            "/console/../Cargo.toml",
            "/console/%2e%2e/Cargo.toml",
            "/console//index.html",
            "/console/index.html/",
            "/consoles/",
            "/",
        ] {
            let reply = get(path);
            assert_eq!(reply.status, 404, "{path}");
            assert_eq!(reply.body, b"Not Found\n");
            assert_eq!(
                header(&reply, "content-type"),
                Some("text/plain; charset=utf-8")
            );
            assert_console_headers(&reply);
        }
        assert_eq!(get("/console/index.html").status, 200);
    }

    #[test]
    fn other_methods_are_not_allowed() {
        let reply = answer(None, "/console/", "", "");
        assert_eq!(reply.status, 405);
        assert_eq!(header(&reply, "allow"), Some("GET, HEAD"));
        assert_console_headers(&reply);
    }

    #[test]
    fn accept_encoding_is_read_with_q_values() {
        let cases = [
            ("", false),
            ("gzip", true),
            ("GZIP", true),
            ("x-gzip", true),
            ("deflate, gzip;q=1.0", true),
            ("gzip;q=0", false),
            ("gzip; q=0.000", false),
            ("gzip;q=0.001", true),
            ("*", true),
            ("*;q=0", false),
            ("gzip;q=0, *", false),
            ("br, *;q=0.1", true),
            ("identity", false),
            ("gzipped", false),
        ];
        for (value, expected) in cases {
            assert_eq!(accepts_gzip(value), expected, "{value:?}");
        }
    }
}
