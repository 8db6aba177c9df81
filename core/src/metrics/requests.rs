//! HTTP metrics and their Prometheus text exposition (format 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (ms) of `http_request_duration_ms`. 300 is a boundary so the
/// p95 < 300 ms objective reads straight off one bucket.
pub const DURATION_BUCKETS_MS: [f64; 12] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Route label for requests that matched no route, so that unknown paths
/// cannot grow the label set without bound.
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds of the buckets, ascending, without `+Inf`.
    bounds: &'static [f64],
    /// Per-bucket (not cumulative) counts; the last slot is `+Inf`.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new(&DURATION_BUCKETS_MS)
    }
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let slot = self
            .bounds
            .iter()
            .position(|le| value <= *le)
            .unwrap_or(self.bounds.len());
        self.buckets[slot] += 1;
        self.sum += value;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Per-bucket counts (the last is `+Inf`), for storage.
    pub fn buckets(&self) -> &[u64] {
        &self.buckets
    }

    /// Adds stored counts back: bucket `slot`, or the sum and count.
    pub fn add_bucket(&mut self, slot: usize, count: u64) {
        if let Some(bucket) = self.buckets.get_mut(slot) {
            *bucket += count;
        }
    }

    pub fn add_sum_and_count(&mut self, sum: f64, count: u64) {
        self.sum += sum;
        self.count += count;
    }
}

/// The per-instance registry of HTTP request metrics.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    /// By method and route pattern: the requests by status, and their
    /// durations (one map for both: each map type brings its own B-tree
    /// code into the build).
    routes: BTreeMap<(String, String), RouteSeries>,
    /// Refusals by route class (`http_rate_limited_total`), by the class's
    /// index in `RATE_LIMIT_CLASSES`.
    rate_limited: [u64; RATE_LIMIT_CLASSES.len()],
    /// Shared-cache lookups and revalidations by result
    /// (`http_cache_requests_total`), by index in `CACHE_RESULTS`.
    cache: [u64; CACHE_RESULTS.len()],
}

/// One method and route pattern's series.
#[derive(Debug, Default)]
struct RouteSeries {
    /// `(status, requests)`, sorted by status.
    statuses: Vec<(u16, u64)>,
    durations: Histogram,
}

/// Route classes and cache results always exposed, at zero until counted,
/// so that rates and alerts see a series from the first scrape.
/// Every `ratelimit::RouteClass` by name (which `metrics/` may not import;
/// a test in `app/tests/limits.rs` checks the two agree).
const RATE_LIMIT_CLASSES: [&str; 6] = ["login", "public", "api", "admin", "push", "alerts"];
const CACHE_RESULTS: [&str; 3] = ["hit", "miss", "revalidated"];

impl HttpMetrics {
    pub fn record(&mut self, method: &str, route: &str, status: u16, duration_ms: f64) {
        let series = self
            .routes
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        match series.statuses.binary_search_by_key(&status, |s| s.0) {
            Ok(i) => series.statuses[i].1 += 1,
            Err(i) => series.statuses.insert(i, (status, 1)),
        }
        series.durations.observe(duration_ms);
    }

    /// One request refused by the rate limiter of `class` (a class outside
    /// `RATE_LIMIT_CLASSES` is not exposed, so not counted).
    pub fn record_rate_limited(&mut self, class: &str) {
        if let Some(i) = RATE_LIMIT_CLASSES.iter().position(|c| *c == class) {
            self.rate_limited[i] += 1;
        }
    }

    /// One shared-cache `hit` or `miss`, or a `revalidated` (304) answer.
    pub fn record_cache(&mut self, result: &str) {
        if let Some(i) = CACHE_RESULTS.iter().position(|r| *r == result) {
            self.cache[i] += 1;
        }
    }

    pub fn requests(&self, method: &str, route: &str, status: u16) -> u64 {
        self.routes
            .get(&(method.to_owned(), route.to_owned()))
            .and_then(|s| s.statuses.iter().find(|(code, _)| *code == status))
            .map_or(0, |(_, n)| *n)
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
            && self.rate_limited.iter().all(|n| *n == 0)
            && self.cache.iter().all(|n| *n == 0)
    }

