//! `ConcurrencySlot`: one concurrency limit a job counts against, in terms a queue can
//! enforce without knowing the function that set it.

/// At most `limit` jobs with the same `scope` run at once.
///
/// The runtime computes one per limit of the function that applies to the event (a global
/// limit, or a per-key limit whose key the event has); the scope names the function, the
/// limit's key and the key's value. A queue shared by several worker processes enforces it
/// at claim time across all of them (the PostgreSQL queue does); the runtime also enforces
/// it inside each process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConcurrencySlot {
    /// What the limit counts: jobs with equal scopes share the limit.
    pub scope: String,
    /// How many may run at once (at least 1).
    pub limit: u32,
}

impl ConcurrencySlot {
    /// A slot of `scope` limited to `limit` runs at once (0 counts as 1: a limit of none
    /// would block the job forever).
    pub fn new(scope: impl Into<String>, limit: u32) -> Self {
        ConcurrencySlot {
            scope: scope.into(),
            limit: limit.max(1),
        }
    }
}
