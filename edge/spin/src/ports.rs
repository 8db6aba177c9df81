//! Spin's SQLite and key-value interfaces as the core's ports, and their
//! readiness probes.

use async_trait::async_trait;
use spin_sdk::{key_value, sqlite};
use tepi_core::{KeyValue, PortError, Probe, Rows, Sql, SqlValue};

/// The `default` SQLite database (`sqlite_databases` in spin.toml).
pub struct SpinSql(sqlite::Connection);

impl SpinSql {
    pub fn open() -> Result<Self, PortError> {
        sqlite::Connection::open_default()
            .map(Self)
            .map_err(|e| PortError(format!("sqlite default: {e}")))
    }
}

fn to_spin(value: &SqlValue) -> sqlite::Value {
    match value {
        SqlValue::Null => sqlite::Value::Null,
        SqlValue::Integer(i) => sqlite::Value::Integer(*i),
        SqlValue::Real(r) => sqlite::Value::Real(*r),
        SqlValue::Text(t) => sqlite::Value::Text(t.clone()),
        SqlValue::Blob(b) => sqlite::Value::Blob(b.clone()),
    }
}

fn from_spin(value: sqlite::Value) -> SqlValue {
    match value {
        sqlite::Value::Null => SqlValue::Null,
        sqlite::Value::Integer(i) => SqlValue::Integer(i),
        sqlite::Value::Real(r) => SqlValue::Real(r),
        sqlite::Value::Text(t) => SqlValue::Text(t),
        sqlite::Value::Blob(b) => SqlValue::Blob(b),
    }
}

#[async_trait(?Send)]
impl Sql for SpinSql {
    async fn execute(&self, statement: &str, params: &[SqlValue]) -> Result<Rows, PortError> {
        let params: Vec<sqlite::Value> = params.iter().map(to_spin).collect();
        let result = self
            .0
            .execute(statement, &params)
            .map_err(|e| PortError(format!("sqlite: {e}")))?;
        Ok(Rows {
            columns: result.columns,
            rows: result
                .rows
                .into_iter()
                .map(|row| row.values.into_iter().map(from_spin).collect())
                .collect(),
        })
    }
}

/// The `default` key-value store (`key_value_stores` in spin.toml).
pub struct SpinKv(key_value::Store);

impl SpinKv {
    pub fn open() -> Result<Self, PortError> {
        key_value::Store::open_default()
            .map(Self)
            .map_err(|e| PortError(format!("key-value default: {e}")))
    }
}

fn kv_error(e: &key_value::Error) -> PortError {
    PortError(format!("key-value: {e}"))
}

#[async_trait(?Send)]
impl KeyValue for SpinKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        self.0.get(key).map_err(|e| kv_error(&e))
    }
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), PortError> {
        self.0.set(key, value).map_err(|e| kv_error(&e))
    }
    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.0.delete(key).map_err(|e| kv_error(&e))
    }
}

/// Readiness of a store: it opened, and answers a read.
pub struct StoreProbe<'a> {
    pub name: &'static str,
    pub sql: Option<&'a SpinSql>,
    pub kv: Option<&'a SpinKv>,
    pub open_error: Option<&'a PortError>,
}

#[async_trait(?Send)]
impl Probe for StoreProbe<'_> {
    fn name(&self) -> &str {
        self.name
    }
    async fn check(&self) -> Result<(), String> {
        if let Some(e) = self.open_error {
            return Err(e.to_string());
        }
        if let Some(sql) = self.sql {
            sql.execute("SELECT 1", &[])
                .await
                .map_err(|e| e.to_string())?;
        }
        if let Some(kv) = self.kv {
            kv.get("readyz").await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