    /// The exposition: `http_requests_total` and `http_request_duration_ms`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "http_requests_total",
            "HTTP requests served, by method, route pattern and status.",
            "counter",
        );
        for ((method, route), series) in &self.routes {
            for (status, value) in &series.statuses {
                let status = status.to_string();
                sample(
                    &mut out,
                    "http_requests_total",
                    &[("method", method), ("route", route), ("status", &status)],
                    *value as f64,
                );
            }
        }
        header(
            &mut out,
            "http_request_duration_ms",
            "HTTP request duration in milliseconds, by method and route pattern.",
            "histogram",
        );
        for ((method, route), series) in &self.routes {
            let labels = [("method", method.as_str()), ("route", route.as_str())];
            write_histogram(
                &mut out,
                "http_request_duration_ms",
                &labels,
                &series.durations,
            );
        }
        header(
            &mut out,
            "http_rate_limited_total",
            "Requests refused with 429 by the rate limiter, by route class.",
            "counter",
        );
        for (class, value) in RATE_LIMIT_CLASSES.into_iter().zip(self.rate_limited) {
            sample(
                &mut out,
                "http_rate_limited_total",
                &[("route_class", class)],
                value as f64,
            );
        }
        header(
            &mut out,
            "http_cache_requests_total",
            "Shared-cache lookups (hit, miss) and 304 revalidations.",
            "counter",
        );
        for (result, value) in CACHE_RESULTS.into_iter().zip(self.cache) {
            sample(
                &mut out,
                "http_cache_requests_total",
                &[("result", result)],
                value as f64,
            );
        }
        out
    }
}

/// The isolate limit Workers enforce on memory, in bytes (128 MiB).
pub const ISOLATE_MEMORY_LIMIT_BYTES: u64 = 128 * 1024 * 1024;

/// This instance's WebAssembly linear memory in bytes; `None` off Wasm.
/// Linear memory only grows, so this is the instance's high-water mark.
pub fn wasm_memory_bytes() -> Option<u64> {
    #[cfg(target_arch = "wasm32")]
    {
        Some(core::arch::wasm32::memory_size(0) as u64 * 65_536)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        None
    }
}

/// `tepi_wasm_memory_bytes` and `tepi_wasm_memory_limit_ratio` (against the
/// 128 MiB isolate limit), when there is a linear memory to measure.
/// Long-lived instances name themselves with `instance`, so each one's
/// latest value is kept apart.
pub fn encode_memory(bytes: Option<u64>, instance: Option<&str>) -> String {
    let Some(bytes) = bytes else {
        return String::new();
    };
    let labels: Vec<(&str, &str)> = instance.map(|i| ("instance", i)).into_iter().collect();
    let mut out = String::new();
    header(
        &mut out,
        "tepi_wasm_memory_bytes",
        "WebAssembly linear memory of an instance (per isolate on Workers), in bytes: a high-water mark, it never shrinks.",
        "gauge",
    );
    sample(&mut out, "tepi_wasm_memory_bytes", &labels, bytes as f64);
    header(
        &mut out,
        "tepi_wasm_memory_limit_ratio",
        "tepi_wasm_memory_bytes over the 128 MiB isolate memory limit.",
        "gauge",
    );
    sample(
        &mut out,
        "tepi_wasm_memory_limit_ratio",
        &labels,
        bytes as f64 / ISOLATE_MEMORY_LIMIT_BYTES as f64,
    );
    out
}

pub fn write_histogram(out: &mut String, name: &str, labels: &[(&str, &str)], h: &Histogram) {
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    let bounds = h.bounds.iter().map(|le| format_value(*le));
    for (le, count) in bounds
        .chain(["+Inf".to_owned()])
        .zip(h.buckets.iter().copied())
    {
        cumulative += count;
        let mut with_le = labels.to_vec();
        with_le.push(("le", &le));
        sample(out, &bucket, &with_le, cumulative as f64);
    }
    sample(out, &format!("{name}_sum"), labels, h.sum);
    sample(out, &format!("{name}_count"), labels, h.count as f64);
}

