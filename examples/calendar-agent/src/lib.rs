//! The AI calendar agent's backend in miniature, built on `infra` the way the TypeScript app
//! used Prisma, Upstash, Inngest, Pusher and Sentry:
//!
//! - its own schema and migrations (`migrations/`, [`MIGRATIONS`]), applied on start;
//! - user preferences cache-aside over PostgreSQL, invalidated on update ([`preferences`]);
//! - `POST /api/calendars/{id}/sync`, rate limited, queueing `calendar/sync.requested`
//!   ([`events`]);
//! - the sync as a background function ([`sync`]): events from a [`provider`], written in
//!   one transaction, progress announced on the user's private channel, failures reported;
//! - a page (pusher-js served by the app) where a demo user watches a sync happen live.
//!
//! `cargo run -p calendar-agent` reads `.env`, migrates, and serves on `INFRA_EXAMPLE_ADDR`.

pub mod app;
pub mod demo_auth;
pub mod demo_data;
pub mod events;
pub mod notifications;
pub mod preferences;
pub mod provider;
pub mod schema;
pub mod sync;

use std::sync::Arc;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use infra::{Error, Infra, Result};

/// The app's migrations (`examples/calendar-agent/migrations`).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Where the app listens unless `INFRA_EXAMPLE_ADDR` says otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:3000";

/// Prepares everything the app needs and returns its router: applies the migrations,
/// creates the demo users, registers the sync function and starts the jobs runtime.
pub async fn start(
    infra: Arc<Infra>,
    provider: Arc<dyn provider::CalendarProvider>,
) -> Result<axum::Router> {
    let db = infra.database().cloned().ok_or_else(|| {
        Error::config(
            "DATABASE_URL",
            "is not set: the calendar agent keeps its data in PostgreSQL",
        )
    })?;
    for version in infra::db::run_pending_migrations(&db, MIGRATIONS).await? {
        tracing::info!(version, "applied migration");
    }
    let users = demo_data::ensure_demo_users(&db).await?;
    infra.jobs().register(sync::sync_function(sync::SyncDeps {
        db: db.clone(),
        realtime: infra.realtime().realtime(),
        provider,
        monitoring: infra.monitoring().clone(),
    })?)?;
    infra.start().await?;
    Ok(app::router(app::AppState {
        infra,
        db,
        sessions: demo_auth::DemoSessions::default(),
        users: Arc::new(users),
    }))
}
