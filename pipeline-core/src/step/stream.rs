//! Stream steps: [`ItemStream`], the output of a step that yields many
//! items, and how a runner drives one where the step runs ([`Pump`]).
//!
//! A stream step is a `#[step]` whose output is `ItemStream<T>`; its node
//! produces a stream of `T`, not a `T`, so passing it where a `T` is
//! expected (or a plain node where a stream is expected) is a compile
//! error. The body builds the stream lazily (from an iterator, or any
//! `Stream`); the runner then pulls it where the step runs (the step's
//! replica thread or task, its task, or inline for local mode) into a
//! bounded channel, whose other end is what the caller gets. A slow
//! consumer therefore slows the producer, and a consumer that drops the
//! stream stops it.

use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::contract::IntoStepError;
use crate::error::{BoxError, PipelineError};

/// The items of a stream step, and what a stream node produces: a stream
/// of `Result<T, PipelineError>`.
///
/// A step returns one built from an iterator ([`ItemStream::iter`],
/// [`ItemStream::try_iter`]) or from any `Stream` ([`ItemStream::new`],
/// [`ItemStream::try_new`]). The stream ends at the first error (an item's
/// `Err`, a panic while producing an item, a downstream step's failure),
/// after the items produced before it; the error names the step.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// /// Splits a document into sentences, one item each.
/// #[step]
/// fn sentences(doc: String) -> ItemStream<String> {
///     let parts: Vec<String> = doc.split('.').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
///     ItemStream::iter(parts)
/// }
///
/// #[step]
/// fn shout(s: String) -> String { s.to_uppercase() }
///
/// let p = sentences(Input::<String>::new()).map_each(shout).collect().deploy()?;
/// assert_eq!(p.call("a b. c.".into())?, vec!["A B".to_string(), "C".to_string()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ItemStream<T> {
    /// `None` once the stream has ended.
    inner: Option<Faults<T>>,
    /// The step whose items these are (set by the runner).
    step: &'static str,
    /// Told when the stream ends with an error (the step's error counter).
    on_error: Option<OnError>,
}

/// A stream's items and faults, boxed.
type Faults<T> = Pin<Box<dyn Stream<Item = Result<T, Fault>> + Send>>;

/// What a stream step's node does when its stream ends with an error.
pub(crate) type OnError = Arc<dyn Fn() + Send + Sync>;

/// An error inside the stream: the producing step's own (named when it
/// comes out), or one from the pipeline.
pub(crate) enum Fault {
    Step(BoxError),
    Pipeline(PipelineError),
}

impl<T> std::fmt::Debug for ItemStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ItemStream<{}> of step `{}`",
            std::any::type_name::<T>(),
            self.step
        )
    }
}

impl<T: Send + 'static> ItemStream<T> {
    /// The items of `items`, pulled one at a time where the step runs.
    pub fn iter<I>(items: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Self::from_faults(futures::stream::iter(items.into_iter().map(Ok)))
    }

    /// The items of `items`; the first `Err` ends the stream with that
    /// error (the step's failure).
    pub fn try_iter<I, E>(items: I) -> Self
    where
        I: IntoIterator<Item = Result<T, E>>,
        I::IntoIter: Send + 'static,
        E: IntoStepError,
    {
        Self::from_faults(futures::stream::iter(
            items
                .into_iter()
                .map(|item| item.map_err(|e| Fault::Step(e.into_step_error()))),
        ))
    }

    /// The items of an async stream.
    pub fn new<S>(stream: S) -> Self
    where
        S: Stream<Item = T> + Send + 'static,
    {
        Self::from_faults(stream.map(Ok))
    }

    /// The items of an async stream of results; the first `Err` ends the
    /// stream with that error.
    pub fn try_new<S, E>(stream: S) -> Self
    where
        S: Stream<Item = Result<T, E>> + Send + 'static,
        E: IntoStepError,
    {
        Self::from_faults(stream.map(|item| item.map_err(|e| Fault::Step(e.into_step_error()))))
    }

    /// A stream of the pipeline's results (what combinators build).
    pub(crate) fn from_results(
        stream: impl Stream<Item = Result<T, PipelineError>> + Send + 'static,
    ) -> Self {
        Self::from_faults(stream.map(|item| item.map_err(Fault::Pipeline)))
    }

    fn from_faults(stream: impl Stream<Item = Result<T, Fault>> + Send + 'static) -> Self {
        ItemStream {
            inner: Some(Box::pin(stream)),
            step: "stream",
            on_error: None,
        }
    }

    /// Names the step whose items these are, for its errors.
    pub(crate) fn named(mut self, step: &'static str) -> Self {
        self.step = step;
        self
    }

    /// Calls `on_error` if the stream ends with an error.
    pub(crate) fn watched(mut self, on_error: OnError) -> Self {
        self.on_error = Some(on_error);
        self
    }
}

