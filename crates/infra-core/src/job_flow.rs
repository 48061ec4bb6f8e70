//! Flow control a queue applies to a job, in terms it can enforce without knowing the
//! function that set it (as [`ConcurrencySlot`](crate::ConcurrencySlot) does for
//! concurrency). Each is keyed: the runtime evaluates the function's key expression on the
//! event and hands the queue the key's value, scoped to the function.

/// At most `limit` runs start per `period_ms` for the key (`burst` may start at once); excess
/// runs wait their turn (GCRA start times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobThrottle {
    /// The key's value.
    pub key: String,
    /// Runs per period (at least 1).
    pub limit: u32,
    /// The period, in milliseconds.
    pub period_ms: i64,
    /// Runs that may start at once (at least 1).
    pub burst: u32,
}

/// At most `limit` runs per `period_ms` for the key; excess runs are dropped at enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRateLimit {
    /// The key's value.
    pub key: String,
    /// Runs per period (at least 1).
    pub limit: u32,
    /// The period, in milliseconds.
    pub period_ms: i64,
}

/// What a new run does while another run of the same key is queued, parked or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SingletonMode {
    /// The new run is dropped.
    Skip,
    /// The other runs are cancelled (a running one through its worker) and the new one runs.
    Cancel,
}

/// One run at a time per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSingleton {
    /// The key's value.
    pub key: String,
    /// Skip the new run or cancel the others.
    pub mode: SingletonMode,
}

/// Events gathered into one run: up to `max_size`, or whatever arrived `timeout_ms` after the
/// first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobBatch {
    /// The key's value (events of one key are batched together).
    pub key: String,
    /// Most events in one run (at least 1).
    pub max_size: u32,
    /// The longest a batch waits after its first event, in milliseconds.
    pub timeout_ms: i64,
}
