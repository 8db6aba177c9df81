//! Job publishing and blob storage for platforms that offer only SQL and
//! key-value (Spin): an SQLite outbox instead of a queue service, key-value
//! entries instead of an object store.

use std::cell::Cell;

use async_trait::async_trait;
use base64ct::{Base64, Encoding};
use serde::{Deserialize, Serialize};

use crate::ports::{Blob, Blobs, Entropy, Jobs, KeyValue, PortError, Queue, Sql, SqlValue};
use crate::secret;
use crate::time::Timestamp;

const INSERT: &str = "INSERT INTO job_outbox (id, queue, envelope, attempts, available_at, enqueued_at) \
     VALUES (?1, ?2, ?3, 0, ?4, ?5)";

/// The outbox: one row per job, due at once.
pub struct SqlOutbox<'a> {
    pub sql: &'a dyn Sql,
    pub entropy: &'a dyn Entropy,
    pub now: Timestamp,
}

impl std::fmt::Debug for SqlOutbox<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqlOutbox")
    }
}

#[async_trait(?Send)]
impl Jobs for SqlOutbox<'_> {
    async fn enqueue_after(
        &self,
        queue: Queue,
        envelope: &str,
        delay_secs: u32,
    ) -> Result<(), PortError> {
        let now = self.now.as_unix_secs();
        self.sql
            .execute(
                INSERT,
                &[
                    secret::id(self.entropy, "job_").into(),
                    queue.as_str().into(),
                    envelope.into(),
                    SqlValue::Integer(now + i64::from(delay_secs)),
                    SqlValue::Integer(now),
                ],
            )
            .await
            .map(drop)
    }
}

/// A queue or outbox that also counts what it publishes
/// (`tepi_worker_jobs_enqueued_total`, the basis of the depth estimate).
pub struct Counted<'a> {
    pub inner: Publisher<'a>,
    pub sql: &'a dyn Sql,
    /// Set once a job went into the SQL outbox.
    pub outboxed: Option<&'a Cell<bool>>,
}

/// Where jobs go: the platform's queues, or the SQL outbox.
#[derive(Debug)]
pub enum Publisher<'a> {
    Queues(&'a dyn Jobs),
    Outbox(SqlOutbox<'a>),
}

impl std::fmt::Debug for dyn Jobs + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Jobs")
    }
}

impl std::fmt::Debug for Counted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counted")
    }
}

#[async_trait(?Send)]
impl Jobs for Counted<'_> {
    async fn enqueue_after(
        &self,
        queue: Queue,
        envelope: &str,
        delay_secs: u32,
    ) -> Result<(), PortError> {
        let inner: &dyn Jobs = match &self.inner {
            Publisher::Queues(queues) => *queues,
            Publisher::Outbox(outbox) => outbox,
        };
        inner.enqueue_after(queue, envelope, delay_secs).await?;
        if let (Publisher::Outbox(_), Some(flag)) = (&self.inner, self.outboxed) {
            flag.set(true);
        }
        let mut delta = crate::jobs::metrics::WorkerMetrics::default();
        delta.record_enqueued(queue);
        // The job is published: a failed count only skews the estimate.
        if let Err(e) = crate::jobs::metrics::flush(self.sql, &delta).await {
            tracing::warn!(target: "tepi::jobs", error = %e, queue = queue.as_str(),
                "could not count an enqueued job");
        }
        Ok(())
    }
}

/// Blobs as key-value entries: the body base64-encoded next to its media
/// type, under `blob:<key>`.
#[derive(Clone, Copy)]
pub struct KvBlobs<'a>(pub &'a dyn KeyValue);

impl std::fmt::Debug for KvBlobs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KvBlobs")
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    content_type: String,
    body: String,
}

fn blob_key(key: &str) -> String {
    format!("blob:{key}")
}

