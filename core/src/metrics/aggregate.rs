//! Metrics summed across instances and pushers.
//!
//! Isolates cannot be scraped one by one and Spin keeps no state between
//! requests, so every instance sends its metric deltas to one aggregate,
//! and pushers (batch jobs, a web frontend) push groups in the
//! Pushgateway's way. The aggregate lives in SQL: a Durable Object's SQLite
//! on Workers (the adapter forwards [`Change`]s to it), Spin SQLite on Spin,
//! real SQLite in tests — one implementation, [`SqlAggregator`].
//!
//! Merge rules, per sample series (name and labels) across sources:
//! counters, histograms, summaries and untyped samples are summed; a gauge
//! keeps the value written last. Within a source, a delta adds to
//! counters and histograms and replaces gauges; a `PUT` replaces the group;
//! a `POST` replaces the families it names; a `DELETE` removes the group.
//! Series of pushed groups and every gauge expire when not written for the
//! TTL; the service's own counters and histograms (sources `api`, `web`)
//! are cumulative and never expire.

use std::collections::BTreeMap;
use std::fmt::Write;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::metrics::exposition::{self, Family, Kind, ParseError};
use crate::metrics::{escape_label_value, format_value, header};
use crate::ports::{PortError, Ports, Sql, SqlValue, Statement};
use crate::time::Timestamp;

/// Which exposition a series belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `GET /metrics`: the API's own metrics and pushed jobs.
    Api,
    /// `GET /api/metrics/prometheus`: Web Vitals and the `web` job's pushes.
    Web,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Web => "web",
        }
    }
}

/// How a change applies to its source's series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// An instance's delta: counters and histograms add, gauges replace.
    Add,
    /// `PUT`: the source's series become exactly the body's.
    ReplaceGroup,
    /// `POST`: the families in the body replace the source's same-named ones.
    ReplaceFamilies,
    /// `DELETE`: the source's series are removed.
    DeleteGroup,
}

/// One change to the aggregate, as sent to the aggregator (over HTTP to the
/// Durable Object on Workers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// `api`, `web` or `push:<grouping key>`.
    pub source: String,
    pub scope: Scope,
    pub mode: Mode,
    /// Prometheus text format 0.0.4 (empty for `DeleteGroup`).
    pub body: String,
    /// Labels added to every sample (a group's grouping labels).
    pub labels: Vec<(String, String)>,
    /// Unix seconds.
    pub at: i64,
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Invalid(ParseError),
    TypeConflict {
        family: String,
        stored: &'static str,
    },
    Storage(PortError),
}

impl From<PortError> for Refusal {
    fn from(e: PortError) -> Self {
        Self::Storage(e)
    }
}

/// The aggregate: where changes go and expositions come from.
#[async_trait(?Send)]
pub trait Aggregator {
    async fn apply(&self, change: &Change) -> Result<(), Refusal>;
    /// The merged exposition of `scope` at `now` (expired series dropped).
    async fn exposition(&self, scope: Scope, now: Timestamp) -> Result<String, PortError>;
}

pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
        Kind::Summary => "summary",
        Kind::Untyped => "untyped",
    }
}

/// Labels in exposition form, sorted by name: `a="x",b="y"`.
fn label_text(labels: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = labels.iter().collect();
    sorted.sort();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
        .collect::<Vec<_>>()
        .join(",")
}

const INSERT: &str = "INSERT INTO metric_series \
     (source, scope, family, kind, help, name, labels, le, value, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const ADD: &str = "INSERT INTO metric_series \
     (source, scope, family, kind, help, name, labels, le, value, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
     ON CONFLICT (source, name, labels, le) DO UPDATE SET \
     value = CASE WHEN excluded.kind = 'gauge' THEN excluded.value \
     ELSE metric_series.value + excluded.value END, \
     kind = excluded.kind, help = excluded.help, updated_at = excluded.updated_at";
const DELETE_SOURCE: &str = "DELETE FROM metric_series WHERE source = ?1";
const DELETE_FAMILY: &str = "DELETE FROM metric_series WHERE source = ?1 AND family = ?2";
const STORED_KIND: &str = "SELECT kind FROM metric_series WHERE scope = ?1 AND family = ?2 LIMIT 1";
const EXPIRE: &str = "DELETE FROM metric_series WHERE updated_at < ?1 \
     AND (kind = 'gauge' OR source NOT IN ('api', 'web'))";
const READ: &str = "SELECT family, kind, help, name, labels, le, value, updated_at \
     FROM metric_series WHERE scope = ?1";

/// The aggregate over an SQL port.
pub struct SqlAggregator<'a> {
    pub sql: &'a dyn Sql,
    /// Seconds after which an unwritten pushed series or gauge expires.
    pub ttl_secs: u32,
}