/// `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let help = help.replace('\\', r"\\").replace('\n', r"\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line with escaped label values.
pub fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape_label_value(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_value(value));
}

pub fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str(r"\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str(r"\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Go-compatible float text: `+Inf`, `-Inf`, `NaN`, integers without `.0`.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_include_exactly_300() {
        assert!(DURATION_BUCKETS_MS.contains(&300.0));
        assert!(
            DURATION_BUCKETS_MS.windows(2).all(|w| w[0] < w[1]),
            "bounds ascend"
        );
    }

    #[test]
    fn histogram_places_boundary_values_in_their_own_bucket() {
        let mut metrics = HttpMetrics::default();
        for ms in [0.5, 300.0, 300.5, 20_000.0] {
            metrics.record("GET", "/healthz", 200, ms);
        }
        let text = metrics.encode();
        let cases = [
            (r#"le="5"} 1"#, "0.5 ms is in the first bucket"),
            (r#"le="200"} 1"#, "nothing between 5 and 200"),
            (r#"le="300"} 2"#, "300 ms counts as <= 300"),
            (r#"le="500"} 3"#, "300.5 ms is above 300"),
            (r#"le="10000"} 3"#, "20 s is beyond the last bound"),
            (r#"le="+Inf"} 4"#, "+Inf counts everything"),
            (
                "http_request_duration_ms_count{method=\"GET\",route=\"/healthz\"} 4",
                "count",
            ),
            (
                "http_request_duration_ms_sum{method=\"GET\",route=\"/healthz\"} 20601",
                "sum",
            ),
        ];
        for (needle, why) in cases {
            assert!(text.contains(needle), "{why}: {needle} not in\n{text}");
        }
    }

    #[test]
    fn exposition_has_help_type_and_counters_per_status() {
        let mut metrics = HttpMetrics::default();
        metrics.record("GET", "/v1/uploads/{id}", 200, 1.0);
        metrics.record("GET", "/v1/uploads/{id}", 200, 1.0);
        metrics.record("GET", "/v1/uploads/{id}", 404, 1.0);
        let text = metrics.encode();
        assert!(text.starts_with("# HELP http_requests_total "));
        assert!(text.contains("# TYPE http_requests_total counter\n"));
        assert!(text.contains("# TYPE http_request_duration_ms histogram\n"));
        assert!(text.contains(
            "http_requests_total{method=\"GET\",route=\"/v1/uploads/{id}\",status=\"200\"} 2\n"
        ));
        assert!(text.contains(
            "http_requests_total{method=\"GET\",route=\"/v1/uploads/{id}\",status=\"404\"} 1\n"
        ));
        assert_eq!(metrics.requests("GET", "/v1/uploads/{id}", 200), 2);
        assert!(
            text.contains("http_rate_limited_total{route_class=\"login\"} 0\n"),
            "zero until counted"
        );
        assert!(text.contains("http_cache_requests_total{result=\"hit\"} 0\n"));
    }

    #[test]
    fn memory_gauges_report_bytes_and_the_share_of_the_isolate_limit() {
        assert_eq!(encode_memory(None, None), "", "nothing to report off Wasm");
        let text = encode_memory(Some(32 * 1024 * 1024), None);
        assert!(
            text.contains("# TYPE tepi_wasm_memory_bytes gauge\n"),
            "{text}"
        );
        assert!(text.contains("tepi_wasm_memory_bytes 33554432\n"), "{text}");
        assert!(
            text.contains("tepi_wasm_memory_limit_ratio 0.25\n"),
            "{text}"
        );
        crate::metrics::exposition::parse(text.as_bytes()).expect("valid exposition");
    }

    #[test]
    fn label_values_are_escaped() {
        let cases = [
            ("plain", "plain"),
            ("a\"b", "a\\\"b"),
            ("a\\b", "a\\\\b"),
            ("a\nb", "a\\nb"),
        ];
        for (raw, want) in cases {
            assert_eq!(escape_label_value(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn values_use_prometheus_spelling() {
        let cases = [
            (1.0, "1"),
            (0.25, "0.25"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (value, want) in cases {
            assert_eq!(format_value(value), want);
        }
    }
}
