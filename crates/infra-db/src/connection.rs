//! `DbConnection`: the pool's connection — diesel's query DSL run over one tokio-postgres
//! client, with as little as possible between them.
//!
//! diesel-async's `AsyncPgConnection` is built to be shared (`&self` queries, pipelining):
//! every query takes tokio mutexes around its statement cache and transaction state, renders
//! the SQL even when the statement is cached, boxes several futures and re-subscribes to the
//! connection's error channel. A pooled connection is never shared — the pool hands it to one
//! task — so this one takes `&mut self`, finds a typed query's statement by its type before
//! rendering anything, and boxes one future per query (the trait's). Measured in
//! `docs/db.md`. It implements diesel-async's traits, so `RunQueryDsl`, `transaction` and the
//! `AnsiTransactionManager` work on it as on `AsyncPgConnection`.

mod binds;
mod pg_error;
mod row;
mod statements;

use std::fmt;

use diesel::connection::{CacheSize, Instrumentation, InstrumentationEvent};
use diesel::pg::{Pg, PgMetadataLookup, PgQueryBuilder};
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::{AsQuery, QueryBuilder, QueryFragment, QueryId};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{ConnectionError, ConnectionResult, QueryResult};
use diesel_async::{
    AnsiTransactionManager, AsyncConnection, AsyncConnectionCore, SimpleAsyncConnection,
    TransactionManager,
};
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::Statement;
use tokio_postgres::tls::TlsStream;

use binds::{
    BindValue, FIRST_PASS, MissingType, Patch, SECOND_PASS, TypeCache, TypeLookup, pg_type,
    placeholder_patches,
};
use pg_error::query_error;
pub(crate) use pg_error::server_sqlstate;
pub use row::{DbField, DbRow, DbRows};
use statements::{StatementCache, StatementKey};

/// One PostgreSQL connection, as the [`Database`](crate::Database) pool hands it out.
///
/// Use it with diesel-async's `RunQueryDsl` as any diesel-async connection:
///
/// ```no_run
/// # async fn demo(db: infra_db::Database) -> infra_core::Result<()> {
/// use diesel::prelude::*;
/// use diesel::sql_types::Integer;
/// use diesel_async::RunQueryDsl;
///
/// let mut conn = db.get().await?;
/// let one: i32 = diesel::select(1.into_sql::<Integer>())
///     .get_result(&mut conn)
///     .await
///     .map_err(infra_db::map_diesel_error)?;
/// # Ok(()) }
/// ```
pub struct DbConnection {
    client: tokio_postgres::Client,
    statements: StatementCache,
    types: TypeCache,
    transaction_manager: AnsiTransactionManager,
    instrumentation: Box<dyn Instrumentation>,
    /// Whether `instrumentation` does anything: events are only built for one that does.
    instrumented: bool,
    /// A query failed because the session is over. The client notices the closed socket a
    /// moment later (when its connection task ends); this marks it at once.
    session_ended: bool,
}

impl fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbConnection")
            .field("closed", &self.client.is_closed())
            .finish_non_exhaustive()
    }
}

/// A query reduced to what the future needs: everything borrowed from the (not necessarily
/// `Send`) query is done before the future starts.
struct Request {
    statement: Prepared,
    binds: Vec<BindValue>,
    missing_types: Vec<MissingType>,
    /// Where the binds' bytes hold placeholders of `missing_types`.
    patches: Vec<Patch>,
    /// The SQL, for instrumentation (rendered only when instrumented or needed anyway).
    sql: Option<String>,
}

enum Prepared {
    Cached(Statement),
    New { sql: String, key: StatementKey },
}

/// SQL text as diesel's instrumentation shows queries.
struct SqlText<'a>(&'a str);

impl fmt::Display for SqlText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for SqlText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl diesel::connection::DebugQuery for SqlText<'_> {}

/// An instrumentation that does nothing, when none is installed.
struct Silent;

