//! A user's scheduling preferences, read cache-aside over PostgreSQL (the TypeScript module's
//! `getCached`/`setCached` pattern): five minutes in the cache, dropped on every update so the
//! next read sees the new row.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use infra::db::{Database, map_diesel_error};
use infra::{Cache, CacheExt, Error, Result};
use serde::{Deserialize, Serialize};

use crate::schema::users;

/// How long a user's preferences stay cached.
pub const PREFERENCES_TTL: Duration = Duration::from_secs(5 * 60);

/// What the agent needs to schedule around a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Queryable, AsChangeset)]
#[diesel(table_name = users)]
pub struct Preferences {
    /// IANA time zone, e.g. `Europe/Paris`.
    pub timezone: String,
    /// First working hour, 0–23.
    pub work_hours_start: i16,
    /// Hour the working day ends, 1–24, after the start.
    pub work_hours_end: i16,
    /// ISO weekdays worked (1 = Monday … 7 = Sunday).
    pub work_days: Vec<i16>,
}

impl Preferences {
    /// Checks the rules the table enforces, so a bad request gets a 400 naming the field
    /// instead of a constraint violation.
    pub fn validate(&self) -> Result<()> {
        if self.timezone.trim().is_empty() || self.timezone.len() > 64 {
            return Err(Error::invalid_input(
                "timezone",
                "must be 1 to 64 characters",
            ));
        }
        if !(0..=23).contains(&self.work_hours_start) {
            return Err(Error::invalid_input(
                "work_hours_start",
                "must be between 0 and 23",
            ));
        }
        if !(1..=24).contains(&self.work_hours_end) || self.work_hours_end <= self.work_hours_start
        {
            return Err(Error::invalid_input(
                "work_hours_end",
                "must be between 1 and 24 and after work_hours_start",
            ));
        }
        if self.work_days.is_empty() || self.work_days.iter().any(|d| !(1..=7).contains(d)) {
            return Err(Error::invalid_input(
                "work_days",
                "must list weekdays between 1 and 7",
            ));
        }
        Ok(())
    }
}

fn cache_key(user_id: i64) -> String {
    format!("user:{user_id}:preferences")
}

/// The user's preferences: from the cache, else from the database (then cached).
/// A user that does not exist is `NotFound`.
pub async fn load(cache: &dyn Cache, db: &Database, user_id: i64) -> Result<Preferences> {
    let db = db.clone();
    cache
        .get_or_set_json(&cache_key(user_id), PREFERENCES_TTL, || async move {
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
                .map_err(map_diesel_error)
        })
        .await
}

/// Writes the user's preferences, then drops the cached copy: deleting after the write (not
/// before) means no reader can re-cache the old row once this returns.
pub async fn update(
    cache: &dyn Cache,
    db: &Database,
    user_id: i64,
    preferences: &Preferences,
) -> Result<()> {
    preferences.validate()?;
    let mut conn = db.get().await?;
    let updated = diesel::update(users::table.find(user_id))
        .set(preferences)
        .execute(&mut conn)
        .await
        .map_err(map_diesel_error)?;
    if updated == 0 {
        return Err(Error::new(
            infra::ErrorKind::NotFound,
            format!("user {user_id} does not exist"),
        ));
    }
    cache.delete(&cache_key(user_id)).await?;
    Ok(())
}
