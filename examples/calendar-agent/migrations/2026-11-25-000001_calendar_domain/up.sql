-- The AI calendar agent's domain: workspaces, their users, users' calendars, and events.
CREATE TABLE workspaces (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    timezone TEXT NOT NULL DEFAULT 'UTC',
    work_hours_start SMALLINT NOT NULL DEFAULT 9 CHECK (work_hours_start BETWEEN 0 AND 23),
    work_hours_end SMALLINT NOT NULL DEFAULT 17 CHECK (work_hours_end BETWEEN 1 AND 24),
    work_days SMALLINT[] NOT NULL DEFAULT '{1,2,3,4,5}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (work_hours_start < work_hours_end)
);
-- Sign-in looks users up by email, case-insensitively; one account per address.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
-- Listing a workspace's users, paged by id (keyset pagination).
CREATE INDEX users_workspace_id_idx ON users (workspace_id, id);

CREATE TABLE calendars (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    external_id TEXT NOT NULL,
    name TEXT NOT NULL,
    is_primary BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, provider, external_id)
);

CREATE TABLE calendar_events (
    id BIGSERIAL PRIMARY KEY,
    calendar_id BIGINT NOT NULL REFERENCES calendars (id) ON DELETE CASCADE,
    external_id TEXT,
    title TEXT NOT NULL,
    starts_at TIMESTAMPTZ NOT NULL,
    ends_at TIMESTAMPTZ NOT NULL,
    status TEXT NOT NULL DEFAULT 'confirmed',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (starts_at < ends_at)
);
-- A calendar's events in a time range: the agent's most frequent query.
CREATE INDEX calendar_events_calendar_starts_idx ON calendar_events (calendar_id, starts_at);
-- Sync upserts by the provider's id.
CREATE UNIQUE INDEX calendar_events_external_idx ON calendar_events (calendar_id, external_id)
    WHERE external_id IS NOT NULL;
