//! Real-user monitoring: browsers post Web Vitals beacons to
//! `POST /api/rum` (the `web-vitals` library's metric objects, one or a
//! batch), and `GET /api/metrics/prometheus` exposes them as histograms.
//!
//! Bounded on every side: at most `MAX_BEACONS` per request, known metric
//! names only, finite values within each metric's range, and labels the
//! server chooses (the metric and its rating from the published
//! thresholds), never free text from the page.

use serde_json::Value;

use crate::api::error::ApiError;
use crate::api::validate::FieldError;
use crate::metrics::{Histogram, header, sample, write_histogram};

/// Most beacons one request may carry.
pub const MAX_BEACONS: usize = 50;

/// Bucket bounds (seconds) of the timing vitals. Beacons report
/// milliseconds (as the `web-vitals` library does); the histograms use the
/// base unit.
pub const TIMING_BUCKETS_SECS: [f64; 11] =
    [0.1, 0.2, 0.5, 0.8, 1.0, 1.8, 2.5, 4.0, 6.0, 10.0, 30.0];
/// Bucket bounds of the layout shift score.
pub const CLS_BUCKETS: [f64; 8] = [0.01, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0];

/// A Web Vital: its name in beacons, its histogram, its largest accepted
/// value, and its good / poor thresholds (web.dev).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vital {
    pub name: &'static str,
    pub metric: &'static str,
    pub help: &'static str,
    pub max: f64,
    pub good: f64,
    pub poor: f64,
}

pub const VITALS: [Vital; 4] = [
    Vital {
        name: "LCP",
        metric: "tepi_web_vitals_lcp_seconds",
        help: "Largest Contentful Paint reported by browsers, in seconds.",
        max: 120_000.0,
        good: 2500.0,
        poor: 4000.0,
    },
    Vital {
        name: "INP",
        metric: "tepi_web_vitals_inp_seconds",
        help: "Interaction to Next Paint reported by browsers, in seconds.",
        max: 120_000.0,
        good: 200.0,
        poor: 500.0,
    },
    Vital {
        name: "CLS",
        metric: "tepi_web_vitals_cls",
        help: "Cumulative Layout Shift score reported by browsers.",
        max: 100.0,
        good: 0.1,
        poor: 0.25,
    },
    Vital {
        name: "TTFB",
        metric: "tepi_web_vitals_ttfb_seconds",
        help: "Time to First Byte reported by browsers, in seconds.",
        max: 120_000.0,
        good: 800.0,
        poor: 1800.0,
    },
];

const RATINGS: [&str; 3] = ["good", "needs-improvement", "poor"];

impl Vital {
    /// The rating of `value`, as its index in `RATINGS`.
    fn rating(&self, value: f64) -> usize {
        if value <= self.good {
            0
        } else if value <= self.poor {
            1
        } else {
            2
        }
    }

    /// A beacon's value in the histogram's unit.
    fn observed(&self, value: f64) -> f64 {
        if self.name == "CLS" {
            value
        } else {
            value / 1000.0
        }
    }

    fn histogram(&self) -> Histogram {
        if self.name == "CLS" {
            Histogram::new(&CLS_BUCKETS)
        } else {
            Histogram::new(&TIMING_BUCKETS_SECS)
        }
    }
}

/// Web Vitals seen by this instance since its last flush, by the vital's
/// index in `VITALS` (and the rating's in `RATINGS`): fixed sets, kept in
/// arrays rather than maps.
#[derive(Debug, Clone, Default)]
pub struct WebVitals {
    histograms: [Option<Histogram>; VITALS.len()],
    reports: [[u64; RATINGS.len()]; VITALS.len()],
}

impl WebVitals {
    pub fn is_empty(&self) -> bool {
        self.reports.iter().flatten().all(|n| *n == 0)
    }

    pub fn record(&mut self, vital: &Vital, value: f64) {
        let Some(slot) = VITALS.iter().position(|v| v.name == vital.name) else {
            return;
        };
        self.histograms[slot]
            .get_or_insert_with(|| vital.histogram())
            .observe(vital.observed(value));
        self.reports[slot][vital.rating(value)] += 1;
    }

    /// The exposition: every vital's histogram and the reports by rating
    /// (series at zero until reported).
    #[allow(clippy::cast_precision_loss)]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (vital, h) in VITALS.iter().zip(&self.histograms) {
            header(&mut out, vital.metric, vital.help, "histogram");
            let empty = vital.histogram();
            write_histogram(&mut out, vital.metric, &[], h.as_ref().unwrap_or(&empty));
        }
        header(
            &mut out,
            "tepi_web_vitals_reports_total",
            "Web Vitals beacons accepted, by metric and rating (web.dev thresholds).",
            "counter",
        );
        for (vital, reports) in VITALS.iter().zip(&self.reports) {
            for (rating, n) in RATINGS.into_iter().zip(reports) {
                sample(
                    &mut out,
                    "tepi_web_vitals_reports_total",
                    &[("metric", vital.name), ("rating", rating)],
                    *n as f64,
                );
            }
        }
        out
    }
}

