//! Calendar sync as a durable background function: `calendar/sync.requested` (sent by
//! `POST /api/calendars/{id}/sync` through [`schedule_calendar_sync`](crate::events::schedule_calendar_sync)) runs
//! [`sync_function`], three steps: fetch the provider's events, write them in one
//! transaction, tell the user's private channel. Each step's result is recorded, so a retry
//! (or a crash) resumes after the last finished step: the provider is not asked again once
//! its events were fetched, and a write is not repeated because the announcement failed.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use infra::db::{DEFAULT_TRANSACTION_RETRY, Database, Isolation};
use infra::jobs::{Function, JobContext, Outcome};
use infra::monitoring::Monitoring;
use infra::realtime::RealtimeNotify;
use infra::{Error, ErrorKind, Realtime, Result};

use crate::events::CalendarSyncRequested;
use crate::notifications::{CalendarSyncCompleted, CalendarSyncFailed};
use crate::provider::{CalendarProvider, ProviderEvent};
use crate::schema::calendar_events;

/// The function's id (stable: it names rows in the queue and Inngest's function).
pub const SYNC_FUNCTION_ID: &str = "sync-calendar";

/// What the sync needs.
#[derive(Clone)]
pub struct SyncDeps {
    /// Where events are written.
    pub db: Database,
    /// Where progress is announced.
    pub realtime: Arc<dyn Realtime>,
    /// Where events come from.
    pub provider: Arc<dyn CalendarProvider>,
    /// Where failures are reported.
    pub monitoring: Monitoring,
}

/// The background function: one sync per user at a time, two retries per step with
/// backoff, a minute per attempt.
pub fn sync_function(deps: SyncDeps) -> Result<Function> {
    Function::typed::<CalendarSyncRequested>(SYNC_FUNCTION_ID)
        .name("Sync a calendar")
        .retries(2)
        .timeout(Duration::from_secs(60))
        .concurrency_per_key(1, "event.data.userId")
        .with_state(deps)
        .handler(
            |event: CalendarSyncRequested, ctx: JobContext<SyncDeps>| async move {
                run(ctx.state(), &event, &ctx).await
            },
        )
}

async fn run(
    deps: &SyncDeps,
    event: &CalendarSyncRequested,
    ctx: &JobContext<SyncDeps>,
) -> Outcome {
    match sync_steps(deps, event, ctx).await {
        Ok(_) => Outcome::success(),
        Err(err) => {
            // A step's retryable failure retries that step on its own and never reaches here;
            // what does is final (its retries spent, or not retryable).
            deps.monitoring.tracking().job_error(
                SYNC_FUNCTION_ID,
                ctx.event().name.as_str(),
                ctx.attempt(),
                &err,
            );
            let _ = deps
                .realtime
                .notify_user(
                    &event.user_id,
                    &CalendarSyncFailed {
                        calendar_id: event.calendar_id.clone(),
                        reason: err.message().to_owned(),
                    },
                )
                .await;
            Outcome::from(err)
        }
    }
}

/// The three steps; returns how many events were written.
async fn sync_steps(
    deps: &SyncDeps,
    event: &CalendarSyncRequested,
    ctx: &JobContext<SyncDeps>,
) -> Result<u64> {
    let calendar_id: i64 = event
        .calendar_id
        .parse()
        .map_err(|_| Error::invalid_input("calendarId", "must be a calendar's numeric id"))?;
    let step = ctx.step();
    let events: Vec<ProviderEvent> = step
        .run("fetch-events", || deps.provider.list_events(calendar_id))
        .await?;
    let written: u64 = step
        .run("write-events", || write_events(deps, calendar_id, &events))
        .await?;
    step.run("notify", || async {
        // The sync is done even if this announcement fails; don't redo it for that.
        if let Err(err) = deps
            .realtime
            .notify_user(
                &event.user_id,
                &CalendarSyncCompleted {
                    calendar_id: event.calendar_id.clone(),
                    events_synced: written,
                },
            )
            .await
        {
            tracing::warn!(error = %err, "could not announce a completed sync");
        }
        Ok::<_, Error>(())
    })
    .await?;
    Ok(written)
}

/// Upserts `events` of `calendar_id` in one transaction; returns how many.
async fn write_events(deps: &SyncDeps, calendar_id: i64, events: &[ProviderEvent]) -> Result<u64> {
    let rows: Vec<_> = events
        .iter()
        .map(|e| {
            (
                calendar_events::calendar_id.eq(calendar_id),
                calendar_events::external_id.eq(Some(e.external_id.clone())),
                calendar_events::title.eq(e.title.clone()),
                calendar_events::starts_at.eq(e.starts_at),
                calendar_events::ends_at.eq(e.ends_at),
            )
        })
        .collect();
    let rows = Arc::new(rows);
    let written = deps
        .db
        .transaction(
            Isolation::ReadCommitted,
            DEFAULT_TRANSACTION_RETRY,
            move |conn| {
                let rows = rows.clone();
                Box::pin(async move {
                    diesel::insert_into(calendar_events::table)
                        .values(&*rows)
                        .on_conflict((calendar_events::calendar_id, calendar_events::external_id))
                        .filter_target(calendar_events::external_id.is_not_null())
                        .do_update()
                        .set((
                            calendar_events::title.eq(excluded(calendar_events::title)),
                            calendar_events::starts_at.eq(excluded(calendar_events::starts_at)),
                            calendar_events::ends_at.eq(excluded(calendar_events::ends_at)),
                        ))
                        .execute(conn)
                        .await
                })
            },
        )
        .await?;
    if written != events.len() {
        return Err(Error::new(
            ErrorKind::Backend,
            format!("wrote {written} of {} events", events.len()),
        ));
    }
    Ok(written as u64)
}
