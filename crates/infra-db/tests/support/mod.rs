//! A fresh database per test on the real PostgreSQL, dropped afterwards.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::atomic::{AtomicU32, Ordering};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use infra_db::diesel_migrations::{EmbeddedMigrations, embed_migrations};
use infra_db::{Database, DbConfig};

pub mod schema;

/// The fixture schema the tests migrate to: workspaces and their users, with a foreign key
/// and unique and composite indexes, so migrations, transactions and pagination meet real
/// constraints.
pub const FIXTURE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/fixtures/migrations");

/// The server the tests use: `DATABASE_URL`'s, else the local one.
pub fn base_url() -> url::Url {
    let raw = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    url::Url::parse(&raw).expect("DATABASE_URL parses")
}

pub fn url_for(database: &str) -> String {
    let mut url = base_url();
    url.set_path(&format!("/{database}"));
    url.to_string()
}

async fn admin() -> AsyncPgConnection {
    AsyncPgConnection::establish(&url_for("postgres"))
        .await
        .expect("PostgreSQL answers")
}

/// A database created for one test; `drop_now` removes it at the end of the test, and a
/// test that fails before that still drops it (on a thread of its own, from `Drop`).
pub struct TestDb {
    pub name: String,
    pub url: String,
    dropped: bool,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok(mut conn) = AsyncPgConnection::establish(&url_for("postgres")).await {
                    let _ = diesel::sql_query(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    ))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

impl TestDb {
    pub async fn create(test: &str) -> TestDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "infra_test_{test}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = admin().await;
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap();
        TestDb {
            url: url_for(&name),
            name,
            dropped: false,
        }
    }

    pub fn database(&self) -> Database {
        Database::from_config(DbConfig::new(&self.url).unwrap()).unwrap()
    }

    pub async fn drop_now(mut self) {
        self.dropped = true;
        let mut conn = admin().await;
        diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}
