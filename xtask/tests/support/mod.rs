//! What the xtask tests share: a PostgreSQL database of a test's own.

use infra::db::diesel;
use infra::db::diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

fn base_url() -> url::Url {
    let raw = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    url::Url::parse(&raw).expect("DATABASE_URL parses")
}

pub fn url_for(database: &str) -> String {
    let mut url = base_url();
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// A database for this test, dropped at the end (also when the test fails).
pub struct TempDb {
    /// The database's name.
    pub name: String,
}

impl TempDb {
    /// Creates `{prefix}_{pid}`, dropping a leftover of that name first.
    pub async fn create(prefix: &str) -> TempDb {
        let name = format!("{prefix}_{}", std::process::id());
        let mut admin = AsyncPgConnection::establish(&url_for("postgres"))
            .await
            .expect("PostgreSQL answers");
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{name}\""),
        ] {
            diesel::sql_query(sql).execute(&mut admin).await.unwrap();
        }
        TempDb { name }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                if let Ok(mut admin) = AsyncPgConnection::establish(&url_for("postgres")).await {
                    let _ = diesel::sql_query(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    ))
                    .execute(&mut admin)
                    .await;
                }
            });
        })
        .join();
    }
}
