//! Rows of a [`DbConnection`](super::DbConnection) query, as diesel reads them.

use std::num::NonZeroU32;
use std::pin::Pin;
use std::task::{Context, Poll};

use diesel::QueryResult;
use diesel::pg::{Pg, PgValue, TypeOidLookup};
use diesel::row::{Field, PartialRow, Row, RowIndex, RowSealed};
use futures::Stream;
use tokio_postgres::types::{FromSql, Type};

use super::pg_error::query_error;

/// One row: tokio-postgres's row, its values handed to diesel as raw binary.
pub struct DbRow(tokio_postgres::Row);

impl RowSealed for DbRow {}

impl<'a> Row<'a, Pg> for DbRow {
    type InnerPartialRow = Self;
    type Field<'f>
        = DbField<'f>
    where
        Self: 'f,
        'a: 'f;

    fn field_count(&self) -> usize {
        self.0.len()
    }

    fn get<'f, I>(&'f self, idx: I) -> Option<Self::Field<'f>>
    where
        'a: 'f,
        Self: RowIndex<I>,
    {
        let idx = self.idx(idx)?;
        let column = &self.0.columns()[idx];
        Some(DbField {
            row: &self.0,
            idx,
            // OID 0 is never a column's type; diesel reads it only to check a value's type.
            oid: ColumnType(NonZeroU32::new(column.type_().oid()).unwrap_or(NonZeroU32::MIN)),
        })
    }

    fn partial_row(&self, range: std::ops::Range<usize>) -> PartialRow<'_, Self::InnerPartialRow> {
        PartialRow::new(self, range)
    }
}

impl RowIndex<usize> for DbRow {
    fn idx(&self, idx: usize) -> Option<usize> {
        (idx < self.0.len()).then_some(idx)
    }
}

impl<'n> RowIndex<&'n str> for DbRow {
    fn idx(&self, name: &'n str) -> Option<usize> {
        self.0.columns().iter().position(|c| c.name() == name)
    }
}

/// One value of a [`DbRow`].
pub struct DbField<'r> {
    row: &'r tokio_postgres::Row,
    idx: usize,
    oid: ColumnType,
}

impl Field<'_, Pg> for DbField<'_> {
    fn field_name(&self) -> Option<&str> {
        Some(self.row.columns()[self.idx].name())
    }

    fn value(&self) -> Option<PgValue<'_>> {
        let RawValue(bytes) = self.row.try_get(self.idx).ok()?;
        Some(PgValue::new(bytes?, &self.oid))
    }
}

/// A column's type OID, which diesel asks a value for.
struct ColumnType(NonZeroU32);

impl TypeOidLookup for ColumnType {
    fn lookup(&self) -> NonZeroU32 {
        self.0
    }
}

/// A value's bytes as PostgreSQL sent them (binary format), `None` for `NULL`.
struct RawValue<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for RawValue<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// The rows of one query, streamed as PostgreSQL sends them.
pub struct DbRows(Pin<Box<tokio_postgres::RowStream>>);

impl DbRows {
    pub(crate) fn new(rows: tokio_postgres::RowStream) -> Self {
        DbRows(Box::pin(rows))
    }
}

impl Stream for DbRows {
    type Item = QueryResult<DbRow>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0
            .as_mut()
            .poll_next(cx)
            .map(|row| row.map(|row| row.map(DbRow).map_err(query_error)))
    }
}