impl Instrumentation for Silent {
    fn on_connection_event(&mut self, _: InstrumentationEvent<'_>) {}
}

impl DbConnection {
    /// Wraps a client whose connection future the caller passes along: it is spawned here, and
    /// ends when the client is dropped or the server closes the socket.
    pub async fn from_client_and_connection<S, T>(
        client: tokio_postgres::Client,
        connection: tokio_postgres::Connection<S, T>,
    ) -> ConnectionResult<Self>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        T: TlsStream + Unpin + Send + 'static,
    {
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "PostgreSQL connection ended");
            }
        });
        let instrumentation = diesel::connection::get_default_instrumentation();
        let conn = DbConnection {
            client,
            statements: StatementCache::default(),
            types: TypeCache::default(),
            transaction_manager: AnsiTransactionManager::default(),
            instrumented: instrumentation.is_some(),
            instrumentation: instrumentation.unwrap_or_else(|| Box::new(Silent)),
            session_ended: false,
        };
        // What diesel's own PostgreSQL connections assume when they read and write values.
        conn.client
            .batch_execute("SET TIME ZONE 'UTC'; SET CLIENT_ENCODING TO 'UTF8'")
            .await
            .map_err(|e| ConnectionError::CouldntSetupConfiguration(query_error(e)))?;
        Ok(conn)
    }

    /// Whether the socket is closed (the server ended the session, an I/O error): such a
    /// connection can run nothing more.
    pub fn is_closed(&self) -> bool {
        self.session_ended || self.client.is_closed()
    }

    /// Whether the pool must drop this connection: closed, or left in a transaction that
    /// could not be rolled back.
    pub fn is_broken(&mut self) -> bool {
        self.is_closed()
            || <AnsiTransactionManager as TransactionManager<Self>>::is_broken_transaction_manager(
                self,
            )
    }

    /// A token that asks the server to cancel the query running on this connection.
    pub fn cancel_token(&self) -> tokio_postgres::CancelToken {
        self.client.cancel_token()
    }

    /// The tokio-postgres client underneath, for what diesel does not express (`COPY`).
    pub fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    /// The query's binds, custom types unknown to this connection given placeholder OIDs from
    /// `base` on.
    fn collect<Q>(
        &mut self,
        query: &Q,
        base: u32,
    ) -> QueryResult<(Vec<BindValue>, Vec<MissingType>)>
    where
        Q: QueryFragment<Pg>,
    {
        let mut collector = RawBytesBindCollector::<Pg>::new();
        let mut lookup = TypeLookup::new(std::mem::take(&mut self.types), base);
        let collected = query.collect_binds(
            &mut collector,
            &mut lookup as &mut dyn PgMetadataLookup,
            &Pg,
        );
        self.types = lookup.cache;
        collected?;
        let binds = collector
            .metadata
            .into_iter()
            .zip(collector.binds)
            .map(|(metadata, bytes)| {
                let oid = metadata
                    .oid()
                    .map_err(|e| DieselError::SerializationError(Box::new(e)))?;
                Ok(BindValue { oid, bytes })
            })
            .collect::<QueryResult<Vec<_>>>()?;
        Ok((binds, lookup.missing))
    }

    fn request<Q>(&mut self, query: &Q) -> QueryResult<Request>
    where
        Q: QueryFragment<Pg> + QueryId,
    {
        let key = self
            .statements
            .key(query.is_safe_to_cache_prepared(&Pg)?, Q::query_id());
        let (binds, missing_types) = self.collect(query, FIRST_PASS)?;
        let patches = if missing_types.is_empty() {
            Vec::new()
        } else {
            // Rare (a custom type's first use on this connection): find where the bytes hold
            // the placeholders.
            let (second, _) = self.collect(query, SECOND_PASS)?;
            placeholder_patches(&binds, &second)?
        };
        let cached = match key {
            StatementKey::Type(id) if missing_types.is_empty() => self.statements.by_type(id),
            _ => None,
        };
        let statement = match cached {
            Some(statement) => Prepared::Cached(statement.clone()),
            None => Prepared::New {
                sql: render(query)?,
                key,
            },
        };
        let sql = match (&statement, self.instrumented) {
            (Prepared::New { sql, .. }, true) => Some(sql.clone()),
            (Prepared::Cached(_), true) => Some(render(query)?),
            (_, false) => None,
        };
        Ok(Request {
            statement,
            binds,
            missing_types,
            patches,
            sql,
        })
    }

    /// Starts a request: instrumentation hears of it, then its statement and binds are made
    /// ready. The SQL (when instrumented) goes back for [`finish`](Self::finish).
    async fn begin(
        &mut self,
        request: Request,
    ) -> (Option<String>, QueryResult<(Statement, Vec<BindValue>)>) {
        let Request {
            statement,
            mut binds,
            missing_types,
            patches,
            sql,
        } = request;
        self.start(sql.as_deref());
        let statement = self
            .statement(statement, &mut binds, missing_types, &patches)
            .await;
        (sql, statement.map(|statement| (statement, binds)))
    }

    /// The request's statement: cached, or prepared (with the binds' types) and cached.
    async fn statement(
        &mut self,
        prepared: Prepared,
        binds: &mut [BindValue],
        missing_types: Vec<MissingType>,
        patches: &[Patch],
    ) -> QueryResult<Statement> {
        if !missing_types.is_empty() {
            self.types
                .resolve(&self.client, missing_types, patches, binds)
                .await?;
        }
        let (sql, key) = match prepared {
            Prepared::Cached(statement) => return Ok(statement),
            Prepared::New { sql, key } => (sql, key),
        };
        let bind_types: Vec<u32> = binds.iter().map(|b| b.oid).collect();
        if let StatementKey::Sql = key
            && let Some(statement) = self.statements.by_sql(&sql, &bind_types)
        {
            return Ok(statement.clone());
        }
        let types: Vec<_> = bind_types.iter().map(|&oid| pg_type(oid)).collect();
        let statement = self
            .client
            .prepare_typed(&sql, &types)
            .await
            .map_err(query_error)?;
        self.statements
            .insert(key, sql, bind_types, statement.clone());
        Ok(statement)
    }

    fn start(&mut self, sql: Option<&str>) {
        if let Some(sql) = sql {
            self.instrumentation
                .on_connection_event(InstrumentationEvent::start_query(&SqlText(sql)));
        }
    }

    /// What every query does with its outcome: a serialization failure inside a transaction
    /// means the transaction must be rolled back; then [`ended`](Self::ended).
    fn finish<T>(&mut self, sql: Option<&str>, outcome: QueryResult<T>) -> QueryResult<T> {
        if let Err(DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _)) =
            &outcome
        {
            <AnsiTransactionManager as TransactionManager<Self>>::transaction_manager_status_mut(
                self,
            )
            .set_requires_rollback_maybe_up_to_top_level(true);
        }
        self.ended(sql, &outcome);
        outcome
    }

    /// What every statement does with its outcome: an ended session marks the connection
    /// closed at once; instrumentation hears of the end.
    fn ended<T>(&mut self, sql: Option<&str>, outcome: &QueryResult<T>) {
        if let Err(DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _)) = outcome {
            self.session_ended = true;
        }
        if let Some(sql) = sql {
            self.instrumentation
                .on_connection_event(InstrumentationEvent::finish_query(
                    &SqlText(sql),
                    outcome.as_ref().err(),
                ));
        }
    }
}

