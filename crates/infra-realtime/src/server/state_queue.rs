//! The changes of a clustered node's state waiting for its state writer, in the hub's order.
//!
//! A subscribe flood must not grow it without bound while Redis takes a round trip per change:
//! a channel's subscription count is coalesced — a new count replaces the one still waiting,
//! as long as no other change of that channel (a presence join or leave) or a barrier
//! (resync, leave) was queued after it, so every channel's changes keep their order. Beyond
//! `capacity` waiting changes, a change that cannot be coalesced is refused and a resync is
//! queued last instead: it writes the node's whole state as the hub has it when it runs, which
//! includes whatever was refused.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::{Notify, oneshot};

use super::cluster::StateChange;

/// What the state writer does, in order.
pub(crate) enum Op {
    Change {
        app: String,
        change: StateChange,
    },
    /// Write this node's whole state again (after a reconnect, a lost lease, or refused
    /// changes).
    Resync,
    /// Give up the lease and the node's state (graceful shutdown); answers when done.
    Leave(oneshot::Sender<()>),
}

struct Inner {
    ops: VecDeque<Op>,
    /// Sequence number of `ops[0]`.
    head: u64,
    /// A channel's queued subscription count that a new count may still replace.
    open: HashMap<(String, String), u64>,
    closed: bool,
}

pub(crate) struct StateQueue {
    inner: Mutex<Inner>,
    ready: Notify,
    capacity: usize,
}

fn channel_of(change: &StateChange) -> &str {
    match change {
        StateChange::Subscriptions { channel, .. }
        | StateChange::Join { channel, .. }
        | StateChange::Leave { channel, .. } => channel,
    }
}

impl StateQueue {
    pub fn new(capacity: usize) -> Self {
        StateQueue {
            inner: Mutex::new(Inner {
                ops: VecDeque::new(),
                head: 0,
                open: HashMap::new(),
                closed: false,
            }),
            ready: Notify::new(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a change (never waits: called under an app's lock). False when it was refused
    /// because the queue is full: a resync then follows, and a refused presence join must be
    /// answered by the caller.
    pub fn push_change(&self, app: &str, change: StateChange) -> bool {
        let mut inner = self.lock();
        let key = (app.to_owned(), channel_of(&change).to_owned());
        if let StateChange::Subscriptions { count, .. } = &change
            && let Some(&seq) = inner.open.get(&key)
        {
            let index = (seq - inner.head) as usize;
            if let Some(Op::Change {
                change: StateChange::Subscriptions { count: queued, .. },
                ..
            }) = inner.ops.get_mut(index)
            {
                *queued = *count;
                return true;
            }
        }
        // Another kind of change of the channel: later counts must come after it.
        inner.open.remove(&key);
        if inner.ops.len() >= self.capacity {
            if !matches!(inner.ops.back(), Some(Op::Resync)) {
                inner.ops.push_back(Op::Resync);
            }
            drop(inner);
            self.ready.notify_one();
            return false;
        }
        let seq = inner.head + inner.ops.len() as u64;
        if matches!(change, StateChange::Subscriptions { .. }) {
            inner.open.insert(key, seq);
        }
        inner.ops.push_back(Op::Change {
            app: app.to_owned(),
            change,
        });
        drop(inner);
        self.ready.notify_one();
        true
    }

    /// Queues a resync or a leave: nothing queued before it is coalesced with what follows.
    pub fn push_barrier(&self, op: Op) {
        let mut inner = self.lock();
        inner.open.clear();
        if !(matches!(op, Op::Resync) && matches!(inner.ops.back(), Some(Op::Resync))) {
            inner.ops.push_back(op);
        }
        drop(inner);
        self.ready.notify_one();
    }

    /// The next op, waiting for one; `None` once closed and empty.
    pub async fn pop(&self) -> Option<Op> {
        loop {
            {
                let mut inner = self.lock();
                if let Some(op) = inner.ops.pop_front() {
                    let seq = inner.head;
                    inner.head += 1;
                    if let Op::Change { app, change } = &op {
                        let key = (app.clone(), channel_of(change).to_owned());
                        if inner.open.get(&key) == Some(&seq) {
                            inner.open.remove(&key);
                        }
                    }
                    return Some(op);
                }
                if inner.closed {
                    return None;
                }
            }
            // A push meanwhile left a permit: no wake-up is lost.
            self.ready.notified().await;
        }
    }

    /// Ends the writer once it has taken what is queued.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Ops waiting.
    pub fn len(&self) -> usize {
        self.lock().ops.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn subs(channel: &str, count: usize) -> StateChange {
        StateChange::Subscriptions {
            channel: channel.into(),
            count,
        }
    }

    fn describe(op: Op) -> String {
        match op {
            Op::Change {
                change: StateChange::Subscriptions { channel, count },
                ..
            } => format!("{channel}={count}"),
            Op::Change {
                change: StateChange::Join { channel, .. },
                ..
            } => format!("join {channel}"),
            Op::Change {
                change: StateChange::Leave { channel, .. },
                ..
            } => format!("leave {channel}"),
            Op::Resync => "resync".into(),
            Op::Leave(_) => "leave the cluster".into(),
        }
    }

    async fn drain(queue: &StateQueue) -> Vec<String> {
        let mut seen = Vec::new();
        while queue.len() > 0 {
            seen.push(describe(queue.pop().await.unwrap()));
        }
        seen
    }

    #[tokio::test]
    async fn counts_coalesce_per_channel_without_passing_other_changes() {
        let queue = StateQueue::new(100);
        for count in 0..10_000 {
            assert!(queue.push_change("1", subs("a", count % 3)));
            assert!(queue.push_change("1", subs("b", count % 2)));
        }
        assert_eq!(queue.len(), 2);
        let join = StateChange::Join {
            channel: "a".into(),
            socket_id: None,
            user_id: "u".into(),
            user_info: Value::Null,
        };
        assert!(queue.push_change("1", join));
        // After the join, a count of `a` waits behind it; `b` still coalesces.
        assert!(queue.push_change("1", subs("a", 7)));
        assert!(queue.push_change("1", subs("b", 5)));
        assert!(queue.push_change("2", subs("a", 4)), "another app's `a`");
        queue.push_barrier(Op::Resync);
        assert!(queue.push_change("1", subs("b", 6)));
        assert_eq!(
            drain(&queue).await,
            ["a=0", "b=5", "join a", "a=7", "a=4", "resync", "b=6"]
        );
        // Taken changes are not reopened.
        assert!(queue.push_change("1", subs("a", 1)));
        assert!(queue.push_change("1", subs("a", 2)));
        assert_eq!(drain(&queue).await, ["a=2"]);
    }

    #[tokio::test]
    async fn beyond_its_capacity_the_queue_refuses_and_resyncs_last() {
        let queue = StateQueue::new(3);
        for i in 0..3 {
            assert!(queue.push_change("1", subs(&format!("c{i}"), 1)));
        }
        assert!(queue.push_change("1", subs("c0", 0)), "coalesced");
        for i in 3..1_000 {
            assert!(!queue.push_change("1", subs(&format!("c{i}"), 1)));
        }
        assert_eq!(queue.len(), 4);
        queue.push_barrier(Op::Resync);
        assert_eq!(drain(&queue).await, ["c0=0", "c1=1", "c2=1", "resync"]);
        queue.close();
        assert!(queue.pop().await.is_none());
    }
}
