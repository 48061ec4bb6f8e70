//! A user's tests mocking the job queue's two capabilities: an operator's tool that replays
//! one function's dead letters (`QueueAdmin`), and code that enqueues (`JobQueue`).

use infra_core::mock::{MockJobQueue, MockQueueAdmin};
use infra_core::{DeadLetter, Enqueued, Event, JobFilter, JobQueue, NewJob, QueueAdmin, Result};
use mockall::predicate::eq;

/// The code under test: replays every dead letter of `function` that failed on `error`.
async fn replay_failures(admin: &dyn QueueAdmin, function: &str, error: &str) -> Result<usize> {
    let dead = admin
        .dead_letters(&JobFilter::function(function), 100)
        .await?;
    let mut replayed = 0;
    for letter in dead.iter().filter(|d| d.error.contains(error)) {
        admin.replay(letter.id).await?;
        replayed += 1;
    }
    Ok(replayed)
}

fn dead(id: i64, error: &str) -> DeadLetter {
    DeadLetter {
        id,
        function_id: "sync".into(),
        event: Event::new("t/e", serde_json::json!({})),
        attempts: 3,
        error: error.into(),
        failed_at_ms: 0,
    }
}

#[tokio::test]
async fn replays_only_the_matching_dead_letters() {
    let mut admin = MockQueueAdmin::new();
    admin
        .expect_dead_letters()
        .withf(|filter, limit| *filter == JobFilter::function("sync") && *limit == 100)
        .times(1)
        .returning(|_, _| {
            Ok(vec![
                dead(1, "timed out"),
                dead(2, "bad input"),
                dead(3, "timed out"),
            ])
        });
    admin
        .expect_replay()
        .with(eq(1))
        .times(1)
        .returning(|_| Ok(()));
    admin
        .expect_replay()
        .with(eq(3))
        .times(1)
        .returning(|_| Ok(()));
    assert_eq!(
        replay_failures(&admin, "sync", "timed out").await.unwrap(),
        2
    );
}

#[tokio::test]
async fn enqueue_is_mockable_through_an_arc() {
    let mut queue = MockJobQueue::new();
    queue.expect_backend().return_const("mock");
    queue
        .expect_enqueue()
        .withf(|jobs| jobs.len() == 1 && jobs[0].function_id == "sync")
        .returning(|jobs| Ok(jobs.iter().map(|_| Enqueued::Added(7)).collect()));
    let queue: std::sync::Arc<dyn JobQueue> = std::sync::Arc::new(queue);
    let job = NewJob::new("sync", Event::new("t/e", serde_json::json!({})), 0);
    assert_eq!(
        queue.enqueue(vec![job]).await.unwrap(),
        vec![Enqueued::Added(7)]
    );
    assert_eq!(queue.backend(), "mock");
}
