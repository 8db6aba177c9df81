//! The Pushgateway-compatible push API:
//! `PUT|POST|DELETE /metrics/job/<job>{/<label>/<value>}`.
//!
//! The path names a group (the job and grouping labels; `<label>@base64`
//! takes a base64url value, as Pushgateway clients send values containing
//! `/` or empty ones). `PUT` replaces the group, `POST` replaces the
//! families it sends, `DELETE` removes the group. Bodies are Prometheus
//! text format 0.0.4, plain or gzip, parsed strictly.
//!
//! A group's samples are exposed with its grouping labels, except
//! `instance`: that label tells pushers of one job apart (each can replace
//! or delete its own group) while their series merge in the exposition —
//! counters and histograms summed, gauges the latest — as aggregation
//! gateways do. The `web` job's groups are exposed on
//! `GET /api/metrics/prometheus`, every other job's on `GET /metrics`.

use base64ct::{Base64Url, Base64UrlUnpadded, Encoding};
use bytes::Bytes;
use http::{Method, Request, header};

use crate::api::error::ApiError;
use crate::metrics::aggregate::{Change, Mode, Scope};
use crate::metrics::exposition::MAX_BYTES;
use crate::time::Timestamp;

/// Most grouping labels a path may carry.
pub const MAX_GROUPING_LABELS: usize = 16;
/// Longest grouping label value.
pub const MAX_VALUE_LEN: usize = 256;
/// The grouping label that identifies a pusher and is not exposed.
pub const PUSHER_LABEL: &str = "instance";

/// A group named by a push path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Every grouping label, `job` first, the rest sorted.
    pub labels: Vec<(String, String)>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidGroupingKey {
        message: message.into(),
    }
}

/// `%2F`-style escapes of a path segment; `None` when malformed or not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Group {
    /// Reads `job/<job>{/<label>/<value>}` (the path after `/metrics/`).
    pub fn parse(path: &str) -> Result<Self, ApiError> {
        let parts: Vec<&str> = path.split('/').collect();
        if !parts.len().is_multiple_of(2) {
            return Err(invalid("labels and values must come in pairs"));
        }
        if parts.len() / 2 > MAX_GROUPING_LABELS {
            return Err(invalid(format!(
                "at most {MAX_GROUPING_LABELS} grouping labels"
            )));
        }
        let mut labels: Vec<(String, String)> = Vec::new();
        for pair in parts.chunks(2) {
            let (name, encoded) = match pair[0].strip_suffix("@base64") {
                Some(name) => (name, true),
                None => (pair[0], false),
            };
            if !crate::metrics::exposition::valid_label_name(name) {
                return Err(invalid(format!("{name:?} is not a label name")));
            }
            let value = if encoded {
                let raw = pair[1].trim_end_matches('=');
                let bytes = Base64UrlUnpadded::decode_vec(raw)
                    .or_else(|_| Base64Url::decode_vec(pair[1]))
                    .map_err(|_| invalid(format!("the value of {name} is not base64url")))?;
                String::from_utf8(bytes)
                    .map_err(|_| invalid(format!("the value of {name} is not UTF-8")))?
            } else {
                percent_decode(pair[1])
                    .ok_or_else(|| invalid(format!("the value of {name} is badly escaped")))?
            };
            if value.chars().count() > MAX_VALUE_LEN {
                return Err(invalid(format!(
                    "the value of {name} is longer than {MAX_VALUE_LEN} characters"
                )));
            }
            if matches!(name, "le" | "quantile") {
                return Err(invalid(format!(
                    "{name} belongs to histogram and summary samples, not to a group"
                )));
            }
            if labels.iter().any(|(n, _)| n == name) {
                return Err(invalid(format!("{name} appears twice")));
            }
            labels.push((name.to_owned(), value));
        }
        match labels.first() {
            Some((name, value)) if name == "job" && !value.is_empty() => {}
            Some((name, _)) if name == "job" => return Err(invalid("the job must not be empty")),
            _ => return Err(invalid("the path must start with job/<job>")),
        }
        labels[1..].sort();
        Ok(Self { labels })
    }

    pub fn job(&self) -> &str {
        &self.labels[0].1
    }

    /// The aggregate's source of this group: every grouping label.
    pub fn source(&self) -> String {
        let key: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::metrics::escape_label_value(v)))
            .collect();
        format!("push:{}", key.join("/"))
    }

    /// The labels its samples are exposed with.
    pub fn exposed_labels(&self) -> Vec<(String, String)> {
        self.labels
            .iter()
            .filter(|(k, _)| k != PUSHER_LABEL)
            .cloned()
            .collect()
    }

    pub fn scope(&self) -> Scope {
        if self.job() == "web" {
            Scope::Web
        } else {
            Scope::Api
        }
    }
}

