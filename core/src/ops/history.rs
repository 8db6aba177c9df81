//! The operator console's history: the dashboard's series, one snapshot per
//! minute that had traffic, kept where the metrics aggregate lives
//! (`metric_minutes`: the Durable Object's SQLite on Workers, the
//! application's SQLite on Spin) for [`RETENTION_MINUTES`].
//!
//! A snapshot (a *point*) holds cumulative values, as the aggregate does:
//! requests by status class, the request-duration buckets, and per queue
//! its depth and active jobs (gauges), jobs processed and failed, and the
//! lag buckets. Rates and quantiles are differences between two points,
//! left to the reader (`GET /v1/ops/metrics/history`, the console). Every
//! part is bounded: fixed classes, the registries' own bucket bounds and
//! the known queues, whatever the aggregate holds.

use std::fmt::Write;

use crate::api::error::ApiError;
use crate::api::response::query_pairs;
use crate::api::validate::FieldError;
use crate::jobs::metrics::LAG_BUCKETS_SECS;
use crate::metrics::DURATION_BUCKETS_MS;
use crate::metrics::aggregate::{Aggregator, Scope};
use crate::metrics::exposition;
use crate::ports::{PortError, Queue, Sql};
use crate::time::Timestamp;

/// Minutes of snapshots kept: the console charts the last hour, and a
/// second hour lets a reader compare. At most one row per minute, each a
/// few kilobytes (about 300 KB in all).
pub const RETENTION_MINUTES: i64 = 120;
/// The window `GET /v1/ops/metrics/history` answers without `minutes`.
pub const DEFAULT_MINUTES: i64 = 60;

/// The status classes counted, `429` on its own as well as within `4xx`.
const CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "429"];

/// Cumulative counts per bucket bound (`+Inf` last) of one histogram.
fn buckets(bounds: &[f64]) -> Vec<f64> {
    vec![0.0; bounds.len() + 1]
}

/// Adds a `_bucket` sample to `counts` when its `le` is one of `bounds`
/// (or `+Inf`); any other bound is not the registry's and is ignored.
fn add_bucket(counts: &mut [f64], bounds: &[f64], le: &str, value: f64) {
    let slot = if le == "+Inf" {
        Some(bounds.len())
    } else {
        exposition::parse_value(le)
            .and_then(|le| bounds.iter().position(|b| b.total_cmp(&le).is_eq()))
    };
    if let Some(slot) = slot {
        counts[slot] += value;
    }
}

fn label<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[derive(Default)]
struct QueuePoint {
    depth: f64,
    active: f64,
    processed: f64,
    failed: f64,
    lag: Vec<f64>,
}

