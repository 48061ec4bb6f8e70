-- The PostgreSQL job queue of infra-jobs. Times are milliseconds since the Unix epoch on the
-- database's clock, so workers on machines with skewed clocks agree on what is due.
--
-- Every statement is idempotent: a database whose queue tables an earlier release created
-- (recorded in its own `infra_jobs_migrations` table) takes this migration as a no-op.
CREATE OR REPLACE FUNCTION infra_jobs_now_ms() RETURNS bigint
    LANGUAGE sql STABLE AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

CREATE TABLE IF NOT EXISTS infra_jobs (
    id              bigserial PRIMARY KEY,
    function_id     text    NOT NULL,
    event           jsonb   NOT NULL,
    priority        integer NOT NULL DEFAULT 0,
    run_at          bigint  NOT NULL,
    enqueued_at     bigint  NOT NULL DEFAULT infra_jobs_now_ms(),
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL DEFAULT 1,
    concurrency_key text,
    debounce_key    text,
    locked_by       text,
    locked_until    bigint,
    last_error      text,
    dead_at         bigint
);

-- The claim: unlocked, live jobs in priority order.
CREATE INDEX IF NOT EXISTS infra_jobs_claim ON infra_jobs (priority DESC, run_at, id)
    WHERE dead_at IS NULL AND locked_by IS NULL;
-- Lease expiry sweep.
CREATE INDEX IF NOT EXISTS infra_jobs_leases ON infra_jobs (locked_until) WHERE locked_by IS NOT NULL;
-- Dead letters, newest first.
CREATE INDEX IF NOT EXISTS infra_jobs_dead ON infra_jobs (dead_at DESC) WHERE dead_at IS NOT NULL;
-- One waiting job per debounce key absorbs later events.
CREATE UNIQUE INDEX IF NOT EXISTS infra_jobs_debounce ON infra_jobs (function_id, debounce_key)
    WHERE debounce_key IS NOT NULL AND locked_by IS NULL AND dead_at IS NULL;

CREATE TABLE IF NOT EXISTS infra_jobs_idempotency (
    function_id text   NOT NULL,
    key         text   NOT NULL,
    expires_at  bigint NOT NULL,
    PRIMARY KEY (function_id, key)
);
