//! The request context every hop carries: `X-Request-ID`, W3C trace context
//! and `X-Tenant-ID`. Incoming values are parsed; anything invalid is
//! replaced (ids, traces) or dropped (tenant), never echoed.

use std::fmt;

use http::HeaderMap;

use crate::ports::Entropy;

pub const REQUEST_ID: &str = "x-request-id";
pub const TENANT_ID: &str = "x-tenant-id";
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// A request id: 1 to 128 characters of `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = (1..=128).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| Self(raw.to_owned()))
    }

    /// A fresh id: 32 lowercase hex digits from 16 random bytes.
    pub fn generate(entropy: &dyn Entropy) -> Self {
        let mut bytes = [0u8; 16];
        entropy.fill(&mut bytes);
        Self(hex(&bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant id: a lowercase slug of 1 to 63 characters, `[a-z0-9-]`, not
/// starting or ending with `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Option<Self> {
        let bytes = raw.as_bytes();
        let ok = (1..=63).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && bytes.first() != Some(&b'-')
            && bytes.last() != Some(&b'-');
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// W3C Trace Context (`traceparent`, version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` header. Versions other than `00` are read by
    /// their first four fields, as the specification asks; `ff` is invalid.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim_matches([' ', '\t']);
        let mut parts = raw.split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        let rest_ok = match version {
            "00" => parts.next().is_none(),
            "ff" => return None,
            // Future versions may append fields after a dash.
            v if is_lower_hex(v) && v.len() == 2 => true,
            _ => return None,
        };
        if !rest_ok || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        let trace_id: [u8; 16] = unhex(trace)?;
        let span_id: [u8; 8] = unhex(span)?;
        let [flags]: [u8; 1] = unhex(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// A new trace, sampled.
    pub fn start(entropy: &dyn Entropy) -> Self {
        let mut trace_id = [0u8; 16];
        while trace_id == [0; 16] {
            entropy.fill(&mut trace_id);
        }
        Self {
            trace_id,
            span_id: new_span_id(entropy),
            flags: 0x01,
        }
    }

    /// The same trace with a new span id: this hop's own span.
    #[must_use]
    pub fn child(&self, entropy: &dyn Entropy) -> Self {
        Self {
            span_id: new_span_id(entropy),
            ..*self
        }
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.span_id_hex(),
            self.flags & 0x01
        )
    }
}

fn new_span_id(entropy: &dyn Entropy) -> [u8; 8] {
    let mut span = [0u8; 8];
    while span == [0; 8] {
        entropy.fill(&mut span);
    }
    span
}

/// `tracestate` kept only when it is well formed: at most 32 comma-separated
/// `key=value` members of printable ASCII, at most 512 bytes in all.
pub fn parse_tracestate(raw: &str) -> Option<String> {
    if raw.len() > 512 {
        return None;
    }
    let members: Vec<&str> = raw
        .split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .filter(|m| !m.is_empty())
        .collect();
    if members.is_empty() || members.len() > 32 {
        return None;
    }
    let valid = members.iter().all(|m| {
        let Some((key, value)) = m.split_once('=') else {
            return false;
        };
        let key_ok = (1..=256).contains(&key.len())
            && key.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'-' | b'*' | b'/' | b'@')
            });
        let value_ok = (1..=256).contains(&value.len())
            && value
                .bytes()
                .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
            && !value.ends_with(' ');
        key_ok && value_ok
    });
    valid.then(|| members.join(","))
}

/// What the core knows about a request before routing it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: RequestId,
    /// This hop's span: the caller's trace continued, or a new trace.
    pub trace: TraceParent,
    /// The caller's `tracestate`, when its `traceparent` was valid.
    pub tracestate: Option<String>,
    /// The claimed tenant (format-checked only; authorisation decides later).
    pub tenant: Option<TenantId>,
}

