//! Opening a PostgreSQL session — TLS as the URL asks, within the connect timeout, with the
//! statement timeout set — for either connection type: [`DbConnection`] for the pool,
//! diesel-async's `AsyncPgConnection` for dedicated sessions (`LISTEN`, which it streams, and
//! the migration harness, which it drives).

use std::future::Future;
use std::time::Duration;

use diesel::ConnectionError;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use infra_core::format_duration;
use tokio_postgres::Socket;
use tokio_postgres::tls::TlsStream;

use crate::connection::DbConnection;
use crate::tls::{SslMode, connect_tls, connector, with_causes};

/// A connection type built from a connected tokio-postgres client.
pub(crate) trait Session: AsyncConnection<Backend = diesel::pg::Pg> + Sized {
    fn from_parts<T>(
        client: tokio_postgres::Client,
        connection: tokio_postgres::Connection<Socket, T>,
    ) -> impl Future<Output = diesel::ConnectionResult<Self>> + Send
    where
        T: TlsStream + Unpin + Send + 'static;
}

impl Session for DbConnection {
    fn from_parts<T>(
        client: tokio_postgres::Client,
        connection: tokio_postgres::Connection<Socket, T>,
    ) -> impl Future<Output = diesel::ConnectionResult<Self>> + Send
    where
        T: TlsStream + Unpin + Send + 'static,
    {
        DbConnection::from_client_and_connection(client, connection)
    }
}

impl Session for AsyncPgConnection {
    fn from_parts<T>(
        client: tokio_postgres::Client,
        connection: tokio_postgres::Connection<Socket, T>,
    ) -> impl Future<Output = diesel::ConnectionResult<Self>> + Send
    where
        T: TlsStream + Unpin + Send + 'static,
    {
        AsyncPgConnection::try_from_client_and_connection(client, connection)
    }
}

/// Opens one session within the connect timeout and applies the session settings.
pub(crate) async fn establish<C: Session>(
    url: String,
    connect_timeout: Duration,
    statement_timeout: Duration,
) -> diesel::ConnectionResult<C> {
    let open = async {
        let mode = SslMode::from_url("DATABASE_URL", &url)
            .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
        match connector(mode).map_err(|e| ConnectionError::BadConnection(e.to_string()))? {
            Some(tls) => {
                let (client, connection) = connect_tls(&url, tls).await?;
                C::from_parts(client, connection).await
            }
            None => {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| ConnectionError::BadConnection(with_causes(&e)))?;
                C::from_parts(client, connection).await
            }
        }
    };
    let mut conn = match tokio::time::timeout(connect_timeout, open).await {
        Ok(conn) => conn?,
        Err(_) => {
            return Err(ConnectionError::BadConnection(format!(
                "connect timed out after {}",
                format_duration(connect_timeout)
            )));
        }
    };
    // Every statement on this connection is bounded by the server itself.
    diesel::sql_query(format!(
        "SET statement_timeout = {}",
        statement_timeout.as_millis()
    ))
    .execute(&mut conn)
    .await
    .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}