impl<T> Stream for ItemStream<T> {
    type Item = Result<T, PipelineError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let step = self.step;
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        // The producer's code runs here (an iterator's `next`, say): a
        // panic in it ends the stream with `Panicked`, as a step's panic
        // fails its call.
        let polled = PipelineError::caught(step, || inner.as_mut().poll_next(cx));
        let mut item = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(None)) => None,
            Ok(Poll::Ready(Some(Ok(item)))) => Some(Ok(item)),
            Ok(Poll::Ready(Some(Err(Fault::Step(e))))) => {
                Some(Err(PipelineError::step_failed(step, e)))
            }
            Ok(Poll::Ready(Some(Err(Fault::Pipeline(e))))) => Some(Err(e)),
            Err(panicked) => Some(Err(panicked)),
        };
        if !matches!(item, Some(Ok(_))) {
            // Ended: what produced the items goes now, not when the consumer
            // drops this stream (upstream replicas stop and are free for
            // the next call). A panic in its `Drop` is the step's panic: it
            // ends the stream with `Panicked` unless an error already did.
            let ended = self.inner.take();
            if let Err(panicked) = PipelineError::caught(step, move || drop(ended)) {
                if item.is_none() {
                    item = Some(Err(panicked));
                }
            }
        }
        if let (Some(Err(_)), Some(on_error)) = (&item, &self.on_error) {
            on_error();
        }
        Poll::Ready(item)
    }
}

/// How a stream ended where it was driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drained {
    /// Every item was sent (or the stream ended with an error).
    Finished,
    /// The consumer dropped the stream: the producer was stopped.
    Cancelled,
    /// The producer panicked (its replica should be rebuilt).
    Panicked,
}

/// How many items a stream step may produce ahead of its consumer (the
/// bound of the channel between them).
pub(crate) const STREAM_BOUND: usize = 16;

/// What drives a stream step's items into the channel the caller reads.
pub(crate) type Driver = Pin<Box<dyn std::future::Future<Output = Drained> + Send>>;

/// How a runner drives a stream step's output where the step runs:
/// implemented (through [`Probe`]) for `ItemStream<T>` outputs only.
#[doc(hidden)]
pub struct Pump<O> {
    /// Splits the step's lazy stream into the stream handed to the caller
    /// (the receiving end of a channel of `bound` items) and the future
    /// that pulls the lazy stream into that channel.
    pub(crate) split: fn(O, &'static str, usize) -> (O, Driver),
    /// Names the step whose items these are (local mode, which pulls the
    /// items in the consumer, splits nothing).
    pub(crate) named: fn(O, &'static str) -> O,
    /// Has the step's node told when the stream ends with an error.
    pub(crate) watched: fn(O, OnError) -> O,
}

impl<O> std::fmt::Debug for Pump<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pump")
    }
}

impl<O> Clone for Pump<O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<O> Copy for Pump<O> {}

impl<O> Pump<O> {
    /// Splits `output` (see [`Pump`]) with the default bound.
    pub(crate) fn split(self, output: O, step: &'static str) -> (O, Driver) {
        (self.split)(output, step, STREAM_BOUND)
    }
}

