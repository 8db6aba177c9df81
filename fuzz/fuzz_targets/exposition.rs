//! Feeds arbitrary bytes to `tepi_core::metrics::exposition::parse`, the strict
//! Prometheus text-format parser for pushed metrics. A panic anywhere is a
//! crash (libFuzzer keeps the input); beyond that, every input checks:
//!
//! - a refusal names a line of the body (0: the body as a whole) and a reason;
//! - an accepted body is what the parser promises: at most `MAX_BYTES` of
//!   UTF-8 and `MAX_SAMPLES` samples; valid, unique family names; valid sample
//!   names that belong to their family; label names valid, sorted and unique;
//!   no series twice; no negative or NaN counter; every histogram series has
//!   an `le` on each bucket, a `+Inf` bucket and counts that never decrease;
//! - an accepted body, written again with the core's own encoder
//!   (`metrics::header`, `metrics::sample`), parses to the same families.
#![no_main]

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use libfuzzer_sys::fuzz_target;
use tepi_core::metrics::aggregate::kind_name;
use tepi_core::metrics::exposition::{Family, Kind, MAX_BYTES, MAX_SAMPLES, Sample, parse};
use tepi_core::metrics::{header, sample};

/// A label: name and value.
type Label = (String, String);

fuzz_target!(|body: &[u8]| check(body));

fn check(body: &[u8]) {
    match parse(body) {
        Err(err) => {
            let lines = std::str::from_utf8(body).map_or(0, |text| text.lines().count());
            assert!(
                err.line <= lines,
                "the error names line {} of {lines}: {err}",
                err.line
            );
            assert!(!err.message.is_empty(), "an error without a reason");
        }
        Ok(families) => {
            assert!(body.len() <= MAX_BYTES, "accepted {} bytes", body.len());
            assert!(std::str::from_utf8(body).is_ok(), "accepted non-UTF-8");
            well_formed(&families);
            round_trip(&families);
        }
    }
}

fn well_formed(families: &[Family]) {
    let total: usize = families.iter().map(|f| f.samples.len()).sum();
    assert!(total <= MAX_SAMPLES, "accepted {total} samples");
    let mut names = BTreeSet::new();
    let mut series = BTreeSet::new();
    for family in families {
        assert!(valid_metric_name(&family.name), "family {:?}", family.name);
        assert!(names.insert(&family.name), "family {} twice", family.name);
        for s in &family.samples {
            assert!(valid_metric_name(&s.name), "sample name {:?}", s.name);
            assert!(
                belongs_to(&s.name, family),
                "{} in family {}",
                s.name,
                family.name
            );
            assert!(
                s.labels.windows(2).all(|w| w[0].0 < w[1].0),
                "labels of {} not sorted and unique: {:?}",
                s.name,
                s.labels
            );
            for (label, _) in &s.labels {
                assert!(valid_label_name(label), "label name {label:?}");
            }
            assert!(series.insert((&s.name, &s.labels)), "{} twice", s.name);
            if family.kind == Kind::Counter {
                assert!(s.value >= 0.0, "counter {} = {}", s.name, s.value);
            }
        }
        if family.kind == Kind::Histogram {
            histogram_is_cumulative(family);
        }
    }
}

/// Each series of `<name>_bucket` (its labels but `le`) has an `le` on every
/// bucket, a `+Inf` bucket, and counts that do not decrease as `le` grows.
fn histogram_is_cumulative(family: &Family) {
    let bucket = format!("{}_bucket", family.name);
    let mut series: BTreeMap<Vec<&Label>, Vec<(f64, f64)>> = BTreeMap::new();
    for s in family.samples.iter().filter(|s| s.name == bucket) {
        let le = s.labels.iter().find(|(n, _)| n == "le");
        let le = le
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{bucket} without a numeric le: {:?}", s.labels));
        let rest = s.labels.iter().filter(|(n, _)| n != "le").collect();
        series.entry(rest).or_default().push((le, s.value));
    }
    for (labels, mut buckets) in series {
        // The standard sort, not the core's: this checks the core's output.
        #[allow(clippy::disallowed_methods)]
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            buckets.iter().any(|(le, _)| *le == f64::INFINITY),
            "{bucket}{labels:?} has no +Inf bucket"
        );
        // Not `b >= a`: the parser lets NaN counts through.
        assert!(
            buckets
                .windows(2)
                .all(|w| w[1].1.partial_cmp(&w[0].1) != Some(Ordering::Less)),
            "{bucket}{labels:?} decreases: {buckets:?}"
        );
    }
}

/// Writes the families back with the core's encoder and parses them again.
fn round_trip(families: &[Family]) {
    let text = encode(families);
    // Values are written out in full (`1e300` becomes 301 digits), so a body
    // near the size limit may outgrow it.
    if text.len() > MAX_BYTES {
        return;
    }
    let again =
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("re-encoded body refused: {e}\n{text}"));
    assert!(
        same_families(families, &again),
        "re-encoded body parses differently\nfirst: {families:?}\nagain: {again:?}\n{text}"
    );
}

fn encode(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families {
        let kind = kind_name(family.kind);
        match &family.help {
            Some(help) => header(&mut out, &family.name, help, kind),
            // `header` always writes HELP, which would turn "no help" into "".
            None => {
                let _ = writeln!(out, "# TYPE {} {kind}", family.name);
            }
        }
        for s in &family.samples {
            let labels: Vec<(&str, &str)> = s
                .labels
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            sample(&mut out, &s.name, &labels, s.value);
        }
    }
    out
}

fn same_families(a: &[Family], b: &[Family]) -> bool {
    let same_sample = |x: &Sample, y: &Sample| {
        x.name == y.name
            && x.labels == y.labels
            && (x.value.to_bits() == y.value.to_bits() || (x.value.is_nan() && y.value.is_nan()))
    };
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.kind == y.kind
                && x.help == y.help
                && x.samples.len() == y.samples.len()
                && x.samples
                    .iter()
                    .zip(&y.samples)
                    .all(|(s, t)| same_sample(s, t))
        })
}

fn belongs_to(name: &str, family: &Family) -> bool {
    let suffixes: &[&str] = match family.kind {
        Kind::Histogram => &["", "_bucket", "_sum", "_count"],
        Kind::Summary => &["", "_sum", "_count"],
        Kind::Counter | Kind::Gauge | Kind::Untyped => &[""],
    };
    suffixes
        .iter()
        .any(|suffix| name.strip_suffix(suffix) == Some(family.name.as_str()))
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("__")
}
