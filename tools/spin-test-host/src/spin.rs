//! Spin's `fermyon:spin@2.0.0` interfaces — SQLite, key-value and
//! variables — backed by real SQLite, with Spin's error semantics.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use wasmtime::component::{Resource, ResourceTable};

use crate::manifest::{Component, check_variable_name};

wasmtime::component::bindgen!({
    path: "wit",
    world: "tepi:spin-test-host/host",
    imports: { default: trappable },
    with: {
        "fermyon:spin/sqlite.connection": SqliteConnection,
        "fermyon:spin/key-value.store": KvStore,
    },
});

use fermyon::spin::{key_value, sqlite, variables};

/// The label Spin gives the store and database that need no runtime config.
const DEFAULT_LABEL: &str = "default";

/// Where state lives, shared by every request of a host run.
#[derive(Debug, Clone)]
pub struct StateDir {
    sqlite_default: PathBuf,
    key_value: PathBuf,
}

impl StateDir {
    /// Creates the directory and the key-value table.
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let state = Self {
            sqlite_default: dir.join("sqlite_db.db"),
            key_value: dir.join("sqlite_key_value.db"),
        };
        let kv = open_sqlite(&state.key_value)?;
        kv.execute_batch(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                PRIMARY KEY (store, key))",
        )?;
        Ok(state)
    }
}

fn open_sqlite(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    // Many instances run at once: wait for locks instead of failing.
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    Ok(conn)
}

#[derive(Debug)]
pub struct SqliteConnection(rusqlite::Connection);

#[derive(Debug)]
pub struct KvStore {
    conn: rusqlite::Connection,
    label: String,
}

/// Per-request Spin state: what this component may open, and its handles.
pub struct SpinState {
    pub component: Arc<Component>,
    pub state_dir: StateDir,
    pub table: ResourceTable,
}

impl std::fmt::Debug for SpinState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpinState")
            .field("component", &self.component.id)
            .finish_non_exhaustive()
    }
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> &mut SpinState,
) -> wasmtime::Result<()> {
    Host_::add_to_linker::<T, wasmtime::component::HasSelf<SpinState>>(linker, get)
}

// ---- sqlite ---------------------------------------------------------------

impl sqlite::Host for SpinState {}

impl sqlite::HostConnection for SpinState {
    fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SqliteConnection>, sqlite::Error>> {
        if !self.component.sqlite_databases.contains(&database) {
            return Ok(Err(sqlite::Error::AccessDenied));
        }
        if database != DEFAULT_LABEL {
            return Ok(Err(sqlite::Error::NoSuchDatabase));
        }
        match open_sqlite(&self.state_dir.sqlite_default) {
            Ok(conn) => Ok(Ok(self.table.push(SqliteConnection(conn))?)),
            Err(e) => Ok(Err(sqlite::Error::Io(e.to_string()))),
        }
    }