/// One point from the aggregate's exposition (`api`) and the workers'
/// (`workers`, `GET /metrics/workers`'s text), taken at `at` (Unix
/// seconds). Lines that do not read as samples are skipped.
pub fn point(api: &str, workers: &str, at: i64) -> String {
    let mut classes = [0.0; CLASSES.len()];
    let mut total = 0.0;
    let mut latency = buckets(&DURATION_BUCKETS_MS);
    // In `Queue::ALL`'s order, found by name: a map would cost more code.
    let mut queues: Vec<(&'static str, QueuePoint)> = Queue::ALL
        .iter()
        .map(|q| {
            (
                q.as_str(),
                QueuePoint {
                    lag: buckets(&LAG_BUCKETS_SECS),
                    ..QueuePoint::default()
                },
            )
        })
        .collect();
    let wanted = |name: &str| {
        name == "http_requests_total"
            || name == "http_request_duration_ms_bucket"
            || name.starts_with("tepi_worker_")
    };
    let all = exposition::samples(api, wanted).chain(exposition::samples(workers, wanted));
    for sample in all {
        let labels = &sample.labels;
        match sample.name.as_str() {
            "http_requests_total" => {
                let Some(status) = label(labels, "status").and_then(|s| s.parse::<u16>().ok())
                else {
                    continue;
                };
                total += sample.value;
                let class = match status {
                    200..=299 => Some(0),
                    300..=399 => Some(1),
                    400..=499 => Some(2),
                    500..=599 => Some(3),
                    _ => None,
                };
                if let Some(class) = class {
                    classes[class] += sample.value;
                }
                if status == 429 {
                    classes[4] += sample.value;
                }
            }
            "http_request_duration_ms_bucket" => {
                if let Some(le) = label(labels, "le") {
                    add_bucket(&mut latency, &DURATION_BUCKETS_MS, le, sample.value);
                }
            }
            name if name.starts_with("tepi_worker_") => {
                let Some((_, queue)) = label(labels, "queue_name")
                    .and_then(|q| queues.iter_mut().find(|(name, _)| *name == q))
                else {
                    continue;
                };
                match name {
                    "tepi_worker_queue_depth" => queue.depth = sample.value,
                    "tepi_worker_jobs_active" => queue.active = sample.value,
                    "tepi_worker_jobs_processed_total" => queue.processed += sample.value,
                    "tepi_worker_job_errors_total" => queue.failed += sample.value,
                    "tepi_worker_job_lag_seconds_bucket" => {
                        if let Some(le) = label(labels, "le") {
                            add_bucket(&mut queue.lag, &LAG_BUCKETS_SECS, le, sample.value);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    // Written by hand rather than through `serde_json::Value`: the same
    // text with a fraction of the code in the Wasm.
    let mut out = format!("{{\"t\":{at},\"requests\":{{\"total\":");
    number(&mut out, total);
    for (class, value) in CLASSES.iter().zip(classes) {
        let _ = write!(out, ",\"{class}\":");
        number(&mut out, value);
    }
    out.push_str("},\"latency_ms\":");
    histogram(&mut out, &DURATION_BUCKETS_MS, &latency);
    out.push_str(",\"queues\":{");
    for (i, (name, q)) in queues.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(out, "{comma}\"{name}\":{{\"depth\":");
        number(&mut out, q.depth);
        out.push_str(",\"active\":");
        number(&mut out, q.active);
        out.push_str(",\"processed\":");
        number(&mut out, q.processed);
        out.push_str(",\"failed\":");
        number(&mut out, q.failed);
        out.push_str(",\"lag_seconds\":");
        histogram(&mut out, &LAG_BUCKETS_SECS, &q.lag);
        out.push('}');
    }
    out.push_str("}}");
    out
}

/// A JSON number; a sum that is not finite (a pushed `NaN`) is written 0.
fn number(out: &mut String, value: f64) {
    let value = if value.is_finite() { value } else { 0.0 };
    let _ = write!(out, "{value}");
}

/// `{"le":[…],"counts":[…]}`.
fn histogram(out: &mut String, bounds: &[f64], counts: &[f64]) {
    for (i, (key, values)) in [("le", bounds), ("counts", counts)].into_iter().enumerate() {
        out.push_str(if i == 0 { "{\"" } else { "],\"" });
        out.push_str(key);
        out.push_str("\":[");
        for (j, value) in values.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            number(out, *value);
        }
    }
    out.push_str("]}");
}

/// The point of the aggregate and the workers' sums now.
pub async fn live(
    aggregator: &dyn Aggregator,
    sql: &dyn Sql,
    now: Timestamp,
) -> Result<String, PortError> {
    let api = aggregator.exposition(Scope::Api, now).await?;
    let workers = crate::jobs::metrics::load(sql).await?.encode();
    Ok(point(&api, &workers, now.as_unix_secs()))
}

/// Takes this minute's snapshot unless one was taken (`checked`: the
/// caller knows none was, so the lookup is skipped). Failures are logged:
/// the history has a gap, nothing else is lost.
pub async fn record(aggregator: &dyn Aggregator, sql: &dyn Sql, now: Timestamp, checked: bool) {
    let minute = now.as_unix_secs().div_euclid(60);
    let result = async {
        if !checked && !aggregator.minutes(minute).await?.is_empty() {
            return Ok(());
        }
        let point = live(aggregator, sql, now).await?;
        aggregator
            .record_minute(minute, &point, minute - RETENTION_MINUTES + 1)
            .await
    };
    if let Err(e) = result.await {
        tracing::warn!(target: "tepi::metrics", error = %e, "history snapshot failed");
    }
}

/// `?minutes=N` of `GET /v1/ops/metrics/history`: 1 to
/// [`RETENTION_MINUTES`], [`DEFAULT_MINUTES`] when absent.
pub fn minutes_of(query: &str) -> Result<i64, ApiError> {
    let mut minutes = DEFAULT_MINUTES;
    for (name, value) in query_pairs(query) {
        if name == "minutes" {
            minutes = value
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=RETENTION_MINUTES).contains(n))
                .ok_or_else(|| ApiError::Validation {
                    errors: vec![FieldError {
                        field: "minutes".into(),
                        code: "out_of_range",
                        message: format!("must be a whole number from 1 to {RETENTION_MINUTES}"),
                    }],
                })?;
        }
    }
    Ok(minutes)
}

/// The answer of `GET /v1/ops/metrics/history`: the kept snapshots of the
/// last `minutes` minutes (any that is not a JSON object skipped), then `live`,
/// marked so.
pub fn answer(kept: &[String], live: &str) -> String {
    let mut out =
        format!("{{\"step_secs\":60,\"retention_minutes\":{RETENTION_MINUTES},\"points\":[");
    for point in kept {
        if serde_json::from_str::<serde_json::Value>(point).is_ok_and(|p| p.is_object()) {
            out.push_str(point);
            out.push(',');
        }
    }
    // `live` is a point: an object, so the mark goes before its last brace.
    out.push_str(live.strip_suffix('}').unwrap_or(live));
    out.push_str(",\"live\":true}]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    const API: &str = "\
# TYPE http_requests_total counter
http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 7
http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 2
http_requests_total{method=\"POST\",route=\"/v1/auth/login\",status=\"429\"} 1
http_requests_total{method=\"GET\",route=\"/metrics\",status=\"503\"} 1
# TYPE http_request_duration_ms histogram
http_request_duration_ms_bucket{method=\"GET\",route=\"/healthz\",le=\"5\"} 6
http_request_duration_ms_bucket{method=\"GET\",route=\"/healthz\",le=\"300\"} 7
http_request_duration_ms_bucket{method=\"GET\",route=\"/healthz\",le=\"+Inf\"} 7
http_request_duration_ms_bucket{method=\"GET\",route=\"/x\",le=\"300\"} 3
http_request_duration_ms_bucket{method=\"GET\",route=\"/x\",le=\"301.5\"} 99
http_request_duration_ms_bucket{method=\"GET\",route=\"/x\",le=\"+Inf\"} 4
http_request_duration_ms_sum{method=\"GET\",route=\"/x\"} 10
http_request_duration_ms_count{method=\"GET\",route=\"/x\"} 4
";

    const WORKERS: &str = "\
# TYPE tepi_worker_jobs_processed_total counter
tepi_worker_jobs_processed_total{queue_name=\"workflows\",outcome=\"ack\"} 10
tepi_worker_jobs_processed_total{queue_name=\"workflows\",outcome=\"retry\"} 2
tepi_worker_jobs_processed_total{queue_name=\"elsewhere\",outcome=\"ack\"} 1000
# TYPE tepi_worker_job_errors_total counter
tepi_worker_job_errors_total{queue_name=\"workflows\"} 2
# TYPE tepi_worker_queue_depth gauge
tepi_worker_queue_depth{queue_name=\"workflows\"} 3
# TYPE tepi_worker_jobs_active gauge
tepi_worker_jobs_active{queue_name=\"uploads\"} 1
# TYPE tepi_worker_job_lag_seconds histogram
tepi_worker_job_lag_seconds_bucket{queue_name=\"workflows\",le=\"0.1\"} 8
tepi_worker_job_lag_seconds_bucket{queue_name=\"workflows\",le=\"+Inf\"} 12
";

    #[test]
    fn a_point_sums_requests_by_class_and_buckets_by_the_registrys_bounds() {
        let p = parsed(&point(API, WORKERS, 1_700_000_000));
        assert_eq!(p["t"], 1_700_000_000);
        assert_eq!(p["requests"]["total"], 11.0);
        assert_eq!(p["requests"]["2xx"], 7.0);
        assert_eq!(p["requests"]["4xx"], 3.0, "404 and 429");
        assert_eq!(p["requests"]["429"], 1.0);
        assert_eq!(p["requests"]["5xx"], 1.0);
        let le = p["latency_ms"]["le"].as_array().unwrap();
        let counts = p["latency_ms"]["counts"].as_array().unwrap();
        assert_eq!(counts.len(), le.len() + 1, "one count per bound and +Inf");
        let at = |bound: f64| le.iter().position(|b| b.as_f64() == Some(bound)).unwrap();
        assert_eq!(counts[at(5.0)], 6.0);
        assert_eq!(counts[at(300.0)], 10.0, "summed across routes");
        assert_eq!(counts[le.len()], 11.0);
        assert!(
            !counts.iter().any(|c| c.as_f64() == Some(105.0)),
            "a bound the registry does not have is ignored"
        );
    }

    #[test]
    fn a_point_has_every_known_queue_and_no_other() {
        let p = parsed(&point(API, WORKERS, 0));
        let queues = p["queues"].as_object().unwrap();
        let names: Vec<&str> = queues.keys().map(String::as_str).collect();
        let mut known: Vec<&str> = Queue::ALL.iter().map(|q| q.as_str()).collect();
        crate::sort::sort(&mut known);
        assert_eq!(names, known);
        let w = &queues["workflows"];
        assert_eq!(w["processed"], 12.0);
        assert_eq!(w["failed"], 2.0);
        assert_eq!(w["depth"], 3.0);
        assert_eq!(w["lag_seconds"]["counts"][0], 8.0);
        assert_eq!(queues["uploads"]["active"], 1.0);
    }

    #[test]
    fn lines_that_are_not_samples_are_skipped() {
        let p = parsed(&point(
            "not an exposition {\nhttp_requests_total{status=\"200\" 3\nhttp_requests_total{status=\"201\"} 2\n",
            "",
            5,
        ));
        assert_eq!(p["requests"]["total"], 2.0, "only the well-formed line");
    }

    #[test]
    fn the_window_is_bounded_by_the_retention() {
        assert_eq!(minutes_of("").unwrap(), DEFAULT_MINUTES);
        assert_eq!(minutes_of("minutes=5&x=1").unwrap(), 5);
        assert_eq!(minutes_of("minutes=120").unwrap(), 120);
        for bad in [
            "minutes=0",
            "minutes=121",
            "minutes=-3",
            "minutes=1e3",
            "minutes=",
        ] {
            assert!(
                matches!(minutes_of(bad), Err(ApiError::Validation { .. })),
                "{bad} is refused"
            );
        }
    }

    #[test]
    fn the_answer_lists_kept_points_then_the_live_one() {
        let kept = vec![
            point(API, "", 60),
            "{broken".to_owned(),
            "[1, 2]".to_owned(),
            point(API, "", 120),
        ];
        let a = parsed(&answer(&kept, &point(API, WORKERS, 150)));
        let points = a["points"].as_array().unwrap();
        assert_eq!(points.len(), 3, "the broken rows are skipped");
        assert_eq!(points[2]["t"], 150);
        assert_eq!(points[2]["live"], true);
        assert!(points[0].get("live").is_none());
        assert_eq!(a["retention_minutes"], RETENTION_MINUTES);
    }
}
