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
use crate::metrics::limits::{Exceeded, Limit, PushLimits};
use crate::metrics::push::PUSHER_LABEL;
use crate::metrics::{MetricsConfig, escape_label_value, format_value, header};
use crate::ports::{HttpClient, PortError, Ports, Sql, SqlValue, Statement};
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
    /// The API key or user that pushed it (`None` for an instance's own
    /// deltas): the budgets per pusher count its groups.
    #[serde(default)]
    pub pusher: Option<String>,
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Invalid(ParseError),
    TypeConflict {
        family: String,
        stored: &'static str,
    },
    /// A family whose sample names would be another family's
    /// (`x_count` next to a histogram `x`).
    NameCollision {
        family: String,
        other: String,
    },
    /// A series budget would be exceeded.
    Quota(Exceeded),
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
    /// Keeps `point` as the snapshot of `minute` (Unix seconds / 60) unless
    /// one is kept already — the first writer wins — and forgets the
    /// minutes before `oldest`.
    async fn record_minute(&self, minute: i64, point: &str, oldest: i64) -> Result<(), PortError>;
    /// The snapshots of the minutes from `since` on, oldest first.
    async fn minutes(&self, since: i64) -> Result<Vec<String>, PortError>;
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
    crate::sort::sort(&mut sorted);
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
/// Rows per multi-row `ADD`: 10 parameters each, and the core keeps every
/// statement within D1's 100 bound parameters wherever it runs.
const ADD_ROWS_PER_STATEMENT: usize = 10;

/// `ADD` for `rows` rows: `VALUES (…), (…), …` with the same conflict rule.
/// Rows of one statement that meet the same series add up, as separate
/// statements would.
fn add_rows(rows: usize) -> String {
    let (head, rest) = ADD.split_once(" VALUES ").unwrap_or((ADD, ""));
    let conflict = rest.find(" ON CONFLICT").map_or("", |at| &rest[at..]);
    let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let mut sql = String::with_capacity(head.len() + conflict.len() + rows * (row.len() + 2) + 8);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql.push_str(conflict);
    sql
}

const DELETE_SOURCE: &str = "DELETE FROM metric_series WHERE source = ?1";
const DELETE_GROUP: &str = "DELETE FROM metric_groups WHERE source = ?1";
const UPSERT_GROUP: &str = "INSERT INTO metric_groups (source, pusher, updated_at) \
     VALUES (?1, ?2, ?3) ON CONFLICT (source) DO UPDATE SET \
     pusher = excluded.pusher, updated_at = excluded.updated_at";
/// Every family of a scope with its type, and whether all of its series
/// belong to source `?2`.
const SCOPE_FAMILIES: &str = "SELECT family, MIN(kind), MIN(source = ?2) \
     FROM metric_series WHERE scope = ?1 GROUP BY family";
const GROUP_SERIES: &str =
    "SELECT family, COUNT(*) FROM metric_series WHERE source = ?1 GROUP BY family";
const TOTAL_SERIES: &str = "SELECT COUNT(*) FROM metric_series";
const PUSHER_GROUPS: &str = "SELECT source FROM metric_groups WHERE pusher = ?1";
const PUSHER_SERIES: &str = "SELECT COUNT(*) FROM metric_series WHERE source IN \
     (SELECT source FROM metric_groups WHERE pusher = ?1 AND source <> ?2)";
const EXPIRE_GROUPS: &str = "DELETE FROM metric_groups WHERE updated_at < ?1";
const DELETE_FAMILY: &str = "DELETE FROM metric_series WHERE source = ?1 AND family = ?2";
const EXPIRE: &str = "DELETE FROM metric_series WHERE updated_at < ?1 \
     AND (kind = 'gauge' OR source NOT IN ('api', 'web'))";
const RECORD_MINUTE: &str = "INSERT OR IGNORE INTO metric_minutes (minute, point) VALUES (?1, ?2)";
const FORGET_MINUTES: &str = "DELETE FROM metric_minutes WHERE minute < ?1";
const MINUTES: &str = "SELECT point FROM metric_minutes WHERE minute >= ?1 ORDER BY minute";
const READ: &str = "SELECT family, kind, help, name, labels, le, value, updated_at \
     FROM metric_series WHERE scope = ?1";

