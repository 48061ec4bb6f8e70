//! The job queue conformance suite: every queue (in-process, PostgreSQL) must pass it, for
//! its hot path ([`JobQueue`]) and its administration ([`QueueAdmin`](crate::QueueAdmin)).
//!
//! Cases run one after another on one queue and leave nothing due behind them; each uses its
//! own function ids.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::unique_key;
use crate::{
    ClaimedJob, Enqueued, ErrorKind, Event, JobBackend, JobFilter, JobQueue, NewJob, Settlement,
};

const LEASE: Duration = Duration::from_secs(30);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn job(function: &str, n: i64) -> NewJob {
    NewJob::new(
        function,
        Event::new("testkit/job", serde_json::json!({ "n": n })),
        now_ms(),
    )
}

/// Claims until `want` jobs of `function` are held or the deadline passes.
async fn claim_of(
    queue: &dyn JobQueue,
    worker: &str,
    function: &str,
    want: usize,
) -> Vec<ClaimedJob> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut got = Vec::new();
    while got.len() < want && tokio::time::Instant::now() < deadline {
        let jobs = queue
            .claim(worker, want - got.len(), LEASE)
            .await
            .expect("claim");
        for j in jobs {
            assert_eq!(j.function_id, function, "a case only sees its own jobs");
            got.push(j);
        }
        if got.len() < want {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    got
}

/// Runs every case in order: the hot path's, then administration's.
pub async fn run_all(queue: Arc<dyn JobBackend>) {
    queue.prepare().await.expect("prepare");
    claims_by_priority_then_due_time(queue.as_ref()).await;
    delayed_jobs_wait(queue.as_ref()).await;
    retry_dead_letter_and_replay(queue.as_ref()).await;
    idempotency_keys_drop_duplicates(queue.as_ref()).await;
    debounce_merges_into_the_waiting_job(queue.as_ref()).await;
    expired_leases_are_taken_over(queue.as_ref()).await;
    stats_count_by_state(queue.as_ref()).await;
    dead_letters_and_bulk_replay_follow_the_filter(queue.as_ref()).await;
}

/// Higher priority first, then earlier due time; a claim leases each job once.
pub async fn claims_by_priority_then_due_time(queue: &dyn JobQueue) {
    let f = unique_key("prio");
    let base = now_ms() - 1_000;
    let mut a = job(&f, 1);
    a.run_at_ms = base + 2;
    let mut b = job(&f, 2).with_priority(5);
    b.run_at_ms = base + 3;
    let mut c = job(&f, 3);
    c.run_at_ms = base + 1;
    let added = queue.enqueue(vec![a, b, c]).await.expect("enqueue");
    assert!(added.iter().all(|e| matches!(e, Enqueued::Added(_))));
    let claimed = claim_of(queue, "w1", &f, 3).await;
    let order: Vec<i64> = claimed
        .iter()
        .map(|j| j.event.data["n"].as_i64().unwrap())
        .collect();
    assert_eq!(order, vec![2, 3, 1], "priority 5 first, then by due time");
    assert!(claimed.iter().all(|j| j.attempt == 1));
    assert!(
        queue
            .claim("w2", 10, LEASE)
            .await
            .expect("claim")
            .is_empty(),
        "leased jobs are not claimed twice"
    );
    let done = claimed
        .iter()
        .map(|j| (j.id, Settlement::Completed))
        .collect();
    queue.settle("w1", done).await.expect("settle");
}

/// A job due later is not claimed before its time, and is after.
pub async fn delayed_jobs_wait(queue: &dyn JobQueue) {
    let f = unique_key("delay");
    let mut j = job(&f, 1);
    j.run_at_ms = now_ms() + 700;
    queue.enqueue(vec![j]).await.expect("enqueue");
    assert!(
        queue.claim("w", 10, LEASE).await.expect("claim").is_empty(),
        "not before its time"
    );
    let claimed = claim_of(queue, "w", &f, 1).await;
    assert_eq!(claimed.len(), 1);
    assert!(now_ms() >= claimed[0].run_at_ms, "claimed only once due");
    queue
        .settle("w", vec![(claimed[0].id, Settlement::Completed)])
        .await
        .expect("settle");
}

/// A retry counts an attempt; dead letters are listed and replay from attempt 1.
pub async fn retry_dead_letter_and_replay(queue: &dyn JobBackend) {
    let f = unique_key("dead");
    queue
        .enqueue(vec![job(&f, 1).with_max_attempts(2)])
        .await
        .expect("enqueue");
    let first = claim_of(queue, "w", &f, 1).await.remove(0);
    assert_eq!((first.attempt, first.max_attempts), (1, 2));
    let retry = Settlement::Retry {
        run_at_ms: now_ms(),
        error: "flaky".into(),
    };
    queue
        .settle("w", vec![(first.id, retry)])
        .await
        .expect("settle");
    let second = claim_of(queue, "w", &f, 1).await.remove(0);
    assert_eq!((second.id, second.attempt), (first.id, 2));
    queue
        .settle(
            "w",
            vec![(
                second.id,
                Settlement::Dead {
                    error: "broken".into(),
                },
            )],
        )
        .await
        .expect("settle");
    let dead = queue
        .dead_letters(&JobFilter::function(&f), 10)
        .await
        .expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].id, dead[0].attempts, dead[0].error.as_str()),
        (first.id, 2, "broken")
    );
    assert!(
        queue.claim("w", 10, LEASE).await.expect("claim").is_empty(),
        "dead letters do not run"
    );
    queue.replay(dead[0].id).await.expect("replay");
    assert!(
        queue
            .dead_letters(&JobFilter::function(&f), 10)
            .await
            .expect("dead letters")
            .is_empty()
    );
    let again = claim_of(queue, "w", &f, 1).await.remove(0);
    assert_eq!((again.id, again.attempt), (first.id, 1));
    queue
        .settle("w", vec![(again.id, Settlement::Completed)])
        .await
        .expect("settle");
    let err = queue
        .replay(again.id)
        .await
        .expect_err("completed jobs are no dead letters");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

