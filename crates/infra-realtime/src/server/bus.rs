//! The bus: frames a node has delivered to its own sockets, on their way to the other nodes.
//!
//! A node always delivers to its own sockets first, directly; the [`Bus`] carries the frame on
//! to every other node, whose [`BusHandler`] (its hub) delivers it there. One node's frames
//! leave in the order they were handed over. The bus keeps nothing: a node that is away misses
//! what was published meanwhile, as a Pusher client offline does. A single node has no bus.

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;

/// Sends frames to the other nodes. Every method but `flush` only queues, never waits: it is
/// called on the path of a publish.
#[async_trait]
pub(crate) trait Bus: Send + Sync {
    /// A frame for the subscribers of `channel` but the socket `except`.
    fn publish(&self, app_id: &str, channel: &str, message: &Utf8Bytes, except: Option<&str>);

    /// A `member_added` / `member_removed` frame of presence member-list `version`.
    fn publish_member_event(
        &self,
        app_id: &str,
        channel: &str,
        message: &Utf8Bytes,
        except: Option<&str>,
        version: u64,
    );

    /// Asks every other node to close the connections of a signed-in user.
    fn terminate_user(&self, app_id: &str, user_id: &str);

    /// Waits until everything published so far has reached the bus (or failed to), so an
    /// acknowledged trigger is not lost when this node dies right after answering.
    async fn flush(&self);
}

/// Receives what other nodes published: the hub of the node, which delivers to its own sockets.
pub(crate) trait BusHandler: Send + Sync {
    /// See [`Bus::publish`].
    fn deliver(&self, app_id: &str, channel: &str, message: &Utf8Bytes, except: Option<&str>);

    /// See [`Bus::publish_member_event`].
    fn deliver_member_event(
        &self,
        app_id: &str,
        channel: &str,
        message: &Utf8Bytes,
        except: Option<&str>,
        version: u64,
    );

    /// See [`Bus::terminate_user`].
    fn terminate_user(&self, app_id: &str, user_id: &str);
}
