//! What a handler gets besides its event: the attempt, cancellation and the app's state.

use std::any::Any;
use std::sync::Arc;

use infra_core::Event;
use tokio_util::sync::CancellationToken;

/// The app's shared state, handed to every handler (a pool, clients, settings).
pub type AppState = Arc<dyn Any + Send + Sync>;

/// The context of one run.
///
/// The token is cancelled when the run's timeout passes or the runtime shuts down; a
/// long handler should watch [`JobContext::cancelled`] and stop early.
#[derive(Clone)]
pub struct JobContext {
    function_id: Arc<str>,
    run_id: String,
    attempt: u32,
    max_attempts: u32,
    event: Arc<Event>,
    cancel: CancellationToken,
    state: Option<AppState>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("function_id", &self.function_id)
            .field("run_id", &self.run_id)
            .field("attempt", &self.attempt)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl JobContext {
    /// A context for one attempt (numbered from 1) of `function_id` on `event`.
    pub fn new(
        function_id: impl Into<Arc<str>>,
        run_id: impl Into<String>,
        event: Arc<Event>,
        attempt: u32,
        max_attempts: u32,
    ) -> Self {
        JobContext {
            function_id: function_id.into(),
            run_id: run_id.into(),
            attempt,
            max_attempts,
            event,
            cancel: CancellationToken::new(),
            state: None,
        }
    }

    /// Uses `cancel` as the run's cancellation token.
    pub fn with_cancellation(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Hands the app's state to the handler.
    pub fn with_state(mut self, state: Option<AppState>) -> Self {
        self.state = state;
        self
    }

    /// The function being run.
    pub fn function_id(&self) -> &str {
        &self.function_id
    }

    /// This run's id (the queue's job id, or Inngest's run id).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Attempts allowed in all; the last one is `attempt() == max_attempts()`.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The untyped event, with its id and timestamp.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The cancellation token.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the run is cancelled (timeout or shutdown).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// The app's state as `T`, if the runtime was given a `T`.
    pub fn state<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.state.as_ref()?.downcast_ref::<T>()
    }
}
