//! A strict parser of the Prometheus text format 0.0.4, for metrics that
//! clients push. Anything the format does not allow — or that Tepi refuses
//! to aggregate — is an error naming the line: timestamps, a `# TYPE` that
//! conflicts or comes after the family's samples, malformed names, labels,
//! escapes or values, duplicate series, histogram buckets that are not
//! cumulative, and bodies over the size limit.

use std::collections::BTreeMap;

/// Largest body accepted, in bytes.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Most samples in one body.
pub const MAX_SAMPLES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl Kind {
    fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "summary" => Self::Summary,
            "untyped" => Self::Untyped,
            _ => return None,
        })
    }
}

/// A label set, sorted by name.
pub type Labels = Vec<(String, String)>;
/// Where each series (name and labels) was first seen.
type SeriesLines = BTreeMap<(String, Labels), usize>;

/// One sample: the full series name (e.g. `x_bucket`), its labels, sorted
/// by name, and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A metric family: its base name, type, help and samples in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: Kind,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

/// Why a body was refused: the 1-based line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

fn fail<T>(line: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line,
        message: message.into(),
    })
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with the reserved `__`.
pub(crate) fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// `+Inf`, `-Inf`, `NaN` or a decimal number.
pub fn parse_value(raw: &str) -> Option<f64> {
    match raw {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if raw
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E')) =>
        {
            raw.parse().ok()
        }
        _ => None,
    }
}

/// The `{…}` label set at the start of `rest`; returns labels and the rest.
fn parse_labels(rest: &str, line: usize) -> Result<(Labels, &str), ParseError> {
    let Some(mut s) = rest.strip_prefix('{') else {
        return Ok((Vec::new(), rest));
    };
    let mut labels: Labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            crate::sort::sort(&mut labels);
            return Ok((labels, after));
        }
        let eq = s
            .find('=')
            .map_or_else(|| fail(line, "a label without '='"), Ok)?;
        let name = s[..eq].trim();
        if !valid_label_name(name) {
            return fail(line, format!("invalid label name {name:?}"));
        }
        if labels.iter().any(|(n, _)| n == name) {
            return fail(line, format!("label {name:?} appears twice"));
        }
        let Some(after_quote) = s[eq + 1..].trim_start().strip_prefix('"') else {
            return fail(line, format!("the value of label {name:?} is not quoted"));
        };
        let mut value = String::new();
        let mut chars = after_quote.char_indices();
        let end = loop {
            match chars.next() {
                None => return fail(line, format!("the value of label {name:?} is not closed")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return fail(line, format!("an invalid escape in label {name:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        s = after_quote[end + 1..].trim_start();
        if let Some(after_comma) = s.strip_prefix(',') {
            s = after_comma;
        } else if !s.starts_with('}') {
            return fail(line, "labels must be separated by ','");
        }
    }
}

/// The family a sample name belongs to: `x_bucket`, `x_sum`, `x_count` of
/// a histogram `x`, `x_sum`/`x_count` of a summary, else the name itself.
fn family_of<'a>(name: &'a str, kinds: &BTreeMap<String, Kind>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            match kinds.get(base) {
                Some(Kind::Histogram) => return base,
                Some(Kind::Summary) if suffix != "_bucket" => return base,
                _ => {}
            }
        }
    }
    name
}

/// Why `name` cannot be a family of its own: it is a sample name of a
/// histogram or summary declared before (`x_bucket` next to histogram `x`).
fn sample_name_of(families: &[Family], name: &str) -> Option<String> {
    families.iter().find_map(|f| {
        let (suffixes, kind): (&[&str], &str) = match f.kind {
            Kind::Histogram => (&["_bucket", "_sum", "_count"], "histogram"),
            Kind::Summary => (&["_sum", "_count"], "summary"),
            _ => return None,
        };
        suffixes
            .iter()
            .any(|suffix| name.strip_suffix(suffix) == Some(f.name.as_str()))
            .then(|| format!("{name} is a sample name of the {kind} {}", f.name))
    })
}

