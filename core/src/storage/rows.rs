//! Reading rows by column name, and running statements, for every module's
//! store.

use crate::ports::{PortError, Rows, Sql, SqlValue, Statement};

/// A row read by column name; a missing or mistyped column is a storage
/// error (schema drift), never a panic.
#[derive(Debug)]
pub struct Row<'a> {
    rows: &'a Rows,
    index: usize,
}

impl Row<'_> {
    pub fn text(&self, column: &str) -> Result<String, PortError> {
        match self.rows.get(self.index, column) {
            Some(SqlValue::Text(t)) => Ok(t.clone()),
            other => Err(drift(column, other)),
        }
    }

    pub fn optional_text(&self, column: &str) -> Result<Option<String>, PortError> {
        match self.rows.get(self.index, column) {
            Some(SqlValue::Null) => Ok(None),
            Some(SqlValue::Text(t)) => Ok(Some(t.clone())),
            other => Err(drift(column, other)),
        }
    }

    pub fn integer(&self, column: &str) -> Result<i64, PortError> {
        match self.rows.get(self.index, column) {
            Some(SqlValue::Integer(i)) => Ok(*i),
            other => Err(drift(column, other)),
        }
    }

    pub fn optional_integer(&self, column: &str) -> Result<Option<i64>, PortError> {
        match self.rows.get(self.index, column) {
            Some(SqlValue::Null) => Ok(None),
            Some(SqlValue::Integer(i)) => Ok(Some(*i)),
            other => Err(drift(column, other)),
        }
    }
}

fn drift(column: &str, found: Option<&SqlValue>) -> PortError {
    PortError(format!("column {column}: unexpected value {found:?}"))
}

/// Every row of `rows`.
pub fn each(rows: &Rows) -> impl Iterator<Item = Row<'_>> {
    (0..rows.rows.len()).map(move |index| Row { rows, index })
}

/// The first row of `rows`, if any.
pub fn first(rows: &Rows) -> Option<Row<'_>> {
    each(rows).next()
}

/// Runs one statement.
pub async fn run(
    sql: &dyn Sql,
    statement: &'static str,
    params: Vec<SqlValue>,
) -> Result<Rows, PortError> {
    sql.execute(statement, &params).await
}

/// Runs statements atomically.
pub async fn atomically(sql: &dyn Sql, statements: Vec<Statement>) -> Result<(), PortError> {
    sql.batch(&statements).await
}