impl RequestContext {
    pub fn from_headers(headers: &HeaderMap, entropy: &dyn Entropy) -> Self {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let request_id = header(REQUEST_ID)
            .and_then(RequestId::parse)
            .unwrap_or_else(|| RequestId::generate(entropy));
        // Exactly one traceparent header is valid; several make it invalid.
        let incoming = match headers.get_all(TRACEPARENT).iter().count() {
            1 => header(TRACEPARENT).and_then(TraceParent::parse),
            _ => None,
        };
        let (trace, tracestate) = match incoming {
            Some(parent) => {
                let state = headers
                    .get_all(TRACESTATE)
                    .iter()
                    .map(|v| v.to_str().ok())
                    .collect::<Option<Vec<_>>>()
                    .map(|parts| parts.join(","))
                    .and_then(|joined| parse_tracestate(&joined));
                (parent.child(entropy), state)
            }
            None => (TraceParent::start(entropy), None),
        };
        let tenant = header(TENANT_ID).and_then(TenantId::parse);
        Self {
            request_id,
            trace,
            tracestate,
            tenant,
        }
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !is_lower_hex(s) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Headers the platform delivered that could not be carried into the
/// core's request (the adapter records their names as a request extension
/// rather than dropping them); the pipeline refuses such a request with
/// 400 `malformed_header`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnreadableHeaders(pub Vec<String>);

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;
    use crate::testing::CountingEntropy;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn request_ids_follow_the_allowed_alphabet() {
        let long = "a".repeat(128);
        let too_long = "a".repeat(129);
        let cases = [
            ("abc-123_X.y", true, "all allowed characters"),
            (long.as_str(), true, "128 characters is the maximum"),
            (too_long.as_str(), false, "129 characters is too long"),
            ("", false, "empty"),
            ("has space", false, "space"),
            ("<script>", false, "markup"),
            ("naïve", false, "non-ASCII"),
            ("a/b", false, "slash"),
        ];
        for (raw, valid, why) in cases {
            assert_eq!(RequestId::parse(raw).is_some(), valid, "{why}: {raw:?}");
        }
    }

    #[test]
    fn generated_request_ids_are_32_hex_digits_from_entropy() {
        let id = RequestId::generate(&CountingEntropy::default());
        assert_eq!(id.as_str(), "000102030405060708090a0b0c0d0e0f");
        assert!(
            RequestId::parse(id.as_str()).is_some(),
            "a generated id is itself valid"
        );
    }

    #[test]
    fn tenant_ids_are_lowercase_slugs() {
        let cases = [
            ("acme", true, "plain"),
            ("acme-eu-1", true, "dashes inside"),
            ("-acme", false, "leading dash"),
            ("acme-", false, "trailing dash"),
            ("Acme", false, "uppercase"),
            ("acme_eu", false, "underscore"),
            ("", false, "empty"),
            (&"a".repeat(64), false, "64 characters"),
        ];
        for (raw, valid, why) in cases {
            assert_eq!(TenantId::parse(raw).is_some(), valid, "{why}: {raw:?}");
        }
    }

    #[test]
    fn traceparent_parsing_follows_w3c_rules() {
        let cases = [
            (VALID, true, "the specification's example"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                true,
                "not sampled",
            ),
            (
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                true,
                "future version with extra field",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                false,
                "version 00 with extra field",
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                false,
                "version ff is forbidden",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                false,
                "all-zero trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                false,
                "all-zero span id",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                false,
                "uppercase hex",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                false,
                "short trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                false,
                "missing flags",
            ),
            ("garbage", false, "not a traceparent"),
            ("", false, "empty"),
        ];
        for (raw, valid, why) in cases {
            assert_eq!(TraceParent::parse(raw).is_some(), valid, "{why}: {raw:?}");
        }
    }

    #[test]
    fn tracestate_is_kept_only_when_well_formed() {
        let cases = [
            ("congo=t61rcWkgMzE", Some("congo=t61rcWkgMzE"), "one member"),
            (
                "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE",
                Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
                "two members, spaces trimmed",
            ),
            (
                "tenant@vendor=x",
                Some("tenant@vendor=x"),
                "multi-tenant key",
            ),
            ("Congo=x", None, "uppercase key"),
            ("congo", None, "no value"),
            ("congo=a=b", None, "equals sign in value"),
            ("", None, "empty"),
        ];
        for (raw, want, why) in cases {
            assert_eq!(parse_tracestate(raw).as_deref(), want, "{why}");
        }
        let many = (0..33)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(parse_tracestate(&many), None, "more than 32 members");
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn valid_incoming_context_is_continued_with_a_new_span() {
        let cx = RequestContext::from_headers(
            &headers(&[
                (REQUEST_ID, "req-1"),
                (TRACEPARENT, VALID),
                (TRACESTATE, "congo=t61rcWkgMzE"),
                (TENANT_ID, "acme"),
            ]),
            &CountingEntropy::default(),
        );
        assert_eq!(cx.request_id.as_str(), "req-1");
        assert_eq!(cx.trace.trace_id_hex(), &VALID[3..35], "same trace");
        assert_ne!(
            cx.trace.span_id_hex(),
            "00f067aa0ba902b7",
            "a new span for this hop"
        );
        assert_eq!(cx.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        assert_eq!(cx.tenant.as_ref().map(TenantId::as_str), Some("acme"));
    }

    #[test]
    fn invalid_or_absent_context_is_replaced_not_echoed() {
        let bad_trace = "00-zzzz2f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cases = [
            (headers(&[]), "absent"),
            (
                headers(&[
                    (REQUEST_ID, "bad id!"),
                    (TRACEPARENT, bad_trace),
                    (TRACESTATE, "congo=t61rcWkgMzE"),
                    (TENANT_ID, "NOT A TENANT"),
                ]),
                "invalid",
            ),
            (
                headers(&[(TRACEPARENT, VALID), (TRACEPARENT, VALID)]),
                "duplicated traceparent",
            ),
        ];
        for (map, why) in cases {
            let cx = RequestContext::from_headers(&map, &CountingEntropy::default());
            assert_ne!(cx.request_id.as_str(), "bad id!", "{why}");
            assert_eq!(cx.request_id.as_str().len(), 32, "{why}: generated id");
            assert_ne!(cx.trace.trace_id_hex(), &VALID[3..35], "{why}: new trace");
            assert_eq!(
                cx.tracestate, None,
                "{why}: tracestate dropped with its traceparent"
            );
            assert_eq!(cx.tenant, None, "{why}: invalid tenant dropped");
            assert!(
                TraceParent::parse(&cx.trace.to_string()).is_some(),
                "{why}: emitted traceparent is valid"
            );
        }
    }
}
