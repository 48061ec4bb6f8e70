//! The events a webhook worker holds until they are due: arrivals at once, leaves
//! (`channel_vacated`, `member_removed`) after the leave delay unless an arrival cancels them.
//!
//! Adding, cancelling and taking cost O(1) or O(log n), whatever the backlog holds, and it
//! holds at most its capacity of events: what does not fit is refused for the caller to count.
//! (A list scanned on every arrival made a subscribe flood quadratic.)

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::webhook::WebhookEvent;

/// What a waiting leave is about; the arrival with the same key cancels it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LeaveKey {
    Channel(String),
    Member { channel: String, user_id: String },
}

impl LeaveKey {
    /// The key of a leave event.
    fn of_leave(event: &WebhookEvent) -> Option<LeaveKey> {
        match event {
            WebhookEvent::ChannelVacated { channel } => Some(LeaveKey::Channel(channel.clone())),
            WebhookEvent::MemberRemoved { channel, user_id } => Some(LeaveKey::Member {
                channel: channel.clone(),
                user_id: user_id.clone(),
            }),
            _ => None,
        }
    }

    /// The key of the leave an arrival cancels.
    fn cancelled_by(event: &WebhookEvent) -> Option<LeaveKey> {
        match event {
            WebhookEvent::ChannelOccupied { channel } => Some(LeaveKey::Channel(channel.clone())),
            WebhookEvent::MemberAdded { channel, user_id } => Some(LeaveKey::Member {
                channel: channel.clone(),
                user_id: user_id.clone(),
            }),
            _ => None,
        }
    }
}

/// What became of an event handed to the backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// Waiting to be sent.
    Queued,
    /// An arrival that cancelled the waiting leave it answers: neither is sent.
    Cancelled,
    /// A leave already waiting for the same channel (or member): the waiting one stands.
    Duplicate,
    /// The backlog is full: the event is dropped.
    Full,
}

/// A leave waiting for its delay; `None` once an arrival cancelled it.
struct Delayed {
    seq: u64,
    due: Instant,
    event: Option<WebhookEvent>,
}

pub(crate) struct WebhookBacklog {
    capacity: usize,
    delay: Duration,
    next_seq: u64,
    /// Events due at once, in arrival order.
    ready: VecDeque<(u64, WebhookEvent)>,
    /// Leaves in arrival order, which is their due order: the delay is the same for all.
    delayed: VecDeque<Delayed>,
    /// Leaves in `delayed` that were not cancelled.
    live_delayed: usize,
    /// Each waiting leave's sequence number, by what it is about.
    waiting: HashMap<LeaveKey, u64>,
}

impl WebhookBacklog {
    pub fn new(capacity: usize, delay: Duration) -> Self {
        WebhookBacklog {
            capacity,
            delay,
            next_seq: 0,
            ready: VecDeque::new(),
            delayed: VecDeque::new(),
            live_delayed: 0,
            waiting: HashMap::new(),
        }
    }