/// The samples of the server's own exposition whose name `wanted` accepts,
/// read line by line without [`parse`]'s limits and family checks (the
/// aggregate's text can be larger than a push may be); a line that does not
/// read as a sample is skipped.
pub fn samples<'t>(
    text: &'t str,
    wanted: impl Fn(&str) -> bool + 't,
) -> impl Iterator<Item = Sample> + 't {
    text.lines().filter_map(move |raw| {
        let line = raw.trim();
        if line.starts_with('#') {
            return None;
        }
        let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
        let name = &line[..name_end];
        if !wanted(name) {
            return None;
        }
        let (labels, rest) = parse_labels(&line[name_end..], 0).ok()?;
        let value = parse_value(rest.split_whitespace().next()?)?;
        Some(Sample {
            name: name.to_owned(),
            labels,
            value,
        })
    })
}

/// Parses a whole body.
#[allow(clippy::too_many_lines)]
pub fn parse(body: &[u8]) -> Result<Vec<Family>, ParseError> {
    if body.len() > MAX_BYTES {
        return fail(0, format!("the body is larger than {MAX_BYTES} bytes"));
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return fail(0, "the body is not UTF-8");
    };
    let mut families: Vec<Family> = Vec::new();
    let mut kinds: BTreeMap<String, Kind> = BTreeMap::new();
    let mut seen_series: SeriesLines = BTreeMap::new();
    let mut samples = 0;
    let index_of = |families: &mut Vec<Family>, name: &str, kind: Kind| -> usize {
        if let Some(i) = families.iter().position(|f| f.name == name) {
            i
        } else {
            families.push(Family {
                name: name.to_owned(),
                kind,
                help: None,
                samples: Vec::new(),
            });
            families.len() - 1
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !valid_metric_name(name) {
                        return fail(line, format!("invalid metric name {name:?}"));
                    }
                    let Some(kind) = Kind::parse(kind.trim()) else {
                        return fail(line, format!("unknown type {:?}", kind.trim()));
                    };
                    if kinds.contains_key(name) {
                        return fail(line, format!("a second TYPE for {name}"));
                    }
                    // Its own samples, or (histograms and summaries) the
                    // `_bucket`/`_sum`/`_count` samples it would claim.
                    let claimed = |sample: &str| {
                        sample == name
                            || (matches!(kind, Kind::Histogram | Kind::Summary)
                                && ["_bucket", "_sum", "_count"]
                                    .iter()
                                    .any(|suffix| sample.strip_suffix(suffix) == Some(name)))
                    };
                    if families
                        .iter()
                        .any(|f| f.samples.iter().any(|s| claimed(&s.name)))
                    {
                        return fail(line, format!("TYPE for {name} after its samples"));
                    }
                    // A histogram or summary may not take the name of a
                    // family declared before as its own sample name.
                    if matches!(kind, Kind::Histogram | Kind::Summary)
                        && let Some(taken) =
                            families.iter().find(|f| f.name != name && claimed(&f.name))
                    {
                        return fail(
                            line,
                            format!("{} is already a family; {name} cannot claim it", taken.name),
                        );
                    }
                    // Nor may it be a sample name of a histogram or summary
                    // already declared (`x_bucket` next to histogram `x`).
                    if let Some(message) = sample_name_of(&families, name) {
                        return fail(line, message);
                    }
                    kinds.insert(name.to_owned(), kind);
                    let at = index_of(&mut families, name, kind);
                    families[at].kind = kind;
                }
                (Some("HELP"), Some(name), help) => {
                    if !valid_metric_name(name) {
                        return fail(line, format!("invalid metric name {name:?}"));
                    }
                    if let Some(message) = sample_name_of(&families, name) {
                        return fail(line, message);
                    }
                    let at = index_of(&mut families, name, Kind::Untyped);
                    if families[at].help.is_some() {
                        return fail(line, format!("a second HELP for {name}"));
                    }
                    families[at].help = Some(
                        help.unwrap_or("")
                            .replace("\\n", "\n")
                            .replace("\\\\", "\\"),
                    );
                }
                _ => {} // other comments are allowed
            }
            continue;
        }
        let name_end = trimmed
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or(trimmed.len());
        let name = &trimmed[..name_end];
        if !valid_metric_name(name) {
            return fail(line, format!("invalid metric name {name:?}"));
        }
        let (labels, rest) = parse_labels(&trimmed[name_end..], line)?;
        let mut fields = rest.split_whitespace();
        let Some(value) = fields.next() else {
            return fail(line, format!("{name} has no value"));
        };
        if fields.next().is_some() {
            return fail(
                line,
                "timestamps are not accepted (the server stamps samples)",
            );
        }
        let Some(value) = parse_value(value) else {
            return fail(line, format!("{value:?} is not a number"));
        };
        let family = family_of(name, &kinds).to_owned();
        let kind = kinds.get(&family).copied().unwrap_or(Kind::Untyped);
        if kind == Kind::Counter && (value < 0.0 || value.is_nan()) {
            return fail(
                line,
                format!("counter {name} must be a non-negative number"),
            );
        }
        if seen_series
            .insert((name.to_owned(), labels.clone()), line)
            .is_some()
        {
            return fail(line, format!("{name} with these labels appears twice"));
        }
        samples += 1;
        if samples > MAX_SAMPLES {
            return fail(line, format!("more than {MAX_SAMPLES} samples"));
        }
        let at = index_of(&mut families, &family, kind);
        families[at].samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    for family in families.iter().filter(|f| f.kind == Kind::Histogram) {
        check_histogram(family, &seen_series)?;
    }
    Ok(families)
}

