//! What one execution of a function ends with: the function returned, or a step stopped it
//! (the engine then drops the function's future, as Inngest's SDKs abandon theirs).

use std::time::Duration;

use infra_core::ParkedRun;
use serde_json::Value;

use crate::outcome::Outcome;

/// The end of one execution.
#[derive(Debug)]
pub(crate) enum Execution {
    /// The function returned.
    Finished(Outcome),
    /// A step stopped it.
    Interrupted(Interrupt),
}

/// Why a step stopped an execution.
#[derive(Debug)]
pub(crate) enum Interrupt {
    /// A step failed with attempts left: the run is tried again from the top after the
    /// back-off, and its finished steps are not run again.
    StepFailed {
        /// Why.
        error: String,
        /// The step's own delay, else the function's back-off.
        after: Option<Duration>,
    },
    /// The run sleeps, waits for an event or for an invoked function (queue driver).
    Park(ParkedRun),
    /// An operation for Inngest (its driver): one element of the `206` reply.
    Report(Value),
    /// The run is no longer this worker's (its lease is gone or it was cancelled): nothing
    /// is settled.
    Abandoned(String),
}
