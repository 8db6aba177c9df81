//! Metrics of the background workers, per queue (`queue_name`): jobs by
//! outcome, errors by class, active jobs, the queue depth estimate, the lag
//! from enqueue to start and the processing duration.
//!
//! Every instance that enqueues or processes adds its deltas to SQL in one
//! statement (`worker_metric_totals`), so `GET /metrics/workers` serves the
//! sums over every isolate, consumer and drain.

use crate::jobs::retry::{Decision, FailureClass};
use crate::metrics::{Histogram, header, sample, write_histogram};
use crate::ports::{PortError, Queue, Sql, SqlValue};

/// Upper bounds (seconds) of `tepi_worker_job_duration_seconds`.
pub const DURATION_BUCKETS_SECS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds (seconds) of `tepi_worker_job_lag_seconds`.
pub const LAG_BUCKETS_SECS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

const OUTCOMES: [&str; 3] = ["ack", "retry", "dead_letter"];
const CLASSES: [FailureClass; 3] = [
    FailureClass::Client,
    FailureClass::Server,
    FailureClass::Timeout,
];

#[derive(Debug, Clone, PartialEq)]
struct Series {
    /// By outcome: `ack`, `retry`, `dead_letter`.
    processed: [u64; 3],
    /// By class: 4xx, 5xx, timeout.
    errors: [u64; 3],
    enqueued: u64,
    /// Jobs started minus jobs finished.
    active: i64,
    lag: Histogram,
    duration: Histogram,
}

impl Default for Series {
    fn default() -> Self {
        Self {
            processed: [0; 3],
            errors: [0; 3],
            enqueued: 0,
            active: 0,
            lag: Histogram::new(&LAG_BUCKETS_SECS),
            duration: Histogram::new(&DURATION_BUCKETS_SECS),
        }
    }
}

impl Series {
    /// Jobs settled for good: acknowledged or dead-lettered.
    fn settled(&self) -> u64 {
        self.processed[0] + self.processed[2]
    }
}

/// Worker metrics: a delta to flush, or the sums loaded back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerMetrics {
    /// By `Queue as usize` (the order of `Queue::ALL`); `None` until
    /// counted. An array, not a map: one map type less in the build.
    queues: [Option<Series>; Queue::ALL.len()],
}

fn outcome_slot(decision: &Decision) -> usize {
    match decision {
        Decision::Ack => 0,
        Decision::Retry { .. } => 1,
        Decision::DeadLetter { .. } => 2,
    }
}

fn class_slot(class: FailureClass) -> usize {
    match class {
        FailureClass::Client => 0,
        FailureClass::Server => 1,
        FailureClass::Timeout => 2,
    }
}

impl WorkerMetrics {
    fn series(&mut self, queue: Queue) -> &mut Series {
        self.queues[queue as usize].get_or_insert_with(Series::default)
    }

    fn get(&self, queue: Queue) -> Option<&Series> {
        self.queues[queue as usize].as_ref()
    }

