//! The `RateLimiter` conformance suite.

use std::sync::Arc;
use std::time::Duration;

use super::unique_key;
use crate::{ErrorKind, RateLimiter};

/// Runs every case in order.
pub async fn run_all(limiter: Arc<dyn RateLimiter>) {
    admits_up_to_limit(limiter.as_ref()).await;
    keys_are_independent(limiter.as_ref()).await;
    window_resets(limiter.as_ref()).await;
    invalid_arguments(limiter.as_ref()).await;
    exact_under_concurrency(limiter).await;
}

/// `limit` calls pass with `remaining` counting down; the next is refused.
pub async fn admits_up_to_limit(limiter: &dyn RateLimiter) {
    let key = unique_key("rl-limit");
    let window = Duration::from_secs(60);
    for expected_remaining in (0..5u64).rev() {
        let d = limiter.check(&key, 5, window).await.expect("check");
        assert!(d.allowed, "call within the limit is admitted");
        assert_eq!(d.limit, 5);
        assert_eq!(d.remaining, expected_remaining);
        assert!(!d.fallback);
        assert!(d.reset_after <= window);
    }
    let refused = limiter.check(&key, 5, window).await.expect("check");
    assert!(!refused.allowed, "call over the limit is refused");
    assert_eq!(refused.remaining, 0);
    assert!(refused.reset_after > Duration::ZERO && refused.reset_after <= window);
}

/// One key's calls do not count against another's.
pub async fn keys_are_independent(limiter: &dyn RateLimiter) {
    let a = unique_key("rl-a");
    let b = unique_key("rl-b");
    let window = Duration::from_secs(60);
    assert!(limiter.check(&a, 1, window).await.expect("a1").allowed);
    assert!(!limiter.check(&a, 1, window).await.expect("a2").allowed);
    assert!(limiter.check(&b, 1, window).await.expect("b1").allowed);
}

/// After waiting the refused decision's `reset_after`, a call is admitted again.
pub async fn window_resets(limiter: &dyn RateLimiter) {
    let key = unique_key("rl-reset");
    let window = Duration::from_millis(800);
    assert!(limiter.check(&key, 2, window).await.expect("1").allowed);
    assert!(limiter.check(&key, 2, window).await.expect("2").allowed);
    let refused = limiter.check(&key, 2, window).await.expect("3");
    assert!(!refused.allowed);
    assert!(
        refused.reset_after <= window * 2,
        "reset_after {:?}",
        refused.reset_after
    );
    tokio::time::sleep(refused.reset_after + Duration::from_millis(100)).await;
    let again = limiter.check(&key, 2, window).await.expect("4");
    assert!(
        again.allowed,
        "admitted again after reset_after ({:?})",
        refused.reset_after
    );
}

/// Bad arguments are `InvalidInput` errors naming the argument.
pub async fn invalid_arguments(limiter: &dyn RateLimiter) {
    let err = limiter
        .check("", 1, Duration::from_secs(1))
        .await
        .expect_err("empty key");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.field(), Some("key"));
    let key = unique_key("rl-invalid");
    let err = limiter
        .check(&key, 0, Duration::from_secs(1))
        .await
        .expect_err("zero limit");
    assert_eq!(err.field(), Some("limit"));
    let err = limiter
        .check(&key, 1, Duration::ZERO)
        .await
        .expect_err("zero window");
    assert_eq!(err.field(), Some("window"));
}

/// 200 concurrent callers on one key with limit 50 admit exactly 50.
pub async fn exact_under_concurrency(limiter: Arc<dyn RateLimiter>) {
    let key = Arc::new(unique_key("rl-concurrent"));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let limiter = limiter.clone();
            let key = key.clone();
            tokio::spawn(async move { limiter.check(&key, 50, Duration::from_secs(60)).await })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        let decision = task.await.expect("task").expect("check");
        if decision.allowed {
            admitted += 1;
        }
    }
    assert_eq!(
        admitted, 50,
        "exactly `limit` of 200 concurrent calls are admitted"
    );
}
