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

use base64ct::{Base64UrlUnpadded, Encoding};
use bytes::Bytes;
use http::{Method, Request, header};

use crate::api::error::ApiError;
use crate::metrics::aggregate::{Change, Mode, Scope};
use crate::metrics::exposition::Family;
use crate::metrics::limits::{Exceeded, Limit, PushLimits};
use crate::time::Timestamp;

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
    pub fn parse(path: &str, limits: &PushLimits) -> Result<Self, ApiError> {
        let parts: Vec<&str> = path.split('/').collect();
        if !parts.len().is_multiple_of(2) {
            return Err(invalid("labels and values must come in pairs"));
        }
        let grouping = parts.len() / 2 - 1;
        if grouping > limits.max_grouping_labels as usize {
            return Err(Exceeded::new(
                Limit::GroupingLabels,
                limits,
                format!("the path has {grouping} grouping labels after job"),
            )
            .into());
        }
        let mut labels: Vec<(String, String)> = Vec::new();
        for pair in parts.chunks(2) {
            let (name, encoded) = match pair[0].strip_suffix("@base64") {
                Some(name) => (name, true),
                None => (pair[0], false),
            };
            check_label(name, "", limits)?;
            if !crate::metrics::exposition::valid_label_name(name) {
                return Err(invalid(format!("{name:?} is not a label name")));
            }
            let value = if encoded {
                // Padded or not: the padding carries no bits.
                let raw = pair[1].trim_end_matches('=');
                let bytes = Base64UrlUnpadded::decode_vec(raw)
                    .map_err(|_| invalid(format!("the value of {name} is not base64url")))?;
                String::from_utf8(bytes)
                    .map_err(|_| invalid(format!("the value of {name} is not UTF-8")))?
            } else {
                percent_decode(pair[1])
                    .ok_or_else(|| invalid(format!("the value of {name} is badly escaped")))?
            };
            check_label(name, &value, limits)?;
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
        crate::sort::sort(&mut labels[1..]);
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

/// The length of a label value once escaped for the exposition.
fn escaped_len(value: &str) -> usize {
    value.len()
        + value
            .bytes()
            .filter(|b| matches!(b, b'\\' | b'"' | b'\n'))
            .count()
}

/// A label name or value longer than the limits allow.
fn check_label(name: &str, value: &str, limits: &PushLimits) -> Result<(), Exceeded> {
    if name.chars().count() > limits.max_label_name as usize {
        let shown: String = name.chars().take(32).collect();
        return Err(Exceeded::new(
            Limit::LabelName,
            limits,
            format!("the label name {shown}… is too long"),
        ));
    }
    if value.chars().count() > limits.max_label_value as usize {
        return Err(Exceeded::new(
            Limit::LabelValue,
            limits,
            format!("a value of the label {name} is too long"),
        ));
    }
    Ok(())
}

/// The request's body as exposition text: gzip is inflated (bounded),
/// other encodings and media types are refused; either way at most
/// `PUSH_MAX_BYTES`.
pub fn body_text(req: &Request<Bytes>, limits: &PushLimits) -> Result<String, ApiError> {
    let max = limits.max_bytes as usize;
    let too_large = |what: &str| -> ApiError {
        Exceeded::new(Limit::Bytes, limits, format!("the {what} is too large")).into()
    };
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
    if req.body().len() > max {
        return Err(too_large("body"));
    }
    let bytes = match encoding.as_str() {
        "" | "identity" => req.body().to_vec(),
        "gzip" | "x-gzip" => crate::metrics::gzip::decode(req.body(), max).map_err(|message| {
            if message == crate::metrics::gzip::TOO_LARGE {
                too_large("inflated body")
            } else {
                ApiError::InvalidExposition {
                    line: 0,
                    message: message.to_owned(),
                }
            }
        })?,
        other => {
            return Err(ApiError::UnsupportedContentEncoding {
                encoding: other.to_owned(),
            });
        }
    };
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

/// Refuses a body whose series, labels or exposed size go beyond the
/// per-push limits, before anything is stored. Grouping labels count
/// towards each series' labels; `instance` is never exposed and does not.
fn check_limits(families: &[Family], group: &Group, limits: &PushLimits) -> Result<(), Exceeded> {
    let series: usize = families.iter().map(|f| f.samples.len()).sum();
    if series > limits.max_series as usize {
        return Err(Exceeded::new(
            Limit::Series,
            limits,
            format!("the push holds {series} series"),
        ));
    }
    let grouping = group.exposed_labels();
    let grouping_bytes: usize = grouping
        .iter()
        .map(|(k, v)| k.len() + escaped_len(v) + 4)
        .sum();
    let mut stored = 0_usize;
    for family in families {
        let help = family.help.as_deref().unwrap_or("");
        if help.chars().count() > limits.max_help as usize {
            return Err(Exceeded::new(
                Limit::Help,
                limits,
                format!("the # HELP of {} is too long", family.name),
            ));
        }
        for sample in &family.samples {
            check_label(&sample.name, "", limits)?;
            let own = sample
                .labels
                .iter()
                .filter(|(k, _)| k != PUSHER_LABEL && !grouping.iter().any(|(g, _)| g == k));
            let mut count = grouping.len();
            // The aggregate keeps the family's help with every series.
            let mut bytes = sample.name.len() + grouping_bytes + help.len() + 26;
            for (name, value) in own {
                check_label(name, value, limits)?;
                count += 1;
                bytes += name.len() + escaped_len(value) + 4;
            }
            if count > limits.max_labels as usize {
                return Err(Exceeded::new(
                    Limit::Labels,
                    limits,
                    format!("{} carries {count} labels", sample.name),
                ));
            }
            stored += bytes;
        }
    }
    // The grouping labels repeat on every series, and so does the help
    // where it is kept: a small push must not become a large aggregate.
    if stored > limits.max_bytes as usize {
        return Err(Exceeded::new(
            Limit::Bytes,
            limits,
            format!("the push would be stored and exposed as about {stored} bytes"),
        ));
    }
    Ok(())
}

/// The change a push request asks for; `pusher` is the API key or user
/// that sends it (the budgets per pusher count its groups).
pub fn change(
    req: &Request<Bytes>,
    grouping: &str,
    now: Timestamp,
    limits: &PushLimits,
    pusher: &str,
) -> Result<Change, ApiError> {
    let group = Group::parse(grouping, limits)?;
    let mode = match *req.method() {
        Method::PUT => Mode::ReplaceGroup,
        Method::POST => Mode::ReplaceFamilies,
        _ => Mode::DeleteGroup,
    };
    let body = if mode == Mode::DeleteGroup {
        String::new()
    } else {
        let text = body_text(req, limits)?;
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
        check_limits(&families, &group, limits)?;
        crate::metrics::aggregate::check_series(&families, &group.exposed_labels(), true)
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
        pusher: Some(pusher.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Group {
        fn parse_default(path: &str) -> Result<Self, ApiError> {
            Self::parse(path, &PushLimits::default())
        }
    }

    #[test]
    fn grouping_keys_follow_the_pushgateway() {
        let g = Group::parse_default("job/batch/instance/host-1/zone/eu").unwrap();
        assert_eq!(g.job(), "batch");
        assert_eq!(g.source(), "push:job=batch/instance=host-1/zone=eu");
        assert_eq!(
            g.exposed_labels(),
            [("job".into(), "batch".into()), ("zone".into(), "eu".into())],
            "instance tells pushers apart and is not exposed"
        );
        assert_eq!(g.scope(), Scope::Api);
        assert_eq!(Group::parse_default("job/web").unwrap().scope(), Scope::Web);
        let encoded = Group::parse_default("job@base64/YS9i/path@base64/=").unwrap();
        assert_eq!(encoded.job(), "a/b", "base64url value with a slash");
        assert_eq!(
            encoded.labels[1],
            ("path".into(), String::new()),
            "empty value"
        );
        for (value, want) in [("YQ==", "a"), ("YQ", "a"), ("YWI=", "ab"), ("YWJj", "abc")] {
            let g = Group::parse_default(&format!("job@base64/{value}")).unwrap();
            assert_eq!(g.job(), want, "{value}: padded or not");
        }
        assert!(
            Group::parse_default("job@base64/Y=Q").is_err(),
            "padding only at the end"
        );
        assert_eq!(
            Group::parse_default("job/a%20b").unwrap().job(),
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
                matches!(
                    Group::parse_default(bad),
                    Err(ApiError::InvalidGroupingKey { .. })
                ),
                "{bad}"
            );
        }
    }

    fn push(method: Method, encoding: Option<&str>, body: Vec<u8>) -> Result<Change, ApiError> {
        let mut builder = Request::builder().method(method).uri("/metrics/job/a");
        if let Some(e) = encoding {
            builder = builder.header(header::CONTENT_ENCODING, e);
        }
        let req = builder.body(Bytes::from(body)).unwrap();
        change(
            &req,
            "job/a",
            Timestamp::from_unix_micros(1_000_000),
            &PushLimits::default(),
            "key_1",
        )
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
                change(
                    &clash,
                    "job/a/zone/eu",
                    Timestamp::from_unix_micros(0),
                    &PushLimits::default(),
                    "key_1"
                ),
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
    }

    /// The limit a refusal names, with its status.
    fn refused(result: Result<Change, ApiError>) -> (u16, &'static str) {
        match result {
            Err(
                e @ (ApiError::PushTooLarge { limit, .. }
                | ApiError::PushLimitExceeded { limit, .. }
                | ApiError::PushQuotaExceeded { limit, .. }),
            ) => (e.status().as_u16(), limit),
            other => panic!("not a limit refusal: {other:?}"),
        }
    }

    #[test]
    #[allow(clippy::too_many_lines)] // one case per limit
    fn every_push_limit_refuses_with_a_problem_naming_it() {
        let limits = PushLimits {
            max_bytes: 2_048,
            max_series: 3,
            max_grouping_labels: 2,
            max_labels: 4,
            max_label_name: 16,
            max_label_value: 16,
            max_help: 4_096,
            ..PushLimits::default()
        };
        let send = |method: Method, path: &str, encoding: Option<&str>, body: Vec<u8>| {
            let mut builder = Request::builder()
                .method(method)
                .uri(format!("/metrics/{path}"));
            if let Some(e) = encoding {
                builder = builder.header(header::CONTENT_ENCODING, e);
            }
            let req = builder.body(Bytes::from(body)).unwrap();
            change(&req, path, Timestamp::from_unix_micros(0), &limits, "key_1")
        };
        let put = |path: &str, body: &str| send(Method::PUT, path, None, body.into());
        // Exactly at every limit: accepted.
        let at_limits = "x{a=\"0123456789abcdef\"} 1\nx{a=\"2\"} 2\ny 3\n";
        put("job/j/zone/eu/rack/r1", at_limits).unwrap();
        let cases: [(Result<Change, ApiError>, u16, &str); 9] = [
            (
                put("job/j/a/1/b/2/c/3", "x 1\n"),
                422,
                "PUSH_MAX_GROUPING_LABELS",
            ),
            (
                put("job/j/zone/0123456789abcdefg", "x 1\n"),
                422,
                "PUSH_MAX_LABEL_VALUE_LEN",
            ),
            (
                put("job/j/zone_with_a_long_name/x", "x 1\n"),
                422,
                "PUSH_MAX_LABEL_NAME_LEN",
            ),
            (
                put("job/j", "x{a=\"0123456789abcdefg\"} 1\n"),
                422,
                "PUSH_MAX_LABEL_VALUE_LEN",
            ),
            (
                put("job/j", "metric_with_a_long_name 1\n"),
                422,
                "PUSH_MAX_LABEL_NAME_LEN",
            ),
            (
                put("job/j/zone/eu", "x{a=\"1\",b=\"2\",c=\"3\",d=\"4\"} 1\n"),
                422,
                "PUSH_MAX_LABELS",
            ),
            (put("job/j", "x 1\ny 2\nz 3\nw 4\n"), 413, "PUSH_MAX_SERIES"),
            (
                put("job/j", &format!("# HELP x {}\nx 1\n", "h".repeat(2_048))),
                413,
                "PUSH_MAX_BYTES",
            ),
            (
                send(
                    Method::PUT,
                    "job/j",
                    Some("gzip"),
                    crate::metrics::gzip::encode(
                        format!("# HELP x {}\nx 1\n", "h".repeat(4_000)).as_bytes(),
                    ),
                ),
                413,
                "PUSH_MAX_BYTES",
            ),
        ];
        for (i, (result, status, limit)) in cases.into_iter().enumerate() {
            assert_eq!(refused(result), (status, limit), "case {i}");
        }
        // Help text is kept with every series: bounded on its own, and
        // counted as often as it is kept.
        let helpful = PushLimits {
            max_help: 64,
            ..PushLimits::default()
        };
        let push_with = |limits: &PushLimits, body: String| {
            let req = Request::builder()
                .method(Method::PUT)
                .uri("/metrics/job/j")
                .body(Bytes::from(body))
                .unwrap();
            change(&req, "job/j", Timestamp::from_unix_micros(0), limits, "k")
        };
        assert_eq!(
            refused(push_with(
                &helpful,
                format!("# HELP x {}\nx 1\n", "h".repeat(65))
            )),
            (422, "PUSH_MAX_HELP_LEN")
        );
        let help = "h".repeat(256);
        let series: String = (0..1_000).fold(format!("# HELP x {help}\n"), |mut out, i| {
            use std::fmt::Write;
            let _ = writeln!(out, "x{{i=\"{i}\"}} 1");
            out
        });
        let body_len = series.len();
        assert!(body_len < 32_768, "a small body: {body_len} bytes");
        assert_eq!(
            refused(push_with(
                &PushLimits {
                    max_bytes: 131_072,
                    ..PushLimits::default()
                },
                series
            )),
            (413, "PUSH_MAX_BYTES"),
            "1,000 copies of a 256-character help"
        );
        // A small body whose grouping labels repeat on every series would be
        // exposed far larger than it was sent.
        let wide = PushLimits {
            max_bytes: 2_048,
            max_series: 100,
            max_label_value: 256,
            ..PushLimits::default()
        };
        let body: String = (0..40).fold(String::new(), |mut out, i| {
            use std::fmt::Write;
            let _ = writeln!(out, "s{i} 1");
            out
        });
        let path = format!("job/j/a/{}/b/{}", "v".repeat(250), "w".repeat(250));
        let req = Request::builder()
            .method(Method::PUT)
            .uri("/metrics/x")
            .body(Bytes::from(body))
            .unwrap();
        assert_eq!(
            refused(change(
                &req,
                &path,
                Timestamp::from_unix_micros(0),
                &wide,
                "k"
            )),
            (413, "PUSH_MAX_BYTES"),
            "the exposed size counts"
        );
    }

    #[test]
    fn a_pushed_samples_own_instance_label_is_never_exposed() {
        let ok = push(
            Method::PUT,
            None,
            "x{instance=\"10.0.0.7:9100\",zone=\"a\"} 1\n".into(),
        );
        assert!(ok.is_ok(), "accepted; the label is dropped when stored");
        assert!(
            matches!(
                push(
                    Method::PUT,
                    None,
                    "x{instance=\"a\"} 1\nx{instance=\"b\"} 2\n".into()
                ),
                Err(ApiError::InvalidExposition { line: 0, .. })
            ),
            "two samples that differ only in instance would be one series"
        );
    }
}
