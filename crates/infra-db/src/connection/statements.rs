//! The prepared statements of one connection.
//!
//! A query type diesel can name (`QueryId`) is found by its `TypeId` before its SQL is
//! rendered: a cached typed query costs a hash lookup, not a query builder. Other cacheable
//! queries (`sql_query`, boxed queries) are found by their SQL and bind types. Queries diesel
//! marks unsafe to cache (an `IN` list whose length varies, say) are prepared each time.

use std::any::TypeId;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use diesel::connection::CacheSize;
use tokio_postgres::Statement;

#[derive(Default)]
pub(crate) struct StatementCache {
    by_type: HashMap<TypeId, Statement, BuildHasherDefault<TypeIdHasher>>,
    /// SQL -> (bind types, statement): usually one entry per SQL text.
    by_sql: HashMap<String, Vec<(Vec<u32>, Statement)>>,
    disabled: bool,
}

/// Where a statement prepared for a query is kept.
pub(crate) enum StatementKey {
    Type(TypeId),
    Sql,
    Uncached,
}

impl StatementCache {
    pub(crate) fn set_size(&mut self, size: CacheSize) {
        self.disabled = matches!(size, CacheSize::Disabled);
        if self.disabled {
            self.by_type.clear();
            self.by_sql.clear();
        }
    }

    /// The key of a query: its type when diesel can name it and it is safe to cache.
    pub(crate) fn key(&self, safe_to_cache: bool, query_id: Option<TypeId>) -> StatementKey {
        match (self.disabled || !safe_to_cache, query_id) {
            (true, _) => StatementKey::Uncached,
            (false, Some(id)) => StatementKey::Type(id),
            (false, None) => StatementKey::Sql,
        }
    }

    pub(crate) fn by_type(&self, id: TypeId) -> Option<&Statement> {
        self.by_type.get(&id)
    }

    pub(crate) fn by_sql(&self, sql: &str, bind_types: &[u32]) -> Option<&Statement> {
        self.by_sql
            .get(sql)?
            .iter()
            .find(|(types, _)| types == bind_types)
            .map(|(_, statement)| statement)
    }

    pub(crate) fn insert(
        &mut self,
        key: StatementKey,
        sql: String,
        bind_types: Vec<u32>,
        statement: Statement,
    ) {
        match key {
            StatementKey::Type(id) => {
                self.by_type.insert(id, statement);
            }
            StatementKey::Sql => {
                self.by_sql
                    .entry(sql)
                    .or_default()
                    .push((bind_types, statement));
            }
            StatementKey::Uncached => {}
        }
    }
}

/// A `TypeId` is already a hash: pass its bits through instead of running SipHash on them.
#[derive(Default)]
struct TypeIdHasher(u64);

impl Hasher for TypeIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_ne_bytes(word);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(5) ^ n;
    }
}
