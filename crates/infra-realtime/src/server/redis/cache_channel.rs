//! The last event of each cache channel in Redis, under `{prefix}:ch:{app:channel}:cache`
//! with Pusher's 30-minute TTL. Writes go through one background task, in the order the node
//! published, so a channel's key holds its latest event; a burst that outruns Redis is dropped
//! (and logged) rather than buffered without bound — the key then holds an older event until
//! the next publish, as Pusher's cache is best effort too.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;

use super::link::{Link, call};
use crate::server::cache_store::{CACHE_TTL, CacheStore};

/// Writes waiting for Redis at most.
const QUEUE: usize = 4096;

pub(super) struct RedisCacheChannels {
    link: Arc<Link>,
    tx: mpsc::Sender<(String, Utf8Bytes)>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<(String, Utf8Bytes)>>>,
}

impl RedisCacheChannels {
    pub fn new(link: Arc<Link>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        RedisCacheChannels {
            link,
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
        }
    }

    /// Starts the writer (inside the runtime, with the rest of the cluster's tasks).
    pub fn start(&self) {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(rx) = rx {
            tokio::spawn(write(self.link.clone(), rx));
        }
    }

    fn key(&self, app_id: &str, channel: &str) -> String {
        self.link.keys.cached_event(app_id, channel)
    }
}

async fn write(link: Arc<Link>, mut rx: mpsc::Receiver<(String, Utf8Bytes)>) {
    while let Some((key, message)) = rx.recv().await {
        let Some(mut conn) = link.connection() else {
            continue;
        };
        let mut set = redis::cmd("SET");
        set.arg(&key)
            .arg(message.as_str())
            .arg("EX")
            .arg(CACHE_TTL.as_secs());
        if let Err(e) = call(set.query_async::<()>(&mut conn)).await {
            link.failed("keeping a cache channel's event", &e);
        }
    }
}

#[async_trait]
impl CacheStore for RedisCacheChannels {
    fn keep(&self, app_id: &str, channel: &str, message: &Utf8Bytes) {
        if self
            .tx
            .try_send((self.key(app_id, channel), message.clone()))
            .is_err()
        {
            tracing::warn!("cache channel event not kept in Redis: the writer is behind");
        }
    }

    async fn last(&self, app_id: &str, channel: &str) -> Result<Option<Utf8Bytes>, String> {
        let mut conn = self
            .link
            .connection()
            .ok_or_else(|| "not connected".to_owned())?;
        let key = self.key(app_id, channel);
        let found: Option<String> = call(redis::cmd("GET").arg(key).query_async(&mut conn)).await?;
        Ok(found.map(Utf8Bytes::from))
    }
}