/// A key inside its window drops later jobs, in the same batch or a later one.
pub async fn idempotency_keys_drop_duplicates(queue: &dyn JobQueue) {
    let f = unique_key("idem");
    let w = Duration::from_secs(3600);
    let out = queue
        .enqueue(vec![
            job(&f, 1).with_idempotency("k1", w),
            job(&f, 2).with_idempotency("k1", w),
            job(&f, 3).with_idempotency("k2", w),
        ])
        .await
        .expect("enqueue");
    assert!(matches!(out[0], Enqueued::Added(_)));
    assert_eq!(out[1], Enqueued::Duplicate);
    assert!(matches!(out[2], Enqueued::Added(_)));
    let out = queue
        .enqueue(vec![job(&f, 4).with_idempotency("k2", w)])
        .await
        .expect("enqueue");
    assert_eq!(out, vec![Enqueued::Duplicate]);
    let claimed = claim_of(queue, "w", &f, 2).await;
    let mut ns: Vec<i64> = claimed
        .iter()
        .map(|j| j.event.data["n"].as_i64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, vec![1, 3]);
    let done = claimed
        .iter()
        .map(|j| (j.id, Settlement::Completed))
        .collect();
    queue.settle("w", done).await.expect("settle");
    let out = queue
        .enqueue(vec![job(&f, 5).with_idempotency("k1", w)])
        .await
        .expect("enqueue");
    assert_eq!(
        out,
        vec![Enqueued::Duplicate],
        "the window outlives the run"
    );
}