impl std::fmt::Debug for SqlAggregator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlAggregator")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

/// Every sample of `families` as a row, with `extra` labels (which win
/// over a sample's own labels of the same name).
fn rows<'f>(
    families: &'f [Family],
    extra: &[(String, String)],
) -> impl Iterator<Item = (&'f Family, &'f str, String, String, f64)> {
    let extra = extra.to_vec();
    families.iter().flat_map(move |family| {
        let extra = extra.clone();
        family.samples.iter().map(move |sample| {
            let mut labels: Vec<(String, String)> = sample
                .labels
                .iter()
                .filter(|(k, _)| k != "le" && !extra.iter().any(|(e, _)| e == k))
                .cloned()
                .collect();
            labels.extend(extra.iter().cloned());
            let le = sample
                .labels
                .iter()
                .find(|(k, _)| k == "le" && sample.name.ends_with("_bucket"))
                // One spelling per bound ("1.0" and "1" are the same bucket).
                .map(|(_, v)| v.parse::<f64>().map_or_else(|_| v.clone(), format_value))
                .unwrap_or_default();
            (
                family,
                sample.name.as_str(),
                label_text(&labels),
                le,
                sample.value,
            )
        })
    })
}

/// Refuses a body whose samples, once the group's labels are added and
/// bucket bounds spelled one way, name one series twice (a grouping label
/// that a sample also carries with another value, or `le="1"` next to
/// `le="1.0"`).
pub fn check_series(families: &[Family], extra: &[(String, String)]) -> Result<(), ParseError> {
    for family in families {
        for sample in &family.samples {
            if let Some((name, value)) = sample
                .labels
                .iter()
                .find(|(k, v)| extra.iter().any(|(e, ev)| e == k && ev != v))
            {
                return Err(ParseError {
                    line: 0,
                    message: format!(
                        "{} has {name}=\"{value}\" but the grouping key says otherwise",
                        sample.name
                    ),
                });
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (_, name, labels, le, _) in rows(families, extra) {
        if !seen.insert((name, labels.clone(), le.clone())) {
            return Err(ParseError {
                line: 0,
                message: format!("{name}{{{labels}}} le={le:?} appears twice"),
            });
        }
    }
    Ok(())
}

#[async_trait(?Send)]
impl Aggregator for SqlAggregator<'_> {
    async fn apply(&self, change: &Change) -> Result<(), Refusal> {
        let families = if change.mode == Mode::DeleteGroup {
            Vec::new()
        } else {
            exposition::parse(change.body.as_bytes()).map_err(Refusal::Invalid)?
        };
        check_series(&families, &change.labels).map_err(Refusal::Invalid)?;
        for family in &families {
            let stored = self
                .sql
                .execute(
                    STORED_KIND,
                    &[change.scope.as_str().into(), family.name.clone().into()],
                )
                .await?;
            if let Some(kind) = stored.rows.first().and_then(|r| r[0].as_text()) {
                let pushed = kind_name(family.kind);
                if kind != pushed {
                    let stored = [
                        Kind::Counter,
                        Kind::Gauge,
                        Kind::Histogram,
                        Kind::Summary,
                        Kind::Untyped,
                    ]
                    .into_iter()
                    .map(kind_name)
                    .find(|k| *k == kind)
                    .unwrap_or("untyped");
                    return Err(Refusal::TypeConflict {
                        family: family.name.clone(),
                        stored,
                    });
                }
            }
        }
        let source: SqlValue = change.source.clone().into();
        let mut statements = Vec::new();
        match change.mode {
            Mode::Add => {}
            Mode::ReplaceGroup | Mode::DeleteGroup => {
                statements.push(Statement::new(DELETE_SOURCE, vec![source.clone()]));
            }
            Mode::ReplaceFamilies => {
                for family in &families {
                    statements.push(Statement::new(
                        DELETE_FAMILY,
                        vec![source.clone(), family.name.clone().into()],
                    ));
                }
            }
        }
        let insert = if change.mode == Mode::Add {
            ADD
        } else {
            INSERT
        };
        for (family, name, labels, le, value) in rows(&families, &change.labels) {
            statements.push(Statement::new(
                insert,
                vec![
                    source.clone(),
                    change.scope.as_str().into(),
                    family.name.clone().into(),
                    kind_name(family.kind).into(),
                    family.help.clone().into(),
                    name.into(),
                    labels.into(),
                    le.into(),
                    SqlValue::Real(value),
                    change.at.into(),
                ],
            ));
        }
        if statements.is_empty() {
            return Ok(());
        }
        self.sql.batch(&statements).await.map_err(Refusal::Storage)
    }

    async fn exposition(&self, scope: Scope, now: Timestamp) -> Result<String, PortError> {
        let cutoff = now.as_unix_secs() - i64::from(self.ttl_secs);
        self.sql.execute(EXPIRE, &[cutoff.into()]).await?;
        let rows = self.sql.execute(READ, &[scope.as_str().into()]).await?;
        Ok(encode(&merge(&rows.rows)))
    }
}

/// One merged series.
#[derive(Debug, Clone, Copy)]
struct Merged {
    value: f64,
    updated_at: i64,
}

struct FamilyOut {
    kind: String,
    help: Option<String>,
    /// (labels, suffix rank, le, name) → value
    samples: BTreeMap<(String, u8, OrderedLe, String), Merged>,
}

/// A bucket bound that sorts numerically (`+Inf` last).
#[derive(Debug, Clone, PartialEq)]
struct OrderedLe(String);

impl Eq for OrderedLe {}

impl PartialOrd for OrderedLe {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedLe {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let num = |s: &str| s.parse::<f64>().unwrap_or(f64::NEG_INFINITY);
        num(&self.0)
            .total_cmp(&num(&other.0))
            .then_with(|| self.0.cmp(&other.0))
    }
}

fn suffix_rank(family: &str, name: &str) -> u8 {
    match name.strip_prefix(family) {
        Some("_sum") => 1,
        Some("_count") => 2,
        _ => 0,
    }
}

#[allow(clippy::cast_precision_loss)]
fn merge(rows: &[Vec<SqlValue>]) -> BTreeMap<String, FamilyOut> {
    let mut families: BTreeMap<String, FamilyOut> = BTreeMap::new();
    for row in rows {
        let [
            SqlValue::Text(family),
            SqlValue::Text(kind),
            help,
            SqlValue::Text(name),
            SqlValue::Text(labels),
            SqlValue::Text(le),
            value,
            updated_at,
        ] = row.as_slice()
        else {
            continue;
        };
        let value = match value {
            SqlValue::Real(v) => *v,
            SqlValue::Integer(v) => *v as f64,
            _ => continue,
        };
        let updated_at = updated_at.as_integer().unwrap_or(0);
        let out = families.entry(family.clone()).or_insert_with(|| FamilyOut {
            kind: kind.clone(),
            help: None,
            samples: BTreeMap::new(),
        });
        if out.help.is_none() {
            out.help = help.as_text().map(str::to_owned);
        }
        let key = (
            labels.clone(),
            suffix_rank(family, name),
            OrderedLe(le.clone()),
            name.clone(),
        );
        let gauge = kind == "gauge";
        out.samples
            .entry(key)
            .and_modify(|m| {
                if gauge {
                    if updated_at >= m.updated_at {
                        *m = Merged { value, updated_at };
                    }
                } else {
                    m.value += value;
                    m.updated_at = m.updated_at.max(updated_at);
                }
            })
            .or_insert(Merged { value, updated_at });
    }
    families
}

fn encode(families: &BTreeMap<String, FamilyOut>) -> String {
    let mut out = String::new();
    for (name, family) in families {
        let help = family.help.as_deref().unwrap_or("Pushed metric.");
        header(&mut out, name, help, &family.kind);
        for ((labels, _, le, sample), merged) in &family.samples {
            out.push_str(sample);
            let mut all = labels.clone();
            if !le.0.is_empty() {
                if !all.is_empty() {
                    all.push(',');
                }
                let _ = write!(all, "le=\"{}\"", escape_label_value(&le.0));
            }
            if !all.is_empty() {
                out.push('{');
                out.push_str(&all);
                out.push('}');
            }
            out.push(' ');
            out.push_str(&format_value(merged.value));
            out.push('\n');
        }
    }
    out
}

/// The aggregate a request or job writes to: the platform's service when
/// it wires one (`Ports::aggregator`), else the SQL store.
#[derive(Debug)]
pub enum Store<'a> {
    Remote(remote::Client<'a>),
    Sql(SqlAggregator<'a>),
}

impl<'a> Store<'a> {
    pub fn of(ports: &Ports<'a>, ttl_secs: u32) -> Option<Self> {
        match (ports.aggregator, ports.sql) {
            (Some(service), _) => Some(Self::Remote(remote::Client(service))),
            (None, Some(sql)) => Some(Self::Sql(SqlAggregator { sql, ttl_secs })),
            (None, None) => None,
        }
    }
}

#[async_trait(?Send)]
impl Aggregator for Store<'_> {
    async fn apply(&self, change: &Change) -> Result<(), Refusal> {
        match self {
            Self::Remote(client) => client.apply(change).await,
            Self::Sql(sql) => sql.apply(change).await,
        }
    }

    async fn exposition(&self, scope: Scope, now: Timestamp) -> Result<String, PortError> {
        match self {
            Self::Remote(client) => client.exposition(scope, now).await,
            Self::Sql(sql) => sql.exposition(scope, now).await,
        }
    }
}

/// Sends an instance's deltas; a failure is logged (that delta is lost,
/// the aggregate stays valid).
pub async fn apply_all(aggregator: &dyn Aggregator, changes: Vec<Change>) {
    for change in changes {
        if let Err(e) = aggregator.apply(&change).await {
            tracing::warn!(target: "tepi::metrics", error = ?e, "metrics flush failed");
        }
    }
}

/// The aggregate behind HTTP: the Durable Object that holds it on Workers
/// answers [`remote::serve`]; [`remote::Client`] speaks to it through the
/// `aggregator` port (the object's stub).
pub mod remote {
    use bytes::Bytes;
    use http::{Method, Request, Response, StatusCode};
    use serde_json::json;

    use async_trait::async_trait;

    use super::{Aggregator, Change, Refusal, Scope, SqlAggregator};
    use crate::metrics::exposition::ParseError;
    use crate::ports::{HttpClient, PortError, Sql};
    use crate::time::Timestamp;

    /// The origin requests to the service are addressed to.
    pub const ORIGIN: &str = "https://aggregate.internal";

    /// The aggregate in a service reached over HTTP.
    pub struct Client<'a>(pub &'a dyn HttpClient);

    impl std::fmt::Debug for Client<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("remote::Client")
        }
    }

    #[async_trait(?Send)]
    impl Aggregator for Client<'_> {
        async fn apply(&self, change: &Change) -> Result<(), Refusal> {
            let (path, body) = apply_request(change);
            let request = Request::post(format!("{ORIGIN}{path}"))
                .body(Bytes::from(body))
                .map_err(|e| Refusal::Storage(PortError(e.to_string())))?;
            match self.0.send(request).await {
                Ok(answer) if answer.status() == StatusCode::NO_CONTENT => Ok(()),
                Ok(answer) => Err(refusal(answer.status().as_u16(), answer.body())),
                Err(e) => Err(Refusal::Storage(e)),
            }
        }

        async fn exposition(&self, scope: Scope, now: Timestamp) -> Result<String, PortError> {
            let request = Request::get(format!("{ORIGIN}{}", exposition_path(scope, now)))
                .body(Bytes::new())
                .map_err(|e| PortError(e.to_string()))?;
            let answer = self.0.send(request).await?;
            let text = String::from_utf8_lossy(answer.body()).into_owned();
            if answer.status() == StatusCode::OK {
                Ok(text)
            } else {
                Err(PortError(format!(
                    "aggregator answered {}: {text}",
                    answer.status()
                )))
            }
        }
    }

    pub const APPLY_PATH: &str = "/apply";
    pub const EXPOSITION_PATH: &str = "/exposition";

    /// `POST /apply` with the change as JSON.
    pub fn apply_request(change: &Change) -> (String, String) {
        (
            APPLY_PATH.to_owned(),
            serde_json::to_string(change).unwrap_or_default(),
        )
    }

    /// `GET /exposition?scope=…&at=…`.
    pub fn exposition_path(scope: Scope, now: Timestamp) -> String {
        format!(
            "{EXPOSITION_PATH}?scope={}&at={}",
            scope.as_str(),
            now.as_unix_secs()
        )
    }

    /// The refusal an answer other than 204 stands for.
    pub fn refusal(status: u16, body: &[u8]) -> Refusal {
        let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        match status {
            400 => Refusal::Invalid(ParseError {
                line: value["line"]
                    .as_u64()
                    .and_then(|l| usize::try_from(l).ok())
                    .unwrap_or(0),
                message: value["message"].as_str().unwrap_or("invalid").to_owned(),
            }),
            409 => {
                let stored = value["stored"].as_str().unwrap_or("");
                Refusal::TypeConflict {
                    family: value["family"].as_str().unwrap_or("").to_owned(),
                    stored: ["counter", "gauge", "histogram", "summary", "untyped"]
                        .into_iter()
                        .find(|k| *k == stored)
                        .unwrap_or("untyped"),
                }
            }
            _ => Refusal::Storage(PortError(format!(
                "aggregator answered {status}: {}",
                String::from_utf8_lossy(body)
            ))),
        }
    }

    fn answer(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
        let mut response = Response::new(body.into());
        *response.status_mut() = status;
        response
    }

    /// The object's side: applies changes and renders expositions over its
    /// own SQL storage (created by `storage::migrate_metrics`).
    pub async fn serve(sql: &dyn Sql, ttl_secs: u32, req: &Request<Bytes>) -> Response<Bytes> {
        let aggregator = SqlAggregator { sql, ttl_secs };
        match (req.method(), req.uri().path()) {
            (&Method::POST, APPLY_PATH) => {
                let Ok(change) = serde_json::from_slice::<Change>(req.body()) else {
                    return answer(
                        StatusCode::BAD_REQUEST,
                        r#"{"line":0,"message":"not a change"}"#,
                    );
                };
                match aggregator.apply(&change).await {
                    Ok(()) => answer(StatusCode::NO_CONTENT, Bytes::new()),
                    Err(Refusal::Invalid(e)) => answer(
                        StatusCode::BAD_REQUEST,
                        json!({"line": e.line, "message": e.message}).to_string(),
                    ),
                    Err(Refusal::TypeConflict { family, stored }) => answer(
                        StatusCode::CONFLICT,
                        json!({"family": family, "stored": stored}).to_string(),
                    ),
                    Err(Refusal::Storage(e)) => answer(StatusCode::SERVICE_UNAVAILABLE, e.0),
                }
            }
            (&Method::GET, EXPOSITION_PATH) => {
                let query = req.uri().query().unwrap_or("");
                let pairs = crate::api::response::query_pairs(query);
                let get = |name: &str| {
                    pairs
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.as_str())
                };
                let scope = if get("scope") == Some("web") {
                    Scope::Web
                } else {
                    Scope::Api
                };
                let at = get("at").and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
                match aggregator
                    .exposition(scope, Timestamp::from_unix_micros(at * 1_000_000))
                    .await
                {
                    Ok(text) => answer(StatusCode::OK, text),
                    Err(e) => answer(StatusCode::SERVICE_UNAVAILABLE, e.0),
                }
            }
            _ => answer(StatusCode::NOT_FOUND, Bytes::new()),
        }
    }
}

#[cfg(test)]
mod tests;