/// The request's body as exposition text: gzip is inflated (bounded),
/// other encodings and media types are refused.
pub fn body_text(req: &Request<Bytes>) -> Result<String, ApiError> {
    if let Some(media) = req.headers().get(header::CONTENT_TYPE) {
        let media = media.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = media.split(';').next().unwrap_or("").trim();
        // As the Pushgateway: everything but protobuf is read as text.
        if essence.starts_with("application/vnd.google.protobuf") {
            return Err(ApiError::UnsupportedMediaType {
                expected: "text/plain; version=0.0.4",
            });
        }
    }
    let encoding = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let bytes = match encoding.as_str() {
        "" | "identity" => req.body().to_vec(),
        "gzip" | "x-gzip" => {
            crate::metrics::gzip::decode(req.body(), MAX_BYTES).map_err(|message| {
                ApiError::InvalidExposition {
                    line: 0,
                    message: message.to_owned(),
                }
            })?
        }
        other => {
            return Err(ApiError::UnsupportedContentEncoding {
                encoding: other.to_owned(),
            });
        }
    };
    if bytes.len() > MAX_BYTES {
        return Err(ApiError::InvalidExposition {
            line: 0,
            message: format!("the body is larger than {MAX_BYTES} bytes"),
        });
    }
    String::from_utf8(bytes).map_err(|_| ApiError::InvalidExposition {
        line: 0,
        message: "the body is not UTF-8".to_owned(),
    })
}

/// Names the service's own metrics use: a push may not take them (its type
/// could then refuse the service's own updates).
fn reserved(family: &str) -> bool {
    family.starts_with("tepi_") || family.starts_with("http_")
}

