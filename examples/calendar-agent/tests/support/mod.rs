//! A PostgreSQL database of a test's own, created on the shared server and dropped at the end.
#![allow(dead_code)] // each test binary uses part of it

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

fn base_url() -> url::Url {
    let raw = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    url::Url::parse(&raw).expect("DATABASE_URL parses")
}

/// The URL of `database` on the test server.
pub fn url_for(database: &str) -> String {
    let mut url = base_url();
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// A database of the test's own, dropped by [`TestDatabase::drop_now`].
pub struct TestDatabase {
    pub name: String,
}

impl TestDatabase {
    /// Creates `calendar_agent_{purpose}_{pid}` (dropping a leftover of the same name).
    pub async fn create(purpose: &str) -> TestDatabase {
        let name = format!("calendar_agent_{purpose}_{}", std::process::id());
        let mut admin = AsyncPgConnection::establish(&url_for("postgres"))
            .await
            .expect("PostgreSQL answers");
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .unwrap();
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        TestDatabase { name }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        url_for(&self.name)
    }

    pub async fn drop_now(self) {
        if let Ok(mut admin) = AsyncPgConnection::establish(&url_for("postgres")).await {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await;
        }
    }
}