/// The aggregate over an SQL port.
pub struct SqlAggregator<'a> {
    pub sql: &'a dyn Sql,
    /// The TTL after which an unwritten pushed series or gauge expires,
    /// and the push limits.
    pub config: MetricsConfig,
}

impl std::fmt::Debug for SqlAggregator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlAggregator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Every sample name a family of `kind` may expose.
fn derived_names(family: &str, kind: &str) -> Vec<String> {
    let suffixes: &[&str] = match kind {
        "histogram" => &["_bucket", "_sum", "_count"],
        "summary" => &["_sum", "_count"],
        _ => &[],
    };
    std::iter::once(family.to_owned())
        .chain(suffixes.iter().map(|s| format!("{family}{s}")))
        .collect()
}

/// The stored family other than `family` whose names overlap `family`'s.
fn collision<'s>(
    family: &str,
    kind: &str,
    others: impl Iterator<Item = (&'s str, &'s str)>,
) -> Option<&'s str> {
    let mine = derived_names(family, kind);
    others
        .filter(|(other, _)| *other != family)
        .find(|(other, other_kind)| {
            derived_names(other, other_kind)
                .iter()
                .any(|n| mine.contains(n))
        })
        .map(|(other, _)| other)
}

/// A value as stored: numbers as REAL, `NaN` and `±Inf` as their text
/// (SQLite stores a NaN REAL as NULL; the column keeps text as text).
fn stored_value(value: f64) -> SqlValue {
    if value.is_finite() {
        SqlValue::Real(value)
    } else {
        SqlValue::Text(format_value(value))
    }
}

fn integer(rows: &crate::ports::Rows) -> u64 {
    rows.rows
        .first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_integer)
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

