//! Ports: the few things the core needs from a platform, as small traits.
//!
//! Wasm is single-threaded, so no trait here asks for `Send`. Adapters
//! implement them over platform bindings; tests implement them in-process.

use async_trait::async_trait;

use crate::time::Timestamp;

/// Random bytes for request ids, trace ids and span ids. Adapters back it with
/// `getrandom`; tests supply fixed or counting bytes so ids are predictable.
pub trait Entropy {
    fn fill(&self, dest: &mut [u8]);
}

/// Reads the platform clock. Only used to measure how long a request took;
/// the request's own notion of "now" is the `now` argument of `App::handle`.
pub trait Clock {
    fn now(&self) -> Timestamp;
}

/// One readiness check of a platform binding (a database, a bucket, a queue).
#[async_trait(?Send)]
pub trait Probe {
    /// The binding's name as configured, e.g. `DB` or `UPLOADS`.
    fn name(&self) -> &str;
    /// `Err` carries a reason an operator can act on.
    async fn check(&self) -> Result<(), String>;
}

/// A failure reported by a storage port, in the platform's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortError(pub String);

impl std::fmt::Display for PortError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PortError {}

/// An SQLite value (D1 and Spin SQLite are both SQLite).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// The result of one statement: column names and rows of values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<SqlValue>>,
}

impl PortError {
    /// Whether SQLite refused the write for a constraint (`UNIQUE`, `CHECK`,
    /// `NOT NULL`, foreign key). D1, Spin SQLite and rusqlite all pass
    /// SQLite's own message through, which names the constraint.
    pub fn is_constraint_violation(&self) -> bool {
        self.0.contains("constraint failed")
    }
}

/// One parameterised statement of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: &'static str,
    pub params: Vec<SqlValue>,
}

impl Statement {
    pub fn new(sql: &'static str, params: Vec<SqlValue>) -> Self {
        Self { sql, params }
    }
}

/// Parameterised SQL with SQLite semantics. One statement per `execute`
/// (reads return their rows; writes may return rows with `RETURNING`).
#[async_trait(?Send)]
pub trait Sql {
    async fn execute(&self, statement: &str, params: &[SqlValue]) -> Result<Rows, PortError>;

    /// Whether `BEGIN IMMEDIATE … COMMIT` may be sent through `execute`, so
    /// that reads and writes share one transaction (SQLite on one
    /// connection: Spin, rusqlite). D1 and a Durable Object's storage
    /// refuse explicit transactions; they override this with `false`.
    fn explicit_transactions(&self) -> bool {
        true
    }

    /// Runs the statements atomically: all of them or none. The default
    /// wraps them in `BEGIN IMMEDIATE … COMMIT` on this connection (Spin
    /// SQLite, rusqlite); D1 refuses explicit transactions and overrides
    /// this with its own `batch`.
    async fn batch(&self, statements: &[Statement]) -> Result<(), PortError> {
        self.execute("BEGIN IMMEDIATE", &[]).await?;
        for statement in statements {
            if let Err(e) = self.execute(statement.sql, &statement.params).await {
                // The original error matters more than a failed rollback.
                let _ = self.execute("ROLLBACK", &[]).await;
                return Err(e);
            }
        }
        self.execute("COMMIT", &[]).await.map(drop)
    }
}

/// Convenience constructors for parameters.
impl From<&str> for SqlValue {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<i64> for SqlValue {
    fn from(value: i64) -> Self {
        Self::Integer(value)
    }
}

impl From<bool> for SqlValue {
    fn from(value: bool) -> Self {
        Self::Integer(i64::from(value))
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null, Into::into)
    }
}

impl SqlValue {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t),
            _ => None,
        }
    }

    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Self::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

impl Rows {
    /// The value of `column` in row `row`, if both exist.
    pub fn get(&self, row: usize, column: &str) -> Option<&SqlValue> {
        let index = self.columns.iter().position(|c| c == column)?;
        self.rows.get(row)?.get(index)
    }
}

/// A key-value store (Workers KV, Spin key-value). No atomic updates:
/// counters belong in SQL.
#[async_trait(?Send)]
pub trait KeyValue {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError>;
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), PortError>;
    async fn delete(&self, key: &str) -> Result<(), PortError>;
}

/// An object in blob storage with its media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub body: Vec<u8>,
    pub content_type: String,
}

