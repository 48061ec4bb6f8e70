//! A fresh PostgreSQL database per test, dropped afterwards (as infra-db's tests do).
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::atomic::{AtomicU32, Ordering};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use infra_db::{Database, DbConfig};

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

pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl Drop for TestDb {
    fn drop(&mut self) {
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
            "infra_jobs_{test}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = AsyncPgConnection::establish(&url_for("postgres"))
            .await
            .expect("PostgreSQL answers");
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap();
        TestDb {
            url: url_for(&name),
            name,
        }
    }

    pub fn database(&self) -> Database {
        Database::from_config(DbConfig::new(&self.url).unwrap()).unwrap()
    }
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The one `bigint` column `n` that `sql` selects, such as `SELECT count(*) AS n FROM …`.
pub async fn count(db: &Database, sql: &str) -> i64 {
    let mut conn = db.get().await.unwrap();
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}