#[async_trait(?Send)]
impl Blobs for KvBlobs<'_> {
    async fn put(&self, key: &str, body: &[u8], content_type: &str) -> Result<(), PortError> {
        let stored = Stored {
            content_type: content_type.to_owned(),
            body: Base64::encode_string(body),
        };
        let bytes = serde_json::to_vec(&stored).map_err(|e| PortError(e.to_string()))?;
        self.0.set(&blob_key(key), &bytes).await
    }

    async fn get(&self, key: &str) -> Result<Option<Blob>, PortError> {
        let Some(bytes) = self.0.get(&blob_key(key)).await? else {
            return Ok(None);
        };
        let stored: Stored =
            serde_json::from_slice(&bytes).map_err(|e| PortError(format!("blob {key}: {e}")))?;
        let body =
            Base64::decode_vec(&stored.body).map_err(|e| PortError(format!("blob {key}: {e}")))?;
        Ok(Some(Blob {
            body,
            content_type: stored.content_type,
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.0.delete(&blob_key(key)).await
    }
}

/// Where blobs go: the platform's object store, or key-value entries.
#[derive(Debug, Clone, Copy)]
pub enum BlobStore<'a> {
    Objects(&'a dyn Blobs),
    Kv(KvBlobs<'a>),
}

impl std::fmt::Debug for dyn Blobs + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Blobs")
    }
}

/// The ports a handler or a job publishes and stores through, with the
/// core's stand-ins where the platform has no such service (Spin): the
/// SQL outbox for queues, key-value entries for an object store. The one
/// place both the request path and the job path get them from.
#[derive(Debug)]
pub struct Fallbacks<'a> {
    jobs: Option<Counted<'a>>,
    blobs: Option<BlobStore<'a>>,
}

impl<'a> Fallbacks<'a> {
    /// `blobs_in_kv`: keep blobs in key-value when the platform wires no
    /// object store (instances that live for one request).
    pub fn new(ports: &crate::ports::Ports<'a>, now: Timestamp, blobs_in_kv: bool) -> Self {
        let jobs = ports.sql.map(|sql| Counted {
            inner: match ports.jobs {
                Some(queues) => Publisher::Queues(queues),
                None => Publisher::Outbox(SqlOutbox {
                    sql,
                    entropy: ports.entropy,
                    now,
                }),
            },
            sql,
            outboxed: None,
        });
        let blobs = match (ports.blobs, ports.kv) {
            (Some(objects), _) => Some(BlobStore::Objects(objects)),
            (None, Some(kv)) if blobs_in_kv => Some(BlobStore::Kv(KvBlobs(kv))),
            _ => None,
        };
        Self { jobs, blobs }
    }

    /// Notes in `flag` when a job goes into the SQL outbox.
    #[must_use]
    pub fn noting_outbox(mut self, flag: &'a Cell<bool>) -> Self {
        if let Some(jobs) = &mut self.jobs {
            jobs.outboxed = Some(flag);
        }
        self
    }

    /// Publishing, counted; `None` without SQL.
    pub fn jobs(&self) -> Option<&dyn Jobs> {
        self.jobs.as_ref().map(|j| j as &dyn Jobs)
    }

    pub fn blobs(&self) -> Option<&dyn Blobs> {
        match &self.blobs {
            Some(BlobStore::Objects(objects)) => Some(*objects),
            Some(BlobStore::Kv(kv)) => Some(kv),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::migrate;
    use crate::testing::{MemoryKv, SeededEntropy, SqliteSql, block_on};

    #[test]
    fn blobs_round_trip_binary_bodies_through_key_value() {
        let kv = MemoryKv::default();
        let blobs = KvBlobs(&kv);
        let body: Vec<u8> = (0..=255).collect();
        block_on(blobs.put("uploads/acme/upl_1", &body, "application/octet-stream")).unwrap();
        let got = block_on(blobs.get("uploads/acme/upl_1")).unwrap().unwrap();
        assert_eq!(got.body, body);
        assert_eq!(got.content_type, "application/octet-stream");
        block_on(blobs.delete("uploads/acme/upl_1")).unwrap();
        assert_eq!(block_on(blobs.get("uploads/acme/upl_1")).unwrap(), None);
    }

    #[test]
    fn the_outbox_keeps_each_job_with_its_queue() {
        let db = SqliteSql::open_in_memory();
        block_on(migrate(&db)).unwrap();
        let entropy = SeededEntropy::new(9);
        let outbox = SqlOutbox {
            sql: &db,
            entropy: &entropy,
            now: Timestamp::from_unix_micros(5_000_000),
        };
        block_on(outbox.enqueue(Queue::Uploads, "{\"id\":\"a\"}")).unwrap();
        block_on(outbox.enqueue(Queue::Workflows, "{\"id\":\"b\"}")).unwrap();
        let rows = block_on(db.execute(
            "SELECT queue, envelope, attempts, available_at FROM job_outbox ORDER BY envelope",
            &[],
        ))
        .unwrap();
        assert_eq!(
            rows.rows,
            vec![
                vec![
                    SqlValue::Text("uploads".into()),
                    SqlValue::Text("{\"id\":\"a\"}".into()),
                    SqlValue::Integer(0),
                    SqlValue::Integer(5)
                ],
                vec![
                    SqlValue::Text("workflows".into()),
                    SqlValue::Text("{\"id\":\"b\"}".into()),
                    SqlValue::Integer(0),
                    SqlValue::Integer(5)
                ],
            ]
        );
    }
}
