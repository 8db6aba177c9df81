//! In-process ports for tests: predictable entropy, a hand-driven clock.

use std::cell::Cell;

use async_trait::async_trait;

use crate::ports::{Clock, Entropy, KeyValue, PortError, Ports, Probe, Rows, Sql, SqlValue};
use crate::time::Timestamp;

/// Fills buffers with 0, 1, 2, … continuing across calls.
#[derive(Debug, Default)]
pub struct CountingEntropy {
    next: Cell<u8>,
}

impl Entropy for CountingEntropy {
    fn fill(&self, dest: &mut [u8]) {
        for byte in dest {
            *byte = self.next.get();
            self.next.set(self.next.get().wrapping_add(1));
        }
    }
}

/// Pseudo-random bytes from a fixed seed (SplitMix64): reproducible, and
/// unlike `CountingEntropy` it does not repeat after 256 bytes, so ids and
/// salts stay distinct across a long test.
#[derive(Debug)]
pub struct SeededEntropy(Cell<u64>);

impl SeededEntropy {
    pub fn new(seed: u64) -> Self {
        Self(Cell::new(seed))
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let mut z = self.0.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            self.0.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// A clock that advances by `step_micros` every time it is read.
#[derive(Debug)]
pub struct SteppingClock {
    now: Cell<u64>,
    step_micros: u64,
}

impl SteppingClock {
    pub fn new(start: Timestamp, step_micros: u64) -> Self {
        Self {
            now: Cell::new(start.as_unix_micros()),
            step_micros,
        }
    }
}

impl Clock for SteppingClock {
    fn now(&self) -> Timestamp {
        let now = self.now.get() + self.step_micros;
        self.now.set(now);
        Timestamp::from_unix_micros(now)
    }
}

#[derive(Debug)]
pub struct StaticProbe {
    pub name: &'static str,
    pub result: Result<(), &'static str>,
}

#[async_trait(?Send)]
impl Probe for StaticProbe {
    fn name(&self) -> &str {
        self.name
    }
    async fn check(&self) -> Result<(), String> {
        self.result.map_err(str::to_owned)
    }
}

/// Drives a future that never waits on real I/O to completion.
/// Ports with time and randomness only: no store, no probe, no service.
/// Tests add what they need with `Ports { sql: Some(..), ..bare_ports(..) }`.
pub fn bare_ports<'a>(entropy: &'a dyn Entropy, clock: &'a dyn Clock) -> Ports<'a> {
    Ports {
        entropy,
        clock,
        probes: &[],
        sql: None,
        kv: None,
        limiter: None,
        cache: None,
        blobs: None,
        jobs: None,
        http: None,
        timer: None,
        aggregator: None,
    }
}

pub fn block_on<F: Future>(future: F) -> F::Output {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// The `Sql` port over real SQLite (in memory), as D1 and Spin provide it.
#[derive(Debug)]
pub struct SqliteSql(rusqlite::Connection);

impl SqliteSql {
    pub fn open_in_memory() -> Self {
        Self(rusqlite::Connection::open_in_memory().expect("in-memory SQLite"))
    }
}

/// The most parameters Cloudflare D1 binds to one statement.
pub const D1_MAX_PARAMS: usize = 100;

#[async_trait(?Send)]
impl Sql for SqliteSql {
    async fn execute(&self, statement: &str, params: &[SqlValue]) -> Result<Rows, PortError> {
        use rusqlite::types::{Value, ValueRef};
        let err = |e: rusqlite::Error| PortError(e.to_string());
        // D1 binds at most 100 parameters a statement: so does this double,
        // or a statement that only works on SQLite would pass the tests.
        if params.len() > D1_MAX_PARAMS {
            return Err(PortError(format!(
                "{} parameters: D1 binds at most {D1_MAX_PARAMS}",
                params.len()
            )));
        }
        let mut stmt = self.0.prepare(statement).map_err(err)?;
        let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
        let params = params.iter().map(|p| match p {
            SqlValue::Null => Value::Null,
            SqlValue::Integer(i) => Value::Integer(*i),
            SqlValue::Real(r) => Value::Real(*r),
            SqlValue::Text(t) => Value::Text(t.clone()),
            SqlValue::Blob(b) => Value::Blob(b.clone()),
        });
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            let mut values = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                values.push(match row.get_ref(i).map_err(err)? {
                    ValueRef::Null => SqlValue::Null,
                    ValueRef::Integer(i) => SqlValue::Integer(i),
                    ValueRef::Real(r) => SqlValue::Real(r),
                    ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
                });
            }
            out.push(values);
        }
        Ok(Rows { columns, rows: out })
    }
}

/// The `KeyValue` port as an in-memory map.
#[derive(Debug, Default)]
pub struct MemoryKv(std::cell::RefCell<std::collections::BTreeMap<String, Vec<u8>>>);

impl MemoryKv {
    /// Every key stored, for assertions about what was (not) written.
    pub fn keys(&self) -> Vec<String> {
        self.0.borrow().keys().cloned().collect()
    }

    pub fn get_raw(&self, key: &str) -> Option<Vec<u8>> {
        self.0.borrow().get(key).cloned()
    }
}

#[async_trait(?Send)]
impl KeyValue for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        Ok(self.0.borrow().get(key).cloned())
    }
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), PortError> {
        self.0.borrow_mut().insert(key.to_owned(), value.to_vec());
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.0.borrow_mut().remove(key);
        Ok(())
    }
}
