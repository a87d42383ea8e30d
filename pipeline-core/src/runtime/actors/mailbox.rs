//! A replica's mailbox: a bounded channel of [`Job`]s, as tower's `Buffer`
//! puts a channel in front of one worker. The sending half admits or
//! refuses a call (see `admission`); the receiving half, [`Inbox`], is what
//! a replica worker takes its jobs from, whoever feeds it (the pool's
//! router here, a remote transport later). The step's queue-depth gauge
//! reads the mailboxes' lengths when it is read ([`Mailbox::len`]); no
//! counter goes up and down per call. A mailbox whose sending half is gone
//! (its replica drains, scaled down) is read from [`Left`], which its
//! replica stores after every job it takes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::error::PipelineError;
use crate::runtime::admission::refused;
use crate::runtime::closing::Closing;
use crate::step::StepFn;

/// Where a job's answer goes.
pub(crate) type Reply<O> = oneshot::Sender<Result<O, PipelineError>>;

/// One call waiting for a replica.
pub(crate) struct Job<S: StepFn> {
    pub(crate) inputs: S::Inputs,
    pub(crate) reply: Reply<S::Output>,
}

impl<S: StepFn> Job<S> {
    /// The caller dropped the call: its work is to be skipped.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.reply.is_closed()
    }
}

/// A new mailbox holding at most `bound` jobs.
pub(crate) fn mailbox<S: StepFn>(bound: usize) -> (Mailbox<S>, Inbox<S>) {
    let (tx, rx) = mpsc::channel(bound);
    let left = Left::default();
    (
        Mailbox {
            tx,
            left: left.clone(),
        },
        Inbox { rx, left },
    )
}

/// Jobs left in a mailbox as its replica last saw it (a plain store after
/// each job taken): exact once nothing more is sent to it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Left(Arc<AtomicUsize>);

impl Left {
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, n: usize) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// Its replica still holds it (has not stopped).
    pub(crate) fn is_held(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }
}

/// The sending half. Dropping it closes the mailbox: the replica answers
/// what is queued, then stops.
pub(crate) struct Mailbox<S: StepFn> {
    tx: mpsc::Sender<Job<S>>,
    left: Left,
}

impl<S: StepFn> Mailbox<S> {
    /// Jobs queued now (a bounded channel hands a slot back when its job
    /// is taken; one atomic load).
    pub(crate) fn len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Closes the mailbox (the replica drains what it holds, then stops);
    /// what it holds stays readable from the returned [`Left`].
    pub(crate) fn close(self) -> Left {
        self.left.set(self.len());
        self.left
    }

    /// Queues `job`, or refuses it at once when the mailbox is full.
    pub(crate) fn offer(&self, step: &'static str, job: Job<S>) -> Result<(), PipelineError> {
        self.tx.try_send(job).map_err(|e| refused(step, &e))
    }
}

/// The receiving half: what a replica worker takes jobs from.
pub(crate) struct Inbox<S: StepFn> {
    rx: mpsc::Receiver<Job<S>>,
    left: Left,
}

impl<S: StepFn> Inbox<S> {
    fn taken(&self, job: Option<Job<S>>) -> Option<Job<S>> {
        if job.is_some() {
            self.left.set(self.rx.len());
        }
        job
    }

    /// The next job; `None` once the mailbox is closed and empty.
    pub(crate) fn recv(&mut self) -> impl std::future::Future<Output = Option<Job<S>>> + '_ {
        std::future::poll_fn(|task| {
            let job = std::task::ready!(self.rx.poll_recv(task));
            std::task::Poll::Ready(self.taken(job))
        })
    }

    /// A job already queued, if any.
    pub(crate) fn try_recv(&mut self) -> Option<Job<S>> {
        let job = self.rx.try_recv().ok();
        self.taken(job)
    }

    /// The next job if one comes before `deadline` (timed on `timer`, a
    /// runtime with a time driver) and before `stop` closes (then only a
    /// job already queued).
    pub(crate) async fn recv_until(
        &mut self,
        deadline: tokio::time::Instant,
        timer: &Handle,
        stop: &Closing,
    ) -> Option<Job<S>> {
        let timeout = {
            let _timer = timer.enter();
            tokio::time::timeout_at(deadline, self.rx.recv())
        };
        let waited = tokio::select! {
            biased;
            job = timeout => Some(job.ok().flatten()),
            () = stop.closed() => None,
        };
        let job = match waited {
            Some(job) => job,
            None => self.rx.try_recv().ok(),
        };
        self.taken(job)
    }

    /// No sender is left: nothing more will come once the queue is empty.
    pub(crate) fn is_closed(&self) -> bool {
        self.rx.is_closed()
    }

    /// Nothing is queued now.
    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl<S: StepFn> Drop for Inbox<S> {
    /// A replica that stops with jobs still queued (the pipeline is being
    /// dropped) drops them: dropping each job's reply tells its caller the
    /// replica is gone.
    fn drop(&mut self) {
        self.rx.close();
        while self.try_recv().is_some() {}
    }
}