    /// Each counted queue's series, in the order of `Queue::ALL`.
    fn counted(&self) -> impl Iterator<Item = (Queue, &Series)> {
        Queue::ALL
            .into_iter()
            .zip(&self.queues)
            .filter_map(|(queue, s)| Some((queue, s.as_ref()?)))
    }

    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(Option::is_none)
    }

    /// A job was published on `queue`.
    pub fn record_enqueued(&mut self, queue: Queue) {
        self.series(queue).enqueued += 1;
    }

    /// `n` jobs started (positive) or finished (negative).
    pub fn record_active(&mut self, queue: Queue, n: i64) {
        self.series(queue).active += n;
    }

    /// One attempt: how long it waited since it was enqueued, how long it
    /// ran, what failed (if anything) and what was decided.
    pub fn record_attempt(
        &mut self,
        queue: Queue,
        lag_secs: f64,
        duration_ms: f64,
        failure: Option<FailureClass>,
        decision: &Decision,
    ) {
        let series = self.series(queue);
        series.lag.observe(lag_secs.max(0.0));
        series.duration.observe(duration_ms.max(0.0) / 1000.0);
        if let Some(class) = failure {
            series.errors[class_slot(class)] += 1;
        }
        series.processed[outcome_slot(decision)] += 1;
    }

    /// A job the platform moved to a dead-letter queue by itself (its
    /// attempts ran out without a decision, e.g. the consumer crashed).
    pub fn record_platform_dead_letter(&mut self, queue: Queue) {
        self.series(queue).processed[2] += 1;
    }

    pub fn processed(&self, queue: Queue, outcome: &str) -> u64 {
        let slot = OUTCOMES.iter().position(|o| *o == outcome);
        match (self.get(queue), slot) {
            (Some(series), Some(slot)) => series.processed[slot],
            _ => 0,
        }
    }

    pub fn errors(&self, queue: Queue, class: FailureClass) -> u64 {
        self.get(queue).map_or(0, |s| s.errors[class_slot(class)])
    }

    pub fn enqueued(&self, queue: Queue) -> u64 {
        self.get(queue).map_or(0, |s| s.enqueued)
    }

    pub fn active(&self, queue: Queue) -> i64 {
        self.get(queue).map_or(0, |s| s.active)
    }

    /// Enqueued minus settled: an estimate (jobs enqueued before metrics
    /// existed, or settled by hand, are not seen).
    pub fn depth(&self, queue: Queue) -> i64 {
        self.get(queue).map_or(0, |s| {
            i64::try_from(s.enqueued).unwrap_or(i64::MAX)
                - i64::try_from(s.settled()).unwrap_or(i64::MAX)
        })
    }

    /// `(queue, kind, slot, value)` rows of `worker_metric_totals`; zeros
    /// are left out.
    #[allow(clippy::cast_precision_loss)]
    fn rows(&self) -> Vec<(&'static str, &'static str, i64, f64)> {
        let mut rows = Vec::new();
        for (queue, s) in self.counted() {
            let q = queue.as_str();
            for (slot, n) in (0_i64..).zip(s.processed) {
                rows.push((q, "processed", slot, n as f64));
            }
            for (slot, n) in (0_i64..).zip(s.errors) {
                rows.push((q, "errors", slot, n as f64));
            }
            rows.push((q, "enqueued", 0, s.enqueued as f64));
            rows.push((q, "active", 0, s.active as f64));
            for (kind, h) in [("lag", &s.lag), ("duration", &s.duration)] {
                let bucket_kind = if kind == "lag" {
                    "lag_bucket"
                } else {
                    "duration_bucket"
                };
                for (slot, n) in (0_i64..).zip(h.buckets().iter().copied()) {
                    rows.push((q, bucket_kind, slot, n as f64));
                }
                let sum_kind = if kind == "lag" {
                    "lag_sum"
                } else {
                    "duration_sum"
                };
                rows.push((q, sum_kind, 0, h.sum()));
            }
            rows.push((q, "count", 0, s.lag.count() as f64));
        }
        rows.retain(|(_, _, _, v)| *v != 0.0);
        rows
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn add_row(&mut self, queue: Queue, kind: &str, slot: i64, value: f64) {
        let n = value.max(0.0).round() as u64;
        let index = usize::try_from(slot).unwrap_or(usize::MAX);
        let s = self.series(queue);
        match kind {
            "processed" => {
                if let Some(v) = s.processed.get_mut(index) {
                    *v += n;
                }
            }
            "errors" => {
                if let Some(v) = s.errors.get_mut(index) {
                    *v += n;
                }
            }
            "enqueued" => s.enqueued += n,
            "active" => s.active += value.round() as i64,
            "lag_bucket" => s.lag.add_bucket(index, n),
            "duration_bucket" => s.duration.add_bucket(index, n),
            "lag_sum" => s.lag.add_sum_and_count(value, 0),
            "duration_sum" => s.duration.add_sum_and_count(value, 0),
            "count" => {
                s.lag.add_sum_and_count(0.0, n);
                s.duration.add_sum_and_count(0.0, n);
            }
            _ => {}
        }
    }

    /// The exposition of `GET /metrics/workers`: every series for every
    /// queue, at zero until counted.
    #[allow(clippy::cast_precision_loss, clippy::too_many_lines)] // one block per family
    pub fn encode(&self) -> String {
        let empty = Series::default();
        let all: Vec<(&str, &Series)> = Queue::ALL
            .iter()
            .map(|q| (q.as_str(), self.get(*q).unwrap_or(&empty)))
            .collect();
        let mut out = String::new();
        header(
            &mut out,
            "tepi_worker_jobs_processed_total",
            "Job attempts by queue and outcome (ack, retry, dead_letter).",
            "counter",
        );
        for (q, s) in &all {
            for (outcome, n) in OUTCOMES.iter().zip(s.processed) {
                sample(
                    &mut out,
                    "tepi_worker_jobs_processed_total",
                    &[("queue_name", q), ("outcome", outcome)],
                    n as f64,
                );
            }
        }
        header(
            &mut out,
            "tepi_worker_job_errors_total",
            "Failed job attempts by queue, every class together.",
            "counter",
        );
        for (q, s) in &all {
            let total: u64 = s.errors.iter().sum();
            sample(
                &mut out,
                "tepi_worker_job_errors_total",
                &[("queue_name", q)],
                total as f64,
            );
        }
        header(
            &mut out,
            "tepi_worker_job_errors_by_class_total",
            "Failed job attempts by queue and class: 4xx (permanent), 5xx and timeout (transient).",
            "counter",
        );
        for (q, s) in &all {
            for class in CLASSES {
                sample(
                    &mut out,
                    "tepi_worker_job_errors_by_class_total",
                    &[("queue_name", q), ("class", class.as_str())],
                    s.errors[class_slot(class)] as f64,
                );
            }
        }
        header(
            &mut out,
            "tepi_worker_jobs_enqueued_total",
            "Jobs published, by queue.",
            "counter",
        );
        for (q, s) in &all {
            sample(
                &mut out,
                "tepi_worker_jobs_enqueued_total",
                &[("queue_name", q)],
                s.enqueued as f64,
            );
        }
        header(
            &mut out,
            "tepi_worker_jobs_active",
            "Jobs being processed now, by queue.",
            "gauge",
        );
        for (q, s) in &all {
            sample(
                &mut out,
                "tepi_worker_jobs_active",
                &[("queue_name", q)],
                s.active.max(0) as f64,
            );
        }
        header(
            &mut out,
            "tepi_worker_queue_depth",
            "Estimated jobs waiting or in flight, by queue: enqueued minus acknowledged and dead-lettered.",
            "gauge",
        );
        for (q, s) in &all {
            let depth = s.enqueued as f64 - s.settled() as f64;
            sample(
                &mut out,
                "tepi_worker_queue_depth",
                &[("queue_name", q)],
                depth.max(0.0),
            );
        }
        header(
            &mut out,
            "tepi_worker_job_lag_seconds",
            "Seconds from a job's enqueue to the start of each attempt, by queue.",
            "histogram",
        );
        for (q, s) in &all {
            write_histogram(
                &mut out,
                "tepi_worker_job_lag_seconds",
                &[("queue_name", q)],
                &s.lag,
            );
        }
        header(
            &mut out,
            "tepi_worker_job_duration_seconds",
            "Processing time of each job attempt in seconds, by queue.",
            "histogram",
        );
        for (q, s) in &all {
            write_histogram(
                &mut out,
                "tepi_worker_job_duration_seconds",
                &[("queue_name", q)],
                &s.duration,
            );
        }
        out
    }
}