    /// Events waiting to be sent.
    pub fn len(&self) -> usize {
        self.ready.len() + self.live_delayed
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes an event that happened at `now`.
    pub fn accept(&mut self, event: WebhookEvent, now: Instant) -> Accepted {
        if let Some(key) = LeaveKey::cancelled_by(&event)
            && let Some(seq) = self.waiting.remove(&key)
        {
            self.cancel(seq);
            return Accepted::Cancelled;
        }
        let leave = LeaveKey::of_leave(&event);
        if leave
            .as_ref()
            .is_some_and(|key| self.waiting.contains_key(key))
        {
            return Accepted::Duplicate;
        }
        if self.len() >= self.capacity {
            return Accepted::Full;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        match leave {
            Some(key) => {
                self.waiting.insert(key, seq);
                self.delayed.push_back(Delayed {
                    seq,
                    due: now + self.delay,
                    event: Some(event),
                });
                self.live_delayed += 1;
            }
            None => self.ready.push_back((seq, event)),
        }
        Accepted::Queued
    }

    fn cancel(&mut self, seq: u64) {
        if let Ok(i) = self.delayed.binary_search_by_key(&seq, |d| d.seq)
            && self.delayed[i].event.take().is_some()
        {
            self.live_delayed -= 1;
        }
        // Cancelled entries leave when they fall due; many of them (a subscribe/unsubscribe
        // churn) are compacted away so they cannot pile up meanwhile.
        let cancelled = self.delayed.len() - self.live_delayed;
        if cancelled > 64 && cancelled > self.live_delayed {
            self.delayed.retain(|d| d.event.is_some());
        }
    }

    fn drop_cancelled_head(&mut self) {
        while self.delayed.front().is_some_and(|d| d.event.is_none()) {
            self.delayed.pop_front();
        }
    }

    /// When the next event falls due; `None` when nothing waits.
    pub fn next_due(&mut self) -> Option<Instant> {
        if !self.ready.is_empty() {
            return Some(Instant::now());
        }
        self.drop_cancelled_head();
        self.delayed.front().map(|d| d.due)
    }

    /// Up to `max` events due at `now`, in the order they happened.
    pub fn take_due(&mut self, now: Instant, max: usize) -> Vec<WebhookEvent> {
        let mut due = Vec::new();
        while due.len() < max {
            self.drop_cancelled_head();
            let ready_seq = self.ready.front().map(|(seq, _)| *seq);
            let delayed_seq = self.delayed.front().filter(|d| d.due <= now).map(|d| d.seq);
            let take_delayed = match (ready_seq, delayed_seq) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(r), Some(d)) => d < r,
            };
            if take_delayed {
                let Some(Delayed {
                    seq,
                    event: Some(event),
                    ..
                }) = self.delayed.pop_front()
                else {
                    continue;
                };
                self.live_delayed -= 1;
                if let Some(key) = LeaveKey::of_leave(&event)
                    && self.waiting.get(&key) == Some(&seq)
                {
                    self.waiting.remove(&key);
                }
                due.push(event);
            } else if let Some((_, event)) = self.ready.pop_front() {
                due.push(event);
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn occupied(c: &str) -> WebhookEvent {
        WebhookEvent::ChannelOccupied { channel: c.into() }
    }
    fn vacated(c: &str) -> WebhookEvent {
        WebhookEvent::ChannelVacated { channel: c.into() }
    }

    #[test]
    fn a_quick_return_cancels_the_leave() {
        let start = Instant::now();
        let mut backlog = WebhookBacklog::new(100, Duration::from_secs(3));
        assert_eq!(backlog.accept(vacated("a"), start), Accepted::Queued);
        assert_eq!(backlog.accept(occupied("a"), start), Accepted::Cancelled);
        assert!(backlog.is_empty());
        assert_eq!(backlog.next_due(), None);
        let removed = WebhookEvent::MemberRemoved {
            channel: "p".into(),
            user_id: "1".into(),
        };
        let added_other = WebhookEvent::MemberAdded {
            channel: "p".into(),
            user_id: "2".into(),
        };
        assert_eq!(backlog.accept(removed.clone(), start), Accepted::Queued);
        assert_eq!(backlog.accept(added_other.clone(), start), Accepted::Queued);
        assert_eq!(backlog.accept(removed.clone(), start), Accepted::Duplicate);
        assert_eq!(backlog.len(), 2);
        // The join is due now, the leave after the delay.
        assert_eq!(backlog.take_due(start, 10), vec![added_other]);
        assert!(backlog.take_due(start, 10).is_empty());
        assert_eq!(backlog.next_due(), Some(start + Duration::from_secs(3)));
        assert_eq!(
            backlog.take_due(start + Duration::from_secs(3), 10),
            vec![removed.clone()]
        );
        // Once sent, the same leave may wait again.
        assert_eq!(backlog.accept(removed, start), Accepted::Queued);
    }

    #[test]
    fn due_events_come_in_the_order_they_happened() {
        let start = Instant::now();
        let mut backlog = WebhookBacklog::new(100, Duration::ZERO);
        backlog.accept(vacated("a"), start);
        backlog.accept(occupied("b"), start);
        backlog.accept(vacated("c"), start);
        backlog.accept(occupied("d"), start);
        assert_eq!(
            backlog.take_due(start, 3),
            vec![vacated("a"), occupied("b"), vacated("c")]
        );
        assert_eq!(backlog.take_due(start, 3), vec![occupied("d")]);
    }

    #[test]
    fn the_backlog_refuses_what_does_not_fit_and_cancelled_leaves_do_not_pile_up() {
        let start = Instant::now();
        let mut backlog = WebhookBacklog::new(1_000, Duration::from_secs(60));
        for i in 0..1_500 {
            let accepted = backlog.accept(vacated(&format!("c{i}")), start);
            assert_eq!(
                accepted,
                if i < 1_000 {
                    Accepted::Queued
                } else {
                    Accepted::Full
                }
            );
        }
        assert_eq!(backlog.len(), 1_000);
        // An arrival still cancels its leave when the backlog is full, making room.
        assert_eq!(backlog.accept(occupied("c0"), start), Accepted::Cancelled);
        assert_eq!(
            backlog.accept(occupied("new"), start),
            Accepted::Queued,
            "room again"
        );
        // A churn of leave + return on one channel leaves nothing behind.
        let mut churn = WebhookBacklog::new(1_000, Duration::from_secs(60));
        for _ in 0..100_000 {
            churn.accept(vacated("x"), start);
            churn.accept(occupied("x"), start);
        }
        assert!(churn.is_empty());
        assert!(
            churn.delayed.len() <= 130,
            "{} cancelled entries kept",
            churn.delayed.len()
        );
    }
}
