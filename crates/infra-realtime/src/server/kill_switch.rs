//! Asks one connection's task to close with a code, from wherever the reason is found (the
//! hub under its lock, another node's termination, a shutdown).

use std::sync::OnceLock;

use tokio::sync::Notify;

use super::protocol::CloseCode;

/// The first code asked for wins.
#[derive(Default)]
pub(crate) struct Kill {
    code: OnceLock<CloseCode>,
    notify: Notify,
}

impl Kill {
    pub fn trigger(&self, code: CloseCode) {
        if self.code.set(code).is_ok() {
            // `notify_one` keeps a permit when the task is not waiting yet.
            self.notify.notify_one();
        }
    }

    pub async fn wait(&self) -> CloseCode {
        self.notify.notified().await;
        self.code.get().copied().unwrap_or(CloseCode::GoingAway)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_code_wins_even_before_anyone_waits() {
        let kill = Kill::default();
        kill.trigger(CloseCode::SlowClient);
        kill.trigger(CloseCode::Unauthorized);
        assert_eq!(kill.wait().await, CloseCode::SlowClient);
    }
}
