//! Backpressure: every queue a call can wait in is bounded, and a full one
//! refuses the call at once with [`PipelineError::Overloaded`] instead of
//! growing. This file is where a call is admitted or refused; `plan` picks
//! each step's bound and checks it.

use std::sync::Arc;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::PipelineError;

/// How many calls may wait in one replica's mailbox (actors), or be in
/// flight at once (tasks), unless the options say otherwise.
pub const DEFAULT_QUEUE_BOUND: usize = 256;

/// The in-flight bound of a tasks step: one permit per running call.
#[derive(Debug, Clone)]
pub(crate) struct Permits(Arc<Semaphore>);

impl Permits {
    pub(crate) fn new(bound: usize) -> Self {
        Permits(Arc::new(Semaphore::new(bound)))
    }

    /// A permit for one call, or `Overloaded` when `bound` calls run.
    pub(crate) fn admit(&self, step: &'static str) -> Result<OwnedSemaphorePermit, PipelineError> {
        Arc::clone(&self.0)
            .try_acquire_owned()
            .map_err(|_| PipelineError::Overloaded { step })
    }
}

/// Why a mailbox did not take a call: full is overload; closed means the
/// replica is gone, which happens only while the pipeline shuts down.
pub(crate) fn refused<T>(step: &'static str, error: &TrySendError<T>) -> PipelineError {
    match error {
        TrySendError::Full(_) => PipelineError::Overloaded { step },
        TrySendError::Closed(_) => PipelineError::ShuttingDown,
    }
}
