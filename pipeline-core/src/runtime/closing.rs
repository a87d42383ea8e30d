//! [`Closing`]: a runner's "being dropped" signal that async code can wait
//! on, and [`drive`], which drives a stream step's items until they end or
//! that signal comes (a replica thread streaming to a consumer that no
//! longer reads would otherwise keep the pipeline's drop waiting for ever).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::future::Either;
use tokio::sync::Notify;

use crate::step::{Drained, Driver};

/// Set once, when the runner that owns it is dropped; every waiter wakes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Closing(Arc<Signal>);

#[derive(Debug, Default)]
struct Signal {
    closed: AtomicBool,
    notify: Notify,
}

impl Closing {
    /// Closes: wakes every [`closed`](Self::closed) waiter, now and later.
    pub(crate) fn close(&self) {
        self.0.closed.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Closed already.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::SeqCst)
    }

    /// Completes once closed.
    pub(crate) async fn closed(&self) {
        loop {
            let notified = self.0.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a close in between is seen.
            notified.as_mut().enable();
            if self.0.closed.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// Drives a stream step's items until they end, the consumer leaves, or
/// `closing` closes (the pipeline is being dropped: the consumer then gets
/// `ReplicaLost` after the items it had).
pub(crate) async fn drive(driver: Driver, closing: &Closing) -> Drained {
    let closed = std::pin::pin!(closing.closed());
    match futures::future::select(driver, closed).await {
        Either::Left((drained, _)) => drained,
        Either::Right(((), _)) => Drained::Cancelled,
    }
}
