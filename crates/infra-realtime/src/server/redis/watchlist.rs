//! Watchlist state of a cluster in Redis: `{prefix}:app:{app}:online`, a hash of user id → the
//! number of nodes holding a connection of that user, and `{prefix}:app:{app}:watchers:{user}`,
//! the set of users watching `user`. A node counts a user once however many of its sockets
//! signed in as it, so the hash's transitions 0 → 1 and 1 → 0 are the cluster's online and
//! offline. When Redis cannot answer, the node tells no one (and logs it) rather than guess.

use std::sync::Arc;

use async_trait::async_trait;

use super::link::{Link, call};
use crate::server::watchlist::WatchlistStore;

pub(super) struct RedisWatchlist {
    link: Arc<Link>,
}

impl RedisWatchlist {
    pub fn new(link: Arc<Link>) -> Self {
        RedisWatchlist { link }
    }

    fn online_key(&self, app_id: &str) -> String {
        self.link.keys.online_users(app_id)
    }

    fn watchers_key(&self, app_id: &str, user_id: &str) -> String {
        self.link.keys.watchers(app_id, user_id)
    }

    /// Adds `by` to the user's node count; the count after.
    async fn add(&self, app_id: &str, user_id: &str, by: i64) -> Option<i64> {
        let mut conn = self.link.connection()?;
        let key = self.online_key(app_id);
        let result = call(async {
            let count: i64 = redis::cmd("HINCRBY")
                .arg(&key)
                .arg(user_id)
                .arg(by)
                .query_async(&mut conn)
                .await?;
            if count <= 0 {
                redis::cmd("HDEL")
                    .arg(&key)
                    .arg(user_id)
                    .query_async::<()>(&mut conn)
                    .await?;
            }
            Ok(count)
        })
        .await;
        result
            .map_err(|e| self.link.failed("watchlist online count", &e))
            .ok()
    }
}

#[async_trait]
impl WatchlistStore for RedisWatchlist {
    async fn came_online(&self, app_id: &str, user_id: &str) -> bool {
        self.add(app_id, user_id, 1).await == Some(1)
    }

    async fn went_offline(&self, app_id: &str, user_id: &str) -> bool {
        self.add(app_id, user_id, -1).await == Some(0)
    }

    async fn watch(&self, app_id: &str, watcher: &str, watched: &[String]) {
        let Some(mut conn) = self.link.connection() else {
            return;
        };
        let mut pipe = redis::pipe();
        for user in watched {
            pipe.cmd("SADD")
                .arg(self.watchers_key(app_id, user))
                .arg(watcher)
                .ignore();
        }
        if let Err(e) = call(pipe.query_async::<()>(&mut conn)).await {
            self.link.failed("recording a watchlist", &e);
        }
    }

    async fn watchers(&self, app_id: &str, user_id: &str) -> Vec<String> {
        let Some(mut conn) = self.link.connection() else {
            return Vec::new();
        };
        let key = self.watchers_key(app_id, user_id);
        call(redis::cmd("SMEMBERS").arg(key).query_async(&mut conn))
            .await
            .map_err(|e| self.link.failed("reading watchers", &e))
            .unwrap_or_default()
    }

    async fn online(&self, app_id: &str, users: &[String]) -> Vec<String> {
        if users.is_empty() {
            return Vec::new();
        }
        let Some(mut conn) = self.link.connection() else {
            return Vec::new();
        };
        let key = self.online_key(app_id);
        let counts: Vec<Option<i64>> = call(
            redis::cmd("HMGET")
                .arg(key)
                .arg(users)
                .query_async(&mut conn),
        )
        .await
        .map_err(|e| self.link.failed("reading who is online", &e))
        .unwrap_or_default();
        users
            .iter()
            .zip(counts)
            .filter(|(_, count)| count.is_some_and(|n| n > 0))
            .map(|(user, _)| user.clone())
            .collect()
    }
}
