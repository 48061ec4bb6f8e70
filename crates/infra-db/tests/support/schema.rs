//! Diesel's view of the test fixture's tables (`tests/fixtures/migrations`).
#![allow(missing_docs)] // generated-style table definitions

diesel::table! {
    workspaces (id) {
        id -> Int8,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        workspace_id -> Int8,
        email -> Text,
        timezone -> Text,
        work_hours_start -> Int2,
        work_hours_end -> Int2,
        work_days -> Array<Int2>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    calendars (id) {
        id -> Int8,
        user_id -> Int8,
        provider -> Text,
        external_id -> Text,
        name -> Text,
        is_primary -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    calendar_events (id) {
        id -> Int8,
        calendar_id -> Int8,
        external_id -> Nullable<Text>,
        title -> Text,
        starts_at -> Timestamptz,
        ends_at -> Timestamptz,
        status -> Text,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(users -> workspaces (workspace_id));
diesel::joinable!(calendars -> users (user_id));
diesel::joinable!(calendar_events -> calendars (calendar_id));
diesel::allow_tables_to_appear_in_same_query!(workspaces, users, calendars, calendar_events);
