//! The scopes a job's concurrency limits count in, for queues that enforce them across
//! worker processes.

use infra_core::{ConcurrencySlot, Event};

use crate::function::Function;

/// One slot per limit of `function` that applies to `event`: every global limit, and every
/// per-key limit whose key the event has (as the in-process limiter decides).
///
/// The scope is a JSON array `[function id, key paths or null, key value or null]`: it
/// cannot collide between functions, limits or values whatever characters they hold, and it
/// names the limit by its key rather than its position, so reordering a function's limits
/// between deploys keeps counting the same running jobs.
pub(crate) fn concurrency_slots(function: &Function, event: &Event) -> Vec<ConcurrencySlot> {
    let mut slots = Vec::new();
    for limit in &function.options().concurrency {
        let scope = match &limit.key {
            None => serde_json::json!([function.id(), null, null]),
            Some(key) => match key.evaluate(event) {
                Some(value) => serde_json::json!([function.id(), key.paths().join(","), value]),
                None => continue,
            },
        };
        slots.push(ConcurrencySlot::new(scope.to_string(), limit.limit));
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;

    fn function() -> Function {
        Function::builder("sync")
            .on_event("t/e")
            .concurrency(5)
            .concurrency_per_key(2, "event.data.user")
            .concurrency_per_key(1, "event.data.user")
            .raw_handler(|_, _| std::future::ready(Outcome::success()))
            .unwrap()
    }

    #[test]
    fn one_slot_per_applicable_limit_and_the_lower_of_equal_scopes_holds() {
        let event = Event::new("t/e", serde_json::json!({ "user": "u\"1" }));
        let slots = concurrency_slots(&function(), &event);
        assert_eq!(slots.len(), 3);
        let job = slots
            .into_iter()
            .fold(infra_core::NewJob::new("sync", event, 0), |job, slot| {
                job.with_concurrency_slot(slot)
            });
        assert_eq!(
            job.concurrency,
            vec![
                ConcurrencySlot::new(r#"["sync",null,null]"#, 5),
                ConcurrencySlot::new(r#"["sync","event.data.user","u\"1"]"#, 1),
            ]
        );
    }

    #[test]
    fn a_missing_key_leaves_only_the_global_limit() {
        let slots = concurrency_slots(&function(), &Event::new("t/e", serde_json::json!({})));
        assert_eq!(
            slots,
            vec![ConcurrencySlot::new(r#"["sync",null,null]"#, 5)]
        );
    }
}
