//! The `DB` D1 database as the core's `Sql` port.

use async_trait::async_trait;
use tepi_core::{PortError, Rows, Sql, SqlValue, Statement};
use worker::js_sys::{self, Array, Function, Object, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{D1Database, Env};

use crate::bindings::DB;

pub struct D1Sql(D1Database);

impl D1Sql {
    pub fn new(env: &Env) -> Option<Self> {
        env.d1(DB).ok().map(Self)
    }
}

fn js_error(e: &JsValue) -> PortError {
    let message = e
        .dyn_ref::<js_sys::Error>()
        .map_or_else(|| format!("{e:?}"), |e| String::from(e.message()));
    PortError(format!("binding {DB}: {message}"))
}

fn to_js(value: &SqlValue) -> JsValue {
    match value {
        SqlValue::Null => JsValue::NULL,
        // D1 binds JavaScript numbers: integers beyond 2^53 lose precision.
        #[allow(clippy::cast_precision_loss)]
        SqlValue::Integer(i) => JsValue::from_f64(*i as f64),
        SqlValue::Real(r) => JsValue::from_f64(*r),
        SqlValue::Text(t) => JsValue::from_str(t),
        SqlValue::Blob(b) => Uint8Array::from(b.as_slice()).into(),
    }
}

/// D1 answers with JavaScript values: numbers that are whole become
/// `Integer`, other numbers `Real` (D1 does not say which column type a
/// number came from), arrays and buffers `Blob`.
#[allow(clippy::cast_possible_truncation)]
fn from_js(value: &JsValue) -> SqlValue {
    if value.is_null() || value.is_undefined() {
        SqlValue::Null
    } else if let Some(n) = value.as_f64() {
        if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
            SqlValue::Integer(n as i64)
        } else {
            SqlValue::Real(n)
        }
    } else if let Some(s) = value.as_string() {
        SqlValue::Text(s)
    } else if value.is_instance_of::<js_sys::ArrayBuffer>()
        || Array::is_array(value)
        || value.is_instance_of::<Uint8Array>()
    {
        SqlValue::Blob(Uint8Array::new(value).to_vec())
    } else if let Some(b) = value.as_bool() {
        SqlValue::Integer(i64::from(b))
    } else {
        SqlValue::Text(format!("{value:?}"))
    }
}

#[async_trait(?Send)]
impl Sql for D1Sql {
    async fn execute(&self, statement: &str, params: &[SqlValue]) -> Result<Rows, PortError> {
        let params: Vec<JsValue> = params.iter().map(to_js).collect();
        let stmt = self
            .0
            .prepare(statement)
            .bind(&params)
            .map_err(|e| PortError(format!("binding {DB}: {e}")))?;
        // `raw({ columnNames: true })` answers [[names…], [row…], …]; the
        // workers-rs wrapper does not pass options, so call it directly.
        let inner: &JsValue = stmt.inner().as_ref();
        let raw: Function = Reflect::get(inner, &"raw".into())
            .and_then(JsCast::dyn_into)
            .map_err(|e| js_error(&e))?;
        let options = Object::new();
        Reflect::set(&options, &"columnNames".into(), &JsValue::TRUE).map_err(|e| js_error(&e))?;
        let promise = raw.call1(inner, &options).map_err(|e| js_error(&e))?;
        let answer = JsFuture::from(js_sys::Promise::from(promise))
            .await
            .map_err(|e| js_error(&e))?;
        let answer = Array::from(&answer);
        let mut lines = answer.iter();
        let columns = lines
            .next()
            .map(|names| {
                Array::from(&names)
                    .iter()
                    .filter_map(|n| n.as_string())
                    .collect()
            })
            .unwrap_or_default();
        let rows = lines
            .map(|row| Array::from(&row).iter().map(|v| from_js(&v)).collect())
            .collect();
        Ok(Rows { columns, rows })
    }

    fn explicit_transactions(&self) -> bool {
        false
    }

    /// D1 refuses `BEGIN`; its own `batch` runs the statements as one
    /// transaction.
    async fn batch(&self, statements: &[Statement]) -> Result<(), PortError> {
        let mut prepared = Vec::with_capacity(statements.len());
        for statement in statements {
            let params: Vec<JsValue> = statement.params.iter().map(to_js).collect();
            prepared.push(
                self.0
                    .prepare(statement.sql)
                    .bind(&params)
                    .map_err(|e| PortError(format!("binding {DB}: {e}")))?,
            );
        }
        self.0
            .batch(prepared)
            .await
            .map(drop)
            .map_err(|e| PortError(format!("binding {DB}: {e}")))
    }
}

