-- Durable steps: the recorded steps of runs, and the waits of parked runs.
--
-- A parked run (sleeping, waiting for an event or for an invoked function) is its job row,
-- unleased, due at its wake time: it holds no worker, no lease and no concurrency slot. Its
-- planned step is a row of infra_jobs_steps; its waits are rows of infra_jobs_waits, found by
-- (event, key_path, key_value) when an event arrives.
--
-- Every statement is idempotent, as in the first migration.
ALTER TABLE infra_jobs
    -- Whether the job recorded a step: only such jobs' steps and waits are deleted with them.
    ADD COLUMN IF NOT EXISTS stepped boolean NOT NULL DEFAULT false,
    -- Cancellation asked for while it ran: its worker stops it at its next heartbeat.
    ADD COLUMN IF NOT EXISTS cancel_requested boolean NOT NULL DEFAULT false;

-- state: 0 finished (output is {"data": …} or {"error": …}), 1 sleeping, 2 waiting, each
-- until until_ms.
CREATE TABLE IF NOT EXISTS infra_jobs_steps (
    job_id   bigint   NOT NULL,
    step_id  text     NOT NULL,
    state    smallint NOT NULL,
    until_ms bigint,
    output   jsonb,
    PRIMARY KEY (job_id, step_id)
);

-- step_id NULL: the wait cancels the run (cancel_on). key_path NULL: every event of the name.
CREATE TABLE IF NOT EXISTS infra_jobs_waits (
    id        bigserial PRIMARY KEY,
    job_id    bigint NOT NULL,
    event     text   NOT NULL,
    key_path  text,
    key_value text,
    condition text,
    step_id   text
);
CREATE INDEX IF NOT EXISTS infra_jobs_waits_key ON infra_jobs_waits (event, key_path, key_value);
CREATE INDEX IF NOT EXISTS infra_jobs_waits_job ON infra_jobs_waits (job_id);

-- The key paths each event name is waited on by, so an arriving event reads only those
-- paths of itself before the indexed lookup. Rows stay (a few per wait_for_event call site).
CREATE TABLE IF NOT EXISTS infra_jobs_wait_paths (
    event    text NOT NULL,
    key_path text NOT NULL,
    PRIMARY KEY (event, key_path)
);

-- The waits arriving events may end: for each event (by its position `n` in the call), the
-- waits keyed on its value at a path its name is waited on by, then its name's unkeyed
-- waits. Each event's keys are computed once (MATERIALIZED), then looked up whole in
-- infra_jobs_waits_key: a table filled faster than autovacuum analyses it would otherwise be
-- planned as empty and scanned (SET disables that).
CREATE OR REPLACE FUNCTION infra_jobs_wait_candidates(names text[], events text[])
    RETURNS TABLE (id bigint, job_id bigint, step_id text, condition text, n bigint)
    LANGUAGE sql STABLE SET enable_seqscan = off AS $$
    WITH ev AS (
        SELECT u.name, u.e::jsonb AS e, u.n
        FROM unnest(names, events) WITH ORDINALITY AS u(name, e, n)
        WHERE EXISTS (SELECT 1 FROM infra_jobs_waits w WHERE w.event = u.name)),
    keys AS MATERIALIZED (
        SELECT ev.n, p.event, p.key_path, ev.e #>> string_to_array(p.key_path, '.') AS v
        FROM ev JOIN infra_jobs_wait_paths p ON p.event = ev.name)
    SELECT w.id, w.job_id, w.step_id, w.condition, k.n FROM keys k
    JOIN infra_jobs_waits w ON w.event = k.event AND w.key_path = k.key_path AND w.key_value = k.v
    UNION ALL
    SELECT w.id, w.job_id, w.step_id, w.condition, ev.n FROM ev
    JOIN infra_jobs_waits w ON w.event = ev.name AND w.key_path IS NULL
    ORDER BY 5, 1
$$;
