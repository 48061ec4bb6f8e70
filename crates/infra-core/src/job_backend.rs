//! `JobBackend`: a job queue with every capability the jobs runtime uses.
//!
//! The runtime is built on one backend value and hands each part only the capability it
//! needs: `Arc<dyn JobBackend>` upcasts to `Arc<dyn JobQueue>` for the workers and to
//! `Arc<dyn QueueAdmin>` for stats, dead letters and replay. A capability added later (such
//! as the storage of durable steps) joins this list as one more supertrait, and the traits
//! already here keep their shape.

use crate::job_queue::JobQueue;
use crate::queue_admin::QueueAdmin;

/// A queue with its hot path ([`JobQueue`]) and its administration ([`QueueAdmin`]);
/// implemented for every type that has both.
///
/// ```
/// use std::sync::Arc;
/// use infra_core::{JobBackend, JobQueue, QueueAdmin};
///
/// fn split(backend: Arc<dyn JobBackend>) -> (Arc<dyn JobQueue>, Arc<dyn QueueAdmin>) {
///     (backend.clone(), backend)
/// }
/// ```
pub trait JobBackend: JobQueue + QueueAdmin {}

impl<T: JobQueue + QueueAdmin + ?Sized> JobBackend for T {}