/// Buckets of each histogram series need `le`, a `+Inf` bucket equal to
/// `_count`, and counts that never decrease as `le` grows.
fn check_histogram(family: &Family, lines: &SeriesLines) -> Result<(), ParseError> {
    let bucket_name = format!("{}_bucket", family.name);
    let count_name = format!("{}_count", family.name);
    // Per series (labels but le): (le, count, line) of each bucket.
    let mut series: BTreeMap<Labels, Vec<(f64, f64, usize)>> = BTreeMap::new();
    for sample in family.samples.iter().filter(|s| s.name == bucket_name) {
        let line = lines[&(sample.name.clone(), sample.labels.clone())];
        let Some(le) = sample
            .labels
            .iter()
            .find(|(n, _)| n == "le")
            .and_then(|(_, v)| parse_value(v))
        else {
            return fail(line, format!("{bucket_name} needs a numeric le label"));
        };
        let rest: Vec<(String, String)> = sample
            .labels
            .iter()
            .filter(|(n, _)| n != "le")
            .cloned()
            .collect();
        series
            .entry(rest)
            .or_default()
            .push((le, sample.value, line));
    }
    for (labels, mut buckets) in series {
        crate::sort::sort_by(&mut buckets, |a, b| a.0.total_cmp(&b.0));
        for pair in buckets.windows(2) {
            if pair[1].1 < pair[0].1 {
                return fail(
                    pair[1].2,
                    format!("{bucket_name} counts decrease as le grows"),
                );
            }
        }
        let (le, inf_count, line) = *buckets.last().expect("a series has a bucket");
        if le != f64::INFINITY {
            return fail(line, format!("{bucket_name} lacks its le=\"+Inf\" bucket"));
        }
        if let Some(count) = family
            .samples
            .iter()
            .find(|s| s.name == count_name && s.labels == labels)
            && (count.value - inf_count).abs() > f64::EPSILON
        {
            return fail(
                line,
                format!(
                    "the +Inf bucket of {} differs from {count_name}",
                    family.name
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_body_parses_into_families() {
        let body = b"# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total{queue=\"a\"} 3\njobs_total{queue=\"b\",kind=\"x\\\"y\"} 4\n\
# TYPE lag_seconds histogram\nlag_seconds_bucket{le=\"0.5\"} 1\nlag_seconds_bucket{le=\"+Inf\"} 2\nlag_seconds_sum 1.5\nlag_seconds_count 2\n\
temperature 21.5\n";
        let families = parse(body).unwrap();
        let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["jobs_total", "lag_seconds", "temperature"]);
        assert_eq!(families[0].help.as_deref(), Some("Jobs done."));
        assert_eq!(
            families[0].samples[1].labels,
            vec![("kind".into(), "x\"y".into()), ("queue".into(), "b".into())]
        );
        assert_eq!(families[1].kind, Kind::Histogram);
        assert_eq!(families[1].samples.len(), 4);
        assert_eq!(families[2].kind, Kind::Untyped);
    }

    #[test]
    fn refusals_name_the_line_and_the_problem() {
        let cases: [(&[u8], usize, &str); 18] = [
            (b"x 1 1700000000000\n", 1, "timestamps"),
            (b"h_sum 1\n# TYPE h summary\n", 2, "after its samples"),
            (
                b"# TYPE h histogram\n# TYPE h_bucket counter\n",
                2,
                "sample name of the histogram h",
            ),
            (
                b"# TYPE h_count counter\n# TYPE h summary\n",
                2,
                "already a family",
            ),
            (
                b"# TYPE h summary\n# HELP h_sum Help.\n",
                2,
                "sample name of the summary h",
            ),
            (b"# TYPE x counter\n# TYPE x gauge\n", 2, "second TYPE"),
            (b"x 1\n# TYPE x counter\n", 2, "after its samples"),
            (b"# TYPE x colour\n", 1, "unknown type"),
            (b"1x 1\n", 1, "invalid metric name"),
            (b"x{a=1} 1\n", 1, "not quoted"),
            (b"x{a=\"1} 1\n", 1, "not closed"),
            (b"x{a=\"\\t\"} 1\n", 1, "invalid escape"),
            (b"x{a=\"1\",a=\"2\"} 1\n", 1, "twice"),
            (b"x{__name__=\"y\"} 1\n", 1, "invalid label name"),
            (b"x one\n", 1, "not a number"),
            (b"x 1\nx 2\n", 2, "appears twice"),
            (b"# TYPE c counter\nc -1\n", 2, "non-negative"),
            (
                b"# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"+Inf\"} 3\nh_count 3\n",
                3,
                "decrease",
            ),
        ];
        for (body, line, fragment) in cases {
            let err = parse(body).expect_err(fragment);
            assert_eq!(err.line, line, "{fragment}: {err}");
            assert!(err.message.contains(fragment), "{fragment}: {err}");
        }
    }

    #[test]
    fn histograms_need_an_inf_bucket_matching_their_count() {
        let no_inf = b"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n";
        assert!(parse(no_inf).unwrap_err().message.contains("+Inf"));
        let mismatch = b"# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n";
        assert!(parse(mismatch).unwrap_err().message.contains("differs"));
        let no_le = b"# TYPE h histogram\nh_bucket 1\n";
        assert!(parse(no_le).unwrap_err().message.contains("le label"));
    }

    #[test]
    fn oversized_and_non_utf8_bodies_are_refused() {
        let big = vec![b'#'; MAX_BYTES + 1];
        assert!(parse(&big).unwrap_err().message.contains("larger than"));
        assert!(parse(&[0xff, 0xfe]).unwrap_err().message.contains("UTF-8"));
        let many = (0..=MAX_SAMPLES).fold(String::new(), |mut out, i| {
            use std::fmt::Write;
            let _ = writeln!(out, "m{{i=\"{i}\"}} 1");
            out
        });
        assert!(
            parse(many.as_bytes())
                .unwrap_err()
                .message
                .contains("samples")
        );
    }

    #[test]
    fn the_core_exposition_parses_back() {
        let mut metrics = crate::metrics::HttpMetrics::default();
        metrics.record("GET", "/v1/users/{id}", 200, 12.0);
        metrics.record("GET", "/v1/users/{id}", 404, 350.0);
        metrics.record_rate_limited("api");
        let text = metrics.encode();
        let families = parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(
            families
                .iter()
                .any(|f| f.name == "http_request_duration_ms" && f.kind == Kind::Histogram)
        );
    }
}