/// Every sample of `families` as a row, with `extra` labels (which win
/// over a sample's own labels of the same name). A pushed sample's own
/// `instance` label is dropped (`pushed`): it tells pushers apart and is
/// never exposed. The service's own samples keep theirs.
fn rows<'f>(
    families: &'f [Family],
    extra: &[(String, String)],
    pushed: bool,
) -> impl Iterator<Item = (&'f Family, &'f str, String, String, f64)> {
    let extra = extra.to_vec();
    families.iter().flat_map(move |family| {
        let extra = extra.clone();
        family.samples.iter().map(move |sample| {
            let mut labels: Vec<(String, String)> = sample
                .labels
                .iter()
                .filter(|(k, _)| {
                    k != "le"
                        && !(pushed && k == PUSHER_LABEL)
                        && !extra.iter().any(|(e, _)| e == k)
                })
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
/// `le="1.0"`, or two pushed samples that differ only in `instance`).
pub fn check_series(
    families: &[Family],
    extra: &[(String, String)],
    pushed: bool,
) -> Result<(), ParseError> {
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
    // Sorted, a repeated series sits next to itself (a sorted list rather
    // than a set: no B-tree code of its own in the build).
    let mut series: Vec<(&str, String, String)> = rows(families, extra, pushed)
        .map(|(_, name, labels, le, _)| (name, labels, le))
        .collect();
    crate::sort::sort(&mut series);
    match series.windows(2).find(|pair| pair[0] == pair[1]) {
        Some(pair) => {
            let (name, labels, le) = &pair[0];
            Err(ParseError {
                line: 0,
                message: format!("{name}{{{labels}}} le={le:?} appears twice"),
            })
        }
        None => Ok(()),
    }
}

impl SqlAggregator<'_> {
    /// Refuses a push whose families take a type another group stored, or
    /// whose sample names would be another family's.
    async fn check_names(&self, change: &Change, families: &[Family]) -> Result<(), Refusal> {
        let stored = self
            .sql
            .execute(
                SCOPE_FAMILIES,
                &[change.scope.as_str().into(), change.source.clone().into()],
            )
            .await?;
        // (family, kind, whether only this source holds it)
        let stored: Vec<(&str, &str, bool)> = stored
            .rows
            .iter()
            .filter_map(|r| match r.as_slice() {
                [SqlValue::Text(f), SqlValue::Text(k), own] => {
                    Some((f.as_str(), k.as_str(), own.as_integer() == Some(1)))
                }
                _ => None,
            })
            .collect();
        for family in families {
            let pushed = kind_name(family.kind);
            if let Some((_, kind, _)) = stored.iter().find(|(f, _, _)| *f == family.name)
                && *kind != pushed
            {
                let stored = [
                    Kind::Counter,
                    Kind::Gauge,
                    Kind::Histogram,
                    Kind::Summary,
                    Kind::Untyped,
                ]
                .into_iter()
                .map(kind_name)
                .find(|k| k == kind)
                .unwrap_or("untyped");
                return Err(Refusal::TypeConflict {
                    family: family.name.clone(),
                    stored,
                });
            }
            // A group's own families go when a PUT replaces it.
            let others = stored
                .iter()
                .filter(|(_, _, own)| !(change.mode == Mode::ReplaceGroup && *own))
                .map(|(f, k, _)| (*f, *k))
                .chain(
                    families
                        .iter()
                        .map(|f| (f.name.as_str(), kind_name(f.kind))),
                );
            if let Some(other) = collision(&family.name, pushed, others) {
                return Err(Refusal::NameCollision {
                    family: family.name.clone(),
                    other: other.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Refuses a push that would take its group, its pusher or the whole
    /// aggregate beyond a series budget. Only series a push adds count:
    /// replacing a group with as many series always succeeds.
    async fn check_budgets(
        &self,
        change: &Change,
        families: &[Family],
        new_series: u64,
    ) -> Result<(), Refusal> {
        let limits: &PushLimits = &self.config.push;
        let source: SqlValue = change.source.clone().into();
        let by_family = self
            .sql
            .execute(GROUP_SERIES, std::slice::from_ref(&source))
            .await?;
        let mut held = 0_u64;
        let mut replaced = 0_u64;
        for row in &by_family.rows {
            let (Some(family), Some(count)) = (
                row.first().and_then(SqlValue::as_text),
                row.get(1)
                    .and_then(SqlValue::as_integer)
                    .and_then(|n| u64::try_from(n).ok()),
            ) else {
                continue;
            };
            held += count;
            if change.mode == Mode::ReplaceGroup || families.iter().any(|f| f.name == family) {
                replaced += count;
            }
        }
        let group_after = held - replaced + new_series;
        let exceeded = |limit, detail: String| Refusal::Quota(Exceeded::new(limit, limits, detail));
        if group_after > u64::from(limits.max_group_series) {
            return Err(exceeded(
                Limit::GroupSeries,
                format!("the group would hold {group_after} series"),
            ));
        }
        if let Some(pusher) = &change.pusher {
            let groups = self
                .sql
                .execute(PUSHER_GROUPS, &[pusher.clone().into()])
                .await?;
            let others = groups
                .rows
                .iter()
                .filter(|r| r.first().and_then(SqlValue::as_text) != Some(&change.source))
                .count() as u64;
            if others + 1 > u64::from(limits.max_pusher_groups) {
                return Err(exceeded(
                    Limit::PusherGroups,
                    format!("this pusher would hold {} groups", others + 1),
                ));
            }
            let elsewhere = integer(
                &self
                    .sql
                    .execute(PUSHER_SERIES, &[pusher.clone().into(), source])
                    .await?,
            );
            if elsewhere + group_after > u64::from(limits.max_pusher_series) {
                return Err(exceeded(
                    Limit::PusherSeries,
                    format!(
                        "this pusher's groups would hold {} series",
                        elsewhere + group_after
                    ),
                ));
            }
        }
        if new_series > replaced {
            let total = integer(&self.sql.execute(TOTAL_SERIES, &[]).await?);
            let after = total - replaced.min(total) + new_series;
            if after > u64::from(limits.max_total_series) {
                return Err(exceeded(
                    Limit::TotalSeries,
                    format!("the aggregate would hold {after} series"),
                ));
            }
        }
        Ok(())
    }
}

#[async_trait(?Send)]
impl Aggregator for SqlAggregator<'_> {
    /// Where the store takes explicit transactions (SQLite on Spin), the
    /// checks and the writes share one `BEGIN IMMEDIATE` transaction, so
    /// pushes that arrive together are checked one after the other. A
    /// Durable Object runs them one at a time anyway, and writes them with
    /// one `batch`.
    async fn apply(&self, change: &Change) -> Result<(), Refusal> {
        let families = if change.mode == Mode::DeleteGroup {
            Vec::new()
        } else {
            exposition::parse(change.body.as_bytes()).map_err(Refusal::Invalid)?
        };
        let pushed = change.source.starts_with("push:");
        check_series(&families, &change.labels, pushed).map_err(Refusal::Invalid)?;
        if !self.sql.explicit_transactions() {
            return self.checked_write(change, &families, false).await;
        }
        self.sql.execute("BEGIN IMMEDIATE", &[]).await?;
        match self.checked_write(change, &families, true).await {
            Ok(()) => self
                .sql
                .execute("COMMIT", &[])
                .await
                .map(drop)
                .map_err(Refusal::Storage),
            Err(e) => {
                // The refusal matters more than a failed rollback.
                let _ = self.sql.execute("ROLLBACK", &[]).await;
                Err(e)
            }
        }
    }

    async fn exposition(&self, scope: Scope, now: Timestamp) -> Result<String, PortError> {
        self.expose(scope, now).await
    }

    async fn record_minute(&self, minute: i64, point: &str, oldest: i64) -> Result<(), PortError> {
        self.sql
            .batch(&[
                Statement::new(RECORD_MINUTE, vec![minute.into(), point.into()]),
                Statement::new(FORGET_MINUTES, vec![oldest.into()]),
            ])
            .await
    }

    async fn minutes(&self, since: i64) -> Result<Vec<String>, PortError> {
        let rows = self.sql.execute(MINUTES, &[since.into()]).await?;
        Ok(rows
            .rows
            .into_iter()
            .filter_map(|row| match row.into_iter().next() {
                Some(SqlValue::Text(point)) => Some(point),
                _ => None,
            })
            .collect())
    }
}

impl SqlAggregator<'_> {
    /// Checks `change` and writes it: statement by statement inside the
    /// caller's transaction, else as one `batch`.
    async fn checked_write(
        &self,
        change: &Change,
        families: &[Family],
        in_transaction: bool,
    ) -> Result<(), Refusal> {
        let pushed = change.source.starts_with("push:");
        if change.mode != Mode::DeleteGroup {
            self.check_names(change, families).await?;
        }
        let rows: Vec<_> = rows(families, &change.labels, pushed).collect();
        if pushed && change.mode != Mode::DeleteGroup {
            // Expired series and groups free their room before it is
            // counted, scraped or not.
            let cutoff = change.at - i64::from(self.config.ttl_secs);
            self.sql.execute(EXPIRE, &[cutoff.into()]).await?;
            self.sql.execute(EXPIRE_GROUPS, &[cutoff.into()]).await?;
            self.check_budgets(change, families, rows.len() as u64)
                .await?;
        }
        let source: SqlValue = change.source.clone().into();
        let mut statements = Vec::new();
        match change.mode {
            Mode::Add => {}
            Mode::ReplaceGroup | Mode::DeleteGroup => {
                statements.push(Statement::new(DELETE_SOURCE, vec![source.clone()]));
            }
            Mode::ReplaceFamilies => {
                for family in families {
                    statements.push(Statement::new(
                        DELETE_FAMILY,
                        vec![source.clone(), family.name.clone().into()],
                    ));
                }
            }
        }
        if pushed {
            statements.push(if change.mode == Mode::DeleteGroup {
                Statement::new(DELETE_GROUP, vec![source.clone()])
            } else {
                Statement::new(
                    UPSERT_GROUP,
                    vec![
                        source.clone(),
                        change.pusher.clone().unwrap_or_default().into(),
                        change.at.into(),
                    ],
                )
            });
        }
        let insert = if change.mode == Mode::Add {
            ADD
        } else {
            INSERT
        };
        for (family, name, labels, le, value) in rows {
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
                    stored_value(value),
                    change.at.into(),
                ],
            ));
        }
        if statements.is_empty() {
            return Ok(());
        }
        if in_transaction {
            // Additions go as multi-row upserts: an instance that lives for
            // one request (Spin) adds a request's ~26 series on every
            // request: 3 port calls instead of 26.
            let (adds, others): (Vec<_>, Vec<_>) = statements.iter().partition(|s| s.sql == ADD);
            for statement in others {
                self.sql.execute(statement.sql, &statement.params).await?;
            }
            for chunk in adds.chunks(ADD_ROWS_PER_STATEMENT) {
                let params: Vec<SqlValue> = chunk
                    .iter()
                    .flat_map(|s| s.params.iter().cloned())
                    .collect();
                self.sql.execute(&add_rows(chunk.len()), &params).await?;
            }
            return Ok(());
        }
        // All or nothing: a group is never left half-replaced.
        self.sql.batch(&statements).await.map_err(Refusal::Storage)
    }

    async fn expose(&self, scope: Scope, now: Timestamp) -> Result<String, PortError> {
        let cutoff = now.as_unix_secs() - i64::from(self.config.ttl_secs);
        self.sql.execute(EXPIRE, &[cutoff.into()]).await?;
        self.sql.execute(EXPIRE_GROUPS, &[cutoff.into()]).await?;
        let rows = self.sql.execute(READ, &[scope.as_str().into()]).await?;
        let mut text = encode(&merge(&rows.rows));
        if scope == Scope::Api {
            let total = integer(&self.sql.execute(TOTAL_SERIES, &[]).await?);
            header(
                &mut text,
                "tepi_metrics_series",
                "Series held by the metrics aggregate (every scope).",
                "gauge",
            );
            let _ = writeln!(text, "tepi_metrics_series {total}");
            header(
                &mut text,
                "tepi_metrics_series_limit",
                "METRICS_MAX_SERIES: pushes that would add series beyond it are refused.",
                "gauge",
            );
            let _ = writeln!(
                text,
                "tepi_metrics_series_limit {}",
                self.config.push.max_total_series
            );
        }
        Ok(text)
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
            // NaN and ±Inf, stored as their text.
            SqlValue::Text(t) => match exposition::parse_value(t) {
                Some(v) => v,
                None => continue,
            },
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
pub enum Store<'a> {
    Remote(Box<dyn Aggregator + 'a>),
    Sql(SqlAggregator<'a>),
}

impl std::fmt::Debug for Store<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Remote(_) => f.write_str("Store::Remote"),
            Self::Sql(sql) => f.debug_tuple("Store::Sql").field(sql).finish(),
        }
    }
}

/// Makes the client of the platform's aggregate service (`Ports::aggregator`).
/// An adapter that wires that port hands [`service_client`] to the app
/// (`App::with_aggregate_service`); held as a function, so a build whose
/// platform has no such service (Spin) does not link the client at all.
pub type ServiceClient = for<'a> fn(&'a dyn HttpClient) -> Box<dyn Aggregator + 'a>;

/// The [`ServiceClient`] of [`remote::serve`]'s protocol.
pub fn service_client<'a>(service: &'a dyn HttpClient) -> Box<dyn Aggregator + 'a> {
    Box::new(remote::Client(service))
}

impl<'a> Store<'a> {
    /// `None` without a store, and when `Ports::aggregator` is wired but
    /// `client` is not (the service cannot be spoken to).
    pub fn of(
        ports: &Ports<'a>,
        config: &MetricsConfig,
        client: Option<ServiceClient>,
    ) -> Option<Self> {
        match (ports.aggregator, ports.sql) {
            (Some(service), _) => client.map(|make| Self::Remote(make(service))),
            (None, Some(sql)) => Some(Self::Sql(SqlAggregator {
                sql,
                config: *config,
            })),
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

    async fn record_minute(&self, minute: i64, point: &str, oldest: i64) -> Result<(), PortError> {
        match self {
            Self::Remote(client) => client.record_minute(minute, point, oldest).await,
            Self::Sql(sql) => sql.record_minute(minute, point, oldest).await,
        }
    }

    async fn minutes(&self, since: i64) -> Result<Vec<String>, PortError> {
        match self {
            Self::Remote(client) => client.minutes(since).await,
            Self::Sql(sql) => sql.minutes(since).await,
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
    use crate::metrics::MetricsConfig;
    use crate::metrics::exposition::ParseError;
    use crate::metrics::limits::Exceeded;
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

        async fn record_minute(
            &self,
            minute: i64,
            point: &str,
            oldest: i64,
        ) -> Result<(), PortError> {
            let request = Request::post(format!(
                "{ORIGIN}{MINUTES_PATH}?minute={minute}&oldest={oldest}"
            ))
            .body(Bytes::from(point.to_owned()))
            .map_err(|e| PortError(e.to_string()))?;
            let answer = self.0.send(request).await?;
            if answer.status() == StatusCode::NO_CONTENT {
                Ok(())
            } else {
                Err(PortError(format!(
                    "aggregator answered {}",
                    answer.status()
                )))
            }
        }

        async fn minutes(&self, since: i64) -> Result<Vec<String>, PortError> {
            let request = Request::get(format!("{ORIGIN}{MINUTES_PATH}?since={since}"))
                .body(Bytes::new())
                .map_err(|e| PortError(e.to_string()))?;
            let answer = self.0.send(request).await?;
            if answer.status() != StatusCode::OK {
                return Err(PortError(format!(
                    "aggregator answered {}",
                    answer.status()
                )));
            }
            let text = std::str::from_utf8(answer.body()).map_err(|e| PortError(e.to_string()))?;
            Ok(text.lines().map(str::to_owned).collect())
        }
    }

    pub const APPLY_PATH: &str = "/apply";
    pub const EXPOSITION_PATH: &str = "/exposition";
    /// `POST /minutes?minute=…&oldest=…` keeps a snapshot (its body);
    /// `GET /minutes?since=…` lists them, one per line (a snapshot is one
    /// line of JSON).
    pub const MINUTES_PATH: &str = "/minutes";

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
            409 if value["other"].is_string() => Refusal::NameCollision {
                family: value["family"].as_str().unwrap_or("").to_owned(),
                other: value["other"].as_str().unwrap_or("").to_owned(),
            },
            429 => match serde_json::from_value::<Exceeded>(value) {
                Ok(exceeded) => Refusal::Quota(exceeded),
                Err(e) => Refusal::Storage(PortError(format!("aggregator answered 429: {e}"))),
            },
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
    pub async fn serve(
        sql: &dyn Sql,
        config: &MetricsConfig,
        req: &Request<Bytes>,
    ) -> Response<Bytes> {
        let aggregator = SqlAggregator {
            sql,
            config: *config,
        };
        let query = req.uri().query().unwrap_or("");
        let pairs = crate::api::response::query_pairs(query);
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let number = |name: &str| get(name).and_then(|v| v.parse::<i64>().ok());
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
                    Err(Refusal::NameCollision { family, other }) => answer(
                        StatusCode::CONFLICT,
                        json!({"family": family, "other": other}).to_string(),
                    ),
                    Err(Refusal::Quota(exceeded)) => answer(
                        StatusCode::TOO_MANY_REQUESTS,
                        serde_json::to_string(&exceeded).unwrap_or_default(),
                    ),
                    Err(Refusal::Storage(e)) => answer(StatusCode::SERVICE_UNAVAILABLE, e.0),
                }
            }
            (&Method::POST, MINUTES_PATH) => {
                let (Some(minute), Some(oldest), Ok(point)) = (
                    number("minute"),
                    number("oldest"),
                    std::str::from_utf8(req.body()),
                ) else {
                    return answer(StatusCode::BAD_REQUEST, Bytes::new());
                };
                match aggregator.record_minute(minute, point, oldest).await {
                    Ok(()) => answer(StatusCode::NO_CONTENT, Bytes::new()),
                    Err(e) => answer(StatusCode::SERVICE_UNAVAILABLE, e.0),
                }
            }
            (&Method::GET, MINUTES_PATH) => {
                match aggregator.minutes(number("since").unwrap_or(0)).await {
                    Ok(points) => answer(StatusCode::OK, points.join("\n")),
                    Err(e) => answer(StatusCode::SERVICE_UNAVAILABLE, e.0),
                }
            }
            (&Method::GET, EXPOSITION_PATH) => {
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
