//! The calendar agent's backend in miniature: every `infra` service from `.env`, the database
//! migrated, health routes, and a rate-limited, cached preferences route.
//!
//! ```sh
//! cp .env.example .env
//! cargo run -p infra --example calendar_agent --features full
//! curl localhost:3000/api/health/ready
//! curl localhost:3000/users/1/preferences
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use infra::cache::tower_layer::RateLimitLayer;
use infra::db::schema::users;
use infra::{CacheExt, Infra};
use serde::{Deserialize, Serialize};

/// What the agent needs to schedule around a user.
#[derive(Debug, Clone, Serialize, Deserialize, Queryable)]
struct Preferences {
    timezone: String,
    work_hours_start: i16,
    work_hours_end: i16,
    work_days: Vec<i16>,
}

async fn preferences(
    State(infra): State<Arc<Infra>>,
    Path(user_id): Path<i64>,
) -> Result<Json<Preferences>, StatusCode> {
    let Some(db) = infra.database().cloned() else {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    };
    let key = format!("user:{user_id}:preferences");
    // Cache-aside, as the seed's getCached/setCached: an hour, invalidated on update.
    let loaded = infra
        .cache()
        .get_or_set_json(&key, Duration::from_secs(3600), || async move {
            let mut conn = db.read().await?;
            users::table
                .find(user_id)
                .select((
                    users::timezone,
                    users::work_hours_start,
                    users::work_hours_end,
                    users::work_days,
                ))
                .first::<Preferences>(&mut conn)
                .await
                .map_err(infra::db::map_diesel_error)
        })
        .await;
    match loaded {
        Ok(prefs) => Ok(Json(prefs)),
        Err(err) if err.kind() == infra::ErrorKind::NotFound => Err(StatusCode::NOT_FOUND),
        Err(err) => {
            infra
                .monitoring()
                .tracking()
                .api_error("/users/{id}/preferences", &err, 500);
            Err(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    dotenvy::dotenv().ok();
    let infra = Arc::new(Infra::from_env()?);
    if let Some(db) = infra.database() {
        for version in infra::db::run_pending_migrations(db).await? {
            println!("applied migration {version}");
        }
    }
    let api = axum::Router::new()
        .route("/users/{id}/preferences", get(preferences))
        .layer(RateLimitLayer::new(
            infra.rate_limiter(),
            60,
            Duration::from_secs(60),
        ))
        .with_state(infra.clone());
    let app = api.merge(infra.router());
    let addr = std::env::var("INFRA_EXAMPLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("calendar agent on http://{addr} (GET /api/health/ready, /users/{{id}}/preferences)");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await?;
    Ok(())
}
