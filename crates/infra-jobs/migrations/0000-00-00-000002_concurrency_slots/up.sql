-- Concurrency limits that hold across every worker process sharing the queue.
--
-- A job lists the limits it counts against: `concurrency_scopes[i]` may have at most
-- `concurrency_limits[i]` running jobs. Both are NULL for a job without limits, which keeps
-- such jobs out of everything below. "Running" is a job row with `locked_by` set: the slots
-- are the leased job rows themselves, so there is no counter to drift, and a crashed
-- worker's slots free themselves with its leases.
--
-- Every statement is idempotent, as in the first migration.
ALTER TABLE infra_jobs
    ADD COLUMN IF NOT EXISTS concurrency_scopes text[],
    ADD COLUMN IF NOT EXISTS concurrency_limits integer[];

-- Running jobs by scope. Only leased jobs with limits are in it: unlimited jobs never touch
-- it, and it stays as small as the work running across the cluster.
CREATE INDEX IF NOT EXISTS infra_jobs_running_scopes ON infra_jobs USING gin (concurrency_scopes)
    WHERE concurrency_scopes IS NOT NULL AND locked_by IS NOT NULL;

-- The claim's cheap pre-filter: whether every limit of a job has room as of the statement's
-- snapshot (unexpired leases only). It is not the decision, which
-- infra_jobs_claim_limited makes under locks; it keeps jobs whose scopes are full out of
-- the claimed batch so they do not crowd out jobs that can run. plpgsql rather than SQL:
-- the planner would try to inline a SQL function on every claim, parsing its body, only
-- to give up; plpgsql also keeps its plan for the session.
CREATE OR REPLACE FUNCTION infra_jobs_has_room(scopes text[], limits integer[]) RETURNS boolean
    LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN coalesce((
        SELECT bool_and(
            (SELECT count(*) FROM (
                SELECT 1 FROM infra_jobs r
                WHERE r.concurrency_scopes @> ARRAY[u.scope] AND r.concurrency_scopes IS NOT NULL
                  AND r.locked_by IS NOT NULL AND r.locked_until >= infra_jobs_now_ms()
                LIMIT u.lim) n) < u.lim)
        FROM unnest(scopes, limits) AS u(scope, lim)), true);
END
$$;

-- Claims those of `candidates` (due jobs with limits, in no particular order) whose every
-- limit has room, for `worker` under a lease of `lease_ms`; returns the claimed jobs.
--
-- Why it is exact across processes:
-- 1. Every claim of a job with limits happens here, after taking a transaction-scoped
--    advisory lock per scope of the candidates, in one global order (no deadlocks). Two
--    claimers of one scope take turns; the lock is released by the commit that makes the
--    claims visible.
-- 2. Each statement of a VOLATILE plpgsql function takes a fresh snapshot under READ
--    COMMITTED, so the counting below runs after the locks are held and sees every claim
--    committed by earlier holders.
-- 3. Expired leases in these scopes are handed back here, before counting, with row locks
--    held to the commit: a worker's late heartbeat either lands first (and its job counts as
--    running) or finds the job no longer its own. Rows another transaction holds are skipped
--    and stay counted as running, which errs on the safe side.
-- 4. The count is of leased rows, so a slot is freed only by a settlement or a lease handed
--    back, and never handed out twice.
CREATE OR REPLACE FUNCTION infra_jobs_claim_limited(candidates bigint[], worker text, lease_ms bigint)
    RETURNS TABLE (id bigint, function_id text, event text, attempts integer,
                   max_attempts integer, priority integer, concurrency_key text,
                   enqueued_at bigint, run_at bigint)
    LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    scope_list text[];
    running    integer[];
    lock_key   integer;
    job        record;
    fits       boolean;
    slot       integer;
    admitted   bigint[] := '{}';
BEGIN
    SELECT array_agg(DISTINCT s) INTO scope_list
    FROM infra_jobs j, unnest(j.concurrency_scopes) AS s
    WHERE j.id = ANY(candidates) AND j.concurrency_scopes IS NOT NULL;
    IF scope_list IS NULL THEN
        RETURN;
    END IF;

    -- 1. The scopes' locks, in ascending key order. Two scopes hashing alike share a lock:
    --    that only makes their claimers take turns. The two-key form keeps these locks apart
    --    from single-bigint advisory locks (infra-db's migration lock, the app's own); 0x696a ("ij")
    --    names infra-jobs' scope locks.
    FOR lock_key IN SELECT DISTINCT hashtext(s) AS k FROM unnest(scope_list) AS s ORDER BY k LOOP
        PERFORM pg_advisory_xact_lock(x'696a'::integer, lock_key);
    END LOOP;

    -- 3. Hand back expired leases in these scopes.
    UPDATE infra_jobs e SET locked_by = NULL, locked_until = NULL
    WHERE e.id IN (
        SELECT x.id FROM infra_jobs x
        WHERE x.concurrency_scopes && scope_list AND x.concurrency_scopes IS NOT NULL
          AND x.locked_by IS NOT NULL AND x.locked_until < infra_jobs_now_ms()
          AND x.dead_at IS NULL
        FOR UPDATE SKIP LOCKED);

    -- 4. Running jobs per scope (scope_list order).
    SELECT array_agg((SELECT count(*) FROM infra_jobs r
                      WHERE r.concurrency_scopes @> ARRAY[s] AND r.concurrency_scopes IS NOT NULL
                        AND r.locked_by IS NOT NULL)::integer ORDER BY o)
    INTO running
    FROM unnest(scope_list) WITH ORDINALITY AS u(s, o);

    -- Admit candidates in claim order while their limits have room. A candidate claimed
    -- or pushed back (debounced) since it was picked is left alone, and one another claimer
    -- is picking is skipped.
    FOR job IN
        SELECT c.id, c.concurrency_scopes AS scopes, c.concurrency_limits AS limits
        FROM infra_jobs c
        WHERE c.id = ANY(candidates) AND c.locked_by IS NULL AND c.dead_at IS NULL
          AND c.run_at <= infra_jobs_now_ms() AND c.concurrency_scopes IS NOT NULL
        ORDER BY c.priority DESC, c.run_at, c.id
        FOR UPDATE SKIP LOCKED
    LOOP
        fits := true;
        FOR i IN 1 .. cardinality(job.scopes) LOOP
            slot := array_position(scope_list, job.scopes[i]);
            IF running[slot] >= job.limits[i] THEN
                fits := false;
                EXIT;
            END IF;
        END LOOP;
        IF fits THEN
            FOR i IN 1 .. cardinality(job.scopes) LOOP
                slot := array_position(scope_list, job.scopes[i]);
                running[slot] := running[slot] + 1;
            END LOOP;
            admitted := admitted || job.id;
        END IF;
    END LOOP;

    RETURN QUERY
    UPDATE infra_jobs j
    SET locked_by = worker, locked_until = infra_jobs_now_ms() + lease_ms,
        attempts = j.attempts + 1
    WHERE j.id = ANY(admitted)
    RETURNING j.id, j.function_id, j.event::text, j.attempts, j.max_attempts, j.priority,
              j.concurrency_key, j.enqueued_at, j.run_at;
END
$$;
