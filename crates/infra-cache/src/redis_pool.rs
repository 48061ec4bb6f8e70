//! Connections leased from a deadpool-redis pool and kept, so a command costs one round trip:
//! multiplexed connections for `RedisCache`, cluster connections for `RedisClusterCache`.
//!
//! deadpool-redis checks every connection it hands out with an `UNWATCH`+`PING` round trip.
//! Taking a connection per command would double the round trips of every call (and make a
//! rate-limit decision two round trips instead of one). A multiplexed connection is safe to
//! share between tasks, so each slot here keeps one pooled connection and every command uses
//! a clone of one slot's connection. A slot whose connection fails (I/O error, dropped,
//! timeout) is emptied: the connection goes back to the pool, whose check on the next lease
//! replaces it if it is broken. That is how the same `RedisCache` recovers after an outage.
//! A cluster connection is shared the same way: it routes each command to the node serving
//! its slot over multiplexed connections of its own, and follows `MOVED`/`ASK` and topology
//! changes by itself.
//!
//! One slot per CPU, not one per pooled connection: a multiplexed connection writes every
//! request queued on it in one `write` and reads every reply that has arrived in one `read`, so
//! the more concurrent commands share a connection, the fewer system calls each costs.
//! Spreading 64 concurrent tasks over 64 connections left about one command in flight per
//! connection and cost three times the client CPU per command of sharing one. One connection
//! for everything is the other extreme: its reads and writes happen on one worker thread at a
//! time, so on a quiet machine one connection per CPU beat it by 12% (raw redis-rs, same run,
//! see `docs/cache.md`). The rest of the pool stays free for `RedisCache::pool()` users.
//! (`RedisClusterCache` keeps one slot: a cluster connection already spreads its I/O over a
//! connection per node.)

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool::managed::{Manager, Object, Pool, PoolError};

/// Connections every command of a `RedisCache` is spread over: one per CPU the process may
/// use, so each worker thread can be reading one connection's replies at once.
pub(crate) fn shared_connections() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The leased connections of one pool: `M` is deadpool-redis's manager (single server or
/// cluster), `W` the pool's connection wrapper, which dereferences to a shareable handle.
pub(crate) struct Leases<M: Manager, W: From<Object<M>>> {
    pool: Pool<M, W>,
    slots: Vec<Slot<W>>,
    next: AtomicUsize,
}

struct Slot<W> {
    /// Read on every command, written only when the slot is filled or emptied: a read lock
    /// never makes the worker threads wait on each other.
    conn: RwLock<Option<W>>,
    /// One task at a time fills an empty slot: leased connections never go back to the pool,
    /// so two tasks filling one slot could leave a third waiting on an exhausted pool.
    filling: tokio::sync::Mutex<()>,
}

impl<W> Default for Slot<W> {
    fn default() -> Self {
        Slot {
            conn: RwLock::new(None),
            filling: tokio::sync::Mutex::new(()),
        }
    }
}

impl<W: Deref<Target: Clone>> Slot<W> {
    fn current(&self) -> Option<W::Target> {
        self.conn
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| (**c).clone())
    }
}

/// A connection for one command, and the slot it came from.
pub(crate) struct Lease<C> {
    pub(crate) conn: C,
    pub(crate) slot: usize,
}

impl<M, W> Leases<M, W>
where
    M: Manager,
    W: From<Object<M>> + Deref<Target: Clone> + Send + Sync,
{
    /// [`shared_connections`] slots, at most one per connection the pool may open.
    pub(crate) fn new(pool: Pool<M, W>) -> Self {
        Self::with_slots(pool, shared_connections())
    }

    /// `slots` slots, at most one per connection the pool may open.
    pub(crate) fn with_slots(pool: Pool<M, W>, slots: usize) -> Self {
        let slots = (0..pool.status().max_size.clamp(1, slots.max(1)))
            .map(|_| Slot::default())
            .collect();
        Leases {
            pool,
            slots,
            next: AtomicUsize::new(0),
        }
    }

    pub(crate) fn pool(&self) -> &Pool<M, W> {
        &self.pool
    }

    /// Slots holding a connection.
    pub(crate) fn leased(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.conn.read().unwrap_or_else(|e| e.into_inner()).is_some())
            .count()
    }

    /// The connection of the next slot, or `Err(slot)` when that slot is empty and must be
    /// [`fill`](Leases::fill)ed first.
    ///
    /// Not `async`: the hot path holds no future of the pool's. Every call's future is boxed
    /// (the object-safe traits), and boxing moves the whole state machine, so a pool checkout
    /// future inlined here made every command copy a few kilobytes it almost never used.
    pub(crate) fn ready(&self) -> Result<Lease<W::Target>, usize> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        match self.slots[slot].current() {
            Some(conn) => Ok(Lease { conn, slot }),
            None => Err(slot),
        }
    }

    /// Leases a connection from the pool into the empty `slot` (rare: the first calls, and
    /// after a failure), boxed so that its size stays out of the callers' futures.
    #[allow(clippy::type_complexity)]
    pub(crate) fn fill(
        &self,
        slot: usize,
    ) -> Pin<Box<dyn Future<Output = Result<Lease<W::Target>, PoolError<M::Error>>> + Send + '_>>
    {
        Box::pin(async move {
            let this = &self.slots[slot];
            let _filling = this.filling.lock().await;
            if let Some(conn) = this.current() {
                return Ok(Lease { conn, slot });
            }
            let fresh = self.pool.get().await?;
            let conn = (*fresh).clone();
            *this.conn.write().unwrap_or_else(|e| e.into_inner()) = Some(fresh);
            Ok(Lease { conn, slot })
        })
    }

    /// Gives the slot's connection back to the pool after it failed.
    pub(crate) fn discard(&self, slot: usize) {
        let taken = self.slots[slot]
            .conn
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(taken);
    }
}