    fn execute(
        &mut self,
        connection: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> wasmtime::Result<Result<sqlite::QueryResult, sqlite::Error>> {
        let conn = &self.table.get(&connection)?.0;
        Ok(execute(conn, &statement, parameters).map_err(|e| sqlite::Error::Io(e.to_string())))
    }

    fn drop(&mut self, connection: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

fn execute(
    conn: &rusqlite::Connection,
    statement: &str,
    parameters: Vec<sqlite::Value>,
) -> rusqlite::Result<sqlite::QueryResult> {
    let mut stmt = conn.prepare_cached(statement)?;
    let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let params: Vec<SqlValue> = parameters.into_iter().map(to_sql).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let values = (0..columns.len())
            .map(|i| row.get_ref(i).map(from_sql))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.push(sqlite::RowResult { values });
    }
    Ok(sqlite::QueryResult { columns, rows: out })
}

fn to_sql(value: sqlite::Value) -> SqlValue {
    match value {
        sqlite::Value::Integer(i) => SqlValue::Integer(i),
        sqlite::Value::Real(r) => SqlValue::Real(r),
        sqlite::Value::Text(t) => SqlValue::Text(t),
        sqlite::Value::Blob(b) => SqlValue::Blob(b),
        sqlite::Value::Null => SqlValue::Null,
    }
}

fn from_sql(value: ValueRef<'_>) -> sqlite::Value {
    match value {
        ValueRef::Null => sqlite::Value::Null,
        ValueRef::Integer(i) => sqlite::Value::Integer(i),
        ValueRef::Real(r) => sqlite::Value::Real(r),
        ValueRef::Text(t) => sqlite::Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => sqlite::Value::Blob(b.to_vec()),
    }
}

// ---- key-value ------------------------------------------------------------

impl key_value::Host for SpinState {}

fn kv_error(e: &rusqlite::Error) -> key_value::Error {
    key_value::Error::Other(e.to_string())
}

impl key_value::HostStore for SpinState {
    fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<KvStore>, key_value::Error>> {
        if !self.component.key_value_stores.contains(&label) {
            return Ok(Err(key_value::Error::AccessDenied));
        }
        if label != DEFAULT_LABEL {
            return Ok(Err(key_value::Error::NoSuchStore));
        }
        match open_sqlite(&self.state_dir.key_value) {
            Ok(conn) => Ok(Ok(self.table.push(KvStore { conn, label })?)),
            Err(e) => Ok(Err(kv_error(&e))),
        }
    }

    fn get(
        &mut self,
        store: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        let store = self.table.get(&store)?;
        let found = store
            .conn
            .prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")
            .and_then(|mut s| {
                let mut rows = s.query((&store.label, &key))?;
                rows.next()?.map(|row| row.get::<_, Vec<u8>>(0)).transpose()
            });
        Ok(found.map_err(|e| kv_error(&e)))
    }

    fn set(
        &mut self,
        store: Resource<KvStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let store = self.table.get(&store)?;
        let done = store.conn.execute(
            "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            (&store.label, &key, &value),
        );
        Ok(done.map(|_| ()).map_err(|e| kv_error(&e)))
    }

    fn delete(
        &mut self,
        store: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let store = self.table.get(&store)?;
        let done = store.conn.execute(
            "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2",
            (&store.label, &key),
        );
        Ok(done.map(|_| ()).map_err(|e| kv_error(&e)))
    }

    fn exists(
        &mut self,
        store: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, key_value::Error>> {
        let store = self.table.get(&store)?;
        let found = store.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2)",
            (&store.label, &key),
            |row| row.get::<_, bool>(0),
        );
        Ok(found.map_err(|e| kv_error(&e)))
    }

    fn get_keys(
        &mut self,
        store: Resource<KvStore>,
    ) -> wasmtime::Result<Result<Vec<String>, key_value::Error>> {
        let store = self.table.get(&store)?;
        let keys = store
            .conn
            .prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")
            .and_then(|mut s| s.query_map([&store.label], |row| row.get(0))?.collect());
        Ok(keys.map_err(|e| kv_error(&e)))
    }

    fn drop(&mut self, store: Resource<KvStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

// ---- variables ------------------------------------------------------------

impl variables::Host for SpinState {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        if check_variable_name(&name).is_err() {
            return Ok(Err(variables::Error::InvalidName(name)));
        }
        Ok(self
            .component
            .variables
            .get(&name)
            .cloned()
            .ok_or(variables::Error::Undefined(format!(
                "no variable for {name:?}"
            ))))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn state(dir: &Path) -> SpinState {
        let component = Component {
            id: "c".into(),
            source: PathBuf::from("c.wasm"),
            environment: BTreeMap::new(),
            key_value_stores: ["default".to_owned(), "other".to_owned()].into(),
            sqlite_databases: ["default".to_owned()].into(),
            variables: [("api_key".to_owned(), "k".to_owned())].into(),
            allowed_outbound_hosts: Arc::default(),
        };
        SpinState {
            component: Arc::new(component),
            state_dir: StateDir::create(dir).unwrap(),
            table: ResourceTable::new(),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("spin-test-host-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn sqlite_rows_round_trip_every_value_type() {
        use sqlite::HostConnection;
        let dir = temp_dir("sqlite");
        let mut s = state(&dir);
        let conn = s.open("default".into()).unwrap().unwrap();
        let own = Resource::<SqliteConnection>::new_borrow(conn.rep());
        let run = |s: &mut SpinState, sql: &str, params: Vec<sqlite::Value>| {
            s.execute(Resource::new_borrow(own.rep()), sql.into(), params)
                .unwrap()
        };
        run(
            &mut s,
            "CREATE TABLE t (i INTEGER, r REAL, x TEXT, b BLOB, n)",
            vec![],
        )
        .unwrap();
        let values = vec![
            sqlite::Value::Integer(-7),
            sqlite::Value::Real(2.5),
            sqlite::Value::Text("tepi".into()),
            sqlite::Value::Blob(vec![0, 255]),
            sqlite::Value::Null,
        ];
        let inserted = run(
            &mut s,
            "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
            values.clone(),
        )
        .unwrap();
        assert!(
            inserted.columns.is_empty() && inserted.rows.is_empty(),
            "no result set for INSERT"
        );
        let result = run(&mut s, "SELECT i, r, x, b, n FROM t", vec![]).unwrap();
        assert_eq!(result.columns, ["i", "r", "x", "b", "n"]);
        assert_eq!(result.rows.len(), 1);
        assert_eq!(
            format!("{:?}", result.rows[0].values),
            format!("{values:?}")
        );
        let bad = run(&mut s, "SELEC nonsense", vec![]).unwrap_err();
        assert!(
            matches!(bad, sqlite::Error::Io(_)),
            "syntax errors are io errors, as in Spin"
        );
        s.drop(conn).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn opening_follows_the_manifest() {
        use key_value::HostStore;
        use sqlite::HostConnection;
        let dir = temp_dir("open");
        let mut s = state(&dir);
        assert!(matches!(
            HostConnection::open(&mut s, "secret".into()).unwrap(),
            Err(sqlite::Error::AccessDenied)
        ));
        assert!(matches!(
            HostStore::open(&mut s, "nope".into()).unwrap(),
            Err(key_value::Error::AccessDenied)
        ));
        assert!(
            matches!(
                HostStore::open(&mut s, "other".into()).unwrap(),
                Err(key_value::Error::NoSuchStore)
            ),
            "allowed but without runtime config"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn key_value_persists_across_instances() {
        use key_value::HostStore;
        let dir = temp_dir("kv");
        let mut first = state(&dir);
        let store = HostStore::open(&mut first, "default".into())
            .unwrap()
            .unwrap();
        let borrow = |r: &Resource<KvStore>| Resource::<KvStore>::new_borrow(r.rep());
        first
            .set(borrow(&store), "k".into(), b"v1".to_vec())
            .unwrap()
            .unwrap();
        first
            .set(borrow(&store), "k".into(), b"v2".to_vec())
            .unwrap()
            .unwrap();
        HostStore::drop(&mut first, store).unwrap();

        let mut second = state(&dir);
        let store = HostStore::open(&mut second, "default".into())
            .unwrap()
            .unwrap();
        assert_eq!(
            second.get(borrow(&store), "k".into()).unwrap().unwrap(),
            Some(b"v2".to_vec())
        );
        assert!(second.exists(borrow(&store), "k".into()).unwrap().unwrap());
        assert_eq!(second.get_keys(borrow(&store)).unwrap().unwrap(), ["k"]);
        second.delete(borrow(&store), "k".into()).unwrap().unwrap();
        assert_eq!(
            second.get(borrow(&store), "k".into()).unwrap().unwrap(),
            None
        );
        second
            .delete(borrow(&store), "k".into())
            .unwrap()
            .expect("deleting a missing key is not an error");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn variables_resolve_or_report_spin_errors() {
        use variables::Host;
        let dir = temp_dir("vars");
        let mut s = state(&dir);
        assert_eq!(s.get("api_key".into()).unwrap().unwrap(), "k");
        assert!(matches!(
            s.get("missing".into()).unwrap(),
            Err(variables::Error::Undefined(_))
        ));
        assert!(matches!(
            s.get("Bad-Name".into()).unwrap(),
            Err(variables::Error::InvalidName(_))
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}