fn split<T: Send + 'static>(
    lazy: ItemStream<T>,
    step: &'static str,
    bound: usize,
) -> (ItemStream<T>, Driver) {
    let (tx, mut rx) = mpsc::channel::<Result<T, PipelineError>>(bound.max(1));
    let mut lazy = lazy.named(step);
    // Room for half a channel at a time: a producer that got ahead waits
    // until the consumer has taken that many, instead of being woken for
    // every item taken (a thread's wake-up costs microseconds).
    let chunk = (bound / 2).max(1);
    // Set when the items end (or end with an error): a channel closed
    // without it means the driver was stopped (the pipeline dropped), which
    // the consumer is told rather than seeing a stream that just ends.
    let ended = Arc::new(AtomicBool::new(false));
    let seen_end = Arc::clone(&ended);
    let driver = Box::pin(async move {
        let drained = pump(&mut lazy, &tx, chunk, &ended, step).await;
        // The producer is dropped here, where a panic in its `Drop` is
        // caught: a panic of the step (its replica is rebuilt), not the end
        // of the replica's thread or task.
        match std::panic::catch_unwind(AssertUnwindSafe(move || drop(lazy))) {
            Ok(()) => drained,
            Err(_) => Drained::Panicked,
        }
    });
    let front = futures::stream::poll_fn(move |cx| match rx.poll_recv(cx) {
        Poll::Ready(None) if !seen_end.load(Ordering::SeqCst) => {
            seen_end.store(true, Ordering::SeqCst);
            Poll::Ready(Some(Err(PipelineError::ReplicaLost { step })))
        }
        polled => polled,
    });
    (ItemStream::from_results(front).named(step), driver)
}

/// Pulls `lazy`'s items into `tx` until they end, end with an error, or
/// the consumer leaves.
async fn pump<T: Send + 'static>(
    lazy: &mut ItemStream<T>,
    tx: &mpsc::Sender<Result<T, PipelineError>>,
    chunk: usize,
    ended: &AtomicBool,
    step: &'static str,
) -> Drained {
    loop {
        // Room first, then the items: an item is produced only when it can
        // be handed over, so a stopped consumer stops production.
        let Ok(permits) = tx.reserve_many(chunk).await else {
            return Drained::Cancelled;
        };
        for permit in permits {
            // The consumer may leave while the producer waits for its next
            // item (an async stream that is pending): stop then.
            let next = tokio::select! {
                biased;
                () = tx.closed() => return Drained::Cancelled,
                next = lazy.next() => next,
            };
            match next {
                None => {
                    ended.store(true, Ordering::SeqCst);
                    return Drained::Finished;
                }
                Some(Ok(item)) => permit.send(Ok(item)),
                Some(Err(e)) => {
                    let panicked =
                        matches!(e, PipelineError::Panicked { step: s, .. } if s == step);
                    ended.store(true, Ordering::SeqCst);
                    permit.send(Err(e));
                    return if panicked {
                        Drained::Panicked
                    } else {
                        Drained::Finished
                    };
                }
            }
        }
    }
}

/// Finds the [`Pump`] of a step's output type: `(&&Probe::<O>::new()).pump()`
/// is `Some` for `ItemStream<T>` and `None` for every other type (the
/// macro writes it for each step, whose output type is concrete there).
#[doc(hidden)]
#[derive(Debug)]
pub struct Probe<O>(PhantomData<fn() -> O>);

impl<O> Probe<O> {
    /// A probe for `O`.
    pub const fn new() -> Self {
        Probe(PhantomData)
    }
}

impl<O> Default for Probe<O> {
    fn default() -> Self {
        Self::new()
    }
}

/// See [`Probe`]: the `ItemStream` case.
#[doc(hidden)]
pub trait PumpOfStream<O> {
    fn pump(&self) -> Option<Pump<O>>;
}

impl<T: Send + 'static> PumpOfStream<ItemStream<T>> for &Probe<ItemStream<T>> {
    fn pump(&self) -> Option<Pump<ItemStream<T>>> {
        Some(Pump {
            split: split::<T>,
            named: ItemStream::named,
            watched: ItemStream::watched,
        })
    }
}

/// See [`Probe`]: every other type.
#[doc(hidden)]
pub trait PumpOfValue<O> {
    fn pump(&self) -> Option<Pump<O>>;
}

impl<O> PumpOfValue<O> for Probe<O> {
    fn pump(&self) -> Option<Pump<O>> {
        None
    }
}
