//! Where calendar events come from: a provider trait (Google, Microsoft… in a real app) and a
//! built-in fake that generates the same events for the same calendar every time, so a demo,
//! a test and a benchmark see predictable data without any account.

use chrono::{DateTime, Duration, TimeZone, Utc};
use infra::async_trait;

/// One event as a provider reports it (JSON, so a durable step can record it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProviderEvent {
    /// The provider's id of the event: sync upserts by it.
    pub external_id: String,
    /// Title shown in the calendar.
    pub title: String,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End, after the start.
    pub ends_at: DateTime<Utc>,
}

/// A calendar provider: lists a calendar's events.
#[async_trait]
pub trait CalendarProvider: Send + Sync + 'static {
    /// The provider's name, stored beside each calendar (`google`, `fake`…).
    fn name(&self) -> &'static str;

    /// Every event of `calendar_id` the provider knows.
    async fn list_events(&self, calendar_id: i64) -> infra::Result<Vec<ProviderEvent>>;
}

/// A provider that generates `events_per_calendar` one-hour meetings per calendar, on
/// consecutive days from a fixed origin; the titles and times depend only on the calendar id.
#[derive(Debug, Clone)]
pub struct FakeProvider {
    events_per_calendar: usize,
}

impl FakeProvider {
    /// The fake with `events_per_calendar` events a calendar.
    pub fn new(events_per_calendar: usize) -> Self {
        FakeProvider {
            events_per_calendar,
        }
    }
}

impl Default for FakeProvider {
    fn default() -> Self {
        FakeProvider::new(12)
    }
}

const TITLES: [&str; 6] = [
    "Stand-up",
    "Design review",
    "1:1",
    "Customer call",
    "Planning",
    "Focus time",
];

#[async_trait]
impl CalendarProvider for FakeProvider {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn list_events(&self, calendar_id: i64) -> infra::Result<Vec<ProviderEvent>> {
        // 2026-01-05 09:00 UTC, a Monday.
        let origin = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
        let calendar = calendar_id.unsigned_abs();
        Ok((0..self.events_per_calendar as u64)
            .map(|i| {
                let title = TITLES[((calendar + i) % TITLES.len() as u64) as usize];
                let hour = ((calendar + i * 3) % 8) as i64; // between 09:00 and 16:00
                let starts_at = origin + Duration::days(i as i64) + Duration::hours(hour);
                ProviderEvent {
                    external_id: format!("fake-{calendar}-{i}"),
                    title: format!("{title} #{i}"),
                    starts_at,
                    ends_at: starts_at + Duration::hours(1),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_fake_is_deterministic_per_calendar() {
        let fake = FakeProvider::new(5);
        let a = fake.list_events(7).await.unwrap();
        assert_eq!(a, fake.list_events(7).await.unwrap());
        assert_ne!(a, fake.list_events(8).await.unwrap());
        assert_eq!(a.len(), 5);
        assert!(a.iter().all(|e| e.starts_at < e.ends_at));
        let mut ids: Vec<_> = a.iter().map(|e| &e.external_id).collect();
        ids.dedup();
        assert_eq!(ids.len(), 5, "unique external ids");
    }
}
