-- Flow control beyond concurrency: throttles and rate limits (GCRA times per function and
-- key), singletons (one live job per key), ordering (a job waits for the earlier live jobs of
-- its key), batches (one open job per key gathers events), a debounce's maximum wait.
--
-- Every statement is idempotent, as in the first migration.
ALTER TABLE infra_jobs
    ADD COLUMN IF NOT EXISTS debounce_deadline bigint,
    ADD COLUMN IF NOT EXISTS singleton_key text,
    ADD COLUMN IF NOT EXISTS ordering_key text,
    ADD COLUMN IF NOT EXISTS batch_key text,
    ADD COLUMN IF NOT EXISTS batch_max integer;

-- One live (not dead) job per singleton key: the insert of a second one conflicts.
CREATE UNIQUE INDEX IF NOT EXISTS infra_jobs_singleton ON infra_jobs (function_id, singleton_key)
    WHERE singleton_key IS NOT NULL AND dead_at IS NULL;
-- The claim's ordering check: is there an earlier live job of the key?
CREATE INDEX IF NOT EXISTS infra_jobs_ordering ON infra_jobs (function_id, ordering_key, id)
    WHERE ordering_key IS NOT NULL AND dead_at IS NULL;
-- One open batch per key, as the debounce index.
CREATE UNIQUE INDEX IF NOT EXISTS infra_jobs_batch ON infra_jobs (function_id, batch_key)
    WHERE batch_key IS NOT NULL AND locked_by IS NULL AND dead_at IS NULL;

-- GCRA's theoretical arrival time per (function, 'throttle' | 'rate', key).
CREATE TABLE IF NOT EXISTS infra_jobs_flow (
    function_id text   NOT NULL,
    kind        text   NOT NULL,
    key         text   NOT NULL,
    tat         bigint NOT NULL,
    PRIMARY KEY (function_id, kind, key)
);

-- Events each function's rate limit dropped.
CREATE TABLE IF NOT EXISTS infra_jobs_rate_limited (
    function_id text   PRIMARY KEY,
    dropped     bigint NOT NULL DEFAULT 0
);
