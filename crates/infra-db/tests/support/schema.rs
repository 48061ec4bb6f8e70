//! Diesel's view of the test fixture's tables (`tests/fixtures/migrations`).
#![allow(missing_docs)] // generated-style table definitions

diesel::table! {
    workspaces (id) {
        id -> Int8,
        name -> Text,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        workspace_id -> Int8,
        email -> Text,
        timezone -> Text,
    }
}

diesel::joinable!(users -> workspaces (workspace_id));
diesel::allow_tables_to_appear_in_same_query!(workspaces, users);