/// A Durable Object's own SQLite storage as the core's `Sql` port. Its
/// statements run synchronously, in order; a batch runs inside the
/// storage's `transactionSync`, so it applies whole or not at all (the
/// storage refuses `BEGIN`, and workers-rs does not bind
/// `transactionSync`: it is called here by name).
pub struct DoSql {
    sql: worker::SqlStorage,
    /// The object's `DurableObjectStorage`.
    storage: JsValue,
}

impl DoSql {
    pub fn new(storage: &worker::Storage) -> Self {
        Self {
            sql: storage.sql(),
            storage: AsRef::<JsValue>::as_ref(storage.as_raw()).clone(),
        }
    }
}

fn to_storage(value: &SqlValue) -> worker::SqlStorageValue {
    match value {
        SqlValue::Null => worker::SqlStorageValue::Null,
        SqlValue::Integer(i) => worker::SqlStorageValue::Integer(*i),
        SqlValue::Real(r) => worker::SqlStorageValue::Float(*r),
        SqlValue::Text(t) => worker::SqlStorageValue::String(t.clone()),
        SqlValue::Blob(b) => worker::SqlStorageValue::Blob(b.clone()),
    }
}

fn from_storage(value: worker::SqlStorageValue) -> SqlValue {
    match value {
        worker::SqlStorageValue::Null => SqlValue::Null,
        worker::SqlStorageValue::Boolean(b) => SqlValue::Integer(i64::from(b)),
        worker::SqlStorageValue::Integer(i) => SqlValue::Integer(i),
        worker::SqlStorageValue::Float(f) => SqlValue::Real(f),
        worker::SqlStorageValue::String(s) => SqlValue::Text(s),
        worker::SqlStorageValue::Blob(b) => SqlValue::Blob(b),
    }
}

fn run(sql: &worker::SqlStorage, statement: &str, params: &[SqlValue]) -> Result<Rows, PortError> {
    let fail = |e: worker::Error| PortError(format!("durable object sql: {e}"));
    let cursor = sql
        .exec(statement, params.iter().map(to_storage).collect::<Vec<_>>())
        .map_err(fail)?;
    let columns = cursor.column_names();
    let mut rows = Vec::new();
    for row in cursor.raw() {
        rows.push(row.map_err(fail)?.into_iter().map(from_storage).collect());
    }
    Ok(Rows { columns, rows })
}

#[async_trait(?Send)]
impl Sql for DoSql {
    async fn execute(&self, statement: &str, params: &[SqlValue]) -> Result<Rows, PortError> {
        run(&self.sql, statement, params)
    }

    /// The storage refuses `BEGIN`; one request's statements run
    /// synchronously, so nothing interleaves with them anyway.
    fn explicit_transactions(&self) -> bool {
        false
    }

    async fn batch(&self, statements: &[Statement]) -> Result<(), PortError> {
        use std::cell::RefCell;
        use std::rc::Rc;
        use worker::wasm_bindgen::closure::Closure;

        let transaction = Reflect::get(&self.storage, &JsValue::from_str("transactionSync"))
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .ok_or_else(|| PortError("durable object storage has no transactionSync".into()))?;
        let failure: Rc<RefCell<Option<PortError>>> = Rc::default();
        let body = {
            let (sql, statements, failure) =
                (self.sql.clone(), statements.to_vec(), Rc::clone(&failure));
            // Throwing rolls the transaction back.
            Closure::once(move || -> Result<JsValue, JsValue> {
                for statement in &statements {
                    if let Err(e) = run(&sql, statement.sql, &statement.params) {
                        let message = JsValue::from_str(&e.0);
                        *failure.borrow_mut() = Some(e);
                        return Err(message);
                    }
                }
                Ok(JsValue::UNDEFINED)
            })
        };
        let outcome = transaction.call1(&self.storage, body.as_ref().unchecked_ref());
        drop(body);
        match outcome {
            Ok(_) => Ok(()),
            Err(thrown) => Err(failure
                .borrow_mut()
                .take()
                .unwrap_or_else(|| PortError(format!("durable object transaction: {thrown:?}")))),
        }
    }
}