/// The change a push request asks for.
pub fn change(req: &Request<Bytes>, grouping: &str, now: Timestamp) -> Result<Change, ApiError> {
    let group = Group::parse(grouping)?;
    let mode = match *req.method() {
        Method::PUT => Mode::ReplaceGroup,
        Method::POST => Mode::ReplaceFamilies,
        _ => Mode::DeleteGroup,
    };
    let body = if mode == Mode::DeleteGroup {
        String::new()
    } else {
        let text = body_text(req)?;
        // Refused here with the offending line, before anything is stored.
        let to_error = |e: crate::metrics::exposition::ParseError| ApiError::InvalidExposition {
            line: e.line,
            message: e.message,
        };
        let families = crate::metrics::exposition::parse(text.as_bytes()).map_err(to_error)?;
        if let Some(family) = families.iter().find(|f| reserved(&f.name)) {
            return Err(ApiError::InvalidExposition {
                line: 0,
                message: format!(
                    "{} is named like the service's own metrics (tepi_, http_)",
                    family.name
                ),
            });
        }
        crate::metrics::aggregate::check_series(&families, &group.exposed_labels())
            .map_err(to_error)?;
        text
    };
    Ok(Change {
        source: group.source(),
        scope: group.scope(),
        mode,
        body,
        labels: group.exposed_labels(),
        at: now.as_unix_secs(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_keys_follow_the_pushgateway() {
        let g = Group::parse("job/batch/instance/host-1/zone/eu").unwrap();
        assert_eq!(g.job(), "batch");
        assert_eq!(g.source(), "push:job=batch/instance=host-1/zone=eu");
        assert_eq!(
            g.exposed_labels(),
            [("job".into(), "batch".into()), ("zone".into(), "eu".into())],
            "instance tells pushers apart and is not exposed"
        );
        assert_eq!(g.scope(), Scope::Api);
        assert_eq!(Group::parse("job/web").unwrap().scope(), Scope::Web);
        let encoded = Group::parse("job@base64/YS9i/path@base64/=").unwrap();
        assert_eq!(encoded.job(), "a/b", "base64url value with a slash");
        assert_eq!(
            encoded.labels[1],
            ("path".into(), String::new()),
            "empty value"
        );
        assert_eq!(
            Group::parse("job/a%20b").unwrap().job(),
            "a b",
            "percent-escapes are decoded"
        );
    }

    #[test]
    fn malformed_grouping_keys_are_refused() {
        for bad in [
            "instance/x",
            "job",
            "job/",
            "job/a/zone",
            "job/a/1bad/x",
            "job/a/__name__/x",
            "job/a/zone/x/zone/y",
            "job/a/le/5",
            "job/a/quantile/0.5",
            "job@base64/!!!",
            "job/a%zz",
        ] {
            assert!(
                matches!(Group::parse(bad), Err(ApiError::InvalidGroupingKey { .. })),
                "{bad}"
            );
        }
        let many = "/l/v".repeat(MAX_GROUPING_LABELS + 1);
        assert!(Group::parse(&format!("job/a{many}")).is_err());
    }

    fn push(method: Method, encoding: Option<&str>, body: Vec<u8>) -> Result<Change, ApiError> {
        let mut builder = Request::builder().method(method).uri("/metrics/job/a");
        if let Some(e) = encoding {
            builder = builder.header(header::CONTENT_ENCODING, e);
        }
        let req = builder.body(Bytes::from(body)).unwrap();
        change(&req, "job/a", Timestamp::from_unix_micros(1_000_000))
    }

    #[test]
    fn bodies_are_plain_or_gzip_and_parsed_before_anything_is_stored() {
        let text = "# TYPE x counter\nx 1\n";
        let plain = push(Method::PUT, None, text.into()).unwrap();
        assert_eq!(
            (plain.mode, plain.body.as_str()),
            (Mode::ReplaceGroup, text)
        );
        let gz = push(
            Method::POST,
            Some("gzip"),
            crate::metrics::gzip::encode(text.as_bytes()),
        )
        .unwrap();
        assert_eq!((gz.mode, gz.body.as_str()), (Mode::ReplaceFamilies, text));
        assert_eq!(
            push(Method::DELETE, None, Vec::new()).unwrap().mode,
            Mode::DeleteGroup
        );
        assert!(matches!(
            push(Method::PUT, None, "x 1\nx 2\n".into()),
            Err(ApiError::InvalidExposition { line: 2, .. })
        ));
        let clash = Request::builder()
            .method(Method::PUT)
            .uri("/metrics/job/a/zone/eu")
            .body(Bytes::from("x{zone=\"a\"} 1\nx{zone=\"b\"} 2\n"))
            .unwrap();
        assert!(
            matches!(
                change(&clash, "job/a/zone/eu", Timestamp::from_unix_micros(0)),
                Err(ApiError::InvalidExposition { line: 0, .. })
            ),
            "a sample label the grouping key overrides"
        );
        let spelled = "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n";
        assert!(
            matches!(
                push(Method::PUT, None, spelled.into()),
                Err(ApiError::InvalidExposition { .. })
            ),
            "one bound spelled twice"
        );
        assert!(
            matches!(
                push(
                    Method::PUT,
                    None,
                    "# TYPE tepi_web_vitals_cls gauge\ntepi_web_vitals_cls 1\n".into()
                ),
                Err(ApiError::InvalidExposition { line: 0, .. })
            ),
            "the service's own names are not for pushing"
        );
        assert!(matches!(
            push(Method::PUT, Some("br"), text.into()),
            Err(ApiError::UnsupportedContentEncoding { .. })
        ));
        assert!(matches!(
            push(Method::PUT, Some("gzip"), b"not gzip".to_vec()),
            Err(ApiError::InvalidExposition { line: 0, .. })
        ));
        let bomb = crate::metrics::gzip::encode(&vec![b'#'; MAX_BYTES + 10]);
        assert!(
            matches!(
                push(Method::PUT, Some("gzip"), bomb),
                Err(ApiError::InvalidExposition { .. })
            ),
            "inflation is bounded"
        );
    }
}