/// Adds `delta` to the totals in SQL (one statement).
pub async fn flush(sql: &dyn Sql, delta: &WorkerMetrics) -> Result<(), PortError> {
    let rows = delta.rows();
    if rows.is_empty() {
        return Ok(());
    }
    let placeholders = vec!["(?, ?, ?, ?)"; rows.len()].join(", ");
    let statement = format!(
        "INSERT INTO worker_metric_totals (queue, kind, slot, value) VALUES {placeholders} \
         ON CONFLICT (queue, kind, slot) DO UPDATE SET value = value + excluded.value"
    );
    let params: Vec<SqlValue> = rows
        .into_iter()
        .flat_map(|(queue, kind, slot, value)| {
            [
                SqlValue::Text(queue.to_owned()),
                SqlValue::Text(kind.to_owned()),
                SqlValue::Integer(slot),
                SqlValue::Real(value),
            ]
        })
        .collect();
    sql.execute(&statement, &params).await.map(drop)
}

/// The sums over every instance.
pub async fn load(sql: &dyn Sql) -> Result<WorkerMetrics, PortError> {
    let rows = sql
        .execute(
            "SELECT queue, kind, slot, value FROM worker_metric_totals",
            &[],
        )
        .await?;
    let mut metrics = WorkerMetrics::default();
    for row in &rows.rows {
        if let [
            SqlValue::Text(queue),
            SqlValue::Text(kind),
            SqlValue::Integer(slot),
            value,
        ] = row.as_slice()
        {
            #[allow(clippy::cast_precision_loss)]
            let value = match value {
                SqlValue::Real(v) => *v,
                SqlValue::Integer(v) => *v as f64,
                _ => continue,
            };
            if let Some(queue) = Queue::ALL.into_iter().find(|q| q.as_str() == queue) {
                metrics.add_row(queue, kind, *slot, value);
            }
        }
    }
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::migrate;
    use crate::testing::{SqliteSql, block_on};

    #[test]
    fn each_queue_counts_only_its_own_jobs() {
        for (i, queue) in Queue::ALL.into_iter().enumerate() {
            assert_eq!(queue as usize, i, "{queue:?} indexes the series");
            let mut m = WorkerMetrics::default();
            assert!(m.is_empty());
            m.record_enqueued(queue);
            m.record_enqueued(queue);
            assert!(!m.is_empty());
            for other in Queue::ALL {
                let want = if other == queue { 2 } else { 0 };
                assert_eq!(m.enqueued(other), want, "{queue:?} counted, {other:?} read");
            }
            let rows = m.rows();
            assert!(rows.iter().all(|r| r.0 == queue.as_str()), "{rows:?}");
        }
    }

    fn retry() -> Decision {
        Decision::Retry {
            delay_secs: 1,
            class: FailureClass::Server,
        }
    }

    #[test]
    fn every_series_is_exposed_per_queue_and_parses() {
        let text = WorkerMetrics::default().encode();
        for queue in Queue::ALL {
            let q = queue.as_str();
            for needle in [
                format!(
                    "tepi_worker_jobs_processed_total{{queue_name=\"{q}\",outcome=\"ack\"}} 0\n"
                ),
                format!(
                    "tepi_worker_jobs_processed_total{{queue_name=\"{q}\",outcome=\"dead_letter\"}} 0\n"
                ),
                format!("tepi_worker_job_errors_total{{queue_name=\"{q}\"}} 0\n"),
                format!(
                    "tepi_worker_job_errors_by_class_total{{queue_name=\"{q}\",class=\"timeout\"}} 0\n"
                ),
                format!("tepi_worker_jobs_active{{queue_name=\"{q}\"}} 0\n"),
                format!("tepi_worker_queue_depth{{queue_name=\"{q}\"}} 0\n"),
                format!("tepi_worker_job_lag_seconds_bucket{{queue_name=\"{q}\",le=\"+Inf\"}} 0\n"),
                format!("tepi_worker_job_duration_seconds_count{{queue_name=\"{q}\"}} 0\n"),
            ] {
                assert!(text.contains(&needle), "{needle} missing");
            }
        }
        crate::metrics::exposition::parse(text.as_bytes()).expect("valid exposition");
    }

    #[test]
    fn deltas_from_many_instances_sum_exactly_and_depth_follows() {
        let db = SqliteSql::open_in_memory();
        block_on(migrate(&db)).unwrap();
        let mut expected = WorkerMetrics::default();
        for i in 0..40_u32 {
            let mut delta = WorkerMetrics::default();
            delta.record_enqueued(Queue::Notifications);
            delta.record_active(Queue::Notifications, 1);
            let (failure, decision) = match i % 4 {
                0 => (Some(FailureClass::Server), retry()),
                1 => (
                    Some(FailureClass::Client),
                    Decision::DeadLetter {
                        class: FailureClass::Client,
                        reason: "permanent failure",
                    },
                ),
                _ => (None, Decision::Ack),
            };
            let lag = f64::from(i) * 0.5;
            delta.record_attempt(Queue::Notifications, lag, 12.0, failure, &decision);
            delta.record_active(Queue::Notifications, -1);
            expected.record_enqueued(Queue::Notifications);
            expected.record_attempt(Queue::Notifications, lag, 12.0, failure, &decision);
            block_on(flush(&db, &delta)).unwrap();
        }
        let loaded = block_on(load(&db)).unwrap();
        assert_eq!(loaded.processed(Queue::Notifications, "ack"), 20);
        assert_eq!(loaded.processed(Queue::Notifications, "retry"), 10);
        assert_eq!(loaded.processed(Queue::Notifications, "dead_letter"), 10);
        assert_eq!(
            loaded.errors(Queue::Notifications, FailureClass::Server),
            10
        );
        assert_eq!(
            loaded.errors(Queue::Notifications, FailureClass::Client),
            10
        );
        assert_eq!(loaded.enqueued(Queue::Notifications), 40);
        assert_eq!(loaded.active(Queue::Notifications), 0);
        assert_eq!(
            loaded.depth(Queue::Notifications),
            10,
            "the retried ones are still on the queue"
        );
        assert_eq!(
            loaded.encode(),
            expected.encode(),
            "the sums equal one registry that saw everything"
        );
        assert!(
            loaded
                .encode()
                .contains("tepi_worker_queue_depth{queue_name=\"notifications\"} 10\n")
        );
    }
}
