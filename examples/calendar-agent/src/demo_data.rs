//! The demo's users: two people in one workspace, each with a calendar from the fake
//! provider. Created on start when missing, so the page has someone to sign in as.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use infra::Result;
use infra::db::{Database, map_diesel_error};
use serde::Serialize;

use crate::schema::{calendars, users, workspaces};

/// A demo user as the page lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DemoUser {
    /// The user's id.
    pub id: i64,
    /// The user's email.
    pub email: String,
    /// Their workspace.
    pub workspace_id: i64,
    /// Their calendar.
    pub calendar_id: i64,
}

/// The demo users' emails.
pub const DEMO_EMAILS: [&str; 2] = ["ada@demo.test", "grace@demo.test"];

/// Creates the demo workspace, users and calendars that don't exist yet; returns the users.
pub async fn ensure_demo_users(db: &Database) -> Result<Vec<DemoUser>> {
    let mut conn = db.get().await?;
    let workspace_id: i64 = match workspaces::table
        .filter(workspaces::name.eq("Demo"))
        .select(workspaces::id)
        .first(&mut conn)
        .await
        .optional()
        .map_err(map_diesel_error)?
    {
        Some(id) => id,
        None => diesel::insert_into(workspaces::table)
            .values(workspaces::name.eq("Demo"))
            .returning(workspaces::id)
            .get_result(&mut conn)
            .await
            .map_err(map_diesel_error)?,
    };
    let mut out = Vec::new();
    for email in DEMO_EMAILS {
        let user_id: i64 = match users::table
            .filter(users::email.eq(email))
            .select(users::id)
            .first(&mut conn)
            .await
            .optional()
            .map_err(map_diesel_error)?
        {
            Some(id) => id,
            None => diesel::insert_into(users::table)
                .values((users::workspace_id.eq(workspace_id), users::email.eq(email)))
                .returning(users::id)
                .get_result(&mut conn)
                .await
                .map_err(map_diesel_error)?,
        };
        let calendar_id: i64 = match calendars::table
            .filter(calendars::user_id.eq(user_id))
            .select(calendars::id)
            .first(&mut conn)
            .await
            .optional()
            .map_err(map_diesel_error)?
        {
            Some(id) => id,
            None => diesel::insert_into(calendars::table)
                .values((
                    calendars::user_id.eq(user_id),
                    calendars::provider.eq("fake"),
                    calendars::external_id.eq(format!("primary-{user_id}")),
                    calendars::name.eq("Work"),
                    calendars::is_primary.eq(true),
                ))
                .returning(calendars::id)
                .get_result(&mut conn)
                .await
                .map_err(map_diesel_error)?,
        };
        out.push(DemoUser {
            id: user_id,
            email: email.to_owned(),
            workspace_id,
            calendar_id,
        });
    }
    Ok(out)
}

/// The workspace a user's calendar belongs to, when `calendar_id` is theirs.
pub async fn calendar_of(db: &Database, user_id: i64, calendar_id: i64) -> Result<Option<i64>> {
    let mut conn = db.read().await?;
    calendars::table
        .inner_join(users::table)
        .filter(calendars::id.eq(calendar_id))
        .filter(calendars::user_id.eq(user_id))
        .select(users::workspace_id)
        .first(&mut conn)
        .await
        .optional()
        .map_err(map_diesel_error)
}
