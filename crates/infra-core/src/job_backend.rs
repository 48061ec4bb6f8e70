//! `JobBackend`: a job queue with every capability the jobs runtime uses.
//!
//! The runtime is built on one backend value and hands each part only the capability it
//! needs: `Arc<dyn JobBackend>` upcasts to `Arc<dyn JobQueue>` for the workers, to
//! `Arc<dyn QueueAdmin>` for stats, dead letters and replay, and to `Arc<dyn StepStore>` for
//! durable steps. A capability added later joins this list as one more supertrait, and the
//! traits already here keep their shape.

use crate::job_queue::JobQueue;
use crate::queue_admin::QueueAdmin;
use crate::step_store::StepStore;

/// A queue with its hot path ([`JobQueue`]), its administration ([`QueueAdmin`]) and its
/// storage of durable steps ([`StepStore`]); implemented for every type that has all three.
///
/// ```
/// use std::sync::Arc;
/// use infra_core::{JobBackend, JobQueue, QueueAdmin, StepStore};
///
/// fn split(
///     backend: Arc<dyn JobBackend>,
/// ) -> (Arc<dyn JobQueue>, Arc<dyn QueueAdmin>, Arc<dyn StepStore>) {
///     (backend.clone(), backend.clone(), backend)
/// }
/// ```
pub trait JobBackend: JobQueue + QueueAdmin + StepStore {}

impl<T: JobQueue + QueueAdmin + StepStore + ?Sized> JobBackend for T {}