/// Blob storage for upload bodies (R2 on Workers, key-value on Spin).
#[async_trait(?Send)]
pub trait Blobs {
    async fn put(&self, key: &str, body: &[u8], content_type: &str) -> Result<(), PortError>;
    async fn get(&self, key: &str) -> Result<Option<Blob>, PortError>;
    async fn delete(&self, key: &str) -> Result<(), PortError>;
}

/// The job queues, one per job family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Queue {
    Workflows,
    Notifications,
    MetaEvents,
    Uploads,
}

impl Queue {
    pub const ALL: [Self; 4] = [
        Self::Workflows,
        Self::Notifications,
        Self::MetaEvents,
        Self::Uploads,
    ];

    /// The queue's name (`queue_name` in metrics; the platform's queue is
    /// `JobsConfig::queue_name`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workflows => "workflows",
            Self::Notifications => "notifications",
            Self::MetaEvents => "meta-events",
            Self::Uploads => "uploads",
        }
    }
}

/// Publishes job envelopes (CloudEvents JSON) on a queue: Cloudflare
/// Queues on Workers, an SQLite outbox on Spin.
#[async_trait(?Send)]
pub trait Jobs {
    /// Publishes the envelope, deliverable after `delay_secs` (0: at once).
    async fn enqueue_after(
        &self,
        queue: Queue,
        envelope: &str,
        delay_secs: u32,
    ) -> Result<(), PortError>;

    async fn enqueue(&self, queue: Queue, envelope: &str) -> Result<(), PortError> {
        self.enqueue_after(queue, envelope, 0).await
    }
}

/// Outbound HTTP: webhook deliveries of the background jobs.
#[async_trait(?Send)]
pub trait HttpClient {
    /// Sends the request and buffers the answer. `Err` when no answer
    /// arrived at all (refused connection, DNS, TLS): the caller treats
    /// that as transient.
    async fn send(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, PortError>;
}

/// Waiting, for time budgets: `sleep` completes after `millis`.
#[async_trait(?Send)]
pub trait Timer {
    async fn sleep(&self, millis: u32);
}

/// A limit that holds across instances (the Workers Rate Limiting binding):
/// asked after the local decision admitted a request.
#[async_trait(?Send)]
pub trait Limiter {
    /// Whether `key` of the limit class `class` (`login`, `api`, …) may
    /// pass. Errors are logged and admit.
    async fn allow(&self, class: &str, key: &str) -> Result<bool, PortError>;
}

/// A response as the shared cache keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cached {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A shared cache with per-entry time to live.
#[async_trait(?Send)]
pub trait Cache {
    async fn get(&self, key: &str, now: Timestamp) -> Result<Option<Cached>, PortError>;
    async fn put(
        &self,
        key: &str,
        value: &Cached,
        ttl_secs: u32,
        now: Timestamp,
    ) -> Result<(), PortError>;
}

/// Everything a request may touch outside the core. Storage ports are
/// optional: a platform wires the ones it has.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub entropy: &'a dyn Entropy,
    pub clock: &'a dyn Clock,
    pub probes: &'a [&'a dyn Probe],
    pub sql: Option<&'a dyn Sql>,
    pub kv: Option<&'a dyn KeyValue>,
    /// A limit across instances (the Workers Rate Limiting binding).
    pub limiter: Option<&'a dyn Limiter>,
    /// The shared HTTP cache (the Workers Cache API).
    pub cache: Option<&'a dyn Cache>,
    /// Upload bodies (R2). Without it, a stateless app keeps them in `kv`.
    pub blobs: Option<&'a dyn Blobs>,
    /// Job queues (Cloudflare Queues). Without it, a stateless app writes
    /// to the SQL outbox.
    pub jobs: Option<&'a dyn Jobs>,
    /// Outbound HTTP for background jobs (webhooks).
    pub http: Option<&'a dyn HttpClient>,
    /// Timers for job time budgets. Without one, a job's budget is only
    /// checked between its steps.
    pub timer: Option<&'a dyn Timer>,
    /// The service that holds the metrics aggregate (a Durable Object on
    /// Workers), spoken to in `metrics::aggregate::remote`'s protocol.
    /// Without it, the aggregate lives in `sql`.
    pub aggregator: Option<&'a dyn HttpClient>,
}

impl std::fmt::Debug for Ports<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.probes.iter().map(|p| p.name()).collect();
        f.debug_struct("Ports")
            .field("probes", &names)
            .finish_non_exhaustive()
    }
}