fn render<Q: QueryFragment<Pg>>(query: &Q) -> QueryResult<String> {
    let mut builder = PgQueryBuilder::default();
    query.to_sql(&mut builder, &Pg)?;
    Ok(builder.finish())
}

impl SimpleAsyncConnection for DbConnection {
    async fn batch_execute(&mut self, query: &str) -> QueryResult<()> {
        let sql = self.instrumented.then_some(query);
        self.start(sql);
        let outcome = self.client.batch_execute(query).await.map_err(query_error);
        // Not `finish`: the transaction manager sends its COMMIT through here and handles a
        // failed COMMIT itself.
        self.ended(sql, &outcome);
        outcome
    }
}

impl AsyncConnectionCore for DbConnection {
    type ExecuteFuture<'conn, 'query> = BoxFuture<'conn, QueryResult<usize>>;
    type LoadFuture<'conn, 'query> = BoxFuture<'conn, QueryResult<DbRows>>;
    type Stream<'conn, 'query> = DbRows;
    type Row<'conn, 'query> = DbRow;
    type Backend = Pg;

    fn load<'conn, 'query, T>(&'conn mut self, source: T) -> Self::LoadFuture<'conn, 'query>
    where
        T: AsQuery + 'query,
        T::Query: QueryFragment<Pg> + QueryId + 'query,
    {
        let request = self.request(&source.as_query());
        Box::pin(async move {
            let (sql, prepared) = self.begin(request?).await;
            let outcome = match prepared {
                Ok((statement, binds)) => self
                    .client
                    .query_raw(&statement, binds)
                    .await
                    .map(DbRows::new)
                    .map_err(query_error),
                Err(err) => Err(err),
            };
            self.finish(sql.as_deref(), outcome)
        })
    }

    fn execute_returning_count<'conn, 'query, T>(
        &'conn mut self,
        source: T,
    ) -> Self::ExecuteFuture<'conn, 'query>
    where
        T: QueryFragment<Pg> + QueryId + 'query,
    {
        let request = self.request(&source);
        Box::pin(async move {
            let (sql, prepared) = self.begin(request?).await;
            let outcome = match prepared {
                Ok((statement, binds)) => match self.client.execute_raw(&statement, binds).await {
                    Ok(rows) => usize::try_from(rows)
                        .map_err(|e| DieselError::DeserializationError(Box::new(e))),
                    Err(err) => Err(query_error(err)),
                },
                Err(err) => Err(err),
            };
            self.finish(sql.as_deref(), outcome)
        })
    }
}

impl AsyncConnection for DbConnection {
    type TransactionManager = AnsiTransactionManager;

    /// Connects without TLS; [`Database`](crate::Database) connects with the TLS the URL
    /// asks for.
    async fn establish(database_url: &str) -> ConnectionResult<Self> {
        let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
            .await
            .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
        DbConnection::from_client_and_connection(client, connection).await
    }

    fn transaction_state(&mut self) -> &mut AnsiTransactionManager {
        &mut self.transaction_manager
    }

    fn instrumentation(&mut self) -> &mut dyn Instrumentation {
        &mut *self.instrumentation
    }

    fn set_instrumentation(&mut self, instrumentation: impl Instrumentation) {
        self.instrumentation = Box::new(instrumentation);
        self.instrumented = true;
    }

    fn set_prepared_statement_cache_size(&mut self, size: CacheSize) {
        self.statements.set_size(size);
    }
}
