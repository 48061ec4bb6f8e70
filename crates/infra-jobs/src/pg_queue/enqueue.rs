//! Enqueueing: idempotency keys claimed in one statement, debounced jobs merged into the
//! waiting one, everything else inserted in one statement that also wakes the workers.
//!
//! Invariants: an enqueue is all or nothing (one statement, or the caller's transaction);
//! results come back in input order; within one call the first job with an idempotency key
//! wins; a batch without concurrency limits never touches the slot columns.

use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
use diesel::{QueryableByName, sql_query};
use diesel_async::RunQueryDsl;
use infra_core::{Enqueued, NewJob};
use infra_db::DbConnection;

use super::concurrency_slots::{LIMITS_OF, SCOPES_OF, encode_slots};
use super::flow_enqueue::{enqueue_with_flow, has_flow_control};
use super::stored_event::encode_event;
use super::wake_channel::notify_statement;

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    function_id: String,
    #[diesel(sql_type = Text)]
    key: String,
}

/// Enqueues `jobs` on `conn`, inside whatever transaction it has open.
pub(crate) async fn enqueue_on(
    conn: &mut DbConnection,
    jobs: Vec<NewJob>,
) -> diesel::QueryResult<Vec<Enqueued>> {
    let mut results: Vec<Option<Enqueued>> = vec![None; jobs.len()];
    // Idempotency: claim every key in one statement; a key held inside its window is a
    // duplicate. Keys repeated inside the batch: the first wins.
    let mut keyed: Vec<usize> = Vec::new();
    {
        let mut seen = std::collections::HashSet::new();
        for (i, job) in jobs.iter().enumerate() {
            if let Some(key) = &job.idempotency_key {
                if seen.insert((job.function_id.as_str(), key.as_str())) {
                    keyed.push(i);
                } else {
                    results[i] = Some(Enqueued::Duplicate);
                }
            }
        }
    }
    if !keyed.is_empty() {
        let fns: Vec<&str> = keyed
            .iter()
            .map(|&i| jobs[i].function_id.as_str())
            .collect();
        let keys: Vec<&str> = keyed
            .iter()
            .map(|&i| jobs[i].idempotency_key.as_deref().unwrap_or_default())
            .collect();
        let windows: Vec<i64> = keyed
            .iter()
            .map(|&i| jobs[i].idempotency_window.as_millis() as i64)
            .collect();
        let won: Vec<KeyRow> = sql_query(
            "INSERT INTO infra_jobs_idempotency AS i (function_id, key, expires_at) \
             SELECT f, k, infra_jobs_now_ms() + w FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(f, k, w) \
             ON CONFLICT (function_id, key) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE i.expires_at <= infra_jobs_now_ms() \
             RETURNING function_id, key",
        )
        .bind::<Array<Text>, _>(&fns)
        .bind::<Array<Text>, _>(&keys)
        .bind::<Array<BigInt>, _>(&windows)
        .load(conn)
        .await?;
        let won: std::collections::HashSet<(String, String)> =
            won.into_iter().map(|r| (r.function_id, r.key)).collect();
        for &i in &keyed {
            let k = (
                jobs[i].function_id.clone(),
                jobs[i].idempotency_key.clone().unwrap_or_default(),
            );
            if !won.contains(&k) {
                results[i] = Some(Enqueued::Duplicate);
            }
        }
    }
    // Jobs with flow control (debounce, throttle, rate limit, singleton, ordering, batch), one
    // by one (rare).
    for (i, job) in jobs.iter().enumerate() {
        if results[i].is_none() && has_flow_control(job) {
            results[i] = Some(enqueue_with_flow(conn, job).await?);
        }
    }
    // Everything else in one insert; ids come from the sequence in input order.
    let plain: Vec<usize> = (0..jobs.len()).filter(|&i| results[i].is_none()).collect();
    if !plain.is_empty() {
        let mut fns = Vec::with_capacity(plain.len());
        let mut events = Vec::with_capacity(plain.len());
        let mut prios = Vec::with_capacity(plain.len());
        let mut run_ats = Vec::with_capacity(plain.len());
        let mut maxes = Vec::with_capacity(plain.len());
        let mut ckeys: Vec<Option<&str>> = Vec::with_capacity(plain.len());
        let mut slots: Vec<Option<String>> = Vec::with_capacity(plain.len());
        for &i in &plain {
            let job = &jobs[i];
            fns.push(job.function_id.as_str());
            events.push(encode_event(&job.event)?);
            prios.push(job.priority);
            run_ats.push(job.run_at_ms);
            maxes.push(job.max_attempts as i32);
            ckeys.push(job.concurrency_key.as_deref());
            slots.push(encode_slots(job));
        }
        // The wake-up rides in the same statement: one round trip for a plain send. A batch
        // without concurrency limits leaves out the slot columns: unpacking them costs
        // planning time on every send (statements are planned per execution).
        let limited = slots.iter().any(Option::is_some);
        let (slot_columns, slot_values, slot_param, slot_alias) = if limited {
            (
                ", concurrency_scopes, concurrency_limits",
                format!(", {SCOPES_OF}, {LIMITS_OF}"),
                ", $7::text[]",
                ", s",
            )
        } else {
            ("", String::new(), "", "")
        };
        let mut insert = sql_query(format!(
            "WITH ins AS (INSERT INTO infra_jobs (function_id, event, priority, run_at, max_attempts, concurrency_key{slot_columns}) \
               SELECT f, e::jsonb, p, r, m, c{slot_values} \
               FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::int[], $6::text[]{slot_param}) \
                    WITH ORDINALITY AS u(f, e, p, r, m, c{slot_alias}, n) \
               ORDER BY n RETURNING id) \
             SELECT ins.id FROM ins CROSS JOIN ({wake}) AS wake",
            wake = notify_statement(),
        ))
        .into_boxed::<diesel::pg::Pg>()
        .bind::<Array<Text>, _>(&fns)
        .bind::<Array<Text>, _>(&events)
        .bind::<Array<Integer>, _>(&prios)
        .bind::<Array<BigInt>, _>(&run_ats)
        .bind::<Array<Integer>, _>(&maxes)
        .bind::<Array<Nullable<Text>>, _>(&ckeys);
        if limited {
            insert = insert.bind::<Array<Nullable<Text>>, _>(&slots);
        }
        let mut ids: Vec<IdRow> = insert.load(conn).await?;
        ids.sort_by_key(|r| r.id);
        for (&i, row) in plain.iter().zip(ids) {
            results[i] = Some(Enqueued::Added(row.id));
        }
    }
    let debounced = jobs.iter().any(has_flow_control);
    if debounced && plain.is_empty() {
        sql_query(notify_statement()).execute(conn).await?;
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Enqueued::Duplicate))
        .collect())
}