/// A second job with a waiting job's debounce key replaces its event and due time.
pub async fn debounce_merges_into_the_waiting_job(queue: &dyn JobQueue) {
    let f = unique_key("debounce");
    let mut a = job(&f, 1).with_debounce_key("user-1");
    a.run_at_ms = now_ms() + 300;
    let mut b = job(&f, 2).with_debounce_key("user-1");
    b.run_at_ms = now_ms() + 400;
    let first = queue.enqueue(vec![a]).await.expect("enqueue");
    let second = queue.enqueue(vec![b]).await.expect("enqueue");
    let Enqueued::Added(id) = first[0] else {
        panic!("first job added: {first:?}")
    };
    assert_eq!(second, vec![Enqueued::Debounced(id)]);
    let claimed = claim_of(queue, "w", &f, 1).await;
    assert_eq!(claimed[0].event.data["n"], 2, "runs with the last event");
    queue
        .settle("w", vec![(claimed[0].id, Settlement::Completed)])
        .await
        .expect("settle");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        queue.claim("w", 10, LEASE).await.expect("claim").is_empty(),
        "one run for both"
    );
}

/// A lease that runs out hands the job to another worker; the first one's late settlement
/// is ignored; heartbeats keep a lease alive.
pub async fn expired_leases_are_taken_over(queue: &dyn JobBackend) {
    let f = unique_key("lease");
    queue
        .enqueue(vec![
            job(&f, 1).with_max_attempts(5),
            job(&f, 2).with_max_attempts(5),
        ])
        .await
        .expect("enqueue");
    let short = Duration::from_millis(300);
    let mut held = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while held.len() < 2 && tokio::time::Instant::now() < deadline {
        held.extend(
            queue
                .claim("crashed", 2 - held.len(), short)
                .await
                .expect("claim"),
        );
    }
    assert_eq!(held.len(), 2);
    let kept = held.iter().find(|j| j.event.data["n"] == 2).unwrap().id;
    // Keep job 2 alive through heartbeats while job 1's lease runs out.
    let mut taken = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while taken.is_empty() && tokio::time::Instant::now() < deadline {
        queue
            .heartbeat("crashed", &[kept], Duration::from_secs(30))
            .await
            .expect("heartbeat");
        taken = queue.claim("rescuer", 10, LEASE).await.expect("claim");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(taken.len(), 1, "only the expired lease is taken over");
    assert_eq!(taken[0].event.data["n"], 1);
    assert_eq!(taken[0].attempt, 2);
    let lost = held.iter().find(|j| j.event.data["n"] == 1).unwrap().id;
    queue
        .settle(
            "crashed",
            vec![(
                lost,
                Settlement::Dead {
                    error: "late".into(),
                },
            )],
        )
        .await
        .expect("settle");
    assert!(
        queue
            .dead_letters(&JobFilter::function(&f), 10)
            .await
            .expect("dead")
            .is_empty(),
        "late settlement ignored"
    );
    queue
        .settle("rescuer", vec![(taken[0].id, Settlement::Completed)])
        .await
        .expect("settle");
    queue
        .settle("crashed", vec![(kept, Settlement::Completed)])
        .await
        .expect("settle");
    assert!(queue.claim("w", 10, LEASE).await.expect("claim").is_empty());
}

/// Stats count ready, scheduled, running and dead jobs per function.
pub async fn stats_count_by_state(queue: &dyn JobBackend) {
    let f = unique_key("stats");
    let mut later = job(&f, 3);
    later.run_at_ms = now_ms() + 3_600_000;
    queue
        .enqueue(vec![job(&f, 1), job(&f, 2), later])
        .await
        .expect("enqueue");
    let running = claim_of(queue, "w", &f, 1).await.remove(0);
    let stats = queue.stats().await.expect("stats");
    let s = stats
        .iter()
        .find(|s| s.function_id == f)
        .expect("function listed");
    assert_eq!((s.ready, s.scheduled, s.running, s.dead), (1, 1, 1, 0));
    assert!(s.oldest_ready_age_ms.is_some());
    queue
        .settle(
            "w",
            vec![(running.id, Settlement::Dead { error: "x".into() })],
        )
        .await
        .expect("settle");
    let rest = claim_of(queue, "w", &f, 1).await;
    queue
        .settle(
            "w",
            rest.iter().map(|j| (j.id, Settlement::Completed)).collect(),
        )
        .await
        .expect("settle");
    let stats = queue.stats().await.expect("stats");
    let s = stats
        .iter()
        .find(|s| s.function_id == f)
        .expect("function listed");
    assert_eq!((s.ready, s.scheduled, s.running, s.dead), (0, 1, 0, 1));
}

/// Dead letters are listed by function; a bulk replay puts back exactly the dead letters its
/// filter selects, and a replayed job no longer counts as dead.
pub async fn dead_letters_and_bulk_replay_follow_the_filter(queue: &dyn JobBackend) {
    let (f, g) = (unique_key("bulk-f"), unique_key("bulk-g"));
    queue
        .enqueue(vec![job(&f, 1), job(&f, 2), job(&g, 3)])
        .await
        .expect("enqueue");
    let mut held = claim_of_any(queue, 3).await;
    held.sort_by_key(|j| j.event.data["n"].as_i64());
    let dead = held
        .iter()
        .map(|j| {
            let error = format!("failed {}", j.event.data["n"]);
            (j.id, Settlement::Dead { error })
        })
        .collect();
    queue.settle("w", dead).await.expect("settle");
    let of_f = queue
        .dead_letters(&JobFilter::function(&f), 10)
        .await
        .expect("dead letters");
    assert_eq!(of_f.len(), 2, "two dead letters of {f}: {of_f:?}");
    assert!(of_f.iter().all(|d| d.function_id == f));
    assert_eq!(
        queue
            .dead_letters(&JobFilter::function(&f), 1)
            .await
            .expect("dead letters")
            .len(),
        1,
        "the limit holds"
    );
    let all = queue
        .dead_letters(&JobFilter::all(), 10_000)
        .await
        .expect("dead letters");
    assert!(
        all.iter().any(|d| d.function_id == g),
        "no filter lists every function"
    );

    assert_eq!(
        queue
            .replay_all(&JobFilter::function(&f))
            .await
            .expect("replay all"),
        2
    );
    assert!(
        queue
            .dead_letters(&JobFilter::function(&f), 10)
            .await
            .expect("dead letters")
            .is_empty()
    );
    assert_eq!(
        queue
            .dead_letters(&JobFilter::function(&g), 10)
            .await
            .expect("dead letters")
            .len(),
        1,
        "the other function's dead letter stays"
    );
    let again = claim_of(queue, "w", &f, 2).await;
    assert_eq!(again.len(), 2);
    assert!(
        again.iter().all(|j| j.attempt == 1),
        "replayed from attempt 1"
    );
    let stats = queue.stats().await.expect("stats");
    let of_f = stats.iter().find(|s| s.function_id == f).expect("listed");
    assert_eq!((of_f.dead, of_f.running), (0, 2));
    queue
        .settle(
            "w",
            again
                .iter()
                .map(|j| (j.id, Settlement::Completed))
                .collect(),
        )
        .await
        .expect("settle");
    assert_eq!(
        queue
            .replay_all(&JobFilter::function(&f))
            .await
            .expect("replay all"),
        0,
        "nothing left to replay"
    );
    assert_eq!(
        queue
            .replay_all(&JobFilter::function(&g))
            .await
            .expect("replay all"),
        1
    );
    let last = claim_of(queue, "w", &g, 1).await;
    queue
        .settle("w", vec![(last[0].id, Settlement::Completed)])
        .await
        .expect("settle");
}

/// Claims until `want` jobs of any function are held or the deadline passes.
async fn claim_of_any(queue: &dyn JobQueue, want: usize) -> Vec<ClaimedJob> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut got = Vec::new();
    while got.len() < want && tokio::time::Instant::now() < deadline {
        got.extend(
            queue
                .claim("w", want - got.len(), LEASE)
                .await
                .expect("claim"),
        );
        if got.len() < want {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(got.len(), want, "claimed every job in time");
    got
}