fn problem(field: String, code: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        code,
        message: message.into(),
    }
}

/// Reads a beacon body: one metric object or an array of them. Every
/// problem is reported with its path (`1/value`); nothing is recorded
/// unless all are valid.
pub fn parse(body: &[u8]) -> Result<Vec<(&'static Vital, f64)>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson {
        detail: e.to_string(),
    })?;
    let (items, prefix): (Vec<&Value>, bool) = match &value {
        Value::Array(items) => (items.iter().collect(), true),
        other => (vec![other], false),
    };
    let mut errors = Vec::new();
    if items.is_empty() || items.len() > MAX_BEACONS {
        errors.push(problem(
            String::new(),
            "out_of_range",
            format!("send 1 to {MAX_BEACONS} beacons"),
        ));
    }
    let mut beacons = Vec::new();
    for (i, item) in items.iter().take(MAX_BEACONS).enumerate() {
        let at = |field: &str| {
            if prefix {
                format!("{i}/{field}")
            } else {
                field.to_owned()
            }
        };
        let Some(object) = item.as_object() else {
            errors.push(problem(at(""), "type", "must be an object"));
            continue;
        };
        let name = object.get("name").and_then(Value::as_str);
        let Some(vital) = VITALS.iter().find(|v| Some(v.name) == name) else {
            errors.push(problem(
                at("name"),
                "invalid",
                "must be LCP, INP, CLS or TTFB",
            ));
            continue;
        };
        match object.get("value").and_then(Value::as_f64) {
            Some(v) if v.is_finite() && (0.0..=vital.max).contains(&v) => beacons.push((vital, v)),
            _ => errors.push(problem(
                at("value"),
                "out_of_range",
                format!("must be a number from 0 to {}", vital.max),
            )),
        }
    }
    if errors.is_empty() {
        Ok(beacons)
    } else {
        Err(ApiError::Validation { errors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beacons_become_histograms_rated_by_the_server() {
        let body = br#"[{"name":"LCP","value":1200.5,"rating":"poor","id":"v3-1"},
            {"name":"CLS","value":0.3},{"name":"INP","value":180},{"name":"TTFB","value":2000}]"#;
        let mut vitals = WebVitals::default();
        for (vital, value) in parse(body).unwrap() {
            vitals.record(vital, value);
        }
        let text = vitals.encode();
        for needle in [
            "tepi_web_vitals_lcp_seconds_bucket{le=\"1.8\"} 1\n",
            "tepi_web_vitals_lcp_seconds_bucket{le=\"1\"} 0\n",
            "tepi_web_vitals_lcp_seconds_sum 1.2005\n",
            "tepi_web_vitals_cls_bucket{le=\"0.5\"} 1\n",
            "tepi_web_vitals_reports_total{metric=\"LCP\",rating=\"good\"} 1\n",
            "tepi_web_vitals_reports_total{metric=\"CLS\",rating=\"poor\"} 1\n",
            "tepi_web_vitals_reports_total{metric=\"INP\",rating=\"good\"} 1\n",
            "tepi_web_vitals_reports_total{metric=\"TTFB\",rating=\"poor\"} 1\n",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        crate::metrics::exposition::parse(text.as_bytes()).expect("valid exposition");
    }

    #[test]
    fn bad_beacons_are_refused_with_their_path_and_nothing_recorded() {
        let cases: [(&[u8], &[&str]); 6] = [
            (br#"{"name":"FID","value":3}"#, &["name"]),
            (br#"{"name":"LCP","value":-1}"#, &["value"]),
            (br#"{"name":"LCP","value":"fast"}"#, &["value"]),
            (br#"{"name":"CLS","value":1e9}"#, &["value"]),
            (
                br#"[{"name":"LCP","value":1},{"name":"X"},7]"#,
                &["1/name", "2/"],
            ),
            (b"[]", &[""]),
        ];
        for (body, fields) in cases {
            let Err(ApiError::Validation { errors }) = parse(body) else {
                panic!("{} accepted", String::from_utf8_lossy(body));
            };
            let got: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(got, fields, "{}", String::from_utf8_lossy(body));
        }
        assert!(matches!(parse(b"{"), Err(ApiError::MalformedJson { .. })));
        let many = format!(
            "[{}]",
            vec![r#"{"name":"LCP","value":1}"#; MAX_BEACONS + 1].join(",")
        );
        assert!(parse(many.as_bytes()).is_err(), "bounded batch");
    }
}
